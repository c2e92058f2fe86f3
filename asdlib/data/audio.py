"""Audio loading with soundfile and checks that name the utterance, the file and the fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


class AudioError(ValueError):
    """A wav file that cannot be used as model input."""


def load_wav(path: str | Path, sample_rate: int, utt_id: str = "", min_samples: int = 1, channel: int | None = None) -> np.ndarray:
    """Read a mono float32 waveform in [-1, 1] and check it is usable.

    ``channel`` selects one channel of a multi-channel file (DCASE 2026 is stereo); without it
    a multi-channel file is an error, because silently averaging microphones changes the task.
    """
    where = f"{utt_id} ({path})" if utt_id else str(path)
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{where}: file not found; fix wav.scp or rerun data preparation (stage 1)")
    if path.stat().st_size == 0:
        raise AudioError(f"{where}: empty file; re-copy it from the corpus or drop it with --skip_bad true")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioError(f"{where}: not a readable audio file ({e}); re-copy it or drop it with --skip_bad true") from e
    if sr != sample_rate:
        raise AudioError(f"{where}: sample rate {sr} Hz, expected {sample_rate} Hz; resample the corpus (e.g. sox in.wav -r {sample_rate} out.wav)")
    if data.shape[1] > 1:
        if channel is None:
            raise AudioError(f"{where}: {data.shape[1]} channels, expected mono; select a channel with the 'channel' option")
        if not 0 <= channel < data.shape[1]:
            raise AudioError(f"{where}: channel {channel} requested but the file has {data.shape[1]} channels")
        wav = data[:, channel]
    else:
        wav = data[:, 0]
    wav = np.ascontiguousarray(wav)
    if wav.size < max(min_samples, 1):
        raise AudioError(f"{where}: {wav.size} samples, shorter than the model's minimum of {min_samples}; drop it with --skip_bad true")
    if not np.isfinite(wav).all():
        raise AudioError(f"{where}: contains NaN/Inf samples; the file is corrupt, drop it with --skip_bad true")
    if not np.any(wav):
        raise AudioError(f"{where}: all samples are zero (silent recording); drop it with --skip_bad true")
    return wav
