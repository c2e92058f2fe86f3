"""egs/ssl_synth end to end: the disjoint synthetic corpus (every family) -> EAT pre-training from
random init -> exp/pretrain/upstream.pt, which loads as ``upstream.name: eat``, and its loss curves."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
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
    run = ["./run.sh", "--local_data_opts", "--clips_per_machine 2", "--init_size", "layers=2 dim=16 ffn_dim=32 heads=2"]
    proc = subprocess.run(run, cwd=recipe, capture_output=True, text=True, timeout=400, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    utts = read_data_dir(recipe / "data" / "train")
    assert {u.machine for u in utts} == {m for dev, eval_ in MACHINES.values() for m in dev + eval_}
    assert len(utts) == 2 * 20 and {u.label for u in utts} == {"normal"}
    exp = recipe / "exp" / "pretrain"
    assert (exp / "losses.png").read_bytes().startswith(b"\x89PNG")
    up = build_upstream(UpstreamConfig(name="eat", path=str(exp / "upstream.pt"), conf={"target_frames": 192}))
    assert (up.num_layers, up.hidden_size) == (3, 16)
