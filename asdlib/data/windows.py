"""Fixed windows of long recordings (docs/design.md §4, ``utt2seg``).

A recording longer than ``data.window_seconds`` becomes several utterances, one per window, whose
ids name the recording and the window's start in milliseconds: ``<recording-id>-w<start_ms>``
(eight digits, so that the C-locale order of a data dir is the time order). Every window is
scored like a clip; a recording's score aggregates its windows' (``data.window_aggregate``).
The same :func:`window_bounds` cuts the data dirs (stage 1) and new recordings (asdlib.bin.infer),
so both read exactly the same samples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import soundfile as sf

from asdlib.data.datadir import Utt


def window_bounds(duration: float, window: float, hop: float, min_len: float) -> list[tuple[float, float]]:
    """``(start, end)`` in seconds (millisecond grid) of the windows of a ``duration``-second file.

    Windows start every ``hop`` seconds until one reaches the end; a last, shorter window is kept
    when it is at least ``min_len`` long, and a shorter tail is scored by a full window aligned to
    the end of the file (no second of a recording goes unscored). A file shorter than ``window`` is
    one window (its length is checked against ``data.min_seconds`` like any clip). ``window`` 0:
    the whole file.
    """
    dur_ms = int(np.floor(duration * 1000 + 1e-6))
    win_ms, hop_ms, min_ms = (int(round(x * 1000)) for x in (window, hop or window, min_len))
    if win_ms <= 0 or dur_ms <= win_ms:
        return [(0.0, dur_ms / 1000)]
    out = []
    start = 0
    while True:
        end = min(start + win_ms, dur_ms)
        if end - start == win_ms or not out or end - start >= min_ms:
            out.append((start / 1000, end / 1000))
        else:  # a tail shorter than min_len: the last full window, aligned to the end
            out.append(((dur_ms - win_ms) / 1000, dur_ms / 1000))
        if end >= dur_ms:
            return out
        start += hop_ms


def window_id(rec_id: str, start: float) -> str:
    return f"{rec_id}-w{int(round(start * 1000)):08d}"


def aggregate(scores: Sequence[float], how: str) -> float:
    """A recording's score from its windows' scores: ``max`` (default) or ``mean``."""
    values = np.asarray(scores, dtype=np.float64)
    return float(values.max() if how == "max" else values.mean())


def split_utts(utts: Sequence[Utt], window: float, hop: float, min_len: float) -> list[Utt]:
    """The windows of every recording of ``utts`` (a file that cannot be read stays one window,
    reaching to its end, so that the stage-1 audio check reports it under a window id)."""
    out = []
    for u in utts:
        try:
            info = sf.info(u.path)
            bounds = window_bounds(info.frames / info.samplerate, window, hop, min_len)
        except (sf.LibsndfileError, RuntimeError, OSError, ValueError):
            bounds = [(0.0, -1.0)]
        out += [dataclasses.replace(u, utt_id=window_id(u.utt_id, s), rec=u.utt_id, start=s, end=e) for s, e in bounds]
    return out
