"""Make s3prl 0.4.18 importable with torchaudio >= 2.9.

torchaudio 2.9 removed ``torchaudio.set_audio_backend`` and the ``torchaudio.sox_effects``
module, and ``import s3prl.hub`` touches both at import time (s3prl issue #575). asdlib reads
audio with soundfile and never uses either, so inert stand-ins for exactly those two names are
enough. Call :func:`install` before importing anything from s3prl.
"""

from __future__ import annotations

import sys
import types

import torchaudio

_SOX_MODULE = "torchaudio.sox_effects"


def _set_audio_backend(backend: str | None = None) -> None:
    """Stand-in for the removed torchaudio API: asdlib does audio I/O with soundfile."""


def _removed_sox_effect(*args, **kwargs):
    raise RuntimeError(
        "torchaudio.sox_effects was removed in torchaudio 2.9; asdlib installs only a stand-in "
        "so that s3prl imports. Use asdlib's soundfile-based audio loading instead."
    )


def install() -> None:
    """Install the stand-ins (idempotent); real torchaudio APIs are never replaced."""
    if not hasattr(torchaudio, "set_audio_backend"):
        torchaudio.set_audio_backend = _set_audio_backend
    if _SOX_MODULE not in sys.modules and not hasattr(torchaudio, "sox_effects"):
        sox = types.ModuleType(_SOX_MODULE)
        sox.__doc__ = "asdlib stand-in for the module removed in torchaudio 2.9."
        sox.apply_effects_tensor = _removed_sox_effect
        sox.apply_effects_file = _removed_sox_effect
        sys.modules[_SOX_MODULE] = sox
        torchaudio.sox_effects = sox
