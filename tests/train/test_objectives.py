"""Training objectives as plug-ins: the trainer knows no method, and an objective registered from
outside the package (through ``OBJECTIVES.register`` only) takes part in training."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asdlib.io.config import ConfigError
from asdlib.train import trainer
from asdlib.train.objectives import OBJECTIVES

TOY_MODULE = '''\
"""A toy objective: an embedding-norm term, counted epoch hooks and its own checkpoint entry."""
import torch
from asdlib.train.objectives import OBJECTIVES, Objective


@OBJECTIVES.register("toy")
class Toy(Objective):
    def __init__(self, setup):
        self.started = self.ended = 0

    def loss(self, step, emb):
        return {"toy": 0.5 * emb.float().pow(2).mean()}

    def on_epoch_start(self, run):
        self.started += 1

    def on_epoch_end(self, run):
        self.ended = run.epoch

    def state_dict(self):
        return {"toy": {"started": self.started, "ended": self.ended}}
'''
RUN = """\
import logging, sys
from pathlib import Path
logging.basicConfig(level=logging.INFO)
sys.path.insert(0, sys.argv[1])
import toy_objective
from asdlib.config import load_train_config
from asdlib.train.trainer import Trainer
config, data, exp = map(Path, sys.argv[2:])
trainer = Trainer(load_train_config(config), exp, data)
assert list(trainer.objectives) == ["margin", "toy"], list(trainer.objectives)
trainer.run(resume=False)
"""
CONFIG = """\
embedder: ssl
seed: 0
upstream: {name: hubert, path: UPSTREAM}
finetune: {mode: lora, rank: 2}
model: {pooling_hidden: 8, embed_dim: 16}
optim: {epochs: 2, batch_size: 4, warmup_steps: 1, amp: false}
data: {crop_seconds: 0.5, train_sets: [dev_train]}
"""


def test_trainer_source_names_no_method() -> None:
    """Method parts live in objectives; the loop has no branch for any of them."""
    source = Path(trainer.__file__).read_text().lower()
    for word in ("vq", "mixup", "subcluster", "adacos", "arcface", "codebook"):
        assert word not in source, f"asdlib/train/trainer.py mentions {word!r}"


def test_builtin_objectives_in_order() -> None:
    assert OBJECTIVES.names()[:3] == ("margin", "vq", "mixup")


def test_unknown_head_kind_is_a_config_error() -> None:
    from asdlib.config import TrainConfig

    cfg = TrainConfig()
    cfg.head.kind = "cosface"
    with pytest.raises(
        ConfigError, match="head.kind: unknown head 'cosface'; known: arcface, adacos, subcluster_adacos"
    ):
        OBJECTIVES.get("margin").obj.select(cfg)


def test_a_registered_toy_objective_adds_its_term(tiny_work: Path, tmp_path: Path) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "toy_objective.py").write_text(TOY_MODULE)
    config = tmp_path / "toy.yaml"
    config.write_text(CONFIG.replace("UPSTREAM", str(tiny_work / "hubert.pt")))
    exp = tmp_path / "exp"
    proc = subprocess.run(
        [sys.executable, "-c", RUN, str(tmp_path / "plugins"), str(config), str(tiny_work / "data"), str(exp)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    record = json.loads((exp / "train_losses.json").read_text())
    assert [r["epoch"] for r in record] == [1, 2]
    for r in record:
        assert set(r["terms"]) == {"margin", "toy"} and r["terms"]["toy"] > 0
        assert r["loss"] == pytest.approx(r["terms"]["margin"] + r["terms"]["toy"], rel=1e-6)
    assert "toy 0." in proc.stderr  # each term is logged
    ckpt = torch.load(exp / "checkpoints" / "epoch_2.pt", weights_only=True)
    assert ckpt["toy"] == {"started": 2, "ended": 2} and "head" in ckpt
