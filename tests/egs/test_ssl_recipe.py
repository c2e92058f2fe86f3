"""egs/ssl_custom through egs/TEMPLATE/ssl.sh: a corpus of any rate and channels -> data dirs ->
EAT pre-training from random init -> exp/<tag>/upstream.pt, which loads as ``upstream.name: eat``;
a rerun resumes (nothing left to train) and a bad --init is one error line."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import mirror_recipe

from asdlib.config import UpstreamConfig
from asdlib.models.upstream import build_upstream

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TINY = """\
embedder: ssl
seed: 0
upstream: {name: eat, path: unused_with_init_random, conf: {target_frames: 48}}
finetune: {mode: full}
pretrain: {enabled: true, clone_batch: 2, average_top_k_layers: 2, decoder_dim: 16, decoder_groups: 4, decoder_layers: 2}
optim: {epochs: 2, batch_size: 4, warmup_steps: 1, amp: false}
data: {crop_seconds: 0.5, resample: true, channel: mean}
"""


def test_ssl_recipe_makes_a_loadable_upstream(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for machine, sr, stereo in (("pump", 44100, True), ("fan", 16000, False)):
        (tmp_path / "corpus" / machine / "train").mkdir(parents=True)
        for i in range(4):
            x = (0.1 * rng.standard_normal(sr)).astype(np.float32)
            sf.write(tmp_path / "corpus" / machine / "train" / f"{i}.wav", np.stack([x, x], 1) if stereo else x, sr)
    recipe = mirror_recipe(
        REPO / "egs" / "ssl_custom", tmp_path / "recipe", links=("run.sh", "ssl.sh", "utils", "cmd.sh")
    )
    (recipe / "conf" / "pretrain.yaml").write_text(TINY)
    env = {k: v for k, v in os.environ.items() if k != "cmd_backend"}
    run = ["./run.sh", "--corpus", str(tmp_path / "corpus"), "--init_size", "layers=2 dim=16 ffn_dim=32 heads=2"]
    proc = subprocess.run(run, cwd=recipe, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    exp = recipe / "exp" / "pretrain"
    record = json.loads((exp / "train_losses.json").read_text())
    assert [set(r["terms"]) for r in record] == [{"frame", "utterance"}] * 2
    up = build_upstream(UpstreamConfig(name="eat", path=str(exp / "upstream.pt"), conf={"target_frames": 48}))
    assert (up.num_layers, up.hidden_size) == (3, 16)
    saved = torch.load(exp / "model.pt", weights_only=True)["model"]
    assert torch.equal(up.state_dict()["model.blocks.1.mlp.fc2.weight"], saved["student.model.blocks.1.mlp.fc2.weight"])

    proc = subprocess.run([*run, "--stage", "2"], cwd=recipe, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0 and "resumed from" in proc.stderr + (exp / "train.log").read_text(), proc.stderr
    proc = subprocess.run([*run, "--init", "bogus"], cwd=recipe, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 1 and "--init must be random or checkpoint, got 'bogus'" in proc.stderr
