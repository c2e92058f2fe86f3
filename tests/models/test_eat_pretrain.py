"""EAT pre-training: inverse block masks, the EMA teacher and its schedule, targets, falling losses,
and the student exported in the release format loading back as the same upstream."""

from __future__ import annotations

import pytest
import torch

from asdlib.config import PretrainConfig, UpstreamConfig
from asdlib.models.eat import EATConfig, EATUpstream, save_eat_hf
from asdlib.models.eat_pretrain import (
    EATPretrainer,
    ema_decay_at,
    ema_update,
    inverse_block_mask,
    make_targets,
)
from asdlib.models.upstream import build_upstream

TINY = EATConfig(embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, max_length=16)
SMALL = dict(clone_batch=2, average_top_k_layers=2, decoder_dim=32, decoder_groups=4, decoder_layers=2)


def test_mask_counts_blocks_and_clones():
    cfg = PretrainConfig()
    time, freq, batch = 64, 8, 32
    n = time * freq
    mask = inverse_block_mask(batch, time, freq, cfg, torch.Generator().manual_seed(0))
    assert mask.shape == (batch, n) and mask.dtype == torch.bool
    assert (mask.sum(1) == n - int(n * 0.2)).all()  # exactly the release's 80 % masked, every row
    kept = (~mask).view(batch, time, freq).float()
    # kept patches come in blocks: a kept patch's time neighbour is kept far more often than 20 %
    together = (kept[:, 1:] * kept[:, :-1]).sum() / kept[:, :-1].sum()
    assert together > 0.5
    assert len({tuple(row.tolist()) for row in mask}) == batch  # every clone gets its own mask
    again = inverse_block_mask(batch, time, freq, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(mask, again)


def test_ema_schedule_and_update():
    cfg = PretrainConfig(ema_decay=0.9, ema_end_decay=0.99, ema_anneal_end_step=10)
    assert ema_decay_at(0, cfg) == pytest.approx(0.9)
    assert ema_decay_at(5, cfg) == pytest.approx(0.945)
    assert ema_decay_at(10, cfg) == ema_decay_at(1000, cfg) == pytest.approx(0.99)
    teacher = {"w": torch.randn(3, 3), "n": torch.tensor(1)}
    student = {"w": torch.randn(3, 3), "n": torch.tensor(5)}
    before = teacher["w"].clone()
    ema_update(teacher, student, 0.75)
    assert torch.allclose(teacher["w"], 0.75 * before + 0.25 * student["w"]) and int(teacher["n"]) == 5


def test_targets_are_normalised():
    layers = [torch.randn(2, 10, 8) * 5 + 3 for _ in range(3)]
    y = make_targets(layers)
    assert y.shape == (2, 10, 8)
    assert torch.allclose(y.mean(-1), torch.zeros(2, 10), atol=1e-5)  # layer-normalised over channels


def _pretrainer(**settings) -> EATPretrainer:
    return EATPretrainer(EATUpstream(TINY, target_frames=64), PretrainConfig(enabled=True, **settings))


def test_losses_fall_teacher_follows_and_export_loads(tmp_path):
    torch.manual_seed(0)
    pre = _pretrainer(ema_decay=0.99, ema_end_decay=0.999, ema_anneal_end_step=20, **SMALL).train()
    assert not any("teacher" in name for name, _ in pre.named_parameters())  # never optimised ...
    assert "teacher.blocks.0.mlp.fc1.weight" in pre.state_dict()  # ... but checkpointed
    t = torch.linspace(0, 1, 64)[:, None]
    fbank = torch.stack([torch.sin(6.28 * k * t + torch.linspace(0, 3, 128)) for k in (1, 2, 3, 4)])  # (4, 64, 128)
    opt = torch.optim.AdamW(pre.parameters(), lr=2e-3)
    first = last = None
    for _ in range(30):
        terms = pre.losses(fbank)
        opt.zero_grad()
        (terms["frame"] + terms["utterance"]).backward()
        opt.step()
        pre.update_teacher()
        first = first or {k: v.item() for k, v in terms.items()}
        last = {k: v.item() for k, v in terms.items()}
    assert last["frame"] < 0.7 * first["frame"] and last["utterance"] < 0.85 * first["utterance"]
    assert int(pre.num_updates) == 30
    moved = (pre.teacher.blocks[0].mlp.fc1.weight - pre.student.model.blocks[0].mlp.fc1.weight).abs().max()
    assert 0 < moved  # the teacher trails the student

    wavs, lengths = torch.randn(2, 8000) * 0.1, torch.tensor([8000, 6000])
    assert pre(wavs, lengths).shape == (len(EATPretrainer.TERMS),)  # the trainer's call
    save_eat_hf(pre.student.model, tmp_path / "upstream")
    loaded = build_upstream(UpstreamConfig(name="eat", path=str(tmp_path / "upstream"), conf={"target_frames": 64}))
    with torch.no_grad():
        got, want = loaded.eval()(wavs, lengths), pre.student.eval()(wavs, lengths)
    assert all(torch.equal(a, b) for a, b in zip(got[0], want[0], strict=True))
    assert torch.equal(got[1], want[1])


def test_bad_settings_name_the_key():
    with pytest.raises(ValueError, match="pretrain.decoder_kernel"):
        PretrainConfig(decoder_kernel=4)
    with pytest.raises(ValueError, match="average_top_k_layers 12 exceeds"):
        _pretrainer()
    with pytest.raises(ValueError, match="target_frames must be a number"):
        EATPretrainer(EATUpstream(TINY, target_frames=None), PretrainConfig(**SMALL))
