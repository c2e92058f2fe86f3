"""Stage 3 with DCASE 2025's supplemental sets: clean machine clips (noAttribute, also for a machine
type with attributes) as a training set and noise-only clips as data.noise_sets; a noise set that is
missing or empty stops training with one line naming it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asdlib.bin import make_labels, train
from asdlib.config import load_train_config
from asdlib.data.datadir import DataDirError, make_utt_id, read_data_dir, write_data_dir
from asdlib.data.dcase import NO_ATTRIBUTE
from asdlib.train.trainer import Trainer

CONFIG = """\
embedder: ssl
seed: 0
upstream: {name: hubert, path: UPSTREAM}
finetune: {mode: lora, rank: 2}
mga: {enabled: true, bottleneck: 4}
vq: {enabled: true, num_codes: 2, kmeans_iters: 3}
model: {pooling_hidden: 8, embed_dim: 16}
optim: {epochs: 2, batch_size: 4, warmup_steps: 1}
data:
  crop_seconds: 0.5
  train_sets: [dev_train, dev_supplemental_machine]
  noise_sets: [NOISE]
  noise_db_range: [0, 10]
"""


@pytest.fixture(scope="module")
def data(tiny_work: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny_work's dev_train, a supplemental machine set of fan clips without attribute (fan has
    attributes) and a noise set of fan only (gearbox falls back to it), labelled by stage 2."""
    root = tmp_path_factory.mktemp("noise_training")
    utts = [
        dataclasses.replace(u, path=str((tiny_work / u.path).resolve()))
        for u in read_data_dir(tiny_work / "data" / "dev_train")
    ]
    write_data_dir(root / "dev_train", utts)
    fans = [u for u in utts if u.machine == "fan"][:4]
    write_data_dir(
        root / "dev_supplemental_machine",
        [
            dataclasses.replace(
                u, utt_id=make_utt_id(u.machine, u.section, f"supp_{i}"), attr=NO_ATTRIBUTE, domain="source"
            )
            for i, u in enumerate(fans)
        ],
    )
    noise = []
    for i in range(2):
        path = root / "wav" / f"noise_{i}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(str(path), np.random.default_rng(i).uniform(-0.3, 0.3, 12000).astype(np.float32), 16000)
        noise.append(
            dataclasses.replace(fans[0], utt_id=make_utt_id("fan", fans[0].section, f"noise_{i}"), path=str(path))
        )
    write_data_dir(root / "dev_supplemental_noise", noise)
    assert make_labels.main(["--train_sets", str(root / "dev_train"), str(root / "dev_supplemental_machine")]) == 0
    return root


def config(tiny_work: Path, tmp_path: Path, noise_set: str) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(CONFIG.replace("UPSTREAM", str(tiny_work / "hubert.pt")).replace("NOISE", noise_set))
    return path


def test_training_with_supplemental_sets_writes_a_model(tiny_work: Path, data: Path, tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    cfg = config(tiny_work, tmp_path, "dev_supplemental_noise")
    argv = ["--config", str(cfg), "--data_root", str(data), "--exp_dir", str(exp), "--device", "cpu"]
    assert train.main(argv) == 0
    model = torch.load(exp / "model.pt", map_location="cpu", weights_only=True)
    assert model["epoch"] == 2
    fan = next(u for u in read_data_dir(data / "dev_supplemental_machine"))
    assert f"fan-{fan.section}-{NO_ATTRIBUTE}" in model["classes"]  # a class of its own beside fan's attributes
    resolved = load_train_config(exp / "config.yaml")
    assert resolved.data.noise_sets == ["dev_supplemental_noise"]
    pools = Trainer(resolved, tmp_path / "again", data).dataset.noise.pools  # what the run mixed in
    assert {m for m, _ in pools} == {"fan", "gearbox"} and all(u.machine == "fan" for p in pools.values() for u in p)


@pytest.mark.parametrize("noise_set, what", [("nope", "not found: run stage 1"), ("empty", "no utterances")])
def test_a_missing_or_empty_noise_set_is_one_line(
    tiny_work: Path, data: Path, tmp_path: Path, noise_set: str, what: str
) -> None:
    empty = data / "empty"
    empty.mkdir(exist_ok=True)
    for name in ("wav.scp", "utt2machine", "utt2section", "utt2domain", "utt2label", "utt2attr", "utt2spk"):
        (empty / name).write_text("")
    with pytest.raises(DataDirError, match=f"^data.noise_sets {noise_set}: .*{what}") as info:
        Trainer(load_train_config(config(tiny_work, tmp_path, noise_set)), tmp_path / "exp", data)
    assert "\n" not in str(info.value) and str(info.value).endswith("or drop it from data.noise_sets")
