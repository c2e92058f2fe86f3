"""asdlib.models heads, pooling, SpecAugment and the log-mel embedder."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from asdlib.config import HeadConfig, LogMelConfig, SpecAugConfig
from asdlib.models.heads import HEADS, AdaCos, ArcFace, build_head
from asdlib.models.logmel import LogMelMean
from asdlib.models.pooling import AttentiveStatsPooling, WeightedLayerSum
from asdlib.models.specaug import SpecAugment


def _orthogonal_centres(head: torch.nn.Module, dim: int) -> None:
    """Class centres on the first axes, so the cosine of an embedding to each centre is known exactly."""
    with torch.no_grad():
        head.weight.copy_(torch.eye(dim)[: head.weight.shape[0]])


def _at_angle(angle: float, cls: int, dim: int) -> torch.Tensor:
    """Unit embedding at ``angle`` from centre ``cls`` (rotated towards the last axis, orthogonal to every centre)."""
    e = torch.zeros(dim)
    e[cls], e[-1] = math.cos(angle), math.sin(angle)
    return e


# -- ArcFace ---------------------------------------------------------------------------------


def test_arcface_loss_decreases_as_embeddings_align():
    head = ArcFace(8, 4, scale=16.0, margin=0.2)
    _orthogonal_centres(head, 8)
    labels = torch.tensor([0, 2])
    losses = [head(torch.stack([_at_angle(a, 0, 8), _at_angle(a, 2, 8)]), labels).item() for a in (1.2, 0.8, 0.4, 0.0)]
    assert all(x > y for x, y in zip(losses, losses[1:])), losses


def test_arcface_margin_value():
    head0, head = ArcFace(8, 4, scale=10.0, margin=0.0), ArcFace(8, 4, scale=10.0, margin=0.3)
    _orthogonal_centres(head0, 8)
    _orthogonal_centres(head, 8)
    emb, labels = _at_angle(0.5, 1, 8)[None], torch.tensor([1])
    # logits: target s*cos(theta + m), others s*cos(pi/2) = 0
    expected = F.cross_entropy(torch.tensor([[0.0, 10 * math.cos(0.5 + 0.3), 0.0, 0.0]]), labels)
    assert head(emb, labels).item() == pytest.approx(expected.item(), rel=1e-5)
    assert head(emb, labels) > head0(emb, labels)
    plain = F.cross_entropy(10 * F.linear(F.normalize(emb), F.normalize(head0.weight)), labels)
    assert head0(emb, labels).item() == pytest.approx(plain.item(), rel=1e-5)


def test_arcface_gradients_finite_under_autocast_at_the_centre():
    """Half precision rounds a cosine near 1 to exactly 1, where acos has an infinite slope."""
    head = ArcFace(16, 4)
    emb = head.weight.detach()[:2].clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = head(emb, torch.tensor([0, 1]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(emb.grad).all() and torch.isfinite(head.weight.grad).all()


# -- AdaCos / sub-cluster AdaCos ---------------------------------------------------------------


def test_adacos_scale_adapts_in_training_only():
    torch.manual_seed(0)
    head = AdaCos(16, 5)
    s0 = head.scale.item()
    assert s0 == pytest.approx(math.sqrt(2) * math.log(4))
    emb, labels = torch.randn(8, 16), torch.randint(0, 5, (8,))
    head.eval()
    first = head(emb, labels)
    assert head.scale.item() == s0 and head(emb, labels).item() == first.item()
    head.train()
    head(emb, labels)
    s1 = head.scale.item()
    assert s1 != s0 and math.isfinite(s1) and s1 > 0
    head.eval()
    head(torch.randn(8, 16), labels)
    assert head.scale.item() == s1
    assert "scale" in head.state_dict()  # saved with checkpoints


def test_adacos_loss_decreases_as_embeddings_align():
    head = AdaCos(8, 4).eval()
    _orthogonal_centres(head, 8)
    labels = torch.tensor([3])
    losses = [head(_at_angle(a, 3, 8)[None], labels).item() for a in (1.2, 0.6, 0.0)]
    assert losses[0] > losses[1] > losses[2]


def test_subcluster_adacos_shapes_and_subcentre_choice():
    torch.manual_seed(0)
    head = AdaCos(16, 3, sub_centers=4)
    assert head.weight.shape == (12, 16)
    emb = torch.randn(5, 16, requires_grad=True)
    assert head.cosine(emb).shape == (5, 3, 4)
    loss = head(emb, torch.tensor([0, 1, 2, 0, 1]))
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert head.weight.grad.shape == (12, 16) and emb.grad.shape == (5, 16)
    # an embedding on any single sub-centre of class 2 is classified as class 2
    head.eval()
    for k in range(4):
        e = head.weight.detach()[2 * 4 + k][None]
        losses = [head(e, torch.tensor([c])).item() for c in range(3)]
        assert int(np.argmin(losses)) == 2


def test_build_head():
    assert isinstance(build_head(HeadConfig("arcface"), 8, 3), ArcFace)
    assert build_head(HeadConfig("adacos"), 8, 3).weight.shape == (3, 8)
    assert build_head(HeadConfig("subcluster_adacos", {"sub_centers": 4}), 8, 3).weight.shape == (12, 8)
    assert HEADS.names() == ("arcface", "adacos", "subcluster_adacos")
    with pytest.raises(ValueError, match="unknown head 'cosface'; known: arcface, adacos, subcluster_adacos"):
        build_head(HeadConfig("cosface"), 8, 3)


# -- pooling -------------------------------------------------------------------------------


def test_attentive_stats_pooling_ignores_padding():
    torch.manual_seed(0)
    pool = AttentiveStatsPooling(6, hidden=8).eval()
    x = torch.randn(1, 7, 6)
    alone = pool(x, torch.tensor([7]))
    batch = torch.randn(3, 12, 6) * 100  # padding full of large garbage
    batch[1, :7] = x[0]
    out = pool(batch, torch.tensor([12, 7, 3]))
    assert out.shape == (3, 12) and pool.out_dim == 12
    torch.testing.assert_close(out[1], alone[0], rtol=1e-5, atol=1e-5)


def test_attentive_stats_pooling_is_mean_and_std_with_flat_attention():
    pool = AttentiveStatsPooling(4, hidden=8)
    with torch.no_grad():
        pool.attention[2].weight.zero_()
        pool.attention[2].bias.zero_()
    x = torch.randn(2, 10, 4)
    out = pool(x, torch.tensor([10, 6]))
    torch.testing.assert_close(out[1, :4], x[1, :6].mean(0))
    torch.testing.assert_close(out[1, 4:], x[1, :6].std(0, unbiased=False), rtol=1e-4, atol=1e-4)


def test_weighted_layer_sum():
    layer_sum = WeightedLayerSum(5)
    assert torch.equal(torch.softmax(layer_sum.weights, 0), torch.full((5,), 0.2))
    hidden = [torch.randn(2, 3, 4) * (i + 1) + i for i in range(5)]
    normed = [F.layer_norm(h, (4,)) for h in hidden]
    torch.testing.assert_close(layer_sum(hidden), torch.stack(normed).mean(0))
    subset = WeightedLayerSum(5, layers=[1, -1])
    assert subset.layers == [1, -1] and subset.weights.shape == (2,)
    torch.testing.assert_close(subset(hidden), (normed[1] + normed[4]) / 2)
    for bad in ([5], [0, -6]):
        with pytest.raises(ValueError, match=rf"layer indices \[{bad[-1]}\] out of range .* 5 hidden states"):
            WeightedLayerSum(5, layers=bad)


# -- SpecAugment -----------------------------------------------------------------------------


def _x(b: int = 4, t: int = 60, c: int = 16) -> torch.Tensor:
    return torch.rand(b, t, c) + 0.5  # no zeros, so masked entries are recognisable


def test_specaug_identity_in_eval_and_when_disabled():
    x, lengths = _x(), torch.tensor([60, 40, 20, 5])
    aug = SpecAugment(SpecAugConfig(time_masks=3, time_width=0.5, freq_masks=3, freq_width=8)).eval()
    assert aug(x, lengths) is x
    off = SpecAugment(SpecAugConfig(enabled=False, time_width=0.5)).train()
    assert off(x, lengths) is x


def test_specaug_only_zeroes_values():
    torch.manual_seed(0)
    x, lengths = _x(), torch.tensor([60, 40, 20, 5])
    out = SpecAugment(SpecAugConfig(time_masks=3, time_width=0.3, freq_masks=3, freq_width=6)).train()(x, lengths)
    assert out.shape == x.shape
    zero = out == 0
    assert zero.any() and torch.equal(out[~zero], x[~zero])


def test_specaug_time_masks_stay_inside_the_clip():
    lengths = torch.tensor([60, 40, 20, 5])
    aug = SpecAugment(SpecAugConfig(time_masks=2, time_width=0.5, freq_masks=0)).train()
    masked_any = False
    for seed in range(30):
        torch.manual_seed(seed)
        out = aug(_x(), lengths)
        zero_frames = (out == 0).all(-1)
        assert torch.equal(zero_frames, (out == 0).any(-1))  # time masks cover whole frames
        for b, n in enumerate(lengths.tolist()):
            assert not zero_frames[b, n:].any()
            assert zero_frames[b].sum() <= 2 * int(0.5 * n)
        masked_any |= bool(zero_frames.any())
    assert masked_any


def test_specaug_freq_masks_are_bands_of_limited_width():
    aug = SpecAugment(SpecAugConfig(time_masks=0, freq_masks=1, freq_width=5)).train()
    widths = set()
    for seed in range(30):
        torch.manual_seed(seed)
        zero_chans = (aug(_x(), torch.tensor([60, 40, 20, 5])) == 0).all(1)  # (B, C): same band over all frames
        for row in zero_chans:
            idx = row.nonzero().flatten().tolist()
            if idx:
                assert idx == list(range(idx[0], idx[0] + len(idx)))  # one contiguous band
            widths.add(len(idx))
    assert max(widths) <= 5 and len(widths) > 2


def test_specaug_deterministic_with_manual_seed():
    x, lengths = _x(), torch.tensor([60, 40, 20, 5])
    aug = SpecAugment(SpecAugConfig(time_width=0.3)).train()
    torch.manual_seed(7)
    a = aug(x, lengths)
    torch.manual_seed(7)
    b = aug(x, lengths)
    torch.manual_seed(8)
    c = aug(x, lengths)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_specaug_config_validation():
    for bad in ({"time_masks": -1}, {"freq_width": -1}, {"time_width": 1.5}):
        with pytest.raises(ValueError, match="specaug"):
            SpecAugConfig(**bad)


# -- log-mel baseline ------------------------------------------------------------------------


def test_logmel_mean_uses_only_the_valid_frames():
    cfg = LogMelConfig(n_mels=16, n_fft=512, hop_length=256)
    model = LogMelMean(cfg, 16000)
    t = torch.arange(16000) / 16000
    short = torch.sin(2 * math.pi * 440 * t[:4096])
    alone = model(short[None], torch.tensor([4096]))
    batch = torch.zeros(2, 16000)
    batch[0] = torch.sin(2 * math.pi * 1000 * t)
    batch[1, :4096] = short
    out = model(batch, torch.tensor([16000, 4096]))
    assert out.shape == (2, 16)
    # only the last valid frame sees the zero padding instead of the reflection; padded frames
    # (log 1e-10 = -23) would pull the mean down by several units
    assert (out[1] - alone[0]).abs().max() < 0.5


def test_logmel_stats_are_blind_to_a_fixed_channel_gain_and_use_only_valid_frames():
    cfg = LogMelConfig(n_mels=16, n_fft=512, hop_length=256, stats=["mean", "std", "delta"])
    assert cfg.width == 48
    model = LogMelMean(cfg, 16000)
    t = torch.arange(16000) / 16000
    x = torch.sin(2 * math.pi * 440 * t) * (1 + 0.5 * torch.sin(2 * math.pi * 3 * t)) + 0.01 * torch.randn(16000)
    out = model(torch.stack([x, 0.1 * x]), torch.tensor([16000, 16000]))
    mean, rest = out[:, :16], out[:, 16:]
    # a gain adds log(0.01) to every frame: the mean moves, spread and frame-to-frame change do not
    torch.testing.assert_close(mean[0] - mean[1], torch.full((16,), -math.log(0.01)), atol=1e-3, rtol=0)
    torch.testing.assert_close(rest[0], rest[1], atol=1e-3, rtol=0)
    assert (rest > 0).all()
    # padding beyond the valid frames does not enter (only the last valid frame sees zeros)
    padded = torch.zeros(1, 24000)
    padded[0, :16000] = x
    alone = model(x[None], torch.tensor([16000]))
    assert (model(padded, torch.tensor([16000])) - alone).abs().max() < 0.5
    assert LogMelMean(LogMelConfig(n_mels=16, n_fft=512, hop_length=256), 16000)(
        x[None], torch.tensor([16000])
    ).shape == (1, 16)
    for bad in ([], ["mean", "mean"], ["max"]):
        with pytest.raises(ValueError, match="logmel.stats"):
            LogMelConfig(stats=bad)
