"""Same seed and config, two runs on CPU: bit-identical model, embeddings and scores.

Each run is a fresh Python process (different PYTHONHASHSEED) that trains (stage 3), extracts
(stage 4) and scores (stage 5) through the CLIs' ``main`` functions, with a config that uses every
source of randomness of training: random crops, the balanced sampler, SpecAugment, dropout in
the upstream, LoRA dropout, the Machine-aware Group Adapter and VQ codebooks (seeded k-means,
EMA updates, dead-code restarts). What can differ on a GPU is documented in docs/reliability.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asdlib.bin import make_labels, make_random_upstream, prepare_dcase
from asdlib.synth.corpus import SynthConfig, generate_corpus

CONFIG = """\
embedder: ssl
seed: 3
upstream: {name: hubert, path: UPSTREAM}
finetune: {mode: lora, rank: 2, dropout: 0.1}
mga: {enabled: true, bottleneck: 4}
vq: {enabled: true, num_codes: 2, kmeans_iters: 3}
model: {pooling_hidden: 8, embed_dim: 16}
specaug: {enabled: true}
optim: {epochs: 2, batch_size: 4, warmup_steps: 1}
data: {crop_seconds: 0.5, train_sets: [dev_train]}
"""
# One process per run: stage 3, stage 4 for both sets, stage 5 for the test set.
RUN = """\
import sys
from pathlib import Path
from asdlib.bin import extract, score, train
config, data, exp = map(Path, sys.argv[1:])
assert train.main(["--config", str(config), "--data_root", str(data), "--exp_dir", str(exp), "--device", "cpu"]) == 0
for s in ("dev_train", "dev_test"):
    out = exp / "embed" / s
    assert extract.main(["--exp_dir", str(exp), "--data_dir", str(data / s), "--out_ark", str(out / "embeddings.ark"),
                         "--out_scp", str(out / "embeddings.scp"), "--device", "cpu"]) == 0
out = exp / "scores" / "dev_test"
assert score.main(["--exp_dir", str(exp), "--data_root", str(data), "--test_set", "dev_test",
                   "--out_ark", str(out / "scores.ark"), "--out_scp", str(out / "scores.scp")]) == 0
"""


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("determinism")
    corpus = root / "corpus"
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
    data = root / "data"
    assert (
        prepare_dcase.main(
            ["--year", "2024", "--root", str(corpus), "--data_dir", str(data), "--sets", "dev_train", "dev_test"]
        )
        == 0
    )
    assert make_labels.main(["--train_sets", str(data / "dev_train"), "--other_sets", str(data / "dev_test")]) == 0
    upstream = root / "hubert_tiny_random.pt"
    assert make_random_upstream.main(["--name", "hubert", "--out", str(upstream)]) == 0
    config = root / "train.yaml"
    config.write_text(CONFIG.replace("UPSTREAM", str(upstream)))
    return config, data


def run_pipeline(config: Path, data: Path, exp: Path, hash_seed: str) -> None:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", RUN, str(config), str(data), str(exp)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-6000:]


def test_two_cpu_runs_are_bit_identical(prepared: tuple[Path, Path], tmp_path: Path) -> None:
    config, data = prepared
    run_pipeline(config, data, tmp_path / "a", "1")
    run_pipeline(config, data, tmp_path / "b", "2")
    a, b = (torch.load(tmp_path / x / "model.pt", weights_only=True) for x in "ab")
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert (tmp_path / "a" / "model.pt").read_bytes() == (tmp_path / "b" / "model.pt").read_bytes()
    for rel in ("embed/dev_train/embeddings.ark", "embed/dev_test/embeddings.ark", "scores/dev_test/scores.ark"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    ckpt_a, ckpt_b = (torch.load(tmp_path / x / "checkpoints" / "epoch_2.pt", weights_only=True) for x in "ab")
    assert all(torch.equal(ckpt_a["vq"][k], ckpt_b["vq"][k]) for k in ckpt_a["vq"])  # VQ codebooks too
