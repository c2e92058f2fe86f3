"""Label-free fusion of several back ends (``backend.kind: fusion``; docs/method.md §1.9).

Members are back ends on this experiment's embeddings or on another experiment's (e.g. the SSL
model and the log-mel embedder): stage 5 passes the sources' embeddings side by side, and each
member reads its own columns. Scores of different back ends live on different scales, so each
member's score is standardised per (machine, section) by the mean and standard deviation of its own
leave-one-out scores of the normal training clips, then the members are combined by mean or max.
Only training clips enter the statistics; no test label (nor test domain) is ever read.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Literal

import numpy as np

from asdlib.backends.knn import Backend, GroupKey
from asdlib.data.datadir import Utt


def _stats(utts: Sequence[Utt], scores: np.ndarray) -> dict[GroupKey, tuple[float, float]]:
    """Mean and standard deviation (1 where undefined) of the finite scores per (machine, section)."""
    groups: dict[GroupKey, list[float]] = defaultdict(list)
    for u, s in zip(utts, scores):
        if np.isfinite(s):
            groups[(u.machine, u.section)].append(s)
    out = {}
    for key, vals in groups.items():
        sd = float(np.std(vals)) if len(vals) >= 2 else 0.0
        out[key] = (float(np.mean(vals)), sd if sd > 0 else 1.0)
    return out


class FusionBackend:
    def __init__(self, members: list[tuple[Backend, slice]], combine: Literal["mean", "max"] = "mean") -> None:
        self.members, self.combine = members, combine
        self.stats: list[dict[GroupKey, tuple[float, float]]] = []

    def fit(self, utts: Sequence[Utt], embeddings: np.ndarray) -> "FusionBackend":
        self.stats = []
        for member, cols in self.members:
            member.fit(utts, embeddings[:, cols])
            self.stats.append(_stats(utts, member.score(utts, embeddings[:, cols], exclude_self=True)))
        return self

    def score(self, utts: Sequence[Utt], embeddings: np.ndarray, exclude_self: bool = False) -> np.ndarray:
        z = []
        for (member, cols), stats in zip(self.members, self.stats):
            s = member.score(utts, embeddings[:, cols], exclude_self=exclude_self)
            mean, sd = np.array([stats.get((u.machine, u.section), (0.0, 1.0)) for u in utts]).T.reshape(2, -1)
            z.append((s - mean) / sd)
        return np.mean(z, axis=0) if self.combine == "mean" else np.max(z, axis=0)
