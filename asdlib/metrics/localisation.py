"""How well an explanation map points at where the anomaly really is (``utt2anomaly_region``).

Why: a map can look convincing and be wrong. The synthetic corpora know where each anomaly is, so
two numbers measure a map against it and against two baselines that need no model (random cells;
the cell whose energy differs most from the machine's normal training mean):

* **pointing game**: whether the top cell overlaps a true region (for random cells, the expected
  hit rate: the share of cells that overlap one);
* **deletion**: the mean score drop while the top 1..k cells are removed one after the other, in
  units of the spread of the machine's normal scores (larger: the ranking found what the score
  rests on).

A map can only point at what the model reacted to: the pointing game is also given for the clips
the model flags (score above its threshold) alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from asdlib.data.regions import AnomalyRegion

METHODS = ("method", "random", "energy")


def truth_cells(times: np.ndarray, edges: np.ndarray, regions: Sequence[AnomalyRegion]) -> np.ndarray:
    """(n_time, n_bands) booleans: the cells of the grid (segment edges ``times``, band edges ``edges``)
    that overlap a true region."""
    out = np.zeros((times.size - 1, edges.size - 1), dtype=bool)
    for i in range(times.size - 1):
        for j in range(edges.size - 1):
            out[i, j] = any(r.overlaps(times[i], times[i + 1], edges[j], edges[j + 1]) for r in regions)
    return out


def energy_order(cell_energy: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Flat cell indices, the cell whose log energy differs most from ``reference`` (per band, the
    machine's normal training mean) first: the energy baseline."""
    return np.argsort(-np.abs(cell_energy - reference[None, :]).ravel(), kind="stable")


def deletion_drop(base: float, scores: np.ndarray, scale: float) -> float:
    """Mean score drop over the deletion steps, in units of ``scale`` (the normal scores' spread)."""
    return float(np.mean(base - np.asarray(scores))) / max(scale, 1e-12)


@dataclass(frozen=True)
class ClipResult:
    """One anomalous clip's numbers for the method and both baselines."""

    utt_id: str
    kind: str
    pointing: dict[str, float]  # method -> 1/0 (random: the expected hit rate)
    deletion: dict[str, float]  # method -> normalised mean drop
    flagged: bool  # the model's score is above its threshold


@dataclass(frozen=True)
class Summary:
    """Means over the clips of one anomaly kind (or ``all``)."""

    kind: str
    clips: int
    pointing: dict[str, float]
    deletion: dict[str, float]
    flagged: int
    pointing_flagged: float  # the method's pointing game on the flagged clips (nan: none flagged)


def summarise(results: Sequence[ClipResult]) -> list[Summary]:
    """Per kind (sorted) and ``all``: the mean pointing game and deletion of each method."""
    groups: dict[str, list[ClipResult]] = defaultdict(list)
    for r in results:
        groups[r.kind].append(r)
    groups["all"] = list(results)
    return [
        Summary(
            kind,
            len(rs),
            {m: float(np.mean([r.pointing[m] for r in rs])) for m in METHODS},
            {m: float(np.mean([r.deletion[m] for r in rs])) for m in METHODS},
            sum(r.flagged for r in rs),
            float(np.mean([r.pointing["method"] for r in rs if r.flagged])) if any(r.flagged for r in rs) else np.nan,
        )
        for kind, rs in sorted(groups.items(), key=lambda kv: (kv[0] == "all", kv[0]))
        if rs
    ]


def markdown_table(label: str, summaries: Sequence[Summary]) -> str:
    """One row per kind: pointing game and deletion of the method, random and energy; a kind where
    the method does not beat both baselines on a measure is marked with ``*``."""
    head = (
        "| system / family | anomaly | clips | pointing: method | random | energy | deletion: method | random | energy "
        "| flagged | pointing on flagged |"
    )
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in summaries:
        cells = []
        for measure in (s.pointing, s.deletion):
            lost = measure["method"] <= max(measure["random"], measure["energy"])
            cells += [
                f"{measure['method']:.2f}{'*' if lost else ''}",
                f"{measure['random']:.2f}",
                f"{measure['energy']:.2f}",
            ]
        cells += [str(s.flagged), "-" if np.isnan(s.pointing_flagged) else f"{s.pointing_flagged:.2f}"]
        lines.append(f"| {label} | {s.kind} | {s.clips} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
