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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from asdlib.backends.base import Backend, build_backend
from asdlib.backends.knn import GroupKey
from asdlib.backends.portable import Arrays, export_backend, exports
from asdlib.data.datadir import Utt
from asdlib.registry import BACKENDS

LOGMEL = "logmel"  # the column group of members with features: logmel (appended to this experiment's embeddings)


@dataclass
class FusionMember:
    """One member: a registered back end with its own ``conf``, on this experiment's embeddings or another's."""

    kind: str = "knn"
    # model: this experiment's embedder; logmel: the training-free mean log-mel of the same clip (the
    # config's logmel: section), which stage 4 and a packed model compute next to it, so it packs
    features: Literal["model", "logmel"] = "model"
    exp_dir: str = ""  # another experiment (e.g. exp/logmel_knn) whose stage-4 embeddings it scores; "" = this one
    conf: Any = None  # the settings of ``kind`` (as backend.conf); omitted = its defaults

    def __post_init__(self) -> None:
        if self.kind == "fusion":
            raise ValueError("a fusion member cannot itself be a fusion")
        if self.exp_dir and self.features != "model":
            raise ValueError(
                f"features: {self.features} is computed with this experiment's embeddings; "
                f"a member on exp_dir {self.exp_dir} reads that experiment's (drop one)"
            )
        self.conf = BACKENDS.settings(self.kind, self.conf, f"member {self.kind}: conf")

    @property
    def source(self) -> str:
        """The column group it reads: "" (this experiment's embedder), "logmel" or its ``exp_dir``."""
        return LOGMEL if self.features == "logmel" else self.exp_dir


@dataclass
class FusionSettings:
    """``backend.conf`` of ``fusion``: at least two members, combined by ``mean`` or ``max`` of their
    standardised scores."""

    members: list[FusionMember] = field(default_factory=list)
    combine: Literal["mean", "max"] = "mean"

    def __post_init__(self) -> None:
        if len(self.members) < 2:
            raise ValueError("members: a fusion needs at least 2 members")

    @property
    def uses_logmel(self) -> bool:
        return any(m.features == "logmel" for m in self.members)

    @property
    def exp_dirs(self) -> list[str]:
        """The other experiments the members read, once each, in order."""
        return list(dict.fromkeys(m.exp_dir for m in self.members if m.exp_dir))


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


@BACKENDS.register("fusion", FusionSettings)
class FusionBackend:
    def __init__(self, members: list[tuple[Backend, slice]], combine: Literal["mean", "max"] = "mean") -> None:
        self.members, self.combine = members, combine
        self.stats: list[dict[GroupKey, tuple[float, float]]] = []

    @classmethod
    def from_settings(cls, settings: FusionSettings, columns: Mapping[str, slice]) -> FusionBackend:
        return cls(
            [(build_backend(m.kind, m.conf, columns), columns[m.source]) for m in settings.members], settings.combine
        )

    def fit(self, utts: Sequence[Utt], embeddings: np.ndarray) -> FusionBackend:
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


@exports(FusionBackend)
def export_fusion(backend: FusionBackend, arrays: Arrays) -> dict:
    """Each member's node, columns and per-section standardisation, for ``reference.score_fusion``."""
    return {
        "scorer": "fusion",
        "combine": backend.combine,
        "members": [
            {
                "columns": [cols.start, cols.stop],
                "backend": export_backend(member, arrays),
                "stats": [
                    {"machine": m, "section": s, "mean": mean, "sd": sd} for (m, s), (mean, sd) in sorted(stats.items())
                ],
            }
            for (member, cols), stats in zip(backend.members, backend.stats)
        ],
    }
