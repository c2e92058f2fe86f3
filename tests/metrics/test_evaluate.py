"""Stage 6 end to end: data dir + scores ark -> results.json, RESULTS.md, PNGs; plus the report/plot writers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest

from asdlib.bin import evaluate
from asdlib.data.datadir import Utt, write_data_dir
from asdlib.metrics.official import UnlabelledDataError, official_score
from asdlib.metrics.plots import write_plots
from asdlib.metrics.records import ScoredUtt
from asdlib.metrics.report import (
    load_results_json,
    render_results_md,
    write_results_json,
)

REPO = Path(__file__).resolve().parents[2]


def make_set(tmp_path: Path, labelled: bool = True, seed: int = 0) -> tuple[Path, Path, dict[str, float]]:
    """Two machines, 2022-style names, 5 clips per (domain, label); anomalies score higher on average."""
    rng = np.random.default_rng(seed)
    utts, scores = [], {}
    for machine in ("ToyCar", "fan"):
        for domain in ("source", "target"):
            for label in ("normal", "anomaly"):
                for i in range(5):
                    stem = f"section_00_{domain}_test_{label}_{i:04d}_noAttribute"
                    utt_id = f"{machine}-00-{stem}"
                    utts.append(
                        Utt(
                            utt_id,
                            str(tmp_path / "wav" / machine / f"{stem}.wav"),
                            machine,
                            "00",
                            domain if labelled else "unknown",
                            label if labelled else "unknown",
                            "noAttribute",
                        )
                    )
                    scores[utt_id] = float(np.float32(rng.random() + (0.5 if label == "anomaly" else 0.0)))
    data_dir = tmp_path / "data" / "dev_test"
    write_data_dir(data_dir, utts)
    score_dir = tmp_path / "exp" / "scores" / "dev_test"
    score_dir.mkdir(parents=True)
    vectors = {k: np.array([v], dtype=np.float32) for k, v in sorted(scores.items())}
    kaldiio.save_ark(str(score_dir / "scores.ark"), vectors, scp=str(score_dir / "scores.scp"))
    return data_dir, score_dir / "scores.scp", scores


def records(scores: dict[str, float]) -> list[ScoredUtt]:
    out = []
    for utt_id, score in scores.items():
        machine, section, stem = utt_id.split("-", 2)
        domain, label = stem.split("_")[2], stem.split("_")[4]
        out.append(ScoredUtt(utt_id, stem + ".wav", machine, section, domain, label, score))
    return out


def test_evaluate_end_to_end(tmp_path):
    data_dir, scp, scores = make_set(tmp_path)
    out = tmp_path / "exp" / "results" / "dev_test"
    rc = evaluate.main(["--year", "2023", "--data_dir", str(data_dir), "--scores", str(scp), "--out_dir", str(out)])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    expected = official_score(2023, records(scores))
    assert res["official_score"] == pytest.approx(expected.official_score)
    assert res["metric"] == expected.metric
    assert set(res["per_machine"]) == {"ToyCar", "fan"}
    for sections in res["per_machine"].values():
        for metrics in sections.values():
            assert {"auc_source", "auc_target", "pauc"} <= set(metrics)
            assert all(0.0 <= v <= 1.0 for v in metrics.values())
    md = (out / "RESULTS.md").read_text()
    assert "# DCASE2023 dev_test" in md and "| ToyCar | 00 |" in md and "**h-mean**" in md
    assert f"{100 * expected.official_score:.2f}" in md
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["hist_ToyCar.png", "hist_fan.png", "roc_ToyCar_section_00.png", "roc_fan_section_00.png"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_evaluate_errors(tmp_path):
    data_dir, scp, scores = make_set(tmp_path)
    partial = tmp_path / "partial"
    partial.mkdir()
    kept = dict(sorted(scores.items())[3:])
    kaldiio.save_ark(
        str(partial / "scores.ark"),
        {k: np.array([v], dtype=np.float32) for k, v in kept.items()},
        scp=str(partial / "scores.scp"),
    )
    with pytest.raises(ValueError, match="3 utt-ids") as err:  # python -m: one ERROR line (asdlib.utils.run_main)
        evaluate.main(
            [
                "--year",
                "2023",
                "--data_dir",
                str(data_dir),
                "--scores",
                str(partial / "scores.scp"),
                "--out_dir",
                str(tmp_path / "res"),
            ]
        )
    assert sorted(scores)[0] in str(err.value)
    assert not (tmp_path / "res" / "results.json").exists()


def test_evaluate_blind_set(tmp_path):
    data_dir, scp, _ = make_set(tmp_path, labelled=False)
    args = ["--year", "2024", "--data_dir", str(data_dir), "--scores", str(scp), "--out_dir", str(tmp_path / "res")]
    with pytest.raises(UnlabelledDataError) as err:
        evaluate.main(args)
    assert str(err.value).startswith(f"{data_dir}: cannot evaluate")
    assert "eval_data_list_2024.csv" in str(err.value) and "--eval_list" in str(err.value)
    assert evaluate.main(args + ["--skip_unknown", "true"]) == 0
    assert not (tmp_path / "res").exists()


def test_evaluate_runs_as_module(tmp_path):
    data_dir, scp, _ = make_set(tmp_path, seed=1)
    out = tmp_path / "res"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "asdlib.bin.evaluate",
            "--year",
            "2022",
            "--data_dir",
            str(data_dir),
            "--scores",
            str(scp),
            "--out_dir",
            str(out),
            "--plots",
            "false",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "official score" in proc.stdout
    assert (out / "results.json").is_file() and not list(out.glob("*.png"))


def test_results_json_round_trip_and_tables(tmp_path):
    _, _, scores = make_set(tmp_path)
    recs = records(scores)
    ev = official_score(2022, recs)
    write_results_json(ev, tmp_path / "results.json")
    assert load_results_json(tmp_path / "results.json") == ev
    md21 = render_results_md(official_score(2021, recs), "t21")
    assert "| AUC (source) | AUC (target) | pAUC (source) | pAUC (target) |" in md21
    as2020 = [ScoredUtt(r.utt_id, r.file_name, r.machine, r.section, "source", r.label, r.score) for r in recs]
    md20 = render_results_md(official_score(2020, as2020), "t20")
    assert "| machine | ID | AUC | pAUC |" in md20 and "Per machine type" in md20 and "| **a-mean** |" in md20


def test_plots_are_deterministic(tmp_path):
    _, _, scores = make_set(tmp_path)
    a = write_plots(2023, records(scores), tmp_path / "a")
    b = write_plots(2023, records(scores), tmp_path / "b")
    assert [p.name for p in a] == [p.name for p in b]
    for pa, pb in zip(a, b):
        assert pa.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert pa.read_bytes() == pb.read_bytes()
