"""Fine-tuning modes of an upstream: fully-connected LoRA (peft), full fine-tuning, frozen.

Fully-connected LoRA (docs/method.md §1.3) puts a low-rank adapter on every ``nn.Linear`` of every
selected transformer block (attention q/k/v/out and both feed-forward layers) and freezes the rest
of the backbone. Targets are found by leaf name inside ``upstream.blocks()``, so the same config
works for any upstream; peft wraps exactly those modules (``inject_adapter_in_model`` with their
full names), which keeps state-dict names plain (``...q_proj.base_layer.weight``,
``...q_proj.lora_A.default.weight``). Modules the trainer added to the upstream itself
(``block_adapters``) stay trainable in every mode.

A fused ``qkv`` Linear (EAT) gets one peft adapter for all three projections unless
``split_qkv``: then :class:`SplitQKVLoRA` adds three independent rank-r updates, one per third of
the output, so that "LoRA on q, k, v" means for EAT what it means for BEATs' separate q/k/v_proj.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import Tensor, nn

from asdlib.config import FinetuneConfig
from asdlib.models.upstream import Upstream

logger = logging.getLogger(__name__)

#: parameters under these upstream attributes are not part of the pre-trained backbone
_NON_BACKBONE_PREFIXES = ("block_adapters.",)


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


class SplitQKVLoRA(nn.Module):
    """A fused q/k/v Linear plus three independent low-rank updates, one per output third.

    ``out = base(x) + scaling * [B_q A_q x | B_k A_k x | B_v A_v x]``: the same as peft LoRA on
    three separate q/k/v Linear modules (each with its own dropout mask). ``lora_B`` starts at zero,
    ``lora_A`` as peft initialises it (Kaiming uniform, a = sqrt(5)). Names follow peft's
    (``base_layer``, ``lora_A``, ``lora_B``), so the trainer's "lora_" rules apply.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float) -> None:
        super().__init__()
        if base.out_features % 3:
            raise ValueError(
                f"finetune.split_qkv: a fused qkv Linear needs 3 equal output parts, got {base.out_features}"
            )
        self.base_layer = base
        self.scaling = alpha / rank
        third = base.out_features // 3
        self.lora_A = nn.Parameter(torch.empty(3, rank, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(3, third, rank))
        for a in self.lora_A:
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        # Identity at dropout 0, so no dropped-out input copy is kept for backward
        self.lora_dropout = nn.ModuleList(nn.Dropout(dropout) if dropout > 0 else nn.Identity() for _ in range(3))

    def forward(self, x: Tensor) -> Tensor:
        out = self.base_layer(x)
        a, b = self.lora_A.to(x.dtype), self.lora_B.to(x.dtype)
        parts = [drop(x) @ a[i].T @ b[i].T for i, drop in enumerate(self.lora_dropout)]
        return out + self.scaling * torch.cat(parts, dim=-1).to(out.dtype)


def _split_qkv(upstream: Upstream, targets: list[str], cfg: FinetuneConfig) -> list[str]:
    """Replace each target named ``qkv`` by a :class:`SplitQKVLoRA`; returns the other targets (for peft)."""
    fused = [t for t in targets if t.rsplit(".", 1)[-1] == "qkv"]
    if not fused:
        raise ValueError(
            "finetune.split_qkv: no fused 'qkv' Linear among the LoRA targets (EAT has one; "
            "BEATs and the s3prl models have separate q_proj/k_proj/v_proj already)"
        )
    alpha = cfg.rank if cfg.alpha is None else cfg.alpha
    for name in fused:
        parent_name, leaf = name.rsplit(".", 1)
        parent = upstream.get_submodule(parent_name)
        setattr(parent, leaf, SplitQKVLoRA(getattr(parent, leaf), cfg.rank, alpha, cfg.dropout))
    return [t for t in targets if t not in fused]


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
        from peft import (  # slow import (transformers): only for LoRA
            LoraConfig,
            inject_adapter_in_model,
        )

        targets = lora_targets(upstream, cfg)
        peft_targets = _split_qkv(upstream, targets, cfg) if cfg.split_qkv else targets
        # lora_dropout 0 makes peft use nn.Identity: no dropped-out copy of each input kept for backward
        config = LoraConfig(
            r=cfg.rank,
            lora_alpha=cfg.rank if cfg.alpha is None else cfg.alpha,
            lora_dropout=cfg.dropout,
            target_modules=peft_targets,
            bias="none",
        )
        if peft_targets:
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
            cfg.rank,
            config.lora_alpha,
            cfg.dropout,
            len(targets),
            ", ".join(leaves),
            _selected_blocks(upstream, cfg.layers),
        )
    trainable, total = count_parameters(upstream)
    logger.info("upstream fine-tuning mode %s: %d trainable / %d total parameters", cfg.mode, trainable, total)


def merge_lora(model: nn.Module) -> int:
    """Fold every LoRA adapter of ``model`` into its base weights, in place, and drop the adapters
    (peft's merge; :class:`SplitQKVLoRA` adds its three updates to its thirds): an exported model then
    has plain ``nn.Linear`` layers and the arithmetic of the merged weights. Returns how many merged."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    wrapped = [(n, m) for n, m in model.named_modules() if isinstance(m, BaseTunerLayer | SplitQKVLoRA)]
    for name, module in wrapped:
        if isinstance(module, SplitQKVLoRA):
            base = module.base_layer
            update = torch.cat([b @ a for a, b in zip(module.lora_A, module.lora_B)], dim=0)
            base.weight.data += module.scaling * update.to(base.weight.dtype)
        else:
            module.merge()
            base = module.get_base_layer()
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, base)
    return len(wrapped)
