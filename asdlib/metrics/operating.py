"""Operating figures at calibrated thresholds: what a plant sees, next to the AUCs of the official metric.

For each machine/section and test domain: the false-alarm rate on the test normals against the rate
the threshold promised (its conformal bound, :mod:`asdlib.backends.calibration`), false alarms per
hour of normal audio (from the clips' lengths), and precision, recall and F1 of the anomaly
decisions. Each under two decision rules: the domain unknown (the section's threshold, the maximum
over its domains: DCASE 2022+ and a plant that does not log its condition) and the domain known
(the clip's own domain's threshold).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

RULES = ("unknown", "known")  # the decision rule: domain unknown at test time, or known


class Scored(Protocol):
    """A scored, labelled clip (``asdlib.metrics.records.ScoredUtt``, or a recording asdlib-infer scored)."""

    @property
    def utt_id(self) -> str: ...
    @property
    def machine(self) -> str: ...
    @property
    def section(self) -> str: ...
    @property
    def domain(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def score(self) -> float: ...


@dataclass(frozen=True)
class SectionThresholds:
    """A section's calibrated thresholds: ``threshold`` for an unknown domain, ``domains`` each domain's
    ``(threshold, bound)``; ``bound`` is the false-alarm rate the unknown-domain threshold promises."""

    threshold: float
    bound: float
    domains: Mapping[str, tuple[float, float]]

    @classmethod
    def from_entry(cls, entry: Mapping) -> SectionThresholds:
        """From a :func:`asdlib.backends.calibration.calibrate` entry (or a manifest's, as a dict)."""
        return cls(
            float(entry["threshold"]),
            float(entry["bound"]),
            {d: (float(t["threshold"]), float(t["bound"])) for d, t in entry["domains"].items()},
        )

    def decide(self, domain: str, rule: str) -> tuple[float, float]:
        """(threshold, promised FPR) for a clip of ``domain`` under ``rule``. The unknown-domain
        threshold is at least the domain's own, so the domain's bound holds under both rules; a domain
        the calibration never saw gets the unknown-domain threshold and the largest bound."""
        if domain not in self.domains:
            return self.threshold, self.bound
        own, bound = self.domains[domain]
        return (own if rule == "known" else self.threshold), bound


@dataclass(frozen=True)
class OperatingPoint:
    machine: str
    section: str
    domain: str  # a test domain, or "all"
    rule: str  # RULES
    n_normal: int
    n_anomaly: int
    promised_fpr: float  # the largest bound among the clips' thresholds
    fpr: float  # false alarms / normal clips (nan without normals)
    false_alarms_per_hour: float  # nan when the normals' length is unknown
    precision: float  # nan when nothing was flagged
    recall: float  # nan without anomalies
    f1: float

    @property
    def kept(self) -> bool:
        """Whether the measured false-alarm rate stays within the promise."""
        return not self.fpr > self.promised_fpr


def _point(
    rows: Sequence[tuple[Scored, float, float]], durations: Mapping[str, float], key: tuple[str, str, str, str]
) -> OperatingPoint:
    normal = [(r, t) for r, t, _ in rows if r.label == "normal"]
    anomal = [(r, t) for r, t, _ in rows if r.label == "anomaly"]
    fa = sum(r.score > t for r, t in normal)
    tp = sum(r.score > t for r, t in anomal)
    hours = sum(durations.get(r.utt_id, np.nan) for r, _ in normal) / 3600.0
    flagged = fa + tp
    precision = tp / flagged if flagged else float("nan")
    recall = tp / len(anomal) if anomal else float("nan")
    f1 = 2 * tp / (flagged + len(anomal)) if flagged + len(anomal) else float("nan")
    return OperatingPoint(
        *key,
        n_normal=len(normal),
        n_anomaly=len(anomal),
        promised_fpr=max((b for _, _, b in rows), default=float("nan")),
        fpr=fa / len(normal) if normal else float("nan"),
        false_alarms_per_hour=fa / hours if normal and hours > 0 else float("nan"),
        precision=precision,
        recall=recall,
        f1=f1,
    )


def operating_points(
    records: Sequence[Scored],
    thresholds: Mapping[tuple[str, str], SectionThresholds],
    durations: Mapping[str, float] | None = None,
) -> list[OperatingPoint]:
    """Per machine/section (and machine ``all``: every section together), per test domain and for all
    its clips, under each of :data:`RULES`, for the labelled clips (normal or anomaly) of ``records``;
    ``durations``: seconds per utt-id (utt2dur)."""
    durations = durations or {}
    labelled = [r for r in records if r.label in ("normal", "anomaly")]
    missing = sorted({(r.machine, r.section) for r in labelled} - set(thresholds))
    if missing:
        raise ValueError(f"no calibrated threshold for {', '.join(f'{m}/{s}' for m, s in missing)}")
    out = []
    sections = sorted({(r.machine, r.section) for r in labelled})
    for rule in RULES:
        rows = [(r, *thresholds[(r.machine, r.section)].decide(r.domain, rule)) for r in labelled]
        for machine, section in [*sections, ("all", "")]:  # then every section together
            mine = [row for row in rows if machine == "all" or (row[0].machine, row[0].section) == (machine, section)]
            for domain in [*sorted({row[0].domain for row in mine}), "all"]:
                chosen = [row for row in mine if domain in ("all", row[0].domain)]
                out.append(_point(chosen, durations, (machine, section, domain, rule)))
    return out


def _pct(x: float) -> str:
    return "-" if np.isnan(x) else f"{100 * x:.1f}"


def render_operating_md(points: Sequence[OperatingPoint], title: str) -> str:
    """A markdown table per rule: promised against measured FPR, false alarms per hour, P/R/F1 (in %)."""
    lines = [f"# {title}", ""]
    for rule in RULES:
        lines += [
            f"## Decisions with the domain {rule}",
            "",
            "| machine | section | domain | normal | anomaly | promised FPR | measured FPR | false alarms/h "
            "| precision | recall | F1 |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for p in (p for p in points if p.rule == rule):
            fah = "-" if np.isnan(p.false_alarms_per_hour) else f"{p.false_alarms_per_hour:.1f}"
            measured = _pct(p.fpr) + ("" if p.kept else " (over)")
            lines.append(
                f"| {p.machine} | {p.section} | {p.domain} | {p.n_normal} | {p.n_anomaly} | {_pct(p.promised_fpr)} "
                f"| {measured} | {fah} | {_pct(p.precision)} | {_pct(p.recall)} | {_pct(p.f1)} |"
            )
        lines.append("")
    return "\n".join(lines)


def operating_dicts(points: Sequence[OperatingPoint]) -> list[dict]:
    """JSON-ready rows (NaN written as null)."""
    return [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in asdict(p).items()} for p in points]
