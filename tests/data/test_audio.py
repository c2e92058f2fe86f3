"""asdlib.data.audio.load_wav: every bad file gives an AudioError naming the utt-id and the path."""

from __future__ import annotations

import numpy as np
import pytest

from asdlib.data.audio import AudioError, load_wav

UTT = "fan-00-section_00_0001"


def _fails(path, what: str, **kwargs) -> None:
    kwargs.setdefault("sample_rate", 16000)
    with pytest.raises(AudioError, match=what) as info:
        load_wav(path, utt_id=UTT, **kwargs)
    assert UTT in str(info.value) and str(path) in str(info.value)


def test_good_file(write_wav):
    samples = np.random.default_rng(0).uniform(-0.5, 0.5, 1600).astype(np.float32)
    wav = load_wav(write_wav("ok.wav", samples, subtype="FLOAT"), 16000, UTT)
    assert wav.dtype == np.float32 and wav.shape == (1600,) and wav.flags.c_contiguous
    np.testing.assert_array_equal(wav, samples)


def test_missing(tmp_path):
    _fails(tmp_path / "missing.wav", "file not found")


def test_empty(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    _fails(tmp_path / "empty.wav", "empty file")


def test_corrupt_header(tmp_path):
    (tmp_path / "noise.wav").write_bytes(np.random.default_rng(0).bytes(4096))
    _fails(tmp_path / "noise.wav", "not a readable audio file")


def test_text_file(tmp_path):
    (tmp_path / "notes.wav").write_text("this is not audio\n" * 20)
    _fails(tmp_path / "notes.wav", "not a readable audio file")


def test_wrong_sample_rate(write_wav):
    _fails(write_wav("sr.wav", sr=8000), "sample rate 8000 Hz, expected 16000 Hz")


def test_stereo_needs_a_channel(write_wav):
    rng = np.random.default_rng(1)
    stereo = rng.uniform(-0.5, 0.5, (800, 2)).astype(np.float32)
    path = write_wav("stereo.wav", stereo, subtype="FLOAT")
    _fails(path, "2 channels, expected mono")
    np.testing.assert_array_equal(load_wav(path, 16000, UTT, channel=0), stereo[:, 0])
    np.testing.assert_array_equal(load_wav(path, 16000, UTT, channel=1), stereo[:, 1])
    assert load_wav(path, 16000, UTT, channel=1).flags.c_contiguous
    _fails(path, "channel 2 requested but the file has 2 channels", channel=2)


def test_all_zero(write_wav):
    _fails(write_wav("zero.wav", np.zeros(1600, dtype=np.float32)), "all samples are zero")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf(write_wav, bad):
    samples = np.full(1600, 0.1, dtype=np.float32)
    samples[100] = bad
    _fails(write_wav("nan.wav", samples, subtype="FLOAT"), "NaN/Inf")


def test_too_short(write_wav):
    path = write_wav("short.wav", n=100)
    _fails(path, "100 samples, shorter than the model's minimum of 1000", min_samples=1000)
    assert load_wav(path, 16000, UTT, min_samples=100).size == 100
    _fails(write_wav("none.wav", np.zeros(0, dtype=np.float32)), "0 samples")


def test_message_without_utt_id_names_path(tmp_path):
    with pytest.raises(AudioError, match=f"^{tmp_path / 'x.wav'}: file not found"):
        load_wav(tmp_path / "x.wav", 16000)
