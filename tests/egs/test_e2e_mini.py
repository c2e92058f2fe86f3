"""End to end: egs/mini with a tiny config through stages 1-7 on a tiny synthetic corpus, checking
every contract file of docs/design.md §3-§5; then a rerun of stages 3-5, and the same stages through the
real Slurm backend when a test cluster is up (the ``slurm_cluster`` fixture of tests/conftest.py).

The recipe is mirrored into tmp_path (symlinks to the real scripts, configs and local/), so the test
exercises the committed recipe without writing into the repository.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import mirror_recipe

from asdlib.config import LogMelConfig
from asdlib.data.audio import load_wav
from asdlib.data.datadir import read_data_dir, read_kv
from asdlib.io.ark import read_scores, read_vectors
from asdlib.models.logmel import LogMelMean

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
MINI = REPO / "egs" / "mini"
SETS = ("dev_train", "dev_test", "eval_train", "eval_test")
TINY = """\
embedder: ssl
seed: 0
upstream: {name: hubert, path: downloads/hubert_tiny_random.pt}
finetune: {mode: lora, rank: 4}
model: {pooling_hidden: 16, embed_dim: 32}
optim: {epochs: 1, batch_size: 4, warmup_steps: 1}
data: {crop_seconds: 0.0}
logmel: {n_mels: 16, stats: [mean, std, delta]}
backend:  # the mini default's kind: a fusion with a member on the log-mel statistics stage 4 appends
  kind: fusion
  conf: {members: [{kind: knn_routed}, {kind: knn_routed, features: logmel}]}
"""


def run(recipe: Path, *args: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        ["./run.sh", *args],
        cwd=recipe,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, f"./run.sh {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("e2e")
    recipe = root / "egs" / "mini"
    mirror_recipe(MINI, recipe)
    (recipe / "conf" / "tuning" / "tiny.yaml").write_text(TINY)
    corpus = root / "corpus with space ü"
    subprocess.run(
        [
            "python",
            "-m",
            "asdlib.bin.make_synth",
            "--root",
            str(corpus),
            "--dev_machines",
            "fan,gearbox",
            "--eval_machines",
            "ToyDrone,ToothBrush",
            "--no_attribute",
            "gearbox,ToothBrush",
            "--n_train_source",
            "8",
            "--n_train_target",
            "2",
            "--n_test",
            "3",
            "--seconds",
            "1.0",
        ],
        check=True,
        capture_output=True,
    )
    os.environ["MINI"] = str(corpus)
    run(recipe, "--train_config", "conf/tuning/tiny.yaml", "--stop_stage", "7")
    return recipe


def test_data_dirs_follow_the_contract(recipe: Path) -> None:
    for name in SETS:
        d = recipe / "data" / name
        utts = read_data_dir(d)
        assert utts and all(u.utt_id.startswith(f"{u.machine}-{u.section}-") for u in utts)
        assert set(read_kv(d / "utt2dur")) == {u.utt_id for u in utts}
        spk2utt = read_kv(d / "spk2utt")
        assert sorted(i for ids in spk2utt.values() for i in ids.split()) == sorted(u.utt_id for u in utts)
        assert all(Path(u.path).is_absolute() and Path(u.path).is_file() for u in utts)
    for name in ("dev_train", "eval_train"):
        d = recipe / "data" / name
        classes = read_kv(d / "classes.txt")
        assert set(read_kv(d / "utt2class").values()) <= set(classes)
    labels = {u.label for u in read_data_dir(recipe / "data" / "eval_test")}
    assert labels == {"normal", "anomaly"}  # filled from the generated eval_data_list_2024.csv


def test_experiment_outputs_follow_the_contract(recipe: Path) -> None:
    exp = recipe / "exp" / "tiny"
    assert (exp / "config.yaml").is_file() and (exp / "train.log").is_file()
    assert list((exp / "checkpoints").glob("epoch_*.pt"))
    for name in SETS:
        utts = read_data_dir(recipe / "data" / name)
        emb = read_vectors(exp / "embed" / name / "embeddings.scp")
        assert (exp / "embed" / name / "embeddings.ark").is_file()
        assert list(emb) == sorted(u.utt_id for u in utts)
        assert {v.shape for v in emb.values()} == {(32 + 3 * 16,)} and all(v.dtype == np.float32 for v in emb.values())
    # the last 48 columns are the clip's log-mel mean, spread and change (the fusion's second member reads them)
    utt = read_data_dir(recipe / "data" / "eval_test")[0]
    wav = load_wav(utt.path, 16000)
    cfg = LogMelConfig(n_mels=16, stats=["mean", "std", "delta"])
    logmel = LogMelMean(cfg, 16000)(torch.from_numpy(wav)[None], torch.tensor([wav.size]))
    np.testing.assert_allclose(
        read_vectors(exp / "embed" / "eval_test" / "embeddings.scp")[utt.utt_id][32:],
        logmel[0].numpy(),
        rtol=1e-5,
        atol=1e-5,
    )
    for name in ("dev_test", "eval_test"):
        utts = read_data_dir(recipe / "data" / name)
        scores = read_scores(exp / "scores" / name / "scores.scp")
        assert set(scores) == {u.utt_id for u in utts} and all(np.isfinite(list(scores.values())))
        for machine in {u.machine for u in utts}:
            names = sorted(Path(u.path).name for u in utts if u.machine == machine)
            for kind in ("anomaly_score", "decision_result"):
                rows = (exp / "scores" / name / f"{kind}_{machine}_section_00_test.csv").read_text().splitlines()
                assert sorted(r.split(",")[0] for r in rows) == names
                assert all(len(r.split(",")) == 2 for r in rows)
        res = exp / "results" / name
        result = json.loads((res / "results.json").read_text())
        assert 0.0 <= result["official_score"] <= 1.0 and result["metric"]
        for sections in result["per_machine"].values():
            for metrics in sections.values():
                assert all(0.0 <= metrics[k] <= 1.0 for k in ("auc_source", "auc_target", "pauc"))
        assert (res / "RESULTS.md").is_file() and list(res.glob("roc_*.png")) and list(res.glob("hist_*.png"))


def test_packed_model_scores_new_recordings(recipe: Path) -> None:
    packed = recipe / "exp" / "tiny" / "packed"
    assert {"config.yaml", "model.pt", "manifest.json", "bank.pt", "upstream"} <= {p.name for p in packed.iterdir()}
    wav = read_data_dir(recipe / "data" / "eval_test")[0]
    # one thread, as stage 4's jobs run (cmd.sh --num_threads 1): another thread count moves embeddings
    # by float32 rounding (~1e-7), which the default fusion's whitening members amplify to ~1e-5
    proc = subprocess.run(
        ["python", "-m", "asdlib.bin.infer", "--packed", str(packed), "--machine", wav.machine, wav.path],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    (row,) = csv.DictReader(io.StringIO(proc.stdout))
    assert row["file"] == wav.path and row["kind"] == "file" and row["decision"] in ("normal", "anomaly")
    stage5 = read_scores(recipe / "exp" / "tiny" / "scores" / "eval_test" / "scores.scp")[wav.utt_id]
    assert abs(float(row["score"]) - stage5) < 1e-6
    proc = subprocess.run(
        ["python", "-m", "asdlib.bin.infer", "--packed", str(packed), "--machine", "nosuch", wav.path],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("ERROR: unknown machine 'nosuch'")
    assert f"{wav.machine}/{wav.section}" in proc.stderr  # the machine/sections the banks know


def test_rerun_of_stages_3_to_5_reproduces_the_scores(recipe: Path) -> None:
    scp = recipe / "exp" / "tiny" / "scores" / "eval_test" / "scores.scp"
    before = read_scores(scp)
    run(recipe, "--train_config", "conf/tuning/tiny.yaml", "--stage", "3", "--stop_stage", "5")
    assert read_scores(scp) == before


def test_slurm_backend_gives_the_same_scores(recipe: Path, slurm_cluster: None) -> None:
    proc = run(
        recipe,
        "--train_config",
        "conf/tuning/tiny.yaml",
        "--tag",
        "tiny_slurm",
        "--stage",
        "3",
        "--stop_stage",
        "5",
        env={"cmd_backend": "slurm"},
    )
    assert proc.stderr.count("Slurm job") >= 1 + 4 + 4  # training, 4 embedding sets, 2 + 2 scoring runs
    exp = recipe / "exp"
    for name in ("dev_test", "eval_test"):
        assert read_scores(exp / "tiny_slurm" / "scores" / name / "scores.scp") == read_scores(
            exp / "tiny" / "scores" / name / "scores.scp"
        )


def test_outputs_do_not_depend_on_nj(recipe: Path) -> None:
    exp = recipe / "exp" / "tiny"
    files = [exp / "embed" / s / "embeddings.ark" for s in SETS] + [exp / "scores" / s / "scores.ark" for s in SETS]
    before = {f: f.read_bytes() for f in files}
    for marker in list(exp.glob("embed/*/.done")) + list(exp.glob("scores/*/.done")):
        marker.unlink()
    run(recipe, "--train_config", "conf/tuning/tiny.yaml", "--stage", "4", "--stop_stage", "5", "--nj", "3")
    assert (exp / "embed" / "eval_test" / "split3").is_dir()
    assert {f: f.read_bytes() for f in files} == before
