"""Dual-level contrastive loss (docs/method.md §1.7), on L2-normalised embeddings.

* Level 1 (machine/section): supervised contrastive loss (SupCon, Khosla et al. 2020) where the
  positives of a clip are the other clips of the batch with the same machine and section.
* Level 2 (pseudo-attribute): InfoNCE between each clip of a VQ codebook and that codebook's codes,
  with its assigned code as the positive, plus the commitment term ``||sg(code) - e||^2``.

The codes come from :class:`asdlib.losses.vq.VQClusterer` (EMA buffers, no gradient): level 2
pulls embeddings towards their code, the EMA pulls codes towards their embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from asdlib.config import VQConfig


def _zero_like_graph(x: Tensor) -> Tensor:
    """A +0.0 scalar connected to ``x``'s graph (backward works; logs show 0, not -0)."""
    return x.new_zeros(()) + x.sum() * 0.0


def supcon_loss(emb: Tensor, group_labels: Tensor, tau: float = 0.1) -> Tensor:
    """SupCon ("L_out") over the batch; anchors without a positive are left out (0 if none has one).
    Float32 even under autocast: half-precision cosines / tau lose the differences the loss is about."""
    z = F.normalize(emb.float(), dim=-1)
    n = z.size(0)
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    with torch.autocast(z.device.type, enabled=False):
        logits = (z @ z.T / tau).masked_fill(eye, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (group_labels[:, None] == group_labels[None, :]) & ~eye
    num_pos = positives.sum(1)
    anchors = num_pos > 0
    if not bool(anchors.any()):
        return _zero_like_graph(z)
    per_anchor = -torch.where(positives, log_prob, torch.zeros_like(log_prob)).sum(1) / num_pos.clamp(min=1)
    return per_anchor[anchors].mean()


def code_infonce_loss(emb: Tensor, codes: Tensor, assigned: Tensor, tau: float = 0.1) -> Tensor:
    """InfoNCE of each embedding (N, D) against its codebook's unit codes (N, K, D); the positive
    is its assigned code (N,). Codes are treated as constants. Float32 even under autocast (see supcon_loss)."""
    with torch.autocast(emb.device.type, enabled=False):
        logits = torch.einsum("nd,nkd->nk", F.normalize(emb.float(), dim=-1), codes.detach().float()) / tau
    return F.cross_entropy(logits, assigned)


def commitment_loss(emb: Tensor, code_vectors: Tensor) -> Tensor:
    """Mean ``||sg(code) - e||^2`` between unit embeddings (N, D) and their unit codes (N, D)."""
    return (F.normalize(code_vectors.detach(), dim=-1) - F.normalize(emb, dim=-1)).pow(2).sum(-1).mean()


@dataclass
class DualLevelParts:
    """The weighted total and its unweighted parts (for logging)."""

    total: Tensor
    level1: Tensor
    level2: Tensor
    commit: Tensor


class DualLevelLoss(nn.Module):
    """``weight_level1·L_level1 + weight_level2·L_level2 + weight_commit·L_commit``; add it to the margin loss."""

    def __init__(self, cfg: VQConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(self, emb: Tensor, groups: Tensor, codes: Tensor, assigned: Tensor) -> DualLevelParts:
        """``emb`` (B, D); ``groups`` (B,) machine×section ids; ``codes`` (B, K, D) and ``assigned``
        (B,) from ``VQClusterer.lookup`` (-1 = clip without a codebook: no level-2/commit term)."""
        emb = emb.float()
        level1 = supcon_loss(emb, groups, self.cfg.tau)
        coded = assigned >= 0
        if bool(coded.any()):
            e, c, a = emb[coded], codes[coded], assigned[coded]
            level2 = code_infonce_loss(e, c, a, self.cfg.tau)
            commit = commitment_loss(e, c[torch.arange(a.numel(), device=a.device), a])
        else:
            level2 = commit = _zero_like_graph(emb)
        total = self.cfg.weight_level1 * level1 + self.cfg.weight_level2 * level2 + self.cfg.weight_commit * commit
        return DualLevelParts(total, level1, level2, commit)
