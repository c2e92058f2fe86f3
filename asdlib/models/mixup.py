"""Waveform mixup (docs/method.md §1.8, an option): convex mixes of clip pairs with soft labels.

Margin heads (ArcFace, AdaCos) take hard labels, so the loss of a mixed batch is the two-label
interpolation ``lam·L(y_a) + (1-lam)·L(y_b)`` (:meth:`Mixed.label_sets` for
:func:`asdlib.models.heads.weighted_labels_loss`), which equals the soft-label cross entropy for the
plain softmax and works with any head. ``groups`` (e.g. the machine index)
restricts partners to the same group, so a mixed clip still has one machine type for the
Machine-aware Group Adapter. Randomness comes from a ``torch.Generator`` for reproducibility.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy.special import betaincinv
from torch import Tensor


@dataclass
class Mixed:
    """A mixed batch: clip i = ``lam·x[i] + (1-lam)·x[perm[i]]``."""

    wavs: Tensor
    targets: Tensor  # soft labels (B, C)
    lengths: Tensor | None  # max of the two clips' lengths
    lam: float
    perm: Tensor  # (B,) partner of each clip

    def label_sets(self, labels: Tensor) -> list[tuple[float, Tensor]]:
        """The two weighted hard-label sets of the mix: ``[(lam, labels), (1-lam, labels[perm])]``."""
        return [(self.lam, labels), (1 - self.lam, labels[self.perm.to(labels.device)])]


def _partners(groups: Tensor, generator: torch.Generator | None) -> Tensor:
    """A random permutation that maps each clip to a clip of the same group (itself when alone)."""
    groups = groups.cpu()
    perm = torch.arange(groups.numel())
    for g in torch.unique(groups).tolist():
        idx = torch.nonzero(groups == g).flatten()
        perm[idx] = idx[torch.randperm(idx.numel(), generator=generator)]
    return perm


def mixup(
    wavs: Tensor,
    labels_onehot: Tensor,
    alpha: float,
    generator: torch.Generator | None = None,
    lengths: Tensor | None = None,
    groups: Tensor | None = None,
) -> Mixed:
    """Mix ``wavs`` (B, T) zero-padded and their one-hot/soft labels (B, C) with one lam per batch.

    lam is drawn as Beta(alpha, alpha) by inverse CDF of a uniform from ``generator`` (torch's
    Beta sampler takes no generator); partners are a random permutation, within ``groups`` if given.
    """
    if wavs.dim() != 2 or labels_onehot.dim() != 2 or wavs.size(0) != labels_onehot.size(0):
        raise ValueError(
            f"mixup expects wavs (B, T) and labels (B, C), got {tuple(wavs.shape)} and {tuple(labels_onehot.shape)}"
        )
    if alpha <= 0:
        raise ValueError(f"mixup alpha must be > 0, got {alpha}")
    u = float(torch.rand((), generator=generator))
    lam = float(betaincinv(alpha, alpha, u))
    if groups is None:
        perm = torch.randperm(wavs.size(0), generator=generator)
    else:
        perm = _partners(groups, generator)
    perm = perm.to(wavs.device)
    mixed_lengths = None if lengths is None else torch.maximum(lengths, lengths[perm.to(lengths.device)])
    return Mixed(
        lam * wavs + (1 - lam) * wavs[perm],
        lam * labels_onehot + (1 - lam) * labels_onehot[perm],
        mixed_lengths,
        lam,
        perm,
    )
