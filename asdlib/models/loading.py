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


def load_trained(exp_dir: Path, device: str = "cpu", model_file: Path | None = None) -> TrainedModel:
    """Load ``exp_dir/config.yaml`` and ``exp_dir/model.pt`` (stage 3 or a packed dir) in eval mode."""
    cfg_path, model_path = exp_dir / "config.yaml", model_file or exp_dir / "model.pt"
    if not model_path.is_file():
        raise FileNotFoundError(f"{model_path} not found: run stage 3 (training) for this experiment first")
    cfg = load_train_config(cfg_path)
    if cfg.upstream.path and not Path(cfg.upstream.path).is_absolute():
        cfg.upstream.path = str(exp_dir / cfg.upstream.path)  # packed dirs store it relative to themselves
    try:
        state = torch.load(model_path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{model_path}: unreadable model file ({e}); rerun stage 3") from e
    check_upstream_record(state.get("upstream"), cfg.upstream.path if cfg.embedder == "ssl" else "", model_path)
    model = build_model(cfg, len(state["machines"]))
    load_trainable_state(model, state["model"], str(model_path))
    if cfg.backend.uses_logmel:
        model = AppendLogMel(model, cfg.logmel, cfg.data.sample_rate)
    return TrainedModel(cfg, model.to(device).eval(), list(state["machines"]), list(state["classes"]))
