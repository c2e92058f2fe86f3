"""Recordings from outside DCASE: any sample rate (resampled), stereo (channel or mean), FLAC, and
long files split into windows that are utterances (utt2seg), scored per window and per file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import make_utt

from asdlib.bin import aggregate_scores, make_windows
from asdlib.data.audio import AudioError, load_wav
from asdlib.data.datadir import SEG_FILE, read_data_dir, read_kv, write_data_dir
from asdlib.data.dataset import ClipDataset
from asdlib.data.labels import write_durations
from asdlib.data.windows import aggregate, split_utts, window_bounds, window_id
from asdlib.io.ark import read_scores, write_scores


def _sine(sr: int, seconds: float, hz: float = 1000.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    x = (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    return np.stack([x, 0.5 * x], axis=1) if channels == 2 else x


@pytest.mark.parametrize("sr,fmt", [(48000, "WAV"), (44100, "FLAC"), (22050, "FLAC")])
def test_any_rate_is_resampled_to_the_model_rate(tmp_path: Path, sr: int, fmt: str) -> None:
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(str(path), _sine(sr, 1.0), sr, format=fmt)
    with pytest.raises(AudioError, match=f"sample rate {sr} Hz, expected 16000 Hz.*data.resample: true"):
        load_wav(path, 16000)
    wav = load_wav(path, 16000, resample_to_rate=True)
    assert wav.dtype == np.float32 and wav.size == 16000
    spectrum = np.abs(np.fft.rfft(wav))
    assert abs(int(np.argmax(spectrum)) - 1000) <= 1  # 1 kHz stays 1 kHz (1 Hz bins)


def test_stereo_channel_or_mean(tmp_path: Path) -> None:
    path = tmp_path / "st.flac"
    x = _sine(16000, 0.5, channels=2)
    sf.write(str(path), x, 16000, subtype="PCM_24")
    ref = sf.read(str(path), dtype="float32")[0]
    np.testing.assert_array_equal(load_wav(path, 16000, channel=1), ref[:, 1])
    np.testing.assert_allclose(load_wav(path, 16000, channel="mean"), ref.mean(axis=1), atol=1e-7)
    with pytest.raises(AudioError, match="2 channels, expected mono"):
        load_wav(path, 16000)


def test_window_of_a_file_reads_only_that_part(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    x = np.random.default_rng(0).uniform(-0.5, 0.5, 48000 * 3).astype(np.float32)
    sf.write(str(path), x, 48000, subtype="FLOAT")
    np.testing.assert_array_equal(load_wav(path, 48000, start=1.0, end=2.5), x[48000:120000])
    assert load_wav(path, 16000, resample_to_rate=True, start=1.0, end=2.0).size == 16000
    np.testing.assert_array_equal(load_wav(path, 48000, start=2.0, end=-1), x[96000:])


def test_window_bounds() -> None:
    assert window_bounds(3.0, 0.0, 0.0, 1.0) == [(0.0, 3.0)]
    assert window_bounds(0.5, 2.0, 1.0, 1.0) == [(0.0, 0.5)]  # shorter than a window: one, checked by min_seconds
    assert window_bounds(10.0, 4.0, 2.0, 1.0) == [(0.0, 4.0), (2.0, 6.0), (4.0, 8.0), (6.0, 10.0)]
    assert window_bounds(11.0, 4.0, 4.0, 1.0) == [(0.0, 4.0), (4.0, 8.0), (8.0, 11.0)]
    # 0.5 s tail < min: scored by a full window aligned to the end
    assert window_bounds(8.5, 4.0, 4.0, 1.0) == [(0.0, 4.0), (4.0, 8.0), (4.5, 8.5)]
    assert window_id("fan-00-rec", 12.345) == "fan-00-rec-w00012345"
    assert aggregate([1.0, 3.0], "max") == 3.0 and aggregate([1.0, 3.0], "mean") == 2.0


def test_windows_are_utterances_of_a_data_dir(tmp_path: Path) -> None:
    long, short = tmp_path / "long.flac", tmp_path / "short.wav"
    sf.write(str(long), _sine(44100, 5.0, channels=2), 44100)
    sf.write(str(short), _sine(48000, 1.5), 48000)
    utts = [make_utt("pump", "00", "long", path=long), make_utt("pump", "00", "short", path=short)]
    data = tmp_path / "data" / "train"
    write_data_dir(data, utts)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "embedder: logmel\ndata: {resample: true, channel: mean, window_seconds: 2.0, window_min_seconds: 0.5}\n"
    )
    assert make_windows.main([str(data), "--config", str(cfg)]) == 0
    got = read_data_dir(data)
    assert [u.utt_id for u in got] == [
        "pump-00-long-w00000000",
        "pump-00-long-w00002000",
        "pump-00-long-w00004000",
        "pump-00-short-w00000000",
    ]
    assert read_kv(data / SEG_FILE)["pump-00-long-w00004000"] == "pump-00-long 4.000 5.000"
    assert {u.rec_id for u in got} == {"pump-00-long", "pump-00-short"}
    assert make_windows.main([str(data), "--config", str(cfg)]) == 0  # already windowed: unchanged
    assert [u.utt_id for u in read_data_dir(data)] == [u.utt_id for u in got]
    write_durations(data, got)
    assert list(read_kv(data / "utt2dur").values()) == ["2.000", "2.000", "1.000", "1.500"]
    ds = ClipDataset(got, 16000, channel="mean", resample=True)
    assert [ds[i].wav.size for i in range(4)] == [32000, 32000, 16000, 24000]
    # per-file scores aggregate the windows' (max by default)
    exp, scores = tmp_path / "exp", tmp_path / "exp" / "scores" / "train"
    exp.mkdir()
    (exp / "config.yaml").write_text(cfg.read_text())
    write_scores(scores / "scores.ark", scores / "scores.scp", {u.utt_id: float(i) for i, u in enumerate(got)})
    assert aggregate_scores.main(["--exp_dir", str(exp), "--data_dir", str(data), "--scores_dir", str(scores)]) == 0
    assert read_scores(scores / "file_scores.scp") == {"pump-00-long": 2.0, "pump-00-short": 3.0}


def test_no_windows_leaves_the_data_dir_byte_identical(tmp_path: Path, write_wav) -> None:
    utts = [make_utt("fan", "00", f"c{i}", path=write_wav(f"c{i}.wav", seed=i)) for i in range(2)]
    data = tmp_path / "d"
    write_data_dir(data, utts)
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    cfg = tmp_path / "c.yaml"
    cfg.write_text("embedder: logmel\n")
    assert make_windows.main([str(data), "--config", str(cfg)]) == 0
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before and not (data / SEG_FILE).exists()
    assert split_utts(utts, 0.0, 0.0, 1.0)[0].rec == utts[0].utt_id  # the library call always names windows
