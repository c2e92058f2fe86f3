"""The contrastive losses and the VQ EMA run in float32 under the trainer's autocast, as the margin
heads do: half-precision logits over tau = 0.1 and half-precision EMA sums lose the small
differences these losses and codebooks live on. Checked with CPU bfloat16 autocast."""

from __future__ import annotations

import torch

from asdlib.config import VQConfig
from asdlib.losses import DualLevelLoss, VQClusterer
from asdlib.losses.contrastive import code_infonce_loss, supcon_loss

DIM = 16


def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(12, DIM, generator=g)
    groups = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    codes = torch.nn.functional.normalize(torch.randn(12, 4, DIM, generator=g), dim=-1)
    return emb, groups, codes, torch.randint(0, 4, (12,), generator=g)


def bf16() -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16)


def test_contrastive_losses_are_float32_under_autocast() -> None:
    emb, groups, codes, assigned = data()
    cfg = VQConfig(enabled=True)
    ref = [
        supcon_loss(emb, groups),
        code_infonce_loss(emb, codes, assigned),
        DualLevelLoss(cfg)(emb, groups, codes, assigned).total,
    ]
    with bf16():
        got = [
            supcon_loss(emb, groups),
            code_infonce_loss(emb, codes, assigned),
            DualLevelLoss(cfg)(emb, groups, codes, assigned).total,
        ]
    for r, x in zip(ref, got):
        assert x.dtype == torch.float32
        torch.testing.assert_close(x, r, rtol=1e-6, atol=1e-6)


def test_vq_ema_is_float32_under_autocast() -> None:
    emb, _, _, _ = data()
    keys = torch.tensor([2] * 12)
    cfg = VQConfig(enabled=True, num_codes=4)
    ref = VQClusterer([2], DIM, cfg, 3)
    ref.init_from(emb, keys, generator=torch.Generator().manual_seed(1))
    got = VQClusterer([2], DIM, cfg, 3)
    got.load_state_dict(ref.state_dict())
    batch = emb.flip(0) + 0.1
    codes_ref, assigned_ref = ref.lookup(batch, keys)
    ref.update(batch, keys, generator=torch.Generator().manual_seed(2))
    with bf16():
        codes, assigned = got.lookup(batch, keys)
        got.update(batch, keys, generator=torch.Generator().manual_seed(2))
    assert torch.equal(assigned, assigned_ref) and codes.dtype == torch.float32
    for name, value in ref.state_dict().items():
        assert got.state_dict()[name].dtype == value.dtype
        torch.testing.assert_close(got.state_dict()[name], value, rtol=1e-6, atol=1e-7, msg=name)
