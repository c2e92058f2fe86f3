"""Every CLI of asdlib/bin reports bad input as one ``ERROR: <message>`` line on stderr and exit
code 1, without a traceback (asdlib.utils.run_main); ``--verbose 2`` adds the traceback.

The CLIs are enumerated from the package directory, so a new CLI without a bad-input case here
fails :func:`test_bad_input_is_one_error_line`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_utt

from asdlib.bin import score
from asdlib.data.datadir import DataDirError, write_data_dir

REPO = Path(__file__).resolve().parents[2]
MODULES = sorted(p.stem for p in (REPO / "asdlib" / "bin").glob("*.py") if p.stem != "__init__")


def bad_calls(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """CLI module -> (a call with a missing input or a bad config, text the ERROR line must contain)."""
    missing = tmp / "missing"
    bad_config = tmp / "bad.yaml"
    bad_config.write_text("embedder: logmel\nbogus_key: 1\n")
    a_file = tmp / "a_file"  # a regular file where a directory is needed
    a_file.write_text("")
    out = ["--out_ark", str(tmp / "o.ark"), "--out_scp", str(tmp / "o.scp")]
    return {
        "aggregate_scores": (
            ["--exp_dir", str(missing), "--data_dir", str(missing), "--scores_dir", str(missing)],
            str(missing),
        ),
        "make_windows": (["--config", str(bad_config), str(missing)], "bogus_key"),
        "operating": (["--exp_dir", str(missing), "--test_sets", "eval_test"], str(missing)),
        "prepare_custom": (["--corpus", str(missing), "--data_dir", str(tmp / "data")], str(missing)),
        "check_upstream": (["--config", str(bad_config)], "bogus_key"),
        "compare_results": (["--set", "eval_test", "--out", str(tmp / "cmp.md"), str(missing)], str(missing)),
        "download_dcase": (
            [
                "--year",
                "2024",
                "--root",
                str(tmp / "corpus"),
                "--mirror",
                missing.as_uri(),
                "--kinds",
                "dev",
                "--machines",
                "fan",
                "--zenodo_checksums",
                "false",
                "--eval_list",
                "false",
                "--retries",
                "0",
            ],
            "file not found",
        ),
        "evaluate": (
            [
                "--year",
                "2024",
                "--data_dir",
                str(missing),
                "--scores",
                str(missing / "scores.scp"),
                "--out_dir",
                str(tmp / "res"),
            ],
            str(missing),
        ),
        "extract": (["--exp_dir", str(missing), "--data_dir", str(missing), *out, "--device", "cpu"], str(missing)),
        "fetch_metadata": (["--check", str(missing)], str(missing)),
        "enroll": (
            ["--packed", str(missing), "--machine", "fan", "--out", str(tmp / "enrolled"), str(missing / "x.wav")],
            str(missing),
        ),
        "export": (["--packed", str(missing), "--format", "onnx", "--out", str(tmp / "onnx")], str(missing)),
        "export_upstream": (["--exp_dir", str(missing)], str(missing)),
        "infer": (["--packed", str(missing), "--machine", "fan", str(missing / "x.wav")], str(missing)),
        "measure_explain": (
            ["--packed", str(missing), "--test_dir", str(missing), "--train_dir", str(missing), "--label", "x"]
            + ["--out", str(tmp / "explain.md")],
            str(missing),
        ),
        "monitor": (["--packed", str(missing), "--follow", str(missing / "x.wav")], str(missing)),
        "make_stream": (["--family", "a", "--machine", "nosuch", "--seconds", "4", "--out", "-"], "nosuch"),
        "make_labels": (["--train_sets", str(missing)], str(missing)),
        "make_random_upstream": (["--name", "hubert", "--out", str(a_file / "hubert.pt")], str(a_file)),
        "make_recipe": (["--year", "1999", "--dir", str(tmp / "recipe")], "unsupported DCASE year 1999"),
        "make_synth": (["--root", str(tmp / "synth"), "--seconds", "0.1"], "seconds must be in [0.5, 60], got 0.1"),
        "make_pretrain_corpus": (
            ["--root", str(tmp / "ssl"), "--clips_per_machine", "1"],
            "--clips_per_machine must be at least 2, got 1",
        ),
        "plot_losses": (["--out", str(tmp / "l.png"), str(missing)], str(missing / "train_losses.json")),
        "noise_sets": (["--config", str(bad_config)], "bogus_key"),
        "pack": (
            ["--exp_dir", str(missing), "--train_sets", "dev_train", "--out_dir", str(tmp / "packed")],
            str(missing),
        ),
        "registry_tables": ([str(missing / "page.md")], str(missing / "page.md")),
        "prepare_dcase": (["--year", "2024", "--root", str(missing), "--data_dir", str(tmp / "data")], str(missing)),
        "select_backend": (
            [str(missing), "--logmel_exp", str(missing), "--set", "dev_test", "--year", "2024"],
            str(missing),
        ),
        "score": (["--exp_dir", str(missing), "--test_set", "dev_test", *out], str(missing)),
        "train": (["--config", str(bad_config), "--exp_dir", str(tmp / "exp"), "--device", "cpu"], "bogus_key"),
        "validate_data": ([str(missing)], str(missing)),
        "write_submission": (
            [
                "--year",
                "2024",
                "--data_root",
                str(missing),
                "--scores_dir",
                str(missing),
                "--test_set",
                "eval_test",
                "--train_sets",
                "dev_train",
            ],
            str(missing),
        ),
    }


def run_cli(module: str, argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", f"asdlib.bin.{module}", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("module", MODULES)
def test_bad_input_is_one_error_line(module: str, tmp_path: Path) -> None:
    calls = bad_calls(tmp_path)
    assert module in calls, f"asdlib/bin/{module}.py has no bad-input case in bad_calls(): add one"
    argv, named = calls[module]
    proc = run_cli(module, [*argv, "--verbose", "1"], tmp_path)  # every CLI takes --verbose
    errors = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert proc.returncode == 1, proc.stderr
    assert len(errors) == 1 and errors[0].startswith("ERROR: "), proc.stderr
    assert named in errors[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("module", ["prepare_dcase", "train"])
def test_verbose_2_shows_the_traceback(module: str, tmp_path: Path) -> None:
    argv, named = bad_calls(tmp_path)[module]
    proc = run_cli(module, [*argv, "--verbose", "2"], tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback (most recent call last)" in proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1].startswith("ERROR: ") and named in proc.stderr


def test_score_rejects_unknown_keys(tmp_path: Path) -> None:
    """As extract does: a key file from another set's split must not silently score fewer clips."""
    data = tmp_path / "data"
    utts = write_data_dir(data / "dev_test", [make_utt("fan", "00", f"c{i}") for i in range(3)])
    keys = tmp_path / "keys.1"
    keys.write_text(f"{utts[0].utt_id} x\nfan-00-zz2 y\nfan-00-zz1 z\n")
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "config.yaml").write_text("embedder: logmel\n")
    message = f"{keys}: 2 utt-ids not in {data / 'dev_test'} (first: fan-00-zz1, fan-00-zz2)"
    with pytest.raises(DataDirError, match=re.escape(message)):
        score.main(
            [
                "--exp_dir",
                str(exp),
                "--data_root",
                str(data),
                "--test_set",
                "dev_test",
                "--keys",
                str(keys),
                "--out_ark",
                str(tmp_path / "s.ark"),
                "--out_scp",
                str(tmp_path / "s.scp"),
            ]
        )
    assert not (tmp_path / "s.scp").exists()
