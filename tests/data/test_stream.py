"""asdlib.data.stream.iter_windows: the windows of stage 1, read one at a time (memory does not grow
with the recording), the same samples as reading each window alone."""

from __future__ import annotations

import tracemalloc

import numpy as np
import soundfile as sf

from asdlib.config import DataConfig
from asdlib.data.audio import AudioError, load_wav
from asdlib.data.stream import iter_windows


def test_windows_are_streamed_with_bounded_memory(tmp_path) -> None:
    sr, seconds = 16000, 120
    path = tmp_path / "long.flac"
    rng = np.random.default_rng(0)
    sf.write(str(path), rng.uniform(-0.5, 0.5, sr * seconds).astype(np.float32), sr)
    data = DataConfig(train_sets=["t"], window_seconds=1.0, window_hop_seconds=0.5)
    tracemalloc.start()
    n, first = 0, None
    for w in iter_windows(path, data):
        first = first if first is not None else w
        n += 1
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert n == 2 * seconds - 1 and peak < sr * seconds * 4 / 10, peak  # a tenth of the decoded file
    assert np.array_equal(first.samples, load_wav(path, sr, start=0.0, end=1.0))


def test_an_unusable_file_names_the_inference_remedy_not_a_training_option(tmp_path) -> None:
    # asdlib-infer has no --skip_bad: its advice is what it does with such a file
    path = tmp_path / "silent.wav"
    sf.write(str(path), np.zeros(16000, dtype=np.float32), 16000)
    try:
        list(iter_windows(path, DataConfig(train_sets=["t"])))
    except AudioError as e:
        assert "silent" in str(e) and "--skip_bad" not in str(e) and "error row" in str(e)
    else:
        raise AssertionError("a silent file was scored")
