"""Training losses beyond the margin heads (``asdlib.models.heads``): VQ dynamic clustering of
unattributed clips and the dual-level contrastive loss (docs/method.md §1.7)."""

from asdlib.losses.contrastive import (
    DualLevelLoss,
    DualLevelParts,
    code_infonce_loss,
    commitment_loss,
    supcon_loss,
)
from asdlib.losses.vq import VQClusterer, VQCodebook, codebook_keys, spherical_kmeans

__all__ = [
    "DualLevelLoss",
    "DualLevelParts",
    "VQClusterer",
    "VQCodebook",
    "code_infonce_loss",
    "codebook_keys",
    "commitment_loss",
    "spherical_kmeans",
    "supcon_loss",
]
