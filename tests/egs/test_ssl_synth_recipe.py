"""egs/ssl_synth end to end: the disjoint synthetic corpus (every family) -> EAT pre-training from
random init -> exp/pretrain/upstream.pt, which loads as ``upstream.name: eat``, and its loss curves;
then domain-adaptive pre-training continues from that upstream (``--init checkpoint``)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import mirror_recipe

from asdlib.config import UpstreamConfig
from asdlib.data.datadir import read_data_dir
from asdlib.models.upstream import build_upstream
from asdlib.synth.pretrain_corpus import MACHINES

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
# egs/ssl_synth/conf/pretrain.yaml, smaller and shorter
TINY = """\
base: {base}
upstream: {{conf: {{target_frames: 192}}}}
pretrain: {{clone_batch: 2, average_top_k_layers: 2, decoder_dim: 16, decoder_groups: 4, decoder_layers: 2}}
optim: {{epochs: 2, batch_size: 8, warmup_steps: 1}}
"""


def test_ssl_synth_recipe_pretrains_on_the_disjoint_corpus(tmp_path: Path) -> None:
    src = REPO / "egs" / "ssl_synth"
    recipe = mirror_recipe(src, tmp_path / "recipe", links=("run.sh", "ssl.sh", "utils", "cmd.sh", "local"))
    (recipe / "conf" / "pretrain.yaml").write_text(TINY.format(base=src / "conf" / "pretrain.yaml"))
    env = {k: v for k, v in os.environ.items() if k not in ("cmd_backend", "SSL_SYNTH")}
    run = [
        "./run.sh",
        "--local_data_opts",
        "--clips_per_machine 2",
        "--init_size",
        "layers=2 dim=16 ffn_dim=32 heads=2",
    ]
    proc = subprocess.run(run, cwd=recipe, capture_output=True, text=True, timeout=400, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    utts = read_data_dir(recipe / "data" / "train")
    assert {u.machine for u in utts} == {m for dev, eval_ in MACHINES.values() for m in dev + eval_}
    assert len(utts) == 2 * 20 and {u.label for u in utts} == {"normal"}
    exp = recipe / "exp" / "pretrain"
    assert (exp / "losses.png").read_bytes().startswith(b"\x89PNG")
    up = build_upstream(UpstreamConfig(name="eat", path=str(exp / "upstream.pt"), conf={"target_frames": 192}))
    assert (up.num_layers, up.hidden_size) == (3, 16)

    # +DAPT: the same objective continued from the exported upstream, on the data dir of stage 1
    dapt = [*run[:3], "--stage", "2", "--init", "checkpoint", "--tag", "dapt"]
    dapt += ["--train_args", f"upstream.path={exp / 'upstream.pt'} optim.epochs=1"]
    proc = subprocess.run(dapt, cwd=recipe, capture_output=True, text=True, timeout=400, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    start = torch.load(recipe / "exp" / "dapt" / "checkpoints" / "epoch_1.pt", weights_only=True)["model"]
    assert int(start["num_updates"]) == len(utts) // 8  # one epoch of updates, counted from zero
    cont = build_upstream(
        UpstreamConfig(name="eat", path=str(recipe / "exp" / "dapt" / "upstream.pt"), conf={"target_frames": 192})
    )
    before, after = up.state_dict(), cont.state_dict()
    assert before.keys() == after.keys() and any(not torch.equal(before[k], after[k]) for k in before)
    # it started from the pre-trained weights, not from a new random init: it moved less than that is away
    fresh = build_upstream(UpstreamConfig(name="eat", path=str(exp / "init"), conf={"target_frames": 192})).state_dict()
    key = "model.blocks.1.mlp.fc2.weight"
    assert (after[key] - before[key]).norm() < (after[key] - fresh[key]).norm()
