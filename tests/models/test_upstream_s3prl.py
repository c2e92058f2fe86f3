"""s3prl upstreams from local checkpoints: formats, strict loading, shapes, augment and adapters."""

from __future__ import annotations

import argparse
import importlib

import pytest
import torch
from torch import nn

from asdlib.bin import make_random_upstream
from asdlib.config import UpstreamConfig
from asdlib.models.upstream import build_upstream
from asdlib.synth.checkpoints import RandomModelSize, random_checkpoint

FAMILIES = ["hubert", "wav2vec2", "data2vec", "wavlm"]
SIZE = RandomModelSize()
WEIGHTS_KEY = {"hubert": "model_weight", "wav2vec2": "model_weight", "data2vec": "model_weight", "wavlm": "model"}


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    wavs = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0)) * 0.1
    lengths = torch.tensor([16000, 9000])
    wavs[1, 9000:] = 0.0
    return wavs, lengths


def _load(path: str, family: str):
    return build_upstream(UpstreamConfig(name=family, path=path))


@pytest.mark.parametrize("family", FAMILIES)
def test_shapes_and_frame_lengths(ckpts, family):
    up = _load(ckpts[family], family).eval()
    assert (up.num_layers, up.hidden_size, len(up.blocks())) == (SIZE.layers + 1, SIZE.dim, SIZE.layers)
    wavs, lengths = _batch()
    with torch.no_grad():
        hs, frames = up(wavs, lengths)
    # 400-sample receptive field, stride 320: 16000 -> 49 frames, 9000 -> 27 frames
    assert frames.tolist() == [49, 27]
    assert len(hs) == up.num_layers
    assert all(h.shape == (2, 49, SIZE.dim) for h in hs)


@pytest.mark.parametrize("family", FAMILIES)
def test_matches_s3prl_expert(ckpts, family):
    """Same hidden states as s3prl's own expert (our attention routing keeps the function)."""
    ours = _load(ckpts[family], family).eval()
    expert = importlib.import_module(f"s3prl.upstream.{family}.expert").UpstreamExpert(ckpts[family]).eval()
    wavs, lengths = _batch()
    with torch.no_grad():
        hs, _ = ours(wavs, lengths)
        ref = expert([wavs[0], wavs[1, :9000]])["hidden_states"]
    assert len(ref) == len(hs)
    for o, r in zip(hs, ref):
        torch.testing.assert_close(o[:, : r.size(1)], r, atol=1e-4, rtol=1e-4)


def test_input_normalisation_matches_s3prl(tmp_path):
    state = random_checkpoint("hubert", seed=0, size=SIZE)
    state["task_cfg"]["normalize"] = True
    path = tmp_path / "hubert_norm.pt"
    torch.save(state, path)
    ours = _load(str(path), "hubert").eval()
    assert ours.normalize
    expert = importlib.import_module("s3prl.upstream.hubert.expert").UpstreamExpert(str(path)).eval()
    wavs, lengths = _batch()
    with torch.no_grad():
        hs, _ = ours(wavs, lengths)
        ref = expert([wavs[0], wavs[1, :9000]])["hidden_states"]
    torch.testing.assert_close(hs[-1][:, : ref[-1].size(1)], ref[-1], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_missing_and_unexpected_keys_are_listed(tmp_path, family):
    state = random_checkpoint(family, seed=0, size=SIZE)
    weights = state[WEIGHTS_KEY[family]]
    del weights["encoder.layers.1.fc2.weight"]
    weights["encoder.layers.1.extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(
        ValueError,
        match=r"1 missing \(encoder\.layers\.1\.fc2\.weight\), 1 unexpected \(encoder\.layers\.1\.extra\.weight\)",
    ):
        _load(str(path), family)


def test_wrong_shape_fails(tmp_path):
    state = random_checkpoint("wav2vec2", seed=0, size=SIZE)
    state["model_weight"]["encoder.layers.0.fc1.weight"] = torch.zeros(3, 3)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match="shapes do not match"):
        _load(str(path), "wav2vec2")


def test_missing_file_and_wrong_format(tmp_path, ckpts):
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        _load(str(tmp_path / "nothere.pt"), "hubert")
    with pytest.raises(ValueError, match="not a hubert checkpoint.*missing top-level keys"):
        _load(ckpts["wavlm"], "hubert")
    with pytest.raises(ValueError, match="unknown upstream .hubert_base.; known: beats, eat, hubert"):
        _load(ckpts["hubert"], "hubert_base")


def test_pickled_objects_need_opt_in(tmp_path):
    state = random_checkpoint("wavlm", seed=0, size=SIZE)
    state["args"] = argparse.Namespace(note="fairseq-style extra")
    path = tmp_path / "pickled.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match="allow_unsafe_pickle"):
        _load(str(path), "wavlm")
    up = build_upstream(UpstreamConfig(name="wavlm", path=str(path), allow_unsafe_pickle=True))
    assert up.num_layers == SIZE.layers + 1


def test_data2vec_pretraining_only_keys_are_dropped(ckpts):
    state = torch.load(ckpts["data2vec"], weights_only=True)
    assert "_ema" in state["model_weight"]  # the released format carries the EMA teacher
    _load(ckpts["data2vec"], "data2vec")


@pytest.mark.parametrize("family", ["hubert", "wavlm"])
def test_feature_augment_in_training_mode_only(ckpts, family):
    up = _load(ckpts[family], family)
    calls = []

    def zero_augment(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        calls.append((tuple(x.shape), lengths.tolist()))
        return torch.zeros_like(x)

    wavs, lengths = _batch()
    up.eval()
    with torch.no_grad():
        clean, _ = up(wavs, lengths)
    up.feature_augment = zero_augment
    with torch.no_grad():
        still_clean, _ = up(wavs, lengths)
    assert calls == []
    torch.testing.assert_close(still_clean[-1], clean[-1], atol=0, rtol=0)

    up.train()
    with torch.no_grad():
        torch.manual_seed(0)
        augmented, _ = up(wavs, lengths)
        up.feature_augment = None
        torch.manual_seed(0)
        plain, _ = up(wavs, lengths)
    assert calls == [((2, 49, SIZE.conv_dim), [49, 27])]
    assert (augmented[-1] - plain[-1]).abs().max() > 1e-3


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


@pytest.mark.parametrize("family", FAMILIES)
def test_block_adapters(ckpts, family):
    wavs, lengths = _batch()
    base = _load(ckpts[family], family).eval()
    with torch.no_grad():
        ref, _ = base(wavs, lengths)

    zero = _load(ckpts[family], family).eval()
    zero.insert_block_adapters([_ResidualLinear(SIZE.dim, 0.0) for _ in range(SIZE.layers)])
    with torch.no_grad():
        out, _ = zero(wavs, lengths)
    for o, r in zip(out, ref):
        torch.testing.assert_close(o, r, atol=0, rtol=0)
    assert zero.block_adapters[0].shapes[0][0] == 2  # batch-first (B, T', D)
    assert "block_adapters.0.lin.weight" in zero.state_dict()

    live = _load(ckpts[family], family).eval()
    live.insert_block_adapters([nn.Identity(), _ResidualLinear(SIZE.dim, 0.01)])
    with torch.no_grad():
        out, _ = live(wavs, lengths)
    torch.testing.assert_close(out[1], ref[1], atol=0, rtol=0)  # before the adapted block
    assert (out[-1] - ref[-1]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="adapters for 2 transformer blocks"):
        _load(ckpts[family], family).insert_block_adapters([nn.Identity()])
    with pytest.raises(RuntimeError, match="already inserted"):
        live.insert_block_adapters([nn.Identity(), nn.Identity()])


def test_make_random_upstream_cli_is_deterministic(tmp_path):
    args = [
        "--name",
        "hubert",
        "--size",
        "layers=3",
        "--size",
        "dim=32",
        "--size",
        "ffn_dim=64",
        "--size",
        "conv_dim=16",
        "--verbose",
        "0",
    ]
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        assert make_random_upstream.main([*args, "--seed", seed, "--out", str(tmp_path / f"{name}.pt")]) == 0
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    a = torch.load(tmp_path / "a.pt", weights_only=True)["model_weight"]
    c = torch.load(tmp_path / "c.pt", weights_only=True)["model_weight"]
    assert not torch.equal(a["encoder.layers.0.fc1.weight"], c["encoder.layers.0.fc1.weight"])
    up = _load(str(tmp_path / "a.pt"), "hubert")
    assert (up.num_layers, up.hidden_size) == (4, 32)
