"""kill -9 at any point of stages 3-5, then the same command again, gives the uninterrupted result.

One tiny recipe (egs/mini mirrored into tmp_path under a path with spaces and non-ASCII letters,
a tiny synthetic corpus, a 3-epoch config) runs stages 1-5 once without interruption (the
reference). A second experiment runs ``--stage 3 --stop_stage 5`` and is killed with SIGKILL
(the whole process group: asd.sh, launcher, jobs) three times: after the first training
checkpoint, after the first of two extraction jobs, after the first of two scoring jobs. Each
time the same command is run again. The tests check that training resumes from the last
checkpoint, that reruns repeat only unfinished jobs and sets (launcher status files, .done
markers), that no partial ark/scp/checkpoint is ever left under its final name, and that the
final model, embeddings, scores and submission CSVs are bit-identical to the reference.

The three tests continue one killed experiment, in file order.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import mirror_recipe

from asdlib.io.ark import read_vectors
from asdlib.synth.corpus import SynthConfig, generate_corpus

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
MINI = REPO / "egs" / "mini"
TINY = """\
embedder: ssl
seed: 0
upstream: {name: hubert, path: downloads/hubert_tiny_random.pt}
finetune: {mode: frozen}
model: {pooling_hidden: 8, embed_dim: 16}
specaug: {enabled: true}
optim: {epochs: 3, batch_size: 2, warmup_steps: 1}
data: {crop_seconds: 0.5}
"""
# The killed stage runs its jobs one at a time (EXTRACT_JOBS=1 or SCORE_JOBS=1), so that "job 1
# finished, job 2 running" is a state the test can wait for. The option is not part of the
# launcher's call id, so the reruns are the same calls.
CMD_SH = """\
# shellcheck shell=bash
export train_cmd="utils/local.sh"
export extract_cmd="utils/local.sh --max_jobs_run ${EXTRACT_JOBS:-2}"
export score_cmd="utils/local.sh --max_jobs_run ${SCORE_JOBS:-2}"
"""
SETS = ("dev_train", "dev_test")
ARGS = (
    "--train_config",
    "conf/tuning/tiny.yaml",
    "--train_sets",
    "dev_train",
    "--test_sets",
    "dev_test",
    "--nj",
    "2",
    "--stop_stage",
    "5",
)
KILLED = (*ARGS, "--tag", "killed", "--stage", "3")


def run(recipe: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(["./run.sh", *args], cwd=recipe, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"./run.sh {' '.join(args)} failed:\n{proc.stderr[-6000:]}"
    return proc


def run_and_kill(recipe: Path, marker: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Start ./run.sh in its own process group, SIGKILL the group as soon as ``marker`` exists;
    return the run's output."""
    log = recipe / "killed_run.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            ["./run.sh", *args],
            cwd=recipe,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        deadline = time.monotonic() + 240
        while not marker.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"{marker} never appeared (run.sh exit {proc.returncode}):\n{log.read_text()[-6000:]}")
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return log.read_text()


def outputs(exp: Path) -> dict[str, object]:
    """Everything the comparison covers: model weights, embeddings, scores and submission CSVs."""
    out: dict[str, object] = {"model": torch.load(exp / "model.pt", weights_only=True)["model"]}
    for s in SETS:
        out[f"embed/{s}"] = read_vectors(exp / "embed" / s / "embeddings.scp")
        out[f"scores/{s}"] = read_vectors(exp / "scores" / s / "scores.scp")
    for csv in sorted((exp / "scores" / "dev_test").glob("*.csv")):
        out[csv.name] = csv.read_bytes()
    return out


def assert_identical(a: dict[str, object], b: dict[str, object]) -> None:
    assert a.keys() == b.keys()
    for key, va in a.items():
        vb = b[key]
        if isinstance(va, dict):
            assert list(va) == list(vb), key
            for k in va:
                eq = torch.equal(va[k], vb[k]) if isinstance(va[k], torch.Tensor) else np.array_equal(va[k], vb[k])
                assert eq, f"{key}: {k} differs from the uninterrupted run"
        else:
            assert va == vb, f"{key} differs from the uninterrupted run"


def assert_no_partial_outputs(exp: Path) -> None:
    """Every scp under its final name reads completely; every checkpoint under its final name loads."""
    for scp in exp.rglob("*.scp"):
        if scp.parent.name.startswith("split") and scp.name.startswith("keys"):
            continue
        read_vectors(scp)  # raises on a truncated ark or scp
    for ckpt in (exp / "checkpoints").glob("epoch_*.pt"):
        torch.load(ckpt, weights_only=True)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("kill") / "recipe dir é"
    recipe = root / "egs" / "mini"
    mirror_recipe(MINI, recipe, cmd_sh=CMD_SH)
    (recipe / "conf" / "tuning" / "tiny.yaml").write_text(TINY)
    corpus = root / "corpus with space ü"
    generate_corpus(
        corpus,
        SynthConfig(
            dev_machines=("fan", "gearbox"),
            eval_machines=("ToyDrone",),
            no_attribute=("gearbox",),
            n_train_source=6,
            n_train_target=2,
            n_test=1,
            seconds=1.0,
        ),
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINI", str(corpus))  # db.sh reads it
        yield recipe


@pytest.fixture(scope="module")
def reference(recipe: Path) -> dict[str, object]:
    run(recipe, *ARGS, "--tag", "ref")
    return outputs(recipe / "exp" / "ref")


def test_kill_during_training_resumes_from_the_last_checkpoint(recipe: Path, reference: dict[str, object]) -> None:
    exp = recipe / "exp" / "killed"
    run_and_kill(recipe, exp / "checkpoints" / "latest", *KILLED)
    latest = (exp / "checkpoints" / "latest").read_text().strip()
    assert latest in ("epoch_1.pt", "epoch_2.pt") and not (exp / "model.pt").exists()
    assert_no_partial_outputs(exp)
    # The same command again; this run is killed in turn once stage 4 has finished one job.
    status = exp / "embed" / "dev_train" / "log" / "q" / "embeddings.1.log.status"
    run_and_kill(recipe, status, *KILLED, env={"EXTRACT_JOBS": "1"})
    assert f"resumed from {exp.relative_to(recipe) / 'checkpoints' / latest}" in (exp / "train.log").read_text()
    model = torch.load(exp / "model.pt", weights_only=True)["model"]
    assert (
        all(torch.equal(v, reference["model"][k]) for k, v in model.items())
        and model.keys() == reference["model"].keys()
    )


def test_kill_during_extraction_reruns_only_the_unfinished_job(recipe: Path) -> None:
    exp = recipe / "exp" / "killed"
    log_dir = exp / "embed" / "dev_train" / "log"
    assert (log_dir / "q" / "embeddings.1.log.status").is_file()
    assert not (log_dir / "q" / "embeddings.2.log.status").exists()
    assert not (exp / "embed" / "dev_train" / "embeddings.scp").exists()
    assert_no_partial_outputs(exp)
    job1_log = (log_dir / "embeddings.1.log").read_bytes()
    # The same command again, killed once stage 5 has finished its first scoring job.
    status = exp / "scores" / "dev_train" / "log" / "q" / "scores.1.log.status"
    out = run_and_kill(recipe, status, *KILLED, env={"SCORE_JOBS": "1"})
    assert "not rerunning 1 of 2 jobs that succeeded in an earlier attempt of this call: 1" in out
    assert "model.pt is up to date" in (exp / "train.log").read_text()  # so job 1's input did not change
    assert (log_dir / "embeddings.1.log").read_bytes() == job1_log
    assert "# Ended (code 0)" in (log_dir / "embeddings.2.log").read_text()
    assert all((exp / "embed" / s / ".done").is_file() for s in SETS)


def test_kill_during_scoring_reruns_only_the_unfinished_job(recipe: Path, reference: dict[str, object]) -> None:
    exp = recipe / "exp" / "killed"
    log_dir = exp / "scores" / "dev_train" / "log"
    assert (
        not (log_dir / "q" / "scores.2.log.status").exists() and not (exp / "scores" / "dev_train" / ".done").exists()
    )
    assert_no_partial_outputs(exp)
    job1_log = (log_dir / "scores.1.log").read_bytes()
    out = run(recipe, *KILLED).stderr
    for s in SETS:
        assert f"Stage 4: embeddings of {s} are up to date" in out
    assert "not rerunning 1 of 2 jobs that succeeded in an earlier attempt of this call: 1" in out
    assert (log_dir / "scores.1.log").read_bytes() == job1_log
    assert_no_partial_outputs(exp)
    assert_identical(outputs(exp), reference)
