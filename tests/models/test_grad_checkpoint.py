"""model.grad_checkpoint (activation checkpointing per transformer block) and model.pooling: cls."""

from __future__ import annotations

import pytest
import torch

from asdlib.bin import make_random_upstream
from asdlib.config import TrainConfig, UpstreamConfig
from asdlib.models.asd_model import build_model

FAMILIES = ["beats", "eat", "hubert", "wavlm"]


@pytest.fixture(scope="module")
def patch_ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("patch_models")
    out = {"beats": str(root / "beats.pt"), "eat": str(root / "eat")}
    for name, path in out.items():
        assert make_random_upstream.main(["--name", name, "--out", path]) == 0
    return out


def _cfg(family: str, path: str, **model: object) -> TrainConfig:
    cfg = TrainConfig()
    cfg.upstream = UpstreamConfig(name=family, path=path, conf={"target_frames": None} if family == "eat" else None)
    cfg.finetune.rank, cfg.finetune.dropout = 2, 0.1
    cfg.mga.enabled, cfg.mga.bottleneck = True, 4
    cfg.model.pooling_hidden, cfg.model.embed_dim = 8, 16
    for key, value in model.items():
        setattr(cfg.model, key, value)
    return cfg


def _grads(model: torch.nn.Module, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
    """Gradients of a train-mode step (dropout and SpecAugment on) and the bytes saved for backward."""
    model.train()
    saved: dict[int, int] = {}
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.untyped_storage().data_ptr() not in params:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    torch.manual_seed(123)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        emb = model(wavs, lengths, torch.tensor([0, 1]))
    emb.pow(2).sum().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, sum(saved.values())


@pytest.mark.parametrize("family", FAMILIES)
def test_checkpointing_gives_the_same_gradients_with_less_saved(family, ckpts, patch_ckpts):
    path = {**ckpts, **patch_ckpts}[family]
    torch.manual_seed(0)
    plain = build_model(_cfg(family, path), num_machines=2)
    with torch.no_grad():  # non-zero lora_B and MGA up-projections, so every trainable weight gets a gradient
        for p in plain.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    ckpt = build_model(_cfg(family, path, grad_checkpoint=True), num_machines=2)
    ckpt.load_state_dict(plain.state_dict())
    wavs = 0.1 * torch.randn(2, 16000, generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([16000, 12000])
    ref, ref_saved = _grads(plain, wavs, lengths)
    got, got_saved = _grads(ckpt, wavs, lengths)
    assert set(got) == set(ref) and any("lora_A" in n for n in ref)
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=1e-4, atol=1e-6, msg=name)
    assert got_saved < 0.7 * ref_saved, (got_saved, ref_saved)
    ckpt.eval()
    with torch.no_grad():  # inference: plain forward, same embeddings
        torch.testing.assert_close(
            ckpt(wavs, lengths, torch.tensor([0, 1])), plain.eval()(wavs, lengths, torch.tensor([0, 1]))
        )


def test_cls_pooling_is_the_cls_token_of_the_layer_sum(patch_ckpts, ckpts):
    model = build_model(_cfg("eat", patch_ckpts["eat"], pooling="cls", layers=[-1]), num_machines=2).eval()
    wavs = 0.1 * torch.randn(2, 16000, generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([16000, 12000])
    machines = torch.tensor([0, 1])
    with torch.no_grad():
        emb = model(wavs, lengths, machines)
        with model.machine_context.bind(machines):
            hidden, _ = model.upstream(wavs, lengths)
        last = torch.nn.functional.layer_norm(hidden[-1], hidden[-1].shape[-1:])
        torch.testing.assert_close(emb, model.proj(last[:, 0]))
        # only the CLS token matters: changing a patch token's hidden state leaves the pooled vector alone
        changed = last.clone()
        changed[:, 1:] += 1.0
        torch.testing.assert_close(model.pooling(changed, lengths), last[:, 0])
    assert model.proj.in_features == model.upstream.hidden_size  # no mean/std concatenation
    with pytest.raises(ValueError, match="CLS token"):
        build_model(_cfg("hubert", ckpts["hubert"], pooling="cls"), num_machines=2)
    with pytest.raises(ValueError, match="model.pooling"):
        _cfg("eat", "x", pooling="mean").model.__post_init__()
