"""asdlib.bin.extract --channel: stage 4 reads a backend.noise set with its own channel (DCASE 2026's
far microphone) instead of the config's data.channel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from conftest import make_utt

from asdlib.bin import extract
from asdlib.data.datadir import write_data_dir
from asdlib.io.ark import read_vectors


def embed(exp: Path, tmp: Path, wav: Path, *options: str) -> np.ndarray:
    data, out = tmp / f"data_{wav.stem}", tmp / f"out_{wav.stem}{''.join(options)}"
    write_data_dir(data, [make_utt("fan", "00", "n00", path=wav)])
    argv = [
        "--exp_dir",
        str(exp),
        "--data_dir",
        str(data),
        "--out_ark",
        str(out / "e.ark"),
        "--out_scp",
        str(out / "e.scp"),
    ]
    assert extract.main([*argv, *options, "--verbose", "0"]) == 0
    return next(iter(read_vectors(out / "e.scp").values()))


def test_channel_option_reads_that_channel(tiny_pack: Path, tmp_path: Path) -> None:
    """tiny_pack's experiment reads data.channel: mean; --channel 1 reads the second channel alone."""
    exp = tiny_pack.parent
    rng = np.random.default_rng(0)
    t = np.arange(24000) / 16000
    near, far = 0.5 * np.sin(2 * np.pi * 440 * t), 0.1 * rng.standard_normal(t.size)
    sf.write(tmp_path / "stereo.wav", np.stack([near, far], axis=1), 16000, subtype="FLOAT")
    sf.write(tmp_path / "far.wav", far, 16000, subtype="FLOAT")
    far_alone = embed(exp, tmp_path, tmp_path / "far.wav")
    assert np.array_equal(embed(exp, tmp_path, tmp_path / "stereo.wav", "--channel", "1"), far_alone)
    assert not np.allclose(embed(exp, tmp_path, tmp_path / "stereo.wav"), far_alone)
