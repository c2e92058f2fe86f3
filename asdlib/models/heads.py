"""Margin-based classification heads on L2-normalised embeddings (docs/method.md §1.6)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from asdlib.config import HeadConfig
from asdlib.registry import HEADS


def gather_ranks(t: torch.Tensor) -> torch.Tensor:
    """``t`` of every DDP rank, concatenated in rank order (``t`` itself without DDP).

    Why: a statistic of the batch (the AdaCos scale) must come from the global batch, as with one
    process; from each rank's shard the ranks' buffers drift apart, and only rank 0's is saved.
    Gathering the values (not all-reducing a result) makes the computation identical on all ranks.
    """
    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return t
    out = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(out, t.contiguous())
    return torch.cat(out)


def weighted_labels_loss(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    emb: torch.Tensor,
    targets: Sequence[tuple[float, torch.Tensor]],
) -> torch.Tensor:
    """``Σ w·loss_fn(emb, y)`` over weighted hard-label sets, in order: how a hard-label margin head
    takes soft targets (mixup's two sets, ``asdlib.models.mixup.Mixed.label_sets``)."""
    total: torch.Tensor | None = None
    for weight, labels in targets:
        term = weight * loss_fn(emb, labels)
        total = term if total is None else total + term
    if total is None:
        raise ValueError("weighted_labels_loss needs at least one label set")
    return total


class _CosineHead(nn.Module):
    """Holds one or more unit-norm centres per class; returns per-class cosine logits."""

    def __init__(self, emb_dim: int, num_classes: int, sub_centers: int = 1) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.sub_centers = sub_centers
        self.weight = nn.Parameter(torch.empty(num_classes * sub_centers, emb_dim))
        nn.init.xavier_uniform_(self.weight)

    def cosine(self, emb: torch.Tensor) -> torch.Tensor:
        """float32 even under autocast: half precision rounds a cosine near 1 to exactly 1, where the
        slope of acos (ArcFace) is infinite and the gradients turn into NaN."""
        with torch.autocast(emb.device.type, enabled=False):
            cos = F.linear(F.normalize(emb.float(), dim=-1), F.normalize(self.weight.float(), dim=-1))
        return cos.view(-1, self.num_classes, self.sub_centers)


@dataclass
class ArcFaceSettings:
    """``head.conf`` of ``arcface``: the logit scale s and the additive angular margin m."""

    scale: float = 30.0
    margin: float = 0.2


@HEADS.register("arcface", ArcFaceSettings)
class ArcFace(_CosineHead):
    """Additive angular margin (Deng et al. 2019): logit s*cos(theta + m) for the true class."""

    def __init__(self, emb_dim: int, num_classes: int, scale: float = 30.0, margin: float = 0.2) -> None:
        super().__init__(emb_dim, num_classes)
        self.scale, self.margin = scale, margin

    @classmethod
    def from_config(cls, cfg: HeadConfig, emb_dim: int, num_classes: int) -> ArcFace:
        return cls(emb_dim, num_classes, cfg.conf.scale, cfg.conf.margin)

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = self.cosine(emb).squeeze(-1).clamp(-1 + 1e-7, 1 - 1e-7)
        target = torch.cos(torch.acos(cos) + self.margin)
        onehot = F.one_hot(labels, self.num_classes).to(cos.dtype)
        return F.cross_entropy(self.scale * (onehot * target + (1 - onehot) * cos), labels)


@HEADS.register("adacos")
class AdaCos(_CosineHead):
    """AdaCos (Zhang et al. 2019): no margin, the scale adapts to the batch; with sub-centres
    and a soft-max over them it is sub-cluster AdaCos (Wilkinghoff 2021)."""

    def __init__(self, emb_dim: int, num_classes: int, sub_centers: int = 1) -> None:
        super().__init__(emb_dim, num_classes, sub_centers)
        self.register_buffer("scale", torch.tensor(math.sqrt(2) * math.log(max(num_classes * sub_centers - 1, 2))))

    @classmethod
    def from_config(cls, cfg: HeadConfig, emb_dim: int, num_classes: int) -> AdaCos:
        return cls(emb_dim, num_classes, 1)

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = self.cosine(emb).clamp(-1 + 1e-7, 1 - 1e-7)
        if self.training:
            with torch.no_grad():
                logits = self.scale * cos
                onehot = F.one_hot(labels, self.num_classes).to(cos.dtype).unsqueeze(-1).expand_as(cos)
                b_sum = torch.where(onehot.bool(), torch.zeros_like(logits), logits.exp()).sum((1, 2))
                b_avg = gather_ranks(b_sum).mean()  # over the global batch under DDP (equal shards)
                theta_med = gather_ranks(torch.acos(cos[onehot.bool()])).median()
                self.scale.copy_(torch.log(b_avg.clamp(min=1e-12)) / torch.cos(torch.clamp(theta_med, max=math.pi / 4)))
        logits = torch.logsumexp(
            self.scale.clone() * cos, dim=-1
        )  # clone: the scale may update in place later in the step (mixup calls the head twice)
        return F.cross_entropy(logits, labels)


@dataclass
class SubclusterAdaCosSettings:
    """``head.conf`` of ``subcluster_adacos``: centres per class."""

    sub_centers: int = 4

    def __post_init__(self) -> None:
        if self.sub_centers < 1:
            raise ValueError(f"sub_centers must be >= 1, got {self.sub_centers}")


@HEADS.register("subcluster_adacos", SubclusterAdaCosSettings)
class SubclusterAdaCos(AdaCos):
    """Sub-cluster AdaCos: AdaCos with ``head.conf.sub_centers`` centres per class (same parameters and buffers)."""

    @classmethod
    def from_config(cls, cfg: HeadConfig, emb_dim: int, num_classes: int) -> SubclusterAdaCos:
        return cls(emb_dim, num_classes, cfg.conf.sub_centers)


def build_head(cfg: HeadConfig, emb_dim: int, num_classes: int) -> nn.Module:
    """The margin head named by ``cfg.kind`` (a name in :data:`HEADS`)."""
    return HEADS.get(cfg.kind).obj.from_config(cfg, emb_dim, num_classes)
