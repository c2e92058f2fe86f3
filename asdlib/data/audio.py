"""Audio loading with soundfile and checks that name the utterance, the file and the fix.

The DCASE path (16 kHz mono files, ``resample`` off, whole files) reads a file exactly as before.
Recordings from elsewhere (44.1/48 kHz, stereo, FLAC, hour-long) go through the same function:
``resample`` converts any rate to the model's with torchaudio's sinc resampler, ``channel="mean"``
down-mixes, and ``start``/``end`` read one window of a long file without decoding the rest
(docs/design.md §4, ``utt2seg``).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import soundfile as sf

from asdlib.data.datadir import Utt


class AudioError(ValueError):
    """A wav file that cannot be used as model input."""


@functools.lru_cache(maxsize=16)
def _resampler(orig: int, new: int):
    """torchaudio's sinc resampler with its kernel computed once per rate pair."""
    import torchaudio  # imported lazily: the DCASE path never resamples

    return torchaudio.transforms.Resample(orig, new)


def resample(wav: np.ndarray, orig: int, new: int) -> np.ndarray:
    """``wav`` (float32, 1-D) from ``orig`` Hz to ``new`` Hz (torchaudio, Hann-windowed sinc)."""
    if orig == new:
        return wav
    import torch

    with torch.no_grad():
        out = _resampler(orig, new)(torch.from_numpy(np.ascontiguousarray(wav))[None])[0]
    return np.ascontiguousarray(out.numpy(), dtype=np.float32)


def select_channel(data: np.ndarray, channel: int | str | None, where: str) -> np.ndarray:
    """The mono signal of ``data`` (frames x channels) as training reads it: ``channel`` picks one
    channel or ``"mean"`` down-mixes; a multi-channel input without it is an error naming ``where``."""
    if data.shape[1] > 1:
        if channel is None:
            raise AudioError(
                f"{where}: {data.shape[1]} channels, expected mono; select a channel with the 'channel' option "
                f"(data.channel: 0, 1, ... or mean)"
            )
        if channel == "mean":
            return np.ascontiguousarray(data.mean(axis=1, dtype=np.float32))
        if isinstance(channel, int) and 0 <= channel < data.shape[1]:
            return np.ascontiguousarray(data[:, channel])
        raise AudioError(f"{where}: channel {channel} requested but the file has {data.shape[1]} channels")
    return np.ascontiguousarray(data[:, 0])


def load_wav(
    path: str | Path,
    sample_rate: int,
    utt_id: str = "",
    min_samples: int = 1,
    channel: int | str | None = None,
    resample_to_rate: bool = False,
    start: float = 0.0,
    end: float | None = None,
    skip_hint: str = "drop it with --skip_bad true",
) -> np.ndarray:
    """Read a mono float32 waveform in [-1, 1] at ``sample_rate`` and check it is usable.

    ``channel`` selects one channel of a multi-channel file (DCASE 2026 is stereo) or, with
    ``"mean"``, averages all channels; without it a multi-channel file is an error, because
    silently averaging microphones changes the task. ``resample_to_rate`` accepts any sample rate
    and resamples to ``sample_rate``; without it another rate is an error. ``start``/``end``
    (seconds in the file, ``end`` None or negative = to the end) read one window only. ``skip_hint``
    ends the messages of a file that is unusable as it is (each caller names its own way to skip it).
    """
    where = f"{utt_id} ({path})" if utt_id else str(path)
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{where}: file not found; fix wav.scp or rerun data preparation (stage 1)")
    if path.stat().st_size == 0:
        raise AudioError(f"{where}: empty file; re-copy it from the corpus or {skip_hint}")
    try:
        if start > 0 or (end is not None and end >= 0):
            with sf.SoundFile(str(path)) as f:
                sr = f.samplerate
                first = min(int(round(start * sr)), f.frames)
                stop = f.frames if end is None or end < 0 else min(int(round(end * sr)), f.frames)
                f.seek(first)
                data = f.read(max(stop - first, 0), dtype="float32", always_2d=True)
        else:
            data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioError(f"{where}: not a readable audio file ({e}); re-copy it or {skip_hint}") from e
    if sr != sample_rate and not resample_to_rate:
        raise AudioError(
            f"{where}: sample rate {sr} Hz, expected {sample_rate} Hz; resample the corpus (e.g. sox in.wav -r {sample_rate} out.wav) "
            f"or set data.resample: true"
        )
    wav = select_channel(data, channel, where)
    if sr != sample_rate:
        wav = resample(wav, sr, sample_rate)
    if wav.size < max(min_samples, 1):
        raise AudioError(
            f"{where}: {wav.size} samples, shorter than the model's minimum of {min_samples} samples "
            f"({wav.size / sample_rate:.3f} s < {min_samples / sample_rate:.3f} s); {skip_hint}"
        )
    if not np.isfinite(wav).all():
        raise AudioError(f"{where}: contains NaN/Inf samples; the file is corrupt, {skip_hint}")
    if not np.any(wav):
        raise AudioError(f"{where}: all samples are zero (silent recording); {skip_hint}")
    return wav


def load_utt(
    utt: Utt,
    sample_rate: int,
    min_samples: int = 1,
    channel: int | str | None = None,
    resample_to_rate: bool = False,
    skip_hint: str = "drop it with --skip_bad true",
) -> np.ndarray:
    """:func:`load_wav` of a data dir's utterance: its file, or its window of a long recording."""
    return load_wav(
        utt.path,
        sample_rate,
        utt.utt_id,
        min_samples,
        channel,
        resample_to_rate,
        utt.start,
        utt.end if utt.rec else None,
        skip_hint=skip_hint,
    )
