"""utils/slurm.sh on a REAL Slurm cluster (never a mocked sbatch).

The cluster comes from the ``slurm_cluster`` fixture (tests/conftest.py): the running one when
``sinfo`` answers, else, with ASDLIB_TEST_SLURM=1 (and root), the single-node test cluster started by
tools/slurm/cluster.sh and left running (stop it with ``tools/slurm/cluster.sh stop``); without
either the tests skip and say how to run them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
UTILS = REPO / "egs" / "TEMPLATE" / "utils"
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


@pytest.fixture
def recipe(tmp_path: Path, slurm_cluster: None) -> Path:
    """A recipe-like submit directory: conf/slurm.conf from TEMPLATE and a path.sh the tasks source."""
    (tmp_path / "conf").mkdir()
    shutil.copy(REPO / "egs" / "TEMPLATE" / "conf" / "slurm.conf", tmp_path / "conf" / "slurm.conf")
    (tmp_path / "path.sh").write_text("export ASDLIB_TEST_MARK=from-path-sh\n")
    return tmp_path


def slurm(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(UTILS / "slurm.sh"), *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=120
    )


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


# --- multi-node training path: utils/srun_torchrun.sh inside the sbatch job, as asd.sh --num_nodes M runs it

ENV_DUMP = "import json, os, sys\njson.dump(dict(os.environ), open(sys.argv[1], 'w'))\n"
TINY_TRAIN = """\
embedder: ssl
seed: 0
upstream: {name: hubert, path: hubert.pt}
finetune: {mode: lora, rank: 4}
model: {pooling_hidden: 16, embed_dim: 32}
optim: {epochs: 1, batch_size: 4, warmup_steps: 1}
data: {crop_seconds: 0.0}
"""


@pytest.fixture
def recipe_env(tmp_path: Path, slurm_cluster: None) -> Path:
    """A submit directory like egs/<recipe>: its path.sh sources the repository's path.sh; utils/ is linked."""
    (tmp_path / "conf").mkdir()
    shutil.copy(REPO / "egs" / "TEMPLATE" / "conf" / "slurm.conf", tmp_path / "conf" / "slurm.conf")
    (tmp_path / "path.sh").write_text(f'. "{REPO}/path.sh"\nexport ASDLIB_TEST_MARK=from-path-sh\n')
    (tmp_path / "utils").symlink_to(UTILS)
    return tmp_path


def test_asd_sh_starts_multi_node_training_through_srun_torchrun() -> None:
    """asd.sh and ssl.sh launch training through utils/train.sh, which runs srun + torchrun for --num_nodes."""
    for recipe in ("asd.sh", "ssl.sh"):
        assert (
            'utils/train.sh --ngpu "${ngpu}" --nproc "${nproc}" --num_nodes "${num_nodes}"'
            in (REPO / "egs" / "TEMPLATE" / recipe).read_text()
        )
    text = (REPO / "egs" / "TEMPLATE" / "utils" / "train.sh").read_text()
    assert 'utils/srun_torchrun.sh "${num_nodes}" "${per_node}" -m asdlib.bin.train "$@"' in text


def test_multi_node_job_step_keeps_the_path_sh_environment(recipe_env: Path) -> None:
    (recipe_env / "env_dump.py").write_text(ENV_DUMP)
    proc = slurm(
        recipe_env,
        "--num_nodes",
        "1",
        "--num_threads",
        "2",
        "log/env.log",
        "utils/srun_torchrun.sh",
        "1",
        "1",
        "env_dump.py",
        "env.json",
    )
    log = (recipe_env / "log" / "env.log").read_text()
    assert proc.returncode == 0, proc.stderr + log
    env = json.loads((recipe_env / "env.json").read_text())
    assert str(REPO) in env.get("PYTHONPATH", "").split(os.pathsep)
    assert env.get("LC_ALL") == "C" and env.get("HF_HUB_OFFLINE") == "1"
    assert env.get("OMP_NUM_THREADS") and env.get("MKL_NUM_THREADS")
    assert env.get("ASDLIB_TEST_MARK") == "from-path-sh"
    assert env.get("SLURM_STEP_ID") is not None  # really a job step (srun), not the batch script
    assert env.get("SLURM_CPUS_PER_TASK") == "2" and env.get("WORLD_SIZE") == "1"
    port = 29400 + int(env["SLURM_JOB_ID"]) % 1000
    assert f"rendezvous {env['SLURMD_NODENAME']}:{port}" in log  # port derived from the job id


def test_multi_node_training_with_a_space_in_the_exp_path(recipe_env: Path) -> None:
    work = recipe_env
    py = sys.executable
    for args in (
        [
            "asdlib.bin.make_synth",
            "--root",
            "corpus",
            "--dev_machines",
            "fan",
            "--eval_machines",
            "ToyDrone",
            "--no_attribute",
            "",
            "--n_train_source",
            "4",
            "--n_train_target",
            "2",
            "--n_test",
            "1",
            "--seconds",
            "1.0",
        ],
        ["asdlib.bin.make_random_upstream", "--name", "hubert", "--out", "hubert.pt"],
        ["asdlib.bin.prepare_dcase", "--year", "2024", "--root", "corpus", "--data_dir", "data"],
        [
            "asdlib.bin.make_labels",
            "--train_sets",
            "data/dev_train",
            "data/eval_train",
            "--other_sets",
            "data/dev_test",
            "data/eval_test",
        ],
    ):
        subprocess.run([py, "-m", *args], cwd=work, check=True, capture_output=True, env=ENV)
    (work / "tiny.yaml").write_text(TINY_TRAIN)
    exp = "exp/multi node"
    # the command asd.sh stage 3 builds for --num_nodes M (here M = 1: the test cluster has one node)
    proc = slurm(
        work,
        "--gpu",
        "0",
        "--num_threads",
        "1",
        "--num_nodes",
        "1",
        f"{exp}/train.log",
        "utils/srun_torchrun.sh",
        "1",
        "1",
        "-m",
        "asdlib.bin.train",
        "--config",
        "tiny.yaml",
        "--data_root",
        "data",
        "--exp_dir",
        exp,
        "--resume",
        "true",
        "--device",
        "cpu",
    )
    log = (work / exp / "train.log").read_text()
    assert proc.returncode == 0, proc.stderr + log[-4000:]
    assert (work / exp / "model.pt").is_file() and list((work / exp / "checkpoints").glob("epoch_*.pt"))
    assert not (work / "exp" / "multi").exists()
