"""Nuisance attribute projection on noise-only recordings (``backend.noise``; docs/method.md §1.9).

A change of background moves every clip of a machine along a few directions of the embedding
space, which a back end reads as an anomaly: the main source of false alarms in a new domain.
Recordings of the background alone (DCASE 2025's supplemental noise, DCASE 2026's far microphone)
show those directions. :class:`NoiseProjection` estimates the top ``rank`` principal directions
``V`` of the noise embeddings, per (machine, section) where that has noise clips, else per machine,
else over all of them, and separately in each column group of the embeddings (the model's, the
appended log-mel's, another experiment's: different spaces). :class:`NoiseProjected` removes them
from every embedding, training bank and queries alike, before any back end (fusion included) sees
it, so each kind gets it without code of its own.

Centring: ``V`` comes from the centred noise (PCA), but a clip is mapped to ``x - V V^T x``, not
``x - V V^T (x - mu)``. The two differ by the constant ``V V^T mu`` shared by every clip; Euclidean
and Mahalanobis back ends ignore a constant, while the cosine kNN would see it as a common component
that raises every similarity, so it is left out and the cosine is taken on the noise-free part only.

Rank: a group of ``n`` noise clips spans at most ``n - 1`` centred directions, and removing every
column of a group would leave nothing to score, so the rank is clamped to ``min(rank, n - 1,
width - 1)`` with a warning rather than failing: sections differ in how many noise clips they have,
and one short of clips should not stop the others. A (machine, section) or machine with fewer than
2 noise clips falls back to the next level.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from sklearn.decomposition import PCA

from asdlib.backends.base import Backend, BackendError, column_slices
from asdlib.backends.portable import Arrays, export_backend, exports
from asdlib.data.datadir import Utt

log = logging.getLogger(__name__)

#: (machine, section), (machine,) or () for all noise clips: the levels a query's directions come from
NoiseKey = tuple[str, ...]


def noise_directions(x: np.ndarray, rank: int, where: str) -> np.ndarray:
    """The top principal directions (rows, orthonormal) of ``x`` centred, at most ``rank`` of them,
    clamped with a warning to what ``x`` can give (``where`` names the group in the warning)."""
    n, width = x.shape
    usable = min(rank, n - 1, width - 1)
    if usable < rank:
        log.warning(
            "noise projection of %s: rank %d clamped to %d (%d noise clips, width %d)", where, rank, usable, n, width
        )
    if usable < 1:
        return np.zeros((0, width))
    return PCA(n_components=usable, svd_solver="full").fit(x).components_


def _describe(key: NoiseKey) -> str:
    return "/".join(key) if key else "all machines"


class NoiseProjection:
    """The noise directions of every level (:data:`NoiseKey`) and column group, fixed once estimated."""

    def __init__(self, directions: dict[NoiseKey, list[np.ndarray]], counts: dict[NoiseKey, int], columns: list[slice]):
        self.directions, self.counts, self.columns = directions, counts, columns
        self.reported: set[tuple[str, str]] = set()

    @classmethod
    def estimate(cls, utts: Sequence[Utt], embeddings: np.ndarray, widths: Sequence[int], rank: int) -> NoiseProjection:
        """Directions of the noise clips ``utts`` (in utt-id order, so input order does not matter);
        ``widths``: each column group's width, as for asdlib.backends.bank.make_backend."""
        if embeddings.shape[1] != sum(widths):
            raise BackendError(
                f"noise embeddings of width {embeddings.shape[1]}, the training embeddings' is {sum(widths)}: "
                "they were extracted with another config; rerun stage 4"
            )
        columns = column_slices(widths)
        levels: dict[NoiseKey, list[int]] = defaultdict(list)
        for i in sorted(range(len(utts)), key=lambda i: utts[i].utt_id):
            u = utts[i]
            for key in ((u.machine, u.section), (u.machine,), ()):
                levels[key].append(i)
        if len(levels[()]) < 2:
            raise BackendError(
                f"backend.noise: {len(levels[()])} noise clip(s) in all of backend.noise.sets; "
                "the projection needs at least 2 (add noise clips or drop backend.noise)"
            )
        x = np.asarray(embeddings, dtype=np.float64)
        directions = {
            key: [noise_directions(x[idx][:, c], rank, f"{_describe(key)} columns {c.start}:{c.stop}") for c in columns]
            for key, idx in sorted(levels.items())
            if len(idx) >= 2
        }
        return cls(directions, {key: len(idx) for key, idx in levels.items()}, columns)

    def level(self, machine: str, section: str) -> NoiseKey:
        """The level whose directions a clip of ``machine``/``section`` gets: its own, its machine's, or all."""
        key = next(k for k in ((machine, section), (machine,), ()) if k in self.directions)
        if (machine, section) not in self.reported:
            self.reported.add((machine, section))
            where = {2: "its own", 1: f"machine {machine}'s", 0: "all machines'"}[len(key)]
            log.info("noise projection of %s/%s: %s %d noise clips", machine, section, where, self.counts[key])
        return key

    def apply(self, utts: Sequence[Utt], embeddings: np.ndarray) -> np.ndarray:
        """``x - V V^T x`` in every column group, with each clip's level's directions ``V``."""
        out = np.asarray(embeddings, dtype=np.float64).copy()
        rows: dict[NoiseKey, list[int]] = defaultdict(list)
        for i, u in enumerate(utts):
            rows[self.level(u.machine, u.section)].append(i)
        for key, idx in rows.items():
            for c, v in zip(self.columns, self.directions[key]):
                block = out[idx, c]
                out[idx, c] = block - (block @ v.T) @ v
        return out.astype(embeddings.dtype, copy=False)


class NoiseProjected:
    """Any back end fitted and scored on noise-projected embeddings (what ``backend.noise`` builds)."""

    def __init__(self, inner: Backend, projection: NoiseProjection) -> None:
        self.inner, self.projection = inner, projection

    def fit(self, utts: Sequence[Utt], embeddings: np.ndarray) -> NoiseProjected:
        self.inner.fit(utts, self.projection.apply(utts, embeddings))
        return self

    def score(self, utts: Sequence[Utt], embeddings: np.ndarray, exclude_self: bool = False) -> np.ndarray:
        return self.inner.score(utts, self.projection.apply(utts, embeddings), exclude_self=exclude_self)


@exports(NoiseProjected)
def export_noise_projected(backend: NoiseProjected, arrays: Arrays) -> dict:
    """The directions of every level and column group, then the inner back end's node, for
    ``reference.score_noise_projected``."""
    p = backend.projection
    return {
        "scorer": "noise_projected",
        "columns": [[c.start, c.stop] for c in p.columns],
        "levels": [
            {"key": list(key), "directions": [arrays.add(v) for v in dirs]} for key, dirs in p.directions.items()
        ],
        "inner": export_backend(backend.inner, arrays),
    }
