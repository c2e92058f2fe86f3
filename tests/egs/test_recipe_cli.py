"""The recipes' command line: ``./run.sh --help`` of every recipe, and stage 6 on a blind set."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import make_utt

from asdlib.data.datadir import write_data_dir
from asdlib.io.ark import write_scores

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted(p.parent.name for p in (REPO / "egs").glob("*/run.sh"))


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("recipe", RECIPES)
def test_help_prints_the_usage_once_and_does_nothing(recipe: str, tmp_path: Path) -> None:
    """A copy of egs/ (relative symlinks kept; its path.sh cannot find a venv, so any work fails)."""
    egs = tmp_path / "egs"
    shutil.copytree(REPO / "egs", egs, symlinks=True)
    before = tree(tmp_path)
    proc = subprocess.run(["./run.sh", "--help"], cwd=egs / recipe, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("Usage:") == 1 and "--stage N" in proc.stdout, proc.stdout
    assert proc.stderr == ""
    assert tree(tmp_path) == before


def blind_recipe(tmp_path: Path) -> Path:
    """A recipe dir at stage 6: a 2024 eval_test prepared without ground truth, and its scores."""
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    for name in ("asd.sh", "cmd.sh", "utils"):
        (recipe / name).symlink_to(REPO / "egs" / "TEMPLATE" / name)
    (recipe / "path.sh").write_text(f'. "{REPO}/path.sh"\n')
    utts = [
        make_utt(m, "00", f"section_00_{i:04d}", domain="unknown", label="unknown")
        for m in ("fan", "valve")
        for i in range(4)
    ]
    write_data_dir(recipe / "data" / "eval_test", utts)
    scores = recipe / "exp" / "train" / "scores" / "eval_test"
    write_scores(scores / "scores.ark", scores / "scores.scp", {u.utt_id: float(i) for i, u in enumerate(utts)})
    return recipe


def test_stage_6_fails_on_a_set_without_ground_truth_unless_skipped(tmp_path: Path) -> None:
    recipe = blind_recipe(tmp_path)
    args = ["./asd.sh", "--year", "2024", "--stage", "6", "--stop_stage", "6", "--test_sets", "eval_test"]
    env = {k: v for k, v in os.environ.items() if k != "cmd_backend"}
    proc = subprocess.run(args, cwd=recipe, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR: ")]
    assert len(errors) == 1 and "data/eval_test: cannot evaluate" in errors[0], proc.stderr
    assert '--local_data_opts "--eval_list /path/eval_data_list_2024.csv"' in errors[0]
    assert "--skip_unlabelled true" in errors[0]
    assert "Successfully finished" not in proc.stderr
    proc = subprocess.run(
        [*args, "--skip_unlabelled", "true"], cwd=recipe, capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert "no ground truth, nothing evaluated" in proc.stderr and "Successfully finished stages 6-6" in proc.stderr
    assert not (recipe / "exp" / "train" / "results").exists()
