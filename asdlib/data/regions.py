"""Where the anomaly of a test clip is: ``utt2anomaly_region`` (docs/design.md §4).

Why: a score says that a clip is anomalous, not where; the synthetic corpora know where they put
each anomaly, so an explanation (:mod:`asdlib.explain`) can be measured against it
(:mod:`asdlib.metrics.localisation`). A line is ``<utt-id> <kind> <region> [<region> ...]`` with
each region ``start:end:f_low:f_high`` (seconds, Hz), or ``<utt-id> <kind> none`` for an anomaly
spread over the whole clip and spectrum (a global detuning, say). Only anomalous clips are listed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from asdlib.data.datadir import DataDirError, Utt, read_kv, write_kv

REGION_FILE = "utt2anomaly_region"
CORPUS_FILE = "anomaly_regions.csv"  # a synthetic corpus's ground truth, which stage 1 turns into REGION_FILE
NO_REGION = "none"


@dataclass(frozen=True)
class AnomalyRegion:
    """A time span (s) and frequency band (Hz) that holds (part of) an inserted anomaly."""

    start: float
    end: float
    f_low: float
    f_high: float

    def text(self) -> str:
        """The ``start:end:f_low:f_high`` token."""
        return f"{self.start:.3f}:{self.end:.3f}:{self.f_low:.0f}:{self.f_high:.0f}"

    def overlaps(self, start: float, end: float, f_low: float, f_high: float) -> bool:
        """Whether the time-frequency box ``start..end`` x ``f_low..f_high`` shares an area with this one."""
        return start < self.end and self.start < end and f_low < self.f_high and self.f_low < f_high


@dataclass(frozen=True)
class AnomalyTruth:
    """The kind of a clip's anomaly and its regions (none for a global kind)."""

    kind: str
    regions: tuple[AnomalyRegion, ...]


def format_truth(truth: AnomalyTruth) -> str:
    """The value of a ``utt2anomaly_region`` line."""
    return " ".join([truth.kind, *([r.text() for r in truth.regions] or [NO_REGION])])


def parse_truth(value: str, where: str) -> AnomalyTruth:
    """One line's value; a malformed one is a :class:`DataDirError` naming ``where``."""
    kind, *tokens = value.split()
    if tokens == [NO_REGION]:
        return AnomalyTruth(kind, ())
    regions = []
    for token in tokens:
        try:
            start, end, lo, hi = (float(v) for v in token.split(":"))
        except ValueError:
            raise DataDirError(f"{where}: region {token!r} is not start:end:f_low:f_high (seconds, Hz)") from None
        if not (0 <= start < end and 0 <= lo < hi):
            raise DataDirError(f"{where}: region {token!r} needs 0 <= start < end and 0 <= f_low < f_high")
        regions.append(AnomalyRegion(start, end, lo, hi))
    if not regions:
        raise DataDirError(f"{where}: expected '<kind> <region> ...' or '<kind> {NO_REGION}', got {value!r}")
    return AnomalyTruth(kind, tuple(regions))


def read_anomaly_regions(set_dir: str | Path, utts: Iterable[Utt] | None = None) -> dict[str, AnomalyTruth]:
    """``set_dir``'s ``utt2anomaly_region`` ({} when it has none); with ``utts``, every key must be one
    of their anomalous clips."""
    path = Path(set_dir) / REGION_FILE
    if not path.is_file():
        return {}
    out = {key: parse_truth(value, f"{path} ({key})") for key, value in read_kv(path).items()}
    if utts is not None:
        anomalous = {u.utt_id for u in utts if u.label == "anomaly"}
        stray = sorted(set(out) - anomalous)
        if stray:
            raise DataDirError(
                f"{path}: {len(stray)} utt-ids are not anomalous clips of the set (first: {stray[0]}); rerun stage 1"
            )
    return out


def write_anomaly_regions(set_dir: str | Path, truth: dict[str, AnomalyTruth]) -> None:
    """Write ``utt2anomaly_region`` (sorted, atomically)."""
    write_kv(Path(set_dir) / REGION_FILE, [(k, format_truth(truth[k])) for k in sorted(truth, key=str.encode)])
