"""Operating figures (asdlib.metrics.operating): false alarms per domain against the promise, false
alarms per hour and P/R/F1, with the domain unknown (the section's threshold) and known (its own)."""

from __future__ import annotations

import math

import pytest

from asdlib.metrics.operating import SectionThresholds, operating_points, render_operating_md
from asdlib.metrics.records import ScoredUtt


def clip(i: int, domain: str, label: str, score: float) -> ScoredUtt:
    return ScoredUtt(f"fan-00-{i:03d}", f"{i:03d}.wav", "fan", "00", domain, label, score)


THRESHOLDS = {("fan", "00"): SectionThresholds(2.0, 0.1, {"source": (1.0, 0.05), "target": (2.0, 0.1)})}
RECORDS = [
    clip(0, "source", "normal", 0.5),
    clip(1, "source", "normal", 1.5),  # a false alarm only when the domain is known (threshold 1.0)
    clip(2, "source", "anomaly", 1.8),  # found only when the domain is known
    clip(3, "source", "anomaly", 3.0),
    clip(4, "target", "normal", 2.5),  # a false alarm under both rules
    clip(5, "target", "normal", 0.1),
    clip(6, "target", "anomaly", 2.2),
    clip(7, "target", "unknown", 9.0),  # no ground truth: left out
]


def point(points, rule: str, domain: str, machine: str = "fan"):
    return next(p for p in points if p.rule == rule and p.domain == domain and p.machine == machine)


def test_figures_under_each_rule() -> None:
    points = operating_points(RECORDS, THRESHOLDS, {r.utt_id: 10.0 for r in RECORDS})
    src, tgt, every = (point(points, "unknown", d) for d in ("source", "target", "all"))
    assert (src.fpr, src.recall, src.precision, src.promised_fpr) == (0.0, 0.5, 1.0, 0.05)  # its own bound holds
    assert (tgt.fpr, tgt.recall, tgt.precision, tgt.f1) == (0.5, 1.0, 0.5, pytest.approx(2 / 3))
    assert tgt.false_alarms_per_hour == pytest.approx(1 / (20 / 3600))  # one false alarm in 20 s of normals
    assert every.n_normal == 4 and every.n_anomaly == 3 and every.promised_fpr == 0.1
    assert not tgt.kept and src.kept
    known = point(points, "known", "source")
    assert (known.fpr, known.recall, known.promised_fpr) == (0.5, 1.0, 0.05)
    every_section = point(points, "unknown", "target", "all")
    assert (every_section.section, every_section.fpr, every_section.n_normal) == ("", 0.5, 2)
    md = render_operating_md(points, "fan")
    assert "| fan | 00 | target | 2 | 1 | 10.0 | 50.0 (over) | 180.0 |" in md


def test_undefined_figures_are_nan_and_a_missing_section_is_an_error() -> None:
    points = operating_points(RECORDS[:2], THRESHOLDS)
    (p,) = [q for q in points if q.rule == "unknown" and q.domain == "all" and q.machine == "fan"]
    assert math.isnan(p.recall) and math.isnan(p.precision) and math.isnan(p.false_alarms_per_hour)
    with pytest.raises(ValueError, match="no calibrated threshold for fan/00"):
        operating_points(RECORDS, {})
