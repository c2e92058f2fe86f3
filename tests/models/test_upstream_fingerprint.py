"""A checkpoint replaced at the same path is noticed: stage 4's .done digest includes the upstream's
fingerprint (so the embeddings are redone), and model.pt refuses an upstream other than the one it
was trained on (docs/upstreams.md). One tiny recipe run (egs/mini layout, 1 epoch, 1 job)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import mirror_recipe

from asdlib.models.loading import load_trained
from asdlib.models.upstream_files import UpstreamMismatchError, sha256_of
from asdlib.synth.checkpoints import random_checkpoint
from asdlib.synth.corpus import SynthConfig, generate_corpus

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
MINI = REPO / "egs" / "mini"
TINY = """\
upstream: {name: hubert, path: downloads/hubert_tiny.pt}
finetune: {mode: frozen}
model: {pooling_hidden: 8, embed_dim: 16}
optim: {epochs: 1, batch_size: 4, warmup_steps: 1}
data: {crop_seconds: 0.5}
"""
CMD_SH = 'export train_cmd="utils/local.sh" extract_cmd="utils/local.sh" score_cmd="utils/local.sh"\n'
ARGS = ("--train_config", "conf/tiny.yaml", "--train_sets", "dev_train", "--test_sets", "dev_test", "--nj", "1")


def asd(recipe: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["./asd.sh", *ARGS, *args], cwd=recipe, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("fingerprint")
    recipe = root / "egs" / "mini"
    mirror_recipe(MINI, recipe, links=("asd.sh", "utils", "local", "db.sh"), cmd_sh=CMD_SH, copy_conf=False)
    (recipe / "conf" / "tiny.yaml").write_text(TINY)
    (recipe / "downloads").mkdir()
    torch.save(random_checkpoint("hubert", seed=0), recipe / "downloads" / "hubert_tiny.pt")
    corpus = root / "corpus"
    generate_corpus(
        corpus,
        SynthConfig(
            dev_machines=("fan",),
            eval_machines=("ToyDrone",),
            no_attribute=(),
            n_train_source=4,
            n_train_target=1,
            n_test=1,
            seconds=1.0,
        ),
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINI", str(corpus))
        proc = asd(recipe, "--stop_stage", "4")
        assert proc.returncode == 0, proc.stderr[-4000:]
        yield recipe


def stage_4(recipe: Path) -> subprocess.CompletedProcess:
    return asd(recipe, "--stage", "4", "--stop_stage", "4")


def test_replacing_the_upstream_file_redoes_stage_4(recipe: Path) -> None:
    proc = stage_4(recipe)
    assert proc.returncode == 0 and "embeddings of dev_train are up to date" in proc.stderr
    ckpt = recipe / "downloads" / "hubert_tiny.pt"
    # the same weights rewritten (new mtime): the sha256 is recomputed, the content is the same: up to date
    shutil.copyfile(ckpt, ckpt.with_suffix(".tmp"))
    os.replace(ckpt.with_suffix(".tmp"), ckpt)
    os.utime(ckpt, ns=(ckpt.stat().st_atime_ns, ckpt.stat().st_mtime_ns + 10**9))
    proc = stage_4(recipe)
    assert proc.returncode == 0 and "embeddings of dev_train are up to date" in proc.stderr, proc.stderr[-3000:]
    # other weights at the same path: redone, and refused by the model trained on the old ones
    torch.save(random_checkpoint("hubert", seed=1), ckpt)
    proc = stage_4(recipe)
    assert proc.returncode != 0 and "up to date" not in proc.stderr
    log = (recipe / "exp" / "tiny" / "embed" / "dev_train" / "log" / "embeddings.1.log").read_text()
    assert "ERROR:" in log and "retrain" in log and "Traceback" not in log
    torch.save(random_checkpoint("hubert", seed=0), ckpt)  # the original weights back (for the next test)


def test_model_pt_refuses_another_upstream_file(recipe: Path, tmp_path: Path) -> None:
    exp = recipe / "exp" / "tiny"
    ckpt = recipe / "downloads" / "hubert_tiny.pt"
    trained_on = sha256_of(ckpt)
    record = torch.load(exp / "model.pt", weights_only=True)["upstream"]
    assert record["sha256"] == trained_on and record["path"].endswith("downloads/hubert_tiny.pt")
    other = tmp_path / "other.pt"
    torch.save(random_checkpoint("hubert", seed=2), other)
    config = (exp / "config.yaml").read_text()
    moved = tmp_path / "exp"
    shutil.copytree(exp, moved, ignore=shutil.ignore_patterns("embed", "checkpoints"))
    (moved / "config.yaml").write_text(config.replace(record["path"], str(other)))
    with pytest.raises(UpstreamMismatchError) as err:
        load_trained(moved)
    message = str(err.value)
    for part in (
        str(moved / "model.pt"),
        record["path"],
        trained_on,
        str(other),
        sha256_of(other),
        "retrain",
        "point upstream.path at the original file",
    ):
        assert part in message
    (moved / "config.yaml").write_text(config.replace(record["path"], str(ckpt)))
    assert load_trained(moved).machines == ["fan"]
