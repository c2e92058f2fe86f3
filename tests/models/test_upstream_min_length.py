"""Stage 1 checks clips against the chosen upstream's real minimum length, and EAT reports how much
audio its fixed input length cuts or pads (docs/upstreams.md)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import yaml

from asdlib.bin import validate_data
from asdlib.config import UpstreamConfig
from asdlib.data.datadir import read_data_dir, write_data_dir
from asdlib.data.validate import BAD_LIST, BadAudioError
from asdlib.models.upstream import build_upstream, upstream_min_samples
from asdlib.synth.checkpoints import save_random_beats, save_random_eat

BEATS_TINY = dict(
    encoder_layers=1,
    encoder_embed_dim=32,
    encoder_ffn_embed_dim=64,
    encoder_attention_heads=4,
    embed_dim=16,
    conv_pos=8,
    conv_pos_groups=4,
)
EAT_TINY = dict(embed_dim=32, depth=1, num_heads=4, mlp_ratio=2.0, max_length=80)


@pytest.fixture(scope="module")
def beats(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("beats") / "BEATs_tiny.pt"
    save_random_beats(path, **BEATS_TINY)
    return str(path)


@pytest.fixture(scope="module")
def eat(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("eat") / "EAT-tiny"
    save_random_eat(path, "hf", **EAT_TINY)
    return str(path)


def test_each_upstream_knows_its_minimum_and_it_is_tight(beats, eat, ckpts) -> None:
    """The minimum is the shortest input that runs: one fbank patch (BEATs), one fbank window (EAT),
    the CNN's receptive field (s3prl); one sample less fails or gives no frame."""
    cases = {"beats": (beats, 400 + 15 * 160), "eat": (eat, 400), "hubert": (ckpts["hubert"], 400)}
    for name, (path, expected) in cases.items():
        cfg = UpstreamConfig(name=name, path=path)
        assert upstream_min_samples(cfg) == expected, name
        up = build_upstream(cfg).eval()
        wavs = torch.randn(1, expected) * 0.1
        _, frames = up(wavs, torch.tensor([expected]))
        assert int(frames[0]) >= 1, name
        if name == "beats":
            with pytest.raises(ValueError, match="shorter than one BEATs patch"):
                up(wavs[:, :-1], torch.tensor([expected - 1]))
        elif name == "eat":
            with pytest.raises(ValueError, match="shorter than one 25 ms fbank window"):
                up(wavs[:, :-1], torch.tensor([expected - 1]))
        else:
            assert int(up.frame_lengths(torch.tensor([expected - 1]))[0]) == 0


def _data_dir(root: Path, write_wav, make_utt, lengths: dict[str, int]) -> Path:
    utts = []
    for i, (stem, n) in enumerate(lengths.items()):
        utts.append(make_utt("fan", "00", stem, path=write_wav(f"{stem}.wav", n=n, seed=i)))
    set_dir = root / "data" / "dev_train"
    write_data_dir(set_dir, utts)
    return set_dir


def test_stage_1_rejects_clips_shorter_than_the_beats_minimum(tmp_path, beats, write_wav, make_utt) -> None:
    """2000 samples pass data.min_seconds (0.1 s = 1600) but not BEATs (2800): stage 1 says so."""
    set_dir = _data_dir(tmp_path, write_wav, make_utt, {"ok_0": 16000, "short_1": 2000})
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({"upstream": {"name": "beats", "path": beats}}))
    with pytest.raises(BadAudioError) as err:
        validate_data.main([str(set_dir), "--config", str(config)])
    short = read_data_dir(set_dir)[1]
    assert (
        f"{short.utt_id} ({short.path}): 2000 samples, shorter than the model's minimum of 2800 samples "
        "(0.125 s < 0.175 s)" in str(err.value)
    )
    assert validate_data.main([str(set_dir), "--config", str(config), "--skip_bad", "true"]) == 0
    assert (set_dir / BAD_LIST).read_text().startswith(f"{short.utt_id} {short.path} 2000 samples")
    assert [u.utt_id for u in read_data_dir(set_dir)] == [read_data_dir(set_dir)[0].utt_id]
    # without the upstream (a logmel config) only data.min_seconds applies
    other = _data_dir(tmp_path / "b", write_wav, make_utt, {"short_2": 2000})
    config.write_text(yaml.safe_dump({"embedder": "logmel"}))
    assert validate_data.main([str(other), "--config", str(config)]) == 0


def test_eat_reports_cut_and_padded_clips_once_per_batch_and_in_a_summary(eat, caplog) -> None:
    up = build_upstream(UpstreamConfig(name="eat", path=eat, conf={"target_frames": 64})).eval()
    frames_64 = 400 + 63 * 160  # exactly 64 frames
    lengths = torch.tensor([frames_64 + 160 * 36, frames_64, frames_64 - 160 * 14, 3000])
    wavs = torch.randn(4, int(lengths.max())) * 0.1
    with caplog.at_level(logging.DEBUG, logger="asdlib.models.eat"):
        up(wavs, lengths)
        up(wavs, lengths)
    lines = [r for r in caplog.records if r.name == "asdlib.models.eat" and "batch" in r.getMessage()]
    assert len(lines) == 2  # one line per batch, not per clip
    assert lines[0].levelno == logging.WARNING and lines[1].levelno == logging.DEBUG
    assert "EAT batch of 4 clips: 1 cut to 64 frames (by up to 0.36 s), 2 zero-padded" in lines[0].getMessage()
    assert up.fit_counts == {
        "clips": 8,
        "cut": 2,
        "cut_frames": 72,
        "padded": 4,
        "padded_frames": 2 * (14 + 64 - (int((3000 - 400) // 160) + 1)),
    }
    assert up.fit_summary().startswith("EAT: of 8 clips, 2 were cut to 64 frames (0.72 s of audio dropped in all)")
