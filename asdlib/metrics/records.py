"""One scored test clip: the unit every metric, plot and submission file is computed from."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

LABELS = ("normal", "anomaly", "unknown")
DOMAINS = ("source", "target", "unknown")


@dataclass(frozen=True)
class ScoredUtt:
    """A test clip with its metadata (docs/design.md §4 values) and its anomaly score (higher = more anomalous).

    ``label`` and ``domain`` may be ``unknown`` on a blind evaluation set prepared without ground truth.

    ``file_name`` is the clip's name as distributed in the corpus (the basename of its wav path); the
    submission CSVs are keyed by it because the official evaluators know nothing of asdlib's utt-ids.
    """

    utt_id: str
    file_name: str
    machine: str
    section: str
    domain: str
    label: str
    score: float

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ValueError(f"utterance {self.utt_id}: label {self.label!r} is not one of {LABELS}")
        if self.domain not in DOMAINS:
            raise ValueError(f"utterance {self.utt_id}: domain {self.domain!r} is not one of {DOMAINS}")


class UttLike(Protocol):
    """What :func:`scored_utts` needs from a data-dir entry (``asdlib.data.datadir.Utt`` provides it)."""

    utt_id: str
    path: str | Path
    machine: str
    section: str
    domain: str
    label: str


def scored_utts(
    utts: Iterable[UttLike],
    scores: Mapping[str, float],
    *,
    scores_source: str = "scores",
    data_source: str = "data dir",
) -> list[ScoredUtt]:
    """Join data-dir entries with their scores; both sides must hold exactly the same utt-ids.

    A mismatch means the scores belong to another set or a scoring job died half way, so it is an
    error naming the first few offending ids rather than a silent subset.
    """
    utts = list(utts)
    ids = {u.utt_id for u in utts}
    missing = sorted(ids - scores.keys())
    extra = sorted(scores.keys() - ids)
    if missing or extra:
        parts = []
        if missing:
            parts.append(
                f"{len(missing)} utt-ids of {data_source} have no score in {scores_source} "
                f"(first: {', '.join(missing[:5])})"
            )
        if extra:
            parts.append(
                f"{len(extra)} utt-ids of {scores_source} are not in {data_source} (first: {', '.join(extra[:5])})"
            )
        raise ValueError("; ".join(parts) + ". Re-run scoring (stage 5) for this set.")
    return [
        ScoredUtt(
            utt_id=u.utt_id,
            file_name=Path(u.path).name,
            machine=u.machine,
            section=u.section,
            domain=u.domain,
            label=u.label,
            score=float(scores[u.utt_id]),
        )
        for u in utts
    ]
