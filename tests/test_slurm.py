"""utils/slurm.sh on a REAL Slurm cluster (never a mocked sbatch).

Uses the running cluster when ``sinfo`` works. Otherwise, with ASDLIB_TEST_SLURM=1 (and root),
starts the single-node test cluster with tools/slurm/cluster.sh and leaves it running (other test
sessions may be using it by then; stop it with ``tools/slurm/cluster.sh stop``); without it the
tests are skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UTILS = REPO / "egs" / "TEMPLATE" / "utils"
CLUSTER = REPO / "tools" / "slurm" / "cluster.sh"
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def sinfo_ok() -> bool:
    if shutil.which("sinfo") is None:
        return False
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    return proc.returncode == 0 and any(s in proc.stdout for s in ("idle", "mix", "alloc"))


@pytest.fixture(scope="module")
def cluster():
    if sinfo_ok():
        yield
        return
    if os.environ.get("ASDLIB_TEST_SLURM") != "1":
        pytest.skip("no working Slurm cluster (sinfo fails); set ASDLIB_TEST_SLURM=1 to start one with tools/slurm/cluster.sh")
    proc = subprocess.run([str(CLUSTER), "start"], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 or not sinfo_ok():
        pytest.fail(f"tools/slurm/cluster.sh start failed:\n{proc.stdout}\n{proc.stderr}")
    yield


@pytest.fixture
def recipe(tmp_path: Path, cluster) -> Path:
    """A recipe-like submit directory: conf/slurm.conf from TEMPLATE and a path.sh the tasks source."""
    (tmp_path / "conf").mkdir()
    shutil.copy(REPO / "egs" / "TEMPLATE" / "conf" / "slurm.conf", tmp_path / "conf" / "slurm.conf")
    (tmp_path / "path.sh").write_text("export ASDLIB_TEST_MARK=from-path-sh\n")
    return tmp_path


def slurm(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(UTILS / "slurm.sh"), *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=120)


def counts(d: Path, n: int) -> list[int]:
    return [len((d / f"count.{i}").read_text().split()) if (d / f"count.{i}").exists() else 0 for i in range(1, n + 1)]


def test_array_success_and_option_mapping(recipe):
    # SPLIT, not JOB: the index variable is replaced everywhere, also inside $SLURM_JOB_NAME (as in Kaldi)
    proc = slurm(recipe, "--num_threads", "2", "--mem", "100M", "SPLIT=1:3", "log/ok.SPLIT.log",
                 "echo", "task", "SPLIT", "cpus=$SLURM_CPUS_PER_TASK", "mem=$SLURM_MEM_PER_CPU",
                 "name=$SLURM_JOB_NAME", "mark=$ASDLIB_TEST_MARK", "|", "tr", "a-z", "A-Z")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "--cpus-per-task 2 --mem-per-cpu 100M" in proc.stderr  # the sbatch line is logged
    for i in (1, 2, 3):
        lines = (recipe / "log" / f"ok.{i}.log").read_text().splitlines()
        assert lines[0].startswith(f"# echo task {i} ")
        # --num_threads -> --cpus-per-task, --mem -> --mem-per-cpu, job name from the log name,
        # and the submit directory's path.sh was sourced in the task
        assert f"TASK {i} CPUS=2 MEM=100 NAME=OK MARK=FROM-PATH-SH" in lines
        assert lines[-2].startswith("# Accounting: time=") and lines[-2].endswith(" threads=2")
        assert lines[-1].startswith("# Ended (code 0)")
    assert not list((recipe / "log" / "q").glob("*.status"))


def test_failed_task_reported_and_rerun_repeats_only_it(recipe):
    args = ["JOB=1:3", "log/r.JOB.log", "echo x >> count.JOB; echo attempt; test ! -e fail.JOB"]
    (recipe / "fail.2").touch()
    proc = slurm(recipe, *args)
    assert proc.returncode == 1
    log2 = recipe / "log" / "r.2.log"
    assert f"job 2: exit code 1; log: {log2}" in proc.stderr and "job 1:" not in proc.stderr
    assert "attempt" in proc.stderr  # last lines of the failed log
    assert counts(recipe, 3) == [1, 1, 1]
    (recipe / "fail.2").unlink()
    proc = slurm(recipe, *args)
    assert proc.returncode == 0, proc.stderr
    assert "--array=2 " in proc.stderr
    assert counts(recipe, 3) == [1, 2, 1]
    assert "# Ended (code 0)" in log2.read_text()


def test_non_array_form(recipe):
    proc = slurm(recipe, "log/one.log", "echo", "single", "JOB")
    assert proc.returncode == 0, proc.stderr
    assert "single JOB" in (recipe / "log" / "one.log").read_text().splitlines()


def test_submission_error_is_reported(recipe):
    # the template maps --gpu 1 to partition "gpu", which the test cluster does not have
    proc = slurm(recipe, "--gpu", "1", "JOB=1:2", "log/g.JOB.log", "echo", "JOB")
    assert proc.returncode == 1
    assert "sbatch could not submit" in proc.stderr and "-p gpu --gres=gpu:1" in proc.stderr
    proc = slurm(recipe, "--mme", "1G", "log/g.log", "echo")
    assert proc.returncode == 2 and "option --mme 1G is not described in conf/slurm.conf" in proc.stderr
