"""EAT from its official formats (Hugging Face, fairseq): strict names, shapes, padding, LoRA, adapters."""

from __future__ import annotations

import json
import sys
import types

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from asdlib.bin import make_random_upstream
from asdlib.config import FinetuneConfig, UpstreamConfig
from asdlib.models.eat import EATUpstream
from asdlib.models.lora import apply_finetune
from asdlib.models.official_ckpt import find_config_value
from asdlib.models.upstream import build_upstream
from asdlib.synth.checkpoints import save_random_eat

LAYERS, DIM = 2, 64
TINY = dict(embed_dim=DIM, depth=LAYERS, num_heads=4, mlp_ratio=2.0, max_length=80)
TARGETS = ["qkv", "proj", "fc1", "fc2"]


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("eat") / "EAT-tiny"
    save_random_eat(path, "hf", seed=0, **TINY)
    return str(path)


def _load(path: str, target_frames: int | None = 1024, **kw) -> EATUpstream:
    cfg = UpstreamConfig(name="eat", path=path, conf={"target_frames": target_frames}, **kw)
    return build_upstream(cfg)


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([32000, 20000, 9000])
    wavs = torch.randn(3, 32000, generator=torch.Generator().manual_seed(0)) * 0.1 + 0.05
    for i, n in enumerate(lengths.tolist()):
        wavs[i, n:] = 0.0
    return wavs, lengths


def test_hf_format_names_and_shapes(hf_dir):
    file_keys = set(load_file(f"{hf_dir}/model.safetensors"))
    assert {
        "model.extra_tokens",
        "model.fixed_positional_encoder.positions",
        "model.pre_norm.weight",
        "model.local_encoder.proj.weight",
        "model.blocks.0.attn.qkv.weight",
        "model.blocks.1.mlp.fc2.bias",
    } <= file_keys
    up = _load(hf_dir).eval()
    assert set(up.state_dict()) == file_keys  # the upstream's names are exactly the file's
    assert (up.num_layers, up.hidden_size, len(up.blocks()), up.num_prefix_tokens) == (LAYERS + 1, DIM, LAYERS, 1)
    wavs, lengths = _batch()
    with torch.no_grad():
        hs, frames = up(wavs, lengths)
    # 1024 frames -> 64 x 8 patches + CLS; real audio: ceil(198/16)=13, ceil(123/16)=8, ceil(54/16)=4 steps
    assert frames.tolist() == [1 + 13 * 8, 1 + 8 * 8, 1 + 4 * 8]
    assert len(hs) == LAYERS + 1 and all(h.shape == (3, 513, DIM) for h in hs)
    with torch.no_grad():  # fixed-length mode: every clip is padded alone, so batching changes nothing
        alone, _ = up(wavs[2:, :9000], lengths[2:])
    torch.testing.assert_close(alone[-1][0], hs[-1][2], atol=1e-5, rtol=1e-5)


def test_variable_length_padding_is_masked(hf_dir):
    up = _load(hf_dir, target_frames=None).eval()
    wavs, lengths = _batch()
    with torch.no_grad():
        hs, frames = up(wavs, lengths)
        assert frames.tolist() == [105, 65, 33] and hs[0].shape == (3, 105, DIM)
        for i, n in enumerate(lengths.tolist()):
            alone, f = up(wavs[i : i + 1, :n], lengths[i : i + 1])
            assert alone[0].shape[1] == f.item() == frames[i].item()
            for a, b in zip(alone, hs):
                torch.testing.assert_close(b[i, : f.item()], a[0], atol=1e-5, rtol=1e-5)


def test_long_clips_are_cut_and_positions_bound(hf_dir):
    up = _load(hf_dir, target_frames=64).eval()
    wavs, lengths = _batch()
    with torch.no_grad():
        hs, frames = up(wavs, lengths)
    assert frames.tolist() == [33, 33, 33] and hs[-1].shape == (3, 33, DIM)
    too_long = _load(hf_dir, target_frames=None).eval()  # positional table: 80 time patches = 1280 frames
    with pytest.raises(ValueError, match="positional table covers 640"):
        too_long(torch.zeros(1, 16000 * 14), torch.tensor([16000 * 14]))
    with pytest.raises(ValueError, match="multiple of 16"):
        _load(hf_dir, target_frames=1000)


def test_fairseq_format_matches_hf(tmp_path, hf_dir):
    path = tmp_path / "EAT-tiny.pt"
    save_random_eat(path, "fairseq", seed=0, **TINY)
    raw = torch.load(path, weights_only=True)
    assert "modality_encoders.IMAGE.context_encoder.norm.weight" in raw["model"] and "_ema" in raw["model"]
    wavs, lengths = _batch()
    with torch.no_grad():
        ours, _ = _load(str(path)).eval()(wavs, lengths)
        ref, _ = _load(hf_dir).eval()(wavs, lengths)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_fairseq_pickled_objects_need_opt_in(tmp_path):
    path = tmp_path / "EAT-pickled.pt"
    save_random_eat(path, "fairseq", seed=0, **TINY)
    raw = torch.load(path, weights_only=True)
    # a fairseq-style config object whose class is not importable when the file is read
    module = types.ModuleType("fake_fairseq_dataclass")

    class Modality:
        def __init__(self, name: str) -> None:
            self.name = name

    Modality.__module__, Modality.__qualname__ = module.__name__, "Modality"
    module.Modality = Modality
    sys.modules[module.__name__] = module
    try:
        raw["cfg"]["model"]["supported_modality"] = Modality("IMAGE")
        torch.save(raw, path)
    finally:
        del sys.modules[module.__name__]
    with pytest.raises(ValueError, match="allow_unsafe_pickle"):
        _load(str(path))
    up = _load(str(path), allow_unsafe_pickle=True)
    assert up.num_layers == LAYERS + 1 and up.model.cfg.num_heads == 4


def test_fairseq_config_lookup_skips_unset_values():
    cfg = {"model": {"norm_eps": None, "pretrained_model_args": {"model": {"norm_eps": 1e-5, "num_heads": 16}}}}
    assert find_config_value(cfg, "norm_eps") == 1e-5 and find_config_value(cfg, "num_heads") == 16
    assert find_config_value(cfg, "depth") is None


def test_positional_table_may_be_absent(hf_dir, tmp_path):
    """The sin-cos table is a fixed function: a file without it gets the identical rebuilt table."""
    state = load_file(f"{hf_dir}/model.safetensors")
    del state["model.fixed_positional_encoder.positions"]
    (tmp_path / "config.json").write_text(open(f"{hf_dir}/config.json").read())
    save_file(state, str(tmp_path / "model.safetensors"))
    wavs, lengths = _batch()
    with torch.no_grad():
        out, _ = _load(str(tmp_path)).eval()(wavs, lengths)
        ref, _ = _load(hf_dir).eval()(wavs, lengths)
    torch.testing.assert_close(out[-1], ref[-1], atol=0, rtol=0)


def test_renamed_key_is_listed(hf_dir, tmp_path):
    state = load_file(f"{hf_dir}/model.safetensors")
    state["model.blocks.1.attn.qkv.weight_x"] = state.pop("model.blocks.1.attn.qkv.weight")
    bad = tmp_path / "bad"
    bad.mkdir()
    save_file(state, str(bad / "model.safetensors"))
    (bad / "config.json").write_text(open(f"{hf_dir}/config.json").read())
    with pytest.raises(
        ValueError,
        match=r"missing keys \(1\): model\.blocks\.1\.attn\.qkv\.weight\n"
        r".*unexpected keys \(1\): model\.blocks\.1\.attn\.qkv\.weight_x",
    ):
        _load(str(bad))
    with pytest.raises(FileNotFoundError, match="config.json"):
        _load(str(tmp_path))


def test_finetuned_head_is_checked_then_dropped(tmp_path):
    path = tmp_path / "EAT-ft"
    save_random_eat(path, "hf", seed=0, model_variant="finetune", num_classes=7, **TINY)
    assert json.loads((path / "config.json").read_text())["model_variant"] == "finetune"
    up = _load(str(path))
    assert up.model.head is None and not any(k.startswith(("model.head", "model.fc_norm")) for k in up.state_dict())
    ft_fairseq = tmp_path / "EAT-ft.pt"
    save_random_eat(ft_fairseq, "fairseq", seed=0, model_variant="finetune", num_classes=7, **TINY)
    assert "model.blocks.0.attn.qkv.weight" in torch.load(ft_fairseq, weights_only=True)["model"]
    assert _load(str(ft_fairseq)).model.head is None


@pytest.mark.parametrize("target", TARGETS)
def test_every_lora_target_changes_the_output(hf_dir, target):
    wavs, lengths = _batch()
    base = _load(hf_dir).eval()
    up = _load(hf_dir)
    apply_finetune(up, FinetuneConfig(mode="lora", rank=4, target_modules=[target]))
    up.eval()
    wrapped = [m for n, m in up.named_modules() if n.endswith("." + target) and hasattr(m, "lora_B")]
    assert len(wrapped) == LAYERS  # only inside the blocks (not local_encoder.proj)
    with torch.no_grad():
        ref, _ = base(wavs, lengths)
        for module in wrapped:
            nn.init.normal_(module.lora_B["default"].weight, std=0.1)
        out, _ = up(wavs, lengths)
    assert (out[-1] - ref[-1]).abs().max() > 1e-3


def test_feature_augment_in_training_mode_only(hf_dir):
    up = _load(hf_dir, target_frames=None)
    wavs, lengths = _batch()
    calls = []

    def zero_augment(x: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        calls.append((tuple(x.shape), frames.tolist()))
        return torch.zeros_like(x)

    up.eval()
    with torch.no_grad():
        clean, _ = up(wavs, lengths)
        up.feature_augment = zero_augment
        still, _ = up(wavs, lengths)
    assert calls == []
    torch.testing.assert_close(still[-1], clean[-1], atol=0, rtol=0)
    up.train()
    with torch.no_grad():
        augmented, _ = up(wavs, lengths)
    assert calls == [((3, 208, 128), [198, 123, 54])]
    assert (augmented[-1] - clean[-1]).abs().max() > 1e-3


class _ResidualLinear(nn.Module):
    def __init__(self, dim: int, scale: float) -> None:
        super().__init__()
        self.lin = nn.Linear(dim, dim)
        nn.init.constant_(self.lin.weight, scale)
        nn.init.constant_(self.lin.bias, scale)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.lin(h)


def test_block_adapters(hf_dir):
    wavs, lengths = _batch()
    with torch.no_grad():
        ref, _ = _load(hf_dir).eval()(wavs, lengths)
        zero = _load(hf_dir).eval()
        zero.insert_block_adapters([_ResidualLinear(DIM, 0.0) for _ in range(LAYERS)])
        out, _ = zero(wavs, lengths)
        for o, r in zip(out, ref):
            torch.testing.assert_close(o, r, atol=0, rtol=0)
        live = _load(hf_dir).eval()
        live.insert_block_adapters([nn.Identity(), _ResidualLinear(DIM, 0.01)])
        out, _ = live(wavs, lengths)
    torch.testing.assert_close(out[1], ref[1], atol=0, rtol=0)
    assert (out[-1] - ref[-1]).abs().max() > 1e-3


@pytest.mark.parametrize("fmt", ["hf", "fairseq"])
def test_cli_writes_loadable_checkpoint(tmp_path, fmt):
    out = tmp_path / ("EAT-cli" if fmt == "hf" else "EAT-cli.pt")
    assert (
        make_random_upstream.main(["--name", "eat", "--size", f"format={fmt}", "--out", str(out), "--verbose", "0"])
        == 0
    )
    up = _load(str(out))
    assert (up.num_layers, up.hidden_size) == (3, 64)


def _qkv_output(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return layer(x)


@pytest.mark.parametrize("part", [0, 1, 2])
def test_split_qkv_adapters_change_only_their_third(hf_dir, part):
    """finetune.split_qkv: separate q/k/v adapters on the fused Linear, as BEATs has on q/k/v_proj."""
    from asdlib.models.lora import SplitQKVLoRA

    rank = 4
    up = _load(hf_dir)
    base = up.model.blocks[0].attn.qkv
    apply_finetune(up, FinetuneConfig(mode="lora", rank=rank, dropout=0.0, target_modules=["qkv"], split_qkv=True))
    layers = [b.attn.qkv for b in up.model.blocks]
    assert all(isinstance(m, SplitQKVLoRA) for m in layers) and layers[0].base_layer is base
    # trainable: 3 x (in*r + r*out/3) per fused Linear, nothing else
    trainable = sum(p.numel() for p in up.parameters() if p.requires_grad)
    assert trainable == LAYERS * 3 * (DIM * rank + rank * DIM)
    assert not any(isinstance(m, nn.Dropout) for m in layers[0].modules())
    x = torch.randn(2, 5, DIM, generator=torch.Generator().manual_seed(1))
    ref = _qkv_output(layers[0], x)
    torch.testing.assert_close(ref, _qkv_output(base, x))  # B = 0: the pre-trained function
    with torch.no_grad():
        layers[0].lora_B[part].normal_(std=0.1)
    delta = (_qkv_output(layers[0], x) - ref).abs().amax(dim=(0, 1)).view(3, DIM)
    assert delta[part].max() > 1e-3
    assert all(float(delta[i].max()) == 0.0 for i in range(3) if i != part)


def test_split_qkv_is_one_adapter_per_projection_like_separate_linears(hf_dir):
    """The fused adapter computes what peft LoRA on three separate Linear modules computes."""
    up = _load(hf_dir)
    apply_finetune(
        up, FinetuneConfig(mode="lora", rank=3, alpha=6, dropout=0.0, target_modules=["qkv", "fc1"], split_qkv=True)
    )
    layer = up.model.blocks[1].attn.qkv
    with torch.no_grad():
        layer.lora_B.normal_(std=0.1)
    x = torch.randn(4, DIM, generator=torch.Generator().manual_seed(2))
    w, bias = layer.base_layer.weight.view(3, DIM, DIM), layer.base_layer.bias.view(3, DIM)
    expected = torch.cat(
        [x @ w[i].T + bias[i] + 2.0 * (x @ layer.lora_A[i].T @ layer.lora_B[i].T) for i in range(3)], -1
    )
    torch.testing.assert_close(_qkv_output(layer, x), expected)
    assert hasattr(up.model.blocks[1].mlp.fc1, "lora_B")  # the other targets still go through peft
    with pytest.raises(ValueError, match="split_qkv"):
        apply_finetune(_load(hf_dir), FinetuneConfig(mode="lora", target_modules=["fc1"], split_qkv=True))
