"""What every back end (``backend.kind``) offers stage 5, select_backend and a packed model, and how a
registered kind is built from its settings (asdlib.registry.BACKENDS)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from asdlib.data.datadir import Utt
from asdlib.registry import BACKENDS


class BackendError(ValueError):
    """Scoring input the back end cannot use (no memory bank for a machine/section, missing embeddings)."""


class Backend(Protocol):
    """A back end: fitted on the normal training clips of every machine and section, then scores clips.

    A kind registers with ``@BACKENDS.register(name, Settings)``; :func:`build_backend` then calls
    ``cls(**settings)``, or ``cls.from_settings(settings, columns)`` where the class defines it (a
    back end that reads several column groups of the embeddings, such as the fusion)."""

    def fit(self, utts: Sequence[Utt], embeddings: np.ndarray) -> Backend:
        """Fit on normal training clips (their machine, section and domain; never their label)."""

    def score(self, utts: Sequence[Utt], embeddings: np.ndarray, exclude_self: bool = False) -> np.ndarray:
        """Anomaly scores, higher = more anomalous; ``exclude_self``: leave-one-out for training clips."""


def column_slices(widths: Sequence[int]) -> list[slice]:
    """The columns of each embedding source, side by side in the order of ``widths``."""
    ends = np.cumsum([0, *widths])
    return [slice(int(a), int(b)) for a, b in zip(ends[:-1], ends[1:])]


def build_backend(kind: str, settings: Any, columns: Mapping[str, slice]) -> Backend:
    """An unfitted back end of registered ``kind``; ``columns``: each embedding source's columns
    ("" = this experiment's embedder, see asdlib.backends.bank.feature_sources)."""
    cls = BACKENDS.get(kind).obj
    if hasattr(cls, "from_settings"):
        return cls.from_settings(settings, columns)
    return cls(**(dataclasses.asdict(settings) if settings is not None else {}))
