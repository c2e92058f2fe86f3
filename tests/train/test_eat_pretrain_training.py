"""EAT pre-training through the ordinary trainer (objective ``eat_pretrain``): loss terms recorded,
teacher checkpointed, exact resume, and the exported ``upstream.pt`` loading as an EAT upstream."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from asdlib.bin import export_upstream
from asdlib.config import UpstreamConfig, load_train_config
from asdlib.io.config import ConfigError
from asdlib.models.upstream import build_upstream
from asdlib.synth.checkpoints import save_random_eat
from asdlib.train.trainer import Trainer

CONFIG = """\
embedder: ssl
seed: 0
upstream: {{name: eat, path: {init}, conf: {{target_frames: 48}}}}
finetune: {{mode: full}}
pretrain: {{enabled: true, clone_batch: 2, average_top_k_layers: 2, decoder_dim: 16, decoder_groups: 4,
           decoder_layers: 2, ema_anneal_end_step: 10}}
optim: {{epochs: {epochs}, batch_size: 4, warmup_steps: 1, amp: false, lr: 1.0e-3}}
data: {{crop_seconds: 0.5, train_sets: [dev_train]}}
"""


def _train(tiny_work: Path, tmp: Path, exp: str, epochs: int, **over: str) -> Trainer:
    init = tmp / "eat_init"
    if not init.exists():
        save_random_eat(init, "hf", seed=0, embed_dim=16, depth=2, num_heads=2, mlp_ratio=2.0, max_length=8)
    config = tmp / f"{exp}.yaml"
    config.write_text(CONFIG.format(init=init, epochs=epochs))
    trainer = Trainer(load_train_config(config, [f"{k}={v}" for k, v in over.items()]), tmp / exp, tiny_work / "data")
    trainer.run(resume=True)
    return trainer


def test_pretraining_resumes_exactly_and_exports(tiny_work: Path, tmp_path: Path) -> None:
    whole = _train(tiny_work, tmp_path, "whole", 2)
    assert list(whole.objectives) == ["eat_pretrain"]  # no margin head: no labels are used
    record = json.loads((tmp_path / "whole" / "train_losses.json").read_text())
    assert [set(r["terms"]) for r in record] == [{"frame", "utterance"}] * 2
    steps = 2 * whole.steps_per_epoch
    assert int(whole.model.num_updates) == steps  # one teacher update per optimiser step
    ckpt = torch.load(tmp_path / "whole" / "checkpoints" / "epoch_2.pt", weights_only=True)
    assert "teacher.blocks.0.mlp.fc1.weight" in ckpt["model"]

    resumed = tmp_path / "resumed" / "checkpoints"  # as if the run had stopped after epoch 1
    resumed.mkdir(parents=True)
    shutil.copy(tmp_path / "whole" / "checkpoints" / "epoch_1.pt", resumed)
    (resumed / "latest").write_text("epoch_1.pt\n")
    split = _train(tiny_work, tmp_path, "resumed", 2)
    for (name, a), b in zip(whole.model.state_dict().items(), split.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name

    assert export_upstream.main(["--exp_dir", str(tmp_path / "whole")]) == 0
    up = build_upstream(
        UpstreamConfig(name="eat", path=str(tmp_path / "whole" / "upstream.pt"), conf={"target_frames": 48})
    )
    student = whole.model.student.eval()
    wavs, lengths = torch.randn(2, 8000) * 0.1, torch.tensor([8000, 5000])
    with torch.no_grad():
        got, want = up.eval()(wavs, lengths)[0], student(wavs, lengths)[0]
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))


def test_pretraining_needs_eat_and_no_label_objectives(tiny_work: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pretrain.enabled: set embedder ssl and vq, mixup and mga off"):
        _train(tiny_work, tmp_path, "vq", 1, **{"vq.enabled": "true"})
