"""egs/TEMPLATE/setup.sh: the committed egs/dcase20XX files are what it generates from the year
table, a new recipe (including a year added by a plugin) runs, and bad requests fail in one line."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from asdlib.years import YEARS

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / "egs" / "TEMPLATE" / "setup.sh"
GENERATED = ("run.sh", "db.sh", "local/data.sh", "conf/slurm.conf", "conf/train.yaml")
LINKS = ("asd.sh", "cmd.sh", "path.sh", "utils")


def setup(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(SETUP), *args], capture_output=True, text=True, timeout=120, env=env, cwd=cwd)


@pytest.mark.parametrize("year", list(YEARS))
def test_committed_recipe_is_what_setup_writes(year: int, tmp_path: Path) -> None:
    """Each egs/dcase<year> trio (and links, conf/) equals a fresh setup.sh run, so they cannot drift."""
    made, committed = tmp_path / f"dcase{year}", REPO / "egs" / f"dcase{year}"
    proc = setup(str(made), "--year", str(year))
    assert proc.returncode == 0, proc.stderr
    for rel in GENERATED:
        assert (made / rel).read_bytes() == (committed / rel).read_bytes(), f"{rel}: rerun setup.sh and commit"
        assert os.access(made / rel, os.X_OK) == os.access(committed / rel, os.X_OK), rel
    for name in LINKS:
        assert (made / name).is_symlink() and (made / name).resolve() == (committed / name).resolve(), name


PLUGIN = """
import dataclasses
from asdlib.years import get_year, register_year
register_year(dataclasses.replace(get_year(2026), year=2027, description="a year from a plugin."))
"""


def test_new_year_recipe_runs(tmp_path: Path) -> None:
    """A year registered by a plugin gets a recipe whose run.sh and local/data.sh answer --help."""
    (tmp_path / "my_years.py").write_text(PLUGIN)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "ASDLIB_PLUGINS": "my_years"}
    recipe = tmp_path / "egs" / "dcase2027"
    proc = setup(str(recipe), "--year", "2027", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "# DCASE 2027 Task 2 recipe: a year from a plugin." in (recipe / "run.sh").read_text()
    assert (recipe / "conf" / "train.yaml").read_bytes() == (
        REPO / "egs" / "dcase2026" / "conf" / "train.yaml"
    ).read_bytes()
    for script in ("./run.sh", "local/data.sh"):
        run = subprocess.run([script, "--help"], cwd=recipe, capture_output=True, text=True, timeout=60, env=env)
        assert run.returncode == 0 and run.stdout.count("Usage:") == 1, (script, run.stdout, run.stderr)
    assert "--corpus_year 2027" in (recipe / "local" / "data.sh").read_text()


@pytest.mark.parametrize("year", [2021, 2026])
def test_stage_1_of_a_recipe_made_outside_egs(year: int, tmp_path: Path) -> None:
    """local/data.sh (--corpus_year) prepares the year's sets from a synthetic corpus, wherever the recipe is."""
    from asdlib.synth.years import YearSynthConfig, generate_year_corpus

    corpus = tmp_path / "corpus"
    generate_year_corpus(corpus, YearSynthConfig(year=year, n_train_source=2, n_train_target=1, n_test=1, seconds=0.5))
    recipe = tmp_path / "deep" / "dir" / f"r{year}"
    assert setup(str(recipe), "--year", str(year)).returncode == 0
    proc = subprocess.run(
        ["local/data.sh"],
        cwd=recipe,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, f"DCASE{year}": str(corpus)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = {"dev_train", "dev_test", "eval_train"} | ({"eval_test"} if YEARS[year].eval_test else set())
    assert {p.name for p in (recipe / "data").iterdir()} == expected


def test_custom_recipe_without_year(tmp_path: Path) -> None:
    proc = setup(str(tmp_path / "plant"))
    assert proc.returncode == 0, proc.stderr
    for rel in ("run.sh", "db.sh", "local/data.sh", "conf/train.yaml"):
        assert (tmp_path / "plant" / rel).read_bytes() == (REPO / "egs" / "custom" / rel).read_bytes()
    run = subprocess.run(["./run.sh", "--help"], cwd=tmp_path / "plant", capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "Usage:" in run.stdout, run.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["{dir}", "--year", "2019"], "unsupported DCASE year 2019; known years: 2020"),
        (["{dir}", "--year", "20x6"], "--year 20x6: expected a four-digit year"),
        (["{dir}", "--frobnicate"], "unknown option --frobnicate"),
        ([], "name the new recipe directory"),
        (["{existing}", "--year", "2024"], "already exists"),
    ],
)
def test_bad_requests_fail_in_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    (tmp_path / "existing").mkdir()
    argv = [a.format(dir=tmp_path / "new", existing=tmp_path / "existing") for a in args]
    proc = setup(*argv)
    assert proc.returncode != 0
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "new").exists()


def test_help() -> None:
    proc = setup("--help")
    assert proc.returncode == 0 and proc.stdout.startswith("Usage:") and "--year YYYY" in proc.stdout
