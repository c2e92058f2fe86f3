"""A recording as a stream of windows, read one window at a time (bounded memory).

:func:`iter_windows` is the one way asdlib reads new recordings window by window: ``asdlib-infer``
scores files with it, and a live monitor can call it on each new file. The windows are exactly
those of stage 1 (:func:`asdlib.data.windows.window_bounds` with the validated ``data`` section of
the training config), so a packed model scores the samples stage 5 scored, and each window is read
with :func:`asdlib.data.audio.load_wav` (seek, read, down-mix, resample), so memory does not grow
with the recording's length.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from asdlib.config import DataConfig
from asdlib.data.audio import AudioError, load_wav
from asdlib.data.windows import window_bounds

# what a caller of the stream does with an unusable file: asdlib-infer reports it and scores the rest
SKIP_HINT = "leave it out of the input (asdlib-infer reports it as an error row and scores the other files)"


@dataclass(frozen=True)
class Window:
    start: float  # seconds in the file
    end: float
    samples: np.ndarray  # mono float32 at data.sample_rate


def plan(path: str | Path, data: DataConfig) -> list[tuple[float, float]]:
    """The ``(start, end)`` windows of ``path`` from its header (a whole file: one window to its end);
    an unreadable or too short file is an :class:`AudioError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: file not found")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioError(f"{path}: not a readable audio file ({' '.join(str(e).split())})") from e
    duration = info.frames / info.samplerate if info.samplerate else 0.0
    if duration < data.min_seconds:
        raise AudioError(f"{path}: {duration:.3f} s long, shorter than the model's minimum of {data.min_seconds} s")
    if not data.window_seconds:
        return [(0.0, duration)]
    return window_bounds(duration, data.window_seconds, data.hop_seconds, data.window_min_seconds)


def iter_windows(path: str | Path, data: DataConfig) -> Iterator[Window]:
    """The windows of ``path`` in time order, each read when it is asked for."""
    bounds = plan(path, data)
    whole = not data.window_seconds
    min_samples = int(data.min_seconds * data.sample_rate)
    for start, end in bounds:
        wav = load_wav(
            path,
            data.sample_rate,
            "",
            min_samples,
            data.channel,
            data.resample,
            start,
            None if whole else end,
            skip_hint=SKIP_HINT,
        )
        yield Window(start, start + wav.size / data.sample_rate if whole else end, wav)
