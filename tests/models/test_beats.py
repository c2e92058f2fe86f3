"""BEATs from its official checkpoint format: strict names, shapes, padding, LoRA, augment, adapters."""

from __future__ import annotations

import pytest
import torch
import torchaudio.compliance.kaldi as kaldi
from torch import nn

from asdlib.bin import make_random_upstream
from asdlib.config import FinetuneConfig, UpstreamConfig
from asdlib.models.beats import BEATsUpstream, WeightNormConv1d, split_weight_norm
from asdlib.models.fbank import BEATS_FBANK, EAT_FBANK, batch_fbank, num_frames
from asdlib.models.lora import apply_finetune
from asdlib.models.upstream import build_upstream
from asdlib.synth.checkpoints import save_random_beats

LAYERS, DIM = 2, 64
TINY = dict(
    encoder_layers=LAYERS,
    encoder_embed_dim=DIM,
    encoder_ffn_embed_dim=128,
    encoder_attention_heads=4,
    embed_dim=32,
    conv_pos=16,
    conv_pos_groups=4,
    relative_position_embedding=True,
    num_buckets=320,
    max_distance=800,
    gru_rel_pos=True,
    deep_norm=True,
    dropout=0.0,
    attention_dropout=0.0,
    layer_wise_gradient_decay_ratio=0.6,
)
TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "grep_linear", "fc1", "fc2"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("beats") / "BEATs_tiny.pt"
    save_random_beats(path, seed=0, **TINY)
    return str(path)


def _load(path: str, **kw) -> BEATsUpstream:
    return build_upstream(UpstreamConfig(name="beats", path=path, **kw))


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([32000, 20000, 9000])
    wavs = torch.randn(3, 32000, generator=torch.Generator().manual_seed(0)) * 0.1
    for i, n in enumerate(lengths.tolist()):
        wavs[i, n:] = 0.0
    return wavs, lengths


def test_official_format_loads_with_weights_only(ckpt):
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert set(raw) == {"cfg", "model"} and type(raw["cfg"]) is dict
    up = _load(ckpt)
    assert set(up.model.state_dict()) == set(raw["model"])  # exactly the release's parameter names
    assert "encoder.pos_conv.0.weight_g" in raw["model"] and "encoder.pos_conv.0.weight_v" in raw["model"]
    assert all(f"encoder.layers.{i}.self_attn.relative_attention_bias.weight" in raw["model"] for i in range(LAYERS))
    shared = {id(layer.self_attn.relative_attention_bias) for layer in up.blocks()}
    assert len(shared) == 1  # one table, registered in every layer as in the release
    for name, value in up.model.state_dict().items():
        torch.testing.assert_close(value, raw["model"][name], atol=0, rtol=0)


def test_shapes_2s_gives_96_tokens(ckpt):
    up = _load(ckpt).eval()
    assert (up.num_layers, up.hidden_size, len(up.blocks())) == (LAYERS + 1, DIM, LAYERS)
    wavs, lengths = _batch()
    with torch.no_grad():
        hs, tokens = up(wavs, lengths)
    # 32000 samples -> 198 frames -> 12 time patches x 8 freq patches
    assert tokens.tolist() == [96, 7 * 8, 3 * 8]
    assert len(hs) == LAYERS + 1 and all(h.shape == (3, 96, DIM) for h in hs)


def test_padded_batch_equals_clip_alone(ckpt):
    up = _load(ckpt).eval()
    wavs, lengths = _batch()
    with torch.no_grad():
        hs, tokens = up(wavs, lengths)
        for i, n in enumerate(lengths.tolist()):
            alone, t = up(wavs[i : i + 1, :n], lengths[i : i + 1])
            assert t.item() == tokens[i].item()
            for a, b in zip(alone, hs):
                torch.testing.assert_close(b[i, : t.item()], a[0], atol=1e-5, rtol=1e-5)


def test_renamed_or_missing_key_is_listed(ckpt, tmp_path):
    raw = torch.load(ckpt, weights_only=True)
    raw["model"]["encoder.layers.1.fc2.weight_renamed"] = raw["model"].pop("encoder.layers.1.fc2.weight")
    bad = tmp_path / "bad.pt"
    torch.save(raw, bad)
    with pytest.raises(
        ValueError,
        match=r"missing keys \(1\): encoder\.layers\.1\.fc2\.weight\n"
        r".*unexpected keys \(1\): encoder\.layers\.1\.fc2\.weight_renamed",
    ):
        _load(str(bad))
    raw = torch.load(ckpt, weights_only=True)
    raw["model"]["encoder.layers.0.fc1.weight"] = torch.zeros(3, 3)
    torch.save(raw, bad)
    with pytest.raises(ValueError, match=r"shape mismatches \(1\): encoder\.layers\.0\.fc1\.weight file \(3, 3\)"):
        _load(str(bad))


def test_bad_files_are_explained(tmp_path, ckpt):
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        _load(str(tmp_path / "nothere.pt"))
    torch.save({"model": {}}, tmp_path / "nocfg.pt")
    with pytest.raises(ValueError, match="not an official BEATs checkpoint"):
        _load(str(tmp_path / "nocfg.pt"))
    raw = torch.load(ckpt, weights_only=True)
    raw["cfg"] = {k: v for k, v in raw["cfg"].items() if k != "input_patch_size"}
    torch.save(raw, tmp_path / "nopatch.pt")
    with pytest.raises(ValueError, match="input_patch_size"):
        _load(str(tmp_path / "nopatch.pt"))


def test_finetuned_checkpoint_predictor_is_checked_then_dropped(tmp_path):
    path = tmp_path / "BEATs_ft.pt"
    save_random_beats(path, seed=1, finetuned_model=True, predictor_class=5, **TINY)
    raw = torch.load(path, weights_only=True)
    assert {"predictor.weight", "predictor.bias"} <= set(raw["model"])
    raw["label_dict"] = {0: "/m/09x0r"}  # fine-tuned releases also carry their label names
    torch.save(raw, path)
    up = _load(str(path))
    assert up.model.predictor is None and not any(k.startswith("predictor") for k in up.state_dict())
    del raw["model"]["predictor.bias"]
    torch.save(raw, path)
    with pytest.raises(ValueError, match=r"missing keys \(1\): predictor\.bias"):
        _load(str(path))


def test_pre_ln_variant_runs(tmp_path):
    path = tmp_path / "preln.pt"
    save_random_beats(path, **{**TINY, "deep_norm": False, "layer_norm_first": True, "gru_rel_pos": False})
    up = _load(str(path)).eval()
    wavs, lengths = _batch()
    with torch.no_grad():
        hs, _ = up(wavs, lengths)
    assert len(hs) == LAYERS + 1 and torch.isfinite(hs[-1]).all()


def test_weight_norm_g_v_round_trip():
    torch.manual_seed(0)
    weight = torch.randn(8, 2, 5)
    g, v = split_weight_norm(weight, dim=2)
    assert g.shape == (1, 1, 5)
    conv = WeightNormConv1d(8, 5, groups=4)
    conv.load_state_dict({"weight_g": g, "weight_v": v, "bias": torch.zeros(8)})
    torch.testing.assert_close(conv.weight, weight)
    # same function as torch's weight_norm parametrisation with the legacy tensors mapped onto it
    ref = nn.utils.parametrizations.weight_norm(nn.Conv1d(8, 8, 5, padding=2, groups=4), name="weight", dim=2)
    with torch.no_grad():
        ref.parametrizations.weight.original0.copy_(g * 3.0)
        ref.parametrizations.weight.original1.copy_(v)
        conv.weight_g.mul_(3.0)
        ref.bias.zero_()
    x = torch.randn(2, 8, 20)
    torch.testing.assert_close(conv(x), ref(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("target", TARGETS)
def test_every_lora_target_changes_the_output(ckpt, target):
    """LoRA through peft on each Linear of the blocks must act (docs/method.md §4: no fused raw-weight path)."""
    wavs, lengths = _batch()
    base = _load(ckpt).eval()
    up = _load(ckpt)
    apply_finetune(up, FinetuneConfig(mode="lora", rank=4, target_modules=[target]))
    up.eval()
    wrapped = [m for n, m in up.named_modules() if n.endswith("." + target) and hasattr(m, "lora_B")]
    assert len(wrapped) == LAYERS
    with torch.no_grad():
        ref, _ = base(wavs, lengths)
        same, _ = up(wavs, lengths)  # lora_B starts at zero: the function is unchanged
        torch.testing.assert_close(same[-1], ref[-1], atol=1e-5, rtol=1e-5)
        for module in wrapped:
            nn.init.normal_(module.lora_B["default"].weight, std=0.1)
        out, _ = up(wavs, lengths)
    assert (out[-1] - ref[-1]).abs().max() > 1e-3


def test_feature_augment_in_training_mode_only(ckpt):
    up = _load(ckpt)
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
    assert calls == [((3, 198, 128), [198, 123, 54])]
    assert (augmented[-1] - clean[-1]).abs().max() > 1e-3


class _ResidualLinear(nn.Module):
    def __init__(self, dim: int, scale: float) -> None:
        super().__init__()
        self.lin = nn.Linear(dim, dim)
        nn.init.constant_(self.lin.weight, scale)
        nn.init.constant_(self.lin.bias, scale)
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(h.shape))
        return h + self.lin(h)


def test_block_adapters(ckpt):
    wavs, lengths = _batch()
    with torch.no_grad():
        ref, _ = _load(ckpt).eval()(wavs, lengths)
        zero = _load(ckpt).eval()
        zero.insert_block_adapters([_ResidualLinear(DIM, 0.0) for _ in range(LAYERS)])
        out, _ = zero(wavs, lengths)
        for o, r in zip(out, ref):
            torch.testing.assert_close(o, r, atol=0, rtol=0)
        assert zero.block_adapters[0].shapes == [(3, 96, DIM)]  # batch-first (B, T', D)
        live = _load(ckpt).eval()
        live.insert_block_adapters([nn.Identity(), _ResidualLinear(DIM, 0.01)])
        out, _ = live(wavs, lengths)
    torch.testing.assert_close(out[1], ref[1], atol=0, rtol=0)
    assert (out[-1] - ref[-1]).abs().max() > 1e-3


def test_gradient_reaches_lora_through_decay(ckpt):
    """Layer-wise gradient decay scales, but never blocks, gradients of the lower layers."""
    up = _load(ckpt)
    apply_finetune(up, FinetuneConfig(mode="lora", rank=4, target_modules=["q_proj"]))
    for name, p in up.named_parameters():
        if "lora_B" in name:
            nn.init.normal_(p, std=0.1)
    up.train()
    wavs, lengths = _batch()
    hs, _ = up(wavs, lengths)
    hs[-1].sum().backward()
    grads = {n: p.grad for n, p in up.named_parameters() if p.requires_grad}
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads.values())


def test_fbank_front_end_matches_kaldi():
    wav = torch.randn(1, 20000, generator=torch.Generator().manual_seed(1)) * 0.2
    for spec, direct in (
        (
            BEATS_FBANK,
            kaldi.fbank(wav * 2**15, num_mel_bins=128, sample_frequency=16000, frame_length=25, frame_shift=10),
        ),
        (
            EAT_FBANK,
            kaldi.fbank(
                wav - wav.mean(),
                htk_compat=True,
                sample_frequency=16000,
                use_energy=False,
                window_type="hanning",
                num_mel_bins=128,
                dither=0.0,
                frame_shift=10,
            ),
        ),
    ):
        fb, frames = batch_fbank(wav, torch.tensor([20000]), spec)
        assert frames.item() == direct.shape[0] == num_frames(torch.tensor(20000), spec).item()
        torch.testing.assert_close(fb[0], (direct - spec.mean) / (2 * spec.std))
    with pytest.raises(ValueError, match="shorter than one 25 ms fbank window"):
        batch_fbank(wav, torch.tensor([399]), BEATS_FBANK)


def test_cli_writes_loadable_checkpoint(tmp_path):
    out = tmp_path / "BEATs_cli.pt"
    assert make_random_upstream.main(["--name", "beats", "--out", str(out), "--verbose", "0"]) == 0
    up = _load(str(out))
    assert (up.num_layers, up.hidden_size) == (3, 64)
