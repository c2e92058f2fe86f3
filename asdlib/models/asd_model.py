"""The ASD embedding model: upstream -> weighted layer sum -> attentive stats pooling -> embedding."""

from __future__ import annotations

import logging

import torch
from torch import nn

from asdlib.config import TrainConfig
from asdlib.models.eat import EATUpstream
from asdlib.models.eat_pretrain import EATPretrainer
from asdlib.models.logmel import LogMelMean
from asdlib.models.lora import apply_finetune, count_parameters
from asdlib.models.mga import MachineContext, build_group_adapters
from asdlib.models.pooling import AttentiveStatsPooling, ClsPooling, WeightedLayerSum
from asdlib.models.specaug import SpecAugment
from asdlib.models.upstream import Upstream, build_upstream
from asdlib.utils import UserError

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError, UserError):
    """A model or training checkpoint that cannot be used (unreadable, or of another config); the
    message names the file and the fix."""


class ASDModel(nn.Module):
    """Maps (wavs, lengths, machine ids) to one embedding per clip."""

    def __init__(self, upstream: Upstream, cfg: TrainConfig, num_machines: int) -> None:
        super().__init__()
        self.upstream = upstream
        self.machine_context: MachineContext | None = None
        if cfg.mga.enabled:
            self.machine_context = MachineContext(num_machines)
            upstream.insert_block_adapters(build_group_adapters(upstream, cfg.mga, num_machines, self.machine_context))
        self.featurizer = WeightedLayerSum(upstream.num_layers, cfg.model.layers)
        self.pooling: AttentiveStatsPooling | ClsPooling
        if cfg.model.pooling == "cls":
            if getattr(upstream, "num_prefix_tokens", 0) < 1:
                raise ValueError(
                    f"model.pooling: cls needs an upstream with a CLS token (eat); {cfg.upstream.name} has none"
                )
            self.pooling = ClsPooling(upstream.hidden_size)
        else:
            self.pooling = AttentiveStatsPooling(upstream.hidden_size, cfg.model.pooling_hidden)
        if cfg.model.grad_checkpoint:
            upstream.checkpoint_blocks()
        self.proj = nn.Linear(self.pooling.out_dim, cfg.model.embed_dim)
        self.specaug = SpecAugment(cfg.specaug)
        upstream.feature_augment = self.specaug

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor, machines: torch.Tensor | None = None) -> torch.Tensor:
        if self.machine_context is None:
            hidden_states, frames = self.upstream(wavs, lengths)
        else:
            if machines is None:
                raise ValueError("mga.enabled: the model needs each clip's machine index (-1 = unseen type)")
            with self.machine_context.bind(machines):
                hidden_states, frames = self.upstream(wavs, lengths)
        return self.proj(self.pooling(self.featurizer(hidden_states), frames))


def build_model(cfg: TrainConfig, num_machines: int) -> nn.Module:
    """Build the configured embedder; for ``ssl`` this loads the upstream checkpoint.

    ``num_machines`` sizes the Machine-aware Group Adapter (one group per training machine type).
    """
    if cfg.embedder == "logmel":
        return LogMelMean(cfg.logmel, cfg.data.sample_rate)
    upstream = build_upstream(cfg.upstream)
    if cfg.pretrain.enabled:  # every upstream weight trained, no ASD head (docs/method.md §1.11)
        if not isinstance(upstream, EATUpstream):
            raise UserError(f"pretrain.enabled: needs upstream.name eat, got {cfg.upstream.name!r}")
        return EATPretrainer(upstream, cfg.pretrain)
    apply_finetune(upstream, cfg.finetune)
    model = ASDModel(upstream, cfg, num_machines)
    trainable, total = count_parameters(model)
    log.info(
        "ASD model: %d trainable / %d total parameters (%.2f%%), fine-tuning mode '%s'",
        trainable,
        total,
        100.0 * trainable / max(total, 1),
        cfg.finetune.mode,
    )
    return model


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Trainable parameters and buffers: with a frozen backbone, the part worth saving."""
    keep = {n for n, p in model.named_parameters() if p.requires_grad} | {n for n, _ in model.named_buffers()}
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k in keep}


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Load a :func:`trainable_state`; every saved key must exist with its shape and every trainable one be present."""
    expected = set(trainable_state(model))
    own = model.state_dict()
    unexpected = sorted(set(state) - set(own))
    missing = sorted(expected - set(state))
    reshaped = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in sorted(set(state) & set(own))
        if state[k].shape != own[k].shape
    ]
    if unexpected or missing or reshaped:
        raise CheckpointError(
            f"{where}: checkpoint does not match the model built from the config "
            f"(first missing keys: {missing[:5]}, first unexpected keys: {unexpected[:5]}, "
            f"first shape mismatches (checkpoint vs model): {reshaped[:5]}); "
            "was it trained with a different config?"
        )
    model.load_state_dict(state, strict=False)
