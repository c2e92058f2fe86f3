"""Mixed precision in CI: short trainings under bfloat16 autocast on CPU (``optim.amp_dtype: bfloat16``),
one with MGA + VQ, one with mixup + sub-cluster AdaCos; and the config rules of ``optim.amp``/``amp_dtype``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from asdlib.config import load_train_config
from asdlib.io.config import ConfigError
from asdlib.models.asd_model import trainable_state
from asdlib.train.trainer import Trainer, autocast_dtype

BASE = """\
embedder: ssl
seed: 0
upstream: {name: hubert, path: UPSTREAM}
finetune: {mode: lora, rank: 4}
model: {pooling_hidden: 16, embed_dim: 32}
data: {crop_seconds: 0.0}
"""
MGA_VQ = (
    BASE
    + """\
mga: {enabled: true, bottleneck: 8}
vq: {enabled: true, num_codes: 2, kmeans_iters: 3}
optim: {epochs: 1, batch_size: 4, warmup_steps: 1, amp_dtype: bfloat16}
"""
)
MIXUP_SUBCLUSTER = (
    BASE
    + """\
mixup: {enabled: true}
head: {kind: subcluster_adacos, conf: {sub_centers: 2}}
optim: {epochs: 1, batch_size: 4, warmup_steps: 1, amp_dtype: bfloat16}
"""
)


@pytest.fixture(scope="module")
def work(tiny_work: Path) -> Path:
    return tiny_work


def train_one_epoch_bf16(work: Path, name: str, config: str) -> Trainer:
    (work / f"{name}.yaml").write_text(config.replace("UPSTREAM", str(work / "hubert.pt")))
    trainer = Trainer(load_train_config(work / f"{name}.yaml"), work / "exp" / name, work / "data")
    assert trainer.amp_dtype == torch.bfloat16 and not trainer.scaler.is_enabled()
    seen: set[torch.dtype] = set()
    linears = [m for m in trainer.model.modules() if isinstance(m, nn.Linear)]
    hooks = [m.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype)) for m in linears]
    before = {k: v.clone() for k, v in trainable_state(trainer.model).items()}
    head = trainer.objectives["margin"].state_dict()["head"]
    head_before = {k: v.clone() for k, v in head.items()}
    loss, terms = trainer.train_epoch()
    for h in hooks:
        h.remove()
    assert torch.bfloat16 in seen, f"no Linear ran in bfloat16 (saw {seen})"
    assert torch.isfinite(torch.tensor([loss, *terms.values()])).all(), (loss, terms)
    after = trainable_state(trainer.model)
    assert all(torch.isfinite(v.float()).all() for v in after.values())
    assert all(v.dtype == before[k].dtype for k, v in after.items())  # weights stay float32
    assert any(not torch.equal(before[k], after[k]) for k in before), "no trainable weight changed"
    assert any(not torch.equal(head_before[k], v) for k, v in trainer.objectives["margin"].state_dict()["head"].items())
    return trainer


def test_bf16_autocast_training_with_mga_and_vq(work: Path) -> None:
    trainer = train_one_epoch_bf16(work, "mga_vq", MGA_VQ)
    state = trainable_state(trainer.model)
    assert any("down_weight" in k for k in state)  # MGA is trained
    assert list(trainer.objectives) == ["margin", "vq"]


def test_bf16_autocast_training_with_mixup_and_subcluster_adacos(work: Path) -> None:
    trainer = train_one_epoch_bf16(work, "mixup_sub", MIXUP_SUBCLUSTER)
    assert list(trainer.objectives) == ["margin", "mixup"] and trainer.cfg.head.kind == "subcluster_adacos"


@pytest.mark.parametrize(
    "amp, dtype, device, expected",
    [
        (True, "float16", "cpu", None),
        (True, "float16", "cuda", torch.float16),
        (False, "float16", "cuda", None),
        (True, "bfloat16", "cpu", torch.bfloat16),
        (False, "bfloat16", "cpu", None),
    ],
)
def test_autocast_dtype(
    monkeypatch: pytest.MonkeyPatch, amp: bool, dtype: str, device: str, expected: torch.dtype | None
) -> None:
    """``amp: true`` with the default float16 keeps its old meaning: fp16 autocast on CUDA, none on CPU."""
    from asdlib.config import OptimConfig

    assert autocast_dtype(OptimConfig(amp=amp, amp_dtype=dtype), torch.device(device)) == expected  # type: ignore[arg-type]


def test_amp_config_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(BASE.replace("UPSTREAM", "x.pt") + "optim: {amp: true}\n")
    loaded = load_train_config(cfg).optim
    assert loaded.amp is True and loaded.amp_dtype == "float16"  # old configs load unchanged
    cfg.write_text(BASE.replace("UPSTREAM", "x.pt") + "optim: {amp_dtype: bf16}\n")
    with pytest.raises(ConfigError) as e:
        load_train_config(cfg)
    assert "amp_dtype" in str(e.value) and "'bf16' is not one of ['float16', 'bfloat16']" in str(e.value)
    assert "\n" not in str(e.value)
