"""Waveform mixup: mixing arithmetic, Beta-distributed lam, seeding, same-group partners, loss."""

from __future__ import annotations

import pytest
import torch
from scipy import stats
from torch.nn import functional as F

from asdlib.config import MixupConfig
from asdlib.models.heads import ArcFace, weighted_labels_loss
from asdlib.models.mixup import mixup


def _batch(b: int = 6, t: int = 100, c: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(b) % c
    return torch.randn(b, t, generator=g), F.one_hot(labels, c).float(), labels


def test_mix_arithmetic_and_lengths():
    wavs, onehot, _ = _batch()
    lengths = torch.tensor([100, 60, 100, 80, 30, 100])
    m = mixup(wavs, onehot, 1.0, torch.Generator().manual_seed(1), lengths=lengths)
    assert 0.0 <= m.lam <= 1.0 and sorted(m.perm.tolist()) == list(range(6))
    torch.testing.assert_close(m.wavs, m.lam * wavs + (1 - m.lam) * wavs[m.perm])
    torch.testing.assert_close(m.targets.sum(1), torch.ones(6))
    torch.testing.assert_close(m.targets, m.lam * onehot + (1 - m.lam) * onehot[m.perm])
    assert torch.equal(m.lengths, torch.maximum(lengths, lengths[m.perm]))


def test_seeded_and_beta_distributed():
    wavs, onehot, _ = _batch()
    a = mixup(wavs, onehot, 0.4, torch.Generator().manual_seed(3))
    b = mixup(wavs, onehot, 0.4, torch.Generator().manual_seed(3))
    assert a.lam == b.lam and torch.equal(a.perm, b.perm) and torch.equal(a.wavs, b.wavs)
    g = torch.Generator().manual_seed(0)
    for alpha in (0.4, 1.0):
        lams = [mixup(wavs[:2], onehot[:2], alpha, g).lam for _ in range(1000)]
        assert stats.kstest(lams, stats.beta(alpha, alpha).cdf).pvalue > 1e-3


def test_partners_stay_in_their_group():
    wavs, onehot, _ = _batch(b=8)
    groups = torch.tensor([0, 1, 0, 1, 2, 0, 1, 3])
    for seed in range(10):
        m = mixup(wavs, onehot, 1.0, torch.Generator().manual_seed(seed), groups=groups)
        assert torch.equal(groups[m.perm], groups)
        assert m.perm[7] == 7  # alone in its group: mixed with itself


def test_two_label_loss_equals_soft_cross_entropy_and_works_with_margin_heads():
    wavs, onehot, labels = _batch()
    m = mixup(wavs, onehot, 1.0, torch.Generator().manual_seed(2))
    proj = torch.nn.Linear(wavs.size(1), onehot.size(1))
    emb = proj(m.wavs)
    soft = -(m.targets * F.log_softmax(emb, dim=1)).sum(1).mean()
    torch.testing.assert_close(weighted_labels_loss(F.cross_entropy, emb, m.label_sets(labels)), soft)
    head = ArcFace(onehot.size(1), onehot.size(1))
    loss = weighted_labels_loss(head, emb, m.label_sets(labels))
    loss.backward()
    la, lb = head(emb, labels).item(), head(emb, labels[m.perm]).item()
    assert min(la, lb) - 1e-5 <= loss.item() <= max(la, lb) + 1e-5
    assert proj.weight.grad.abs().sum() > 0


def test_bad_input():
    wavs, onehot, _ = _batch()
    with pytest.raises(ValueError, match="alpha"):
        mixup(wavs, onehot, 0.0)
    with pytest.raises(ValueError, match="labels"):
        mixup(wavs, onehot[:3], 1.0)
    with pytest.raises(ValueError, match="alpha"):
        MixupConfig(alpha=-1.0)
