"""Fine-tuning modes of an upstream: fully-connected LoRA (peft), full fine-tuning, frozen.

Fully-connected LoRA (docs/method.md §1.3) puts a low-rank adapter on every ``nn.Linear`` of every
selected transformer block (attention q/k/v/out and both feed-forward layers) and freezes the rest
of the backbone. Targets are found by leaf name inside ``upstream.blocks()``, so the same config
works for any upstream; peft wraps exactly those modules (``inject_adapter_in_model`` with their
full names), which keeps state-dict names plain (``...q_proj.base_layer.weight``,
``...q_proj.lora_A.default.weight``). Modules the trainer added to the upstream itself
(``block_adapters``) stay trainable in every mode.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from torch import nn

from asdlib.models.upstream import Upstream

logger = logging.getLogger(__name__)

#: parameters under these upstream attributes are not part of the pre-trained backbone
_NON_BACKBONE_PREFIXES = ("block_adapters.",)


@dataclass
class FinetuneConfig:
    """The ``finetune:`` section of a training config.

    ``alpha`` None means alpha = rank (scaling 1). ``target_modules`` None means every ``nn.Linear``
    leaf name found in the selected blocks. ``layers`` None means all blocks (0-based indices).
    """

    mode: Literal["lora", "full", "frozen"] = "lora"
    rank: int = 64
    alpha: float | None = None
    dropout: float = 0.05
    target_modules: list[str] | None = None
    layers: list[int] | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("lora", "full", "frozen"):
            raise ValueError(f"finetune.mode must be lora, full or frozen, got {self.mode!r}")
        if self.rank < 1:
            raise ValueError(f"finetune.rank must be >= 1, got {self.rank}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"finetune.dropout must be in [0, 1), got {self.dropout}")


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = trainable = 0
    for p in module.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total


def _selected_blocks(upstream: Upstream, layers: list[int] | None) -> list[int]:
    num = len(upstream.blocks())
    if layers is None:
        return list(range(num))
    bad = [i for i in layers if not 0 <= i < num]
    if bad:
        raise ValueError(f"finetune.layers {bad} out of range: the upstream has blocks 0..{num - 1}")
    return sorted(set(layers))


def lora_targets(upstream: Upstream, cfg: FinetuneConfig) -> list[str]:
    """Full names (relative to ``upstream``) of the ``nn.Linear`` modules LoRA wraps."""
    block_names = {id(block): name for name, block in upstream.named_modules()}
    blocks = upstream.blocks()
    linears: dict[str, list[str]] = {}
    for i in _selected_blocks(upstream, cfg.layers):
        prefix = block_names[id(blocks[i])]
        for name, module in blocks[i].named_modules():
            if isinstance(module, nn.Linear):
                linears.setdefault(name.rsplit(".", 1)[-1], []).append(f"{prefix}.{name}")
    wanted = list(linears) if cfg.target_modules is None else cfg.target_modules
    unknown = [t for t in wanted if t not in linears]
    if unknown:
        raise ValueError(
            f"finetune.target_modules {unknown} match no nn.Linear in the selected blocks; "
            f"available leaf names: {sorted(linears)}"
        )
    return sorted(full for leaf in wanted for full in linears[leaf])


def _backbone_parameters(upstream: Upstream) -> list[nn.Parameter]:
    return [p for n, p in upstream.named_parameters() if not n.startswith(_NON_BACKBONE_PREFIXES)]


def _added_parameters(upstream: Upstream) -> list[tuple[nn.Parameter, bool]]:
    """Parameters the trainer added (e.g. block adapters) with their requires_grad flags."""
    return [(p, p.requires_grad) for n, p in upstream.named_parameters() if n.startswith(_NON_BACKBONE_PREFIXES)]


def apply_finetune(upstream: Upstream, cfg: FinetuneConfig) -> None:
    """Set up ``upstream`` for fine-tuning mode ``cfg.mode`` in place (LoRA injection if lora)."""
    if any("lora_" in n for n, _ in upstream.named_parameters()):
        raise RuntimeError("this upstream already has LoRA adapters; apply_finetune must run once")
    backbone = _backbone_parameters(upstream)
    added = _added_parameters(upstream)
    if cfg.mode == "full":
        for p in backbone:
            p.requires_grad_(True)
    elif cfg.mode == "frozen":
        for p in backbone:
            p.requires_grad_(False)
    else:
        from peft import LoraConfig, inject_adapter_in_model  # slow import (transformers): only for LoRA

        targets = lora_targets(upstream, cfg)
        config = LoraConfig(
            r=cfg.rank,
            lora_alpha=cfg.rank if cfg.alpha is None else cfg.alpha,
            lora_dropout=cfg.dropout,
            target_modules=targets,
            bias="none",
        )
        inject_adapter_in_model(config, upstream)  # also freezes every non-LoRA parameter
        for p, flag in added:
            p.requires_grad_(flag)
        for p in backbone:
            p.requires_grad_(False)
        for n, p in upstream.named_parameters():
            if "lora_" in n:
                p.requires_grad_(True)
        leaves = sorted({t.rsplit(".", 1)[-1] for t in targets})
        logger.info(
            "LoRA r=%d alpha=%s dropout=%.2f on %d Linear modules (%s) in blocks %s",
            cfg.rank, config.lora_alpha, cfg.dropout, len(targets), ", ".join(leaves),
            _selected_blocks(upstream, cfg.layers),
        )
    trainable, total = count_parameters(upstream)
    logger.info("upstream fine-tuning mode %s: %d trainable / %d total parameters", cfg.mode, trainable, total)
