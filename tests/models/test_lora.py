"""Fully-connected LoRA: exact parameter counts, every target acts on every upstream, modes, layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from asdlib.config import FinetuneConfig, UpstreamConfig
from asdlib.models.lora import apply_finetune, count_parameters, lora_targets
from asdlib.models.upstream import build_upstream
from asdlib.synth.checkpoints import RandomModelSize

FAMILIES = ["hubert", "wav2vec2", "data2vec", "wavlm"]
SIZE = RandomModelSize()
ATTENTION_AND_FFN = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
# every nn.Linear in a block: WavLM adds the gate of its gated relative position bias
TARGETS = {f: ATTENTION_AND_FFN + (["grep_linear"] if f == "wavlm" else []) for f in FAMILIES}


def _load(ckpts: dict[str, str], family: str):
    return build_upstream(UpstreamConfig(name=family, path=ckpts[family])).eval()


def _forward(upstream) -> torch.Tensor:
    wavs = torch.randn(2, 8000, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.no_grad():
        hidden_states, _ = upstream(wavs, torch.tensor([8000, 6000]))
    return hidden_states[-1]


def _randomise_lora_b(upstream) -> None:
    """Random (not constant: a constant row shift is cancelled by the post-LayerNorm) lora_B."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in upstream.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=generator))


def test_trainable_count_is_exact(ckpts):
    up = _load(ckpts, "hubert")
    r, d, f = 4, SIZE.dim, SIZE.ffn_dim
    apply_finetune(up, FinetuneConfig(rank=r))
    # per block: q, k, v, out (d -> d) and fc1 (d -> f), fc2 (f -> d); LoRA adds r * (in + out)
    expected = SIZE.layers * (4 * r * (d + d) + r * (d + f) + r * (f + d))
    trainable, total = count_parameters(up)
    assert trainable == expected
    assert all(("lora_A" in n or "lora_B" in n) == p.requires_grad for n, p in up.named_parameters())
    assert total == sum(p.numel() for p in up.parameters())


@pytest.mark.parametrize("family", FAMILIES)
def test_default_targets_are_every_linear_in_blocks(ckpts, family):
    up = _load(ckpts, family)
    targets = lora_targets(up, FinetuneConfig())
    assert sorted({t.rsplit(".", 1)[-1] for t in targets}) == sorted(TARGETS[family])
    assert all(t.startswith("model.encoder.layers.") for t in targets)


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_on_each_target_changes_the_output(ckpts, family):
    """The fused-attention pitfall (docs/method.md §4): LoRA must act on q/k/v/out_proj too."""
    reference = _forward(_load(ckpts, family))
    for target in TARGETS[family]:
        up = _load(ckpts, family)
        apply_finetune(up, FinetuneConfig(rank=4, target_modules=[target]))
        up.eval()
        # lora_B starts at 0 (CPU conv kernels may differ by float rounding once weights are frozen)
        torch.testing.assert_close(_forward(up), reference, atol=1e-5, rtol=0)
        _randomise_lora_b(up)
        change = (_forward(up) - reference).abs().max().item()
        # > 50x the rounding noise; the smallest effect is WavLM's grep_linear gate (~2e-4)
        assert change > 5e-5, f"{family}: LoRA on {target} does not change the output"


@pytest.mark.parametrize("family", ["hubert", "wavlm"])
def test_the_pitfall_test_catches_a_fused_attention(ckpts, family):
    """With s3prl's fused attention path restored, LoRA on q_proj is inert -- what we guard against."""
    from s3prl.upstream.wav2vec2.wav2vec2_model import (
        MultiheadAttention as FairseqAttention,
    )
    from s3prl.upstream.wavlm.modules import MultiheadAttention as WavLMAttention

    reference = _forward(_load(ckpts, family))
    up = _load(ckpts, family)
    for block in up.blocks():
        if family == "wavlm":
            block.self_attn.__class__ = WavLMAttention
        else:
            assert isinstance(block.self_attn, FairseqAttention)
            block.self_attn.skip_embed_dim_check = False
    apply_finetune(up, FinetuneConfig(rank=4, target_modules=["q_proj"]))
    _randomise_lora_b(up)
    up.eval()
    assert (_forward(up) - reference).abs().max().item() < 1e-5


def test_full_and_frozen_modes(ckpts):
    full = _load(ckpts, "wav2vec2")
    apply_finetune(full, FinetuneConfig(mode="full"))
    trainable, total = count_parameters(full)
    assert trainable == total and not any("lora" in n for n, _ in full.named_parameters())

    frozen = _load(ckpts, "wav2vec2")
    frozen.insert_block_adapters([nn.Linear(SIZE.dim, SIZE.dim) for _ in range(SIZE.layers)])
    apply_finetune(frozen, FinetuneConfig(mode="frozen"))
    adapters = sum(p.numel() for p in frozen.block_adapters.parameters())
    assert count_parameters(frozen)[0] == adapters  # only the trainer's adapters stay trainable

    lora = _load(ckpts, "wav2vec2")
    lora.insert_block_adapters([nn.Linear(SIZE.dim, SIZE.dim) for _ in range(SIZE.layers)])
    apply_finetune(lora, FinetuneConfig(rank=2))
    assert all(p.requires_grad for p in lora.block_adapters.parameters())
    assert not any("block_adapters" in t for t in lora_targets(lora, FinetuneConfig()))


def test_layer_selection(ckpts):
    up = _load(ckpts, "data2vec")
    apply_finetune(up, FinetuneConfig(rank=4, layers=[1]))
    wrapped = [n for n, _ in up.named_parameters() if "lora_A" in n]
    assert wrapped and all(n.startswith("model.encoder.layers.1.") for n in wrapped)
    r, d, f = 4, SIZE.dim, SIZE.ffn_dim
    assert count_parameters(up)[0] == 4 * r * (d + d) + r * (d + f) + r * (f + d)
    with pytest.raises(ValueError, match=r"finetune.layers \[2\] out of range"):
        apply_finetune(_load(ckpts, "data2vec"), FinetuneConfig(layers=[0, 2]))


def test_alpha_defaults_to_rank(ckpts):
    up = _load(ckpts, "hubert")
    apply_finetune(up, FinetuneConfig(rank=8, target_modules=["fc1"]))
    assert up.blocks()[0].fc1.scaling["default"] == 1.0
    up = _load(ckpts, "hubert")
    apply_finetune(up, FinetuneConfig(rank=8, alpha=32, target_modules=["fc1"]))
    assert up.blocks()[0].fc1.scaling["default"] == 4.0


def test_bad_configs_fail_clearly(ckpts):
    with pytest.raises(ValueError, match="match no nn.Linear.*available leaf names"):
        apply_finetune(_load(ckpts, "hubert"), FinetuneConfig(target_modules=["qkv"]))
    with pytest.raises(ValueError, match="lora, full or frozen"):
        FinetuneConfig(mode="partial")
    up = _load(ckpts, "hubert")
    apply_finetune(up, FinetuneConfig(rank=2))
    with pytest.raises(RuntimeError, match="already has LoRA"):
        apply_finetune(up, FinetuneConfig(rank=2))


@pytest.mark.parametrize("family", ["hubert", "wavlm"])
def test_training_step_reaches_every_lora_module(ckpts, family):
    up = _load(ckpts, family)
    apply_finetune(up, FinetuneConfig(rank=4))
    up.train()
    hidden_states, _ = up(torch.randn(2, 8000) * 0.1, torch.tensor([8000, 6000]))
    sum(h.pow(2).mean() for h in hidden_states).backward()
    lora_b = {n: p for n, p in up.named_parameters() if "lora_B" in n}
    assert len(lora_b) == SIZE.layers * len(TARGETS[family])
    assert [n for n, p in lora_b.items() if p.grad is None or not p.grad.abs().sum() > 0] == []
    assert all(p.grad is None for n, p in up.named_parameters() if "lora_" not in n)


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_lora_dropout_zero_keeps_no_dropout_module(ckpts, dropout):
    """finetune.dropout 0 reaches peft as 0, so every LoRA layer holds nn.Identity: no dropped-out
    copy of its input is made and kept for backward (BENCHMARKS.md §1)."""
    up = _load(ckpts, "hubert")
    apply_finetune(up, FinetuneConfig(rank=2, dropout=dropout))
    wrapped = [m for m in up.modules() if hasattr(m, "lora_dropout")]
    assert len(wrapped) == SIZE.layers * len(ATTENTION_AND_FFN)
    kinds = {type(m.lora_dropout["default"]) for m in wrapped}
    assert kinds == ({nn.Identity} if dropout == 0 else {nn.Dropout})
    assert any(isinstance(m, nn.Dropout) and "lora" in n for n, m in up.named_modules()) == (dropout > 0)
