"""Official submission CSVs: names per year, round trip, decision files, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

import asdlib.metrics.submission as submission
from asdlib.metrics.records import ScoredUtt
from asdlib.metrics.submission import (
    decision_file_name,
    fit_decision_threshold,
    fit_decision_thresholds,
    read_submission_csv,
    score_file_name,
    write_submission,
)
from asdlib.years import YEARS, metric_years


def rec(machine, section, domain, name, score, label="unknown"):
    return ScoredUtt(f"{machine}-{section}-{name[:-4]}", name, machine, section, domain, label, score)


def test_file_names_per_year():
    assert score_file_name(2020, "ToyCar", "05") == "anomaly_score_ToyCar_id_05.csv"
    with pytest.raises(ValueError, match="2020"):
        decision_file_name(2020, "ToyCar", "05")
    assert score_file_name(2021, "fan", "03", "source") == "anomaly_score_fan_section_03_source_test.csv"
    assert decision_file_name(2021, "fan", "03", "target") == "decision_result_fan_section_03_target_test.csv"
    with pytest.raises(ValueError, match="per domain"):
        score_file_name(2021, "fan", "03")
    for year in (y for y in metric_years() if YEARS[y].naming == "section"):  # 2022-2025
        assert score_file_name(year, "bearing", "00") == "anomaly_score_bearing_section_00_test.csv"
        assert decision_file_name(year, "bearing", "00") == "decision_result_bearing_section_00_test.csv"
    with pytest.raises(ValueError, match="2026"):
        score_file_name(2026, "fan", "00")


def test_round_trip_and_decisions_2023(tmp_path):
    rng = np.random.default_rng(0)
    names = [f"section_00_{i:04d}.wav" for i in range(20)]
    scores = rng.random(20).astype(np.float32).astype(float)  # float32 values as read from a scores ark
    order = rng.permutation(20)
    recs = [rec("ToyDrone", "00", "unknown", names[i], scores[i]) for i in order]
    written = write_submission(2023, recs, tmp_path, thresholds={("ToyDrone", "00"): 0.5})
    assert sorted(p.name for p in written) == [
        "anomaly_score_ToyDrone_section_00_test.csv",
        "decision_result_ToyDrone_section_00_test.csv",
    ]
    text = (tmp_path / "anomaly_score_ToyDrone_section_00_test.csv").read_text()
    assert text.splitlines()[0] == f"section_00_0000.wav,{float(scores[0])!r}"  # sorted, no header, comma
    back = read_submission_csv(tmp_path / "anomaly_score_ToyDrone_section_00_test.csv")
    assert back == [(n, s) for n, s in zip(names, scores)]  # exact: full float precision
    decisions = read_submission_csv(tmp_path / "decision_result_ToyDrone_section_00_test.csv")
    assert decisions == [(n, 1.0 if s > 0.5 else 0.0) for n, s in zip(names, scores)]


def test_2021_files_per_domain_and_2020_without_decisions(tmp_path):
    recs = [
        rec("fan", "03", d, f"section_03_{d}_test_{i:04d}.wav", i / 10) for d in ("source", "target") for i in range(3)
    ]
    written = write_submission(2021, recs, tmp_path / "y21", thresholds={("fan", "03"): 0.15})
    assert sorted(p.name for p in written) == [
        "anomaly_score_fan_section_03_source_test.csv",
        "anomaly_score_fan_section_03_target_test.csv",
        "decision_result_fan_section_03_source_test.csv",
        "decision_result_fan_section_03_target_test.csv",
    ]
    tgt = read_submission_csv(tmp_path / "y21" / "decision_result_fan_section_03_target_test.csv")
    assert [v for _, v in tgt] == [0.0, 0.0, 1.0]
    recs20 = [rec("ToyCar", "05", "source", f"id_05_{i:08d}.wav", i / 10) for i in range(3)]
    written = write_submission(2020, recs20, tmp_path / "y20", thresholds={("ToyCar", "05"): 0.1})
    assert [p.name for p in written] == ["anomaly_score_ToyCar_id_05.csv"]


def test_missing_threshold_and_duplicate_names_are_errors(tmp_path):
    recs = [rec("fan", "00", "source", "a.wav", 0.1), rec("valve", "00", "source", "b.wav", 0.2)]
    with pytest.raises(ValueError, match="valve/00"):
        write_submission(2022, recs, tmp_path, thresholds={("fan", "00"): 0.5})
    dup = [rec("fan", "00", "source", "a.wav", 0.1), rec("fan", "00", "target", "a.wav", 0.2)]
    with pytest.raises(ValueError, match="twice"):
        write_submission(2022, dup, tmp_path)


def test_reader_sorts_like_the_evaluator(tmp_path):
    path = tmp_path / "anomaly_score_fan_section_00_test.csv"
    path.write_text("b.wav,2.5\na.wav,1e-3\n\n")
    assert read_submission_csv(path) == [("a.wav", 0.001), ("b.wav", 2.5)]
    path.write_text("a.wav\t1.0\n")  # the old READMEs' TAB layout is not what the evaluator reads
    with pytest.raises(ValueError, match="<file name>,<value>"):
        read_submission_csv(path)


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "anomaly_score_fan_section_00_test.csv"
    target.write_text("old.wav,1.0\n")

    class Boom:
        def __init__(self, f, **kwargs):
            self.f = f

        def writerows(self, rows):
            self.f.write("partial.wav,0.")
            raise RuntimeError("disk gone")

    monkeypatch.setattr(submission.csv, "writer", Boom)
    with pytest.raises(RuntimeError, match="disk gone"):
        write_submission(2022, [rec("fan", "00", "source", "new.wav", 0.3)], tmp_path)
    assert target.read_text() == "old.wav,1.0\n"  # previous content intact
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temp file left behind


def test_gamma_threshold():
    rng = np.random.default_rng(3)
    train = rng.gamma(shape=2.0, scale=1.0, size=3000)
    shape, loc, scale = scipy.stats.gamma.fit(train)
    assert fit_decision_threshold(train) == pytest.approx(scipy.stats.gamma.ppf(0.9, shape, loc, scale))
    assert fit_decision_threshold(train) == pytest.approx(scipy.stats.gamma.ppf(0.9, 2.0), rel=0.05)
    # a degenerate fit falls back to the empirical quantile
    assert fit_decision_threshold([1.0] * 20) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 2"):
        fit_decision_threshold([1.0])
    recs = [rec("fan", "00", "source", f"t{i}.wav", float(v), "normal") for i, v in enumerate(train[:200])]
    recs += [rec("pump", "01", "source", f"u{i}.wav", float(v) + 5, "normal") for i, v in enumerate(train[200:400])]
    th = fit_decision_thresholds(recs)
    assert set(th) == {("fan", "00"), ("pump", "01")}
    assert th[("pump", "01")] > th[("fan", "00")] + 3
    from_mapping = fit_decision_thresholds({("fan", "00"): list(train[:200])})
    assert from_mapping == pytest.approx({("fan", "00"): th[("fan", "00")]})
