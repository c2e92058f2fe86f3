"""Rebuild a trained embedder from its experiment directory (config.yaml + model.pt)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from asdlib.config import TrainConfig, load_train_config
from asdlib.models.asd_model import CheckpointError, build_model, load_trainable_state
from asdlib.models.logmel import AppendLogMel
from asdlib.models.upstream_files import check_upstream_record


@dataclass
class TrainedModel:
    cfg: TrainConfig
    model: nn.Module
    machines: list[str]
    classes: list[str]


def load_trained(
    exp_dir: Path,
    device: str = "cpu",
    model_file: Path | None = None,
    cfg: TrainConfig | None = None,
    upstream_sha256: str | None = None,
) -> TrainedModel:
    """Load ``exp_dir/config.yaml`` and ``exp_dir/model.pt`` (stage 3 or a packed dir) in eval mode.

    A packed model passes its checked ``cfg`` (upstream path already inside the pack) and the
    upstream's ``upstream_sha256`` from its verified manifest, so the upstream is not hashed again and
    no ``.sha256cache`` is written into the pack.
    """
    cfg_path, model_path = exp_dir / "config.yaml", model_file or exp_dir / "model.pt"
    if not model_path.is_file():
        raise FileNotFoundError(f"{model_path} not found: run stage 3 (training) for this experiment first")
    if cfg is None:
        cfg = load_train_config(cfg_path)
        if cfg.upstream.path and not Path(cfg.upstream.path).is_absolute():
            cfg.upstream.path = str(exp_dir / cfg.upstream.path)
    try:
        state = torch.load(model_path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{model_path}: unreadable model file ({e}); rerun stage 3") from e
    if not isinstance(state, dict) or not {"model", "machines", "classes"} <= set(state):
        raise CheckpointError(f"{model_path}: not a model file (no model, machines, classes); rerun stage 3")
    record = state.get("upstream")
    if upstream_sha256 is not None:
        if isinstance(record, dict) and record.get("sha256") and record["sha256"] != upstream_sha256:
            raise CheckpointError(f"{model_path} was trained on another upstream than {cfg.upstream.path}; repack")
    else:
        check_upstream_record(record, cfg.upstream.path if cfg.embedder == "ssl" else "", model_path)
    model = build_model(cfg, len(state["machines"]))
    load_trainable_state(model, state["model"], str(model_path))
    if cfg.backend.uses_logmel:
        model = AppendLogMel(model, cfg.logmel, cfg.data.sample_rate)
    return TrainedModel(cfg, model.to(device).eval(), list(state["machines"]), list(state["classes"]))
