"""VQ dynamic clustering of clips without attribute labels (docs/method.md §1.7).

Clips whose attribute is ``noAttribute`` (DCASE 2020 throughout, some DCASE 2024/2025 machine
types) give the margin loss only coarse classes. Each such group of clips owns a codebook of K
cosine codes in embedding space; a clip's pseudo-attribute is its nearest code, which becomes a
*dynamic* margin-loss class appended after the static ones and the positive of the level-2
contrastive loss (``asdlib.losses.contrastive``).

Codebooks are keyed by an integer *key*: by default the machine index (``VQConfig.codebook_per =
"machine"``: one codebook per machine type, as the method describes it), or the clip's static
class id (``"class"``: machine × section × ``noAttribute``), an option that keeps the section
supervision in years where one machine type has several sections without attributes (2020). With
one section per machine type (2024, 2025) the two coincide. :func:`codebook_keys` computes every
training clip's key.

Life cycle: after ``warmup_epochs`` epochs, :meth:`VQClusterer.init_from` runs seeded spherical
k-means on embeddings of the training clips from a clean eval-mode pass (the trainer's
``clean_embeddings``, called by the VQ objective of ``asdlib.train.objectives``: no dropout, SpecAugment or random crops, so the codes describe the
embeddings the model gives, not one epoch's augmented and ever-changing ones); during training
:meth:`VQClusterer.update` moves codes by EMA (VQ-VAE style: decayed cluster sizes and embedding
sums, Laplace-smoothed) and restarts dead codes from random batch embeddings; at each later epoch
end ``init_from`` refreshes the codebooks by Lloyd iterations started from the current codes, so
code indices (and dynamic class ids) keep their meaning. All state lives in buffers, so it is saved
with ``state_dict``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from asdlib.config import VQConfig
from asdlib.data.dcase import NO_ATTRIBUTE

log = logging.getLogger(__name__)


def codebook_keys(
    attrs: Sequence[str], machines: Sequence[int], labels: Sequence[int], per: Literal["class", "machine"]
) -> list[int]:
    """Per training clip, the key of its codebook (-1 for clips with attribute labels)."""
    source = labels if per == "class" else machines
    return [int(k) if a == NO_ATTRIBUTE else -1 for a, k in zip(attrs, source, strict=True)]


def _fp32(t: Tensor) -> torch.autocast:
    """Autocast off for the EMA's matrix products (the trainer calls the VQ inside autocast):
    half-precision sums would round away the (1 - decay) updates and flip near-tie assignments."""
    return torch.autocast(t.device.type, enabled=False)


def _sample(weights: Tensor, generator: torch.Generator | None) -> int:
    """One index drawn proportionally to ``weights`` (uniformly when they are all zero)."""
    if float(weights.sum()) <= 0:
        weights = torch.ones_like(weights)
    return int(torch.multinomial(weights, 1, generator=generator))


def spherical_kmeans(
    x: Tensor, k: int, iters: int, generator: torch.Generator | None = None, init: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Cosine k-means on unit vectors ``x`` (N, D) -> (unit centroids (k, D), assignment (N,)).

    Seeds by k-means++ (squared chord distance) from ``generator`` unless ``init`` (k, D) is given.
    An empty cluster is re-seeded with the point farthest from its centroid, deterministically.
    """
    n = x.size(0)
    if init is None:
        chosen = [_sample(torch.ones(n, dtype=x.dtype), generator)]
        best = 2 - 2 * (x @ x[chosen[0]])
        for _ in range(1, k):
            chosen.append(_sample(best.clamp(min=0), generator))
            best = torch.minimum(best, 2 - 2 * (x @ x[chosen[-1]]))
        centroids = x[chosen].clone()
    else:
        centroids = F.normalize(init.to(x), dim=-1)
    assign = torch.full((n,), -1, dtype=torch.long)
    for _ in range(iters):
        sims = x @ centroids.T
        new_assign = sims.argmax(1)
        counts = torch.bincount(new_assign, minlength=k)
        sums = torch.zeros_like(centroids).index_add_(0, new_assign, x)
        reseed = bool((counts == 0).any()) and n > k
        if reseed:
            own = sims.gather(1, new_assign[:, None]).squeeze(1)
            for c in torch.nonzero(counts == 0).flatten().tolist():
                far = int(own.argmin())
                own[far] = float("inf")
                sums[c] = x[far]
        centroids = torch.where(sums.norm(dim=1, keepdim=True) > 0, F.normalize(sums, dim=-1), centroids)
        if not reseed and torch.equal(new_assign, assign):
            break
        assign = new_assign
    return centroids, (x @ centroids.T).argmax(1)


class VQCodebook(nn.Module):
    """K cosine codes updated by EMA (see module docstring); buffers only, no gradients.

    ``cluster_size`` (K,) and ``embed_sum`` (K, D) are the decayed assignment counts and sums of
    L2-normalised embeddings; ``codes`` = ``embed_sum`` / Laplace-smoothed ``cluster_size``.
    """

    def __init__(
        self, num_codes: int, dim: int, decay: float = 0.99, dead_threshold: float = 0.1, eps: float = 1e-5
    ) -> None:
        super().__init__()
        self.num_codes, self.decay, self.dead_threshold, self.eps = num_codes, decay, dead_threshold, eps
        self.register_buffer("codes", torch.zeros(num_codes, dim))
        self.register_buffer("cluster_size", torch.zeros(num_codes))
        self.register_buffer("embed_sum", torch.zeros(num_codes, dim))
        self.register_buffer("initialized", torch.tensor(False))
        #: dead codes restarted so far (a statistic, saved for the training log)
        self.register_buffer("restarts", torch.tensor(0, dtype=torch.long))

    def normalized_codes(self) -> Tensor:
        return F.normalize(self.codes, dim=-1)

    @torch.no_grad()
    def assign(self, emb: Tensor) -> Tensor:
        """Index of the nearest code (cosine) for each row of ``emb`` (N, D)."""
        with _fp32(emb):
            return (F.normalize(emb.float(), dim=-1) @ self.normalized_codes().T).argmax(1)

    @torch.no_grad()
    def init_kmeans(self, emb: Tensor, iters: int = 20, generator: torch.Generator | None = None) -> None:
        """k-means on ``emb`` (N, D): k-means++ seeding the first time, warm-started from the current
        codes afterwards (a refresh keeps code identities). The statistics enter the EMA with a
        total weight of one clip, so batch updates take over after ~1 / (1 - decay) clips."""
        x = F.normalize(emb.detach().float().cpu(), dim=-1)
        init = self.normalized_codes().cpu() if bool(self.initialized) else None
        centroids, assign = spherical_kmeans(x, self.num_codes, iters, generator, init)
        share = torch.bincount(assign, minlength=self.num_codes).float() / x.size(0)
        means = torch.zeros_like(centroids).index_add_(0, assign, x) / x.size(0)
        empty = share == 0
        means[empty] = centroids[empty] * self.eps  # keep the seed's direction for empty clusters
        self.cluster_size.copy_(share)
        self.embed_sum.copy_(means)
        self._recompute_codes()
        self.initialized.fill_(True)

    def _recompute_codes(self) -> None:
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.num_codes * self.eps) * total
        self.codes.copy_(self.embed_sum / smoothed.clamp(min=self.eps)[:, None])

    @torch.no_grad()
    def update(self, emb: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One EMA step on ``emb`` (N, D), then dead-code restart; returns the assignment used.

        Restarted codes jump to distinct random rows of ``emb`` (drawn from ``generator``, else
        the global torch RNG) and get the mean cluster size, so they are not dead at once again.
        """
        if not bool(self.initialized):
            raise RuntimeError("VQCodebook.update before init_kmeans: initialise codebooks after the warm-up epoch")
        x = F.normalize(emb.detach().float(), dim=-1)
        assign = self.assign(x)
        onehot = F.one_hot(assign, self.num_codes).to(x.dtype)
        self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        with _fp32(x):
            self.embed_sum.mul_(self.decay).add_(onehot.T @ x, alpha=1 - self.decay)
        self._recompute_codes()
        mean_size = self.cluster_size.mean()
        dead = torch.nonzero(self.cluster_size < self.dead_threshold * mean_size).flatten()
        if dead.numel():
            dead = dead[torch.argsort(self.cluster_size[dead], stable=True)][: x.size(0)]
            rows = torch.randperm(x.size(0), generator=generator)[: dead.numel()].to(x.device)
            self.cluster_size[dead] = mean_size
            self.embed_sum[dead] = x[rows] * mean_size
            self._recompute_codes()
            self.restarts += dead.numel()
        return assign


class VQClusterer(nn.Module):
    """One :class:`VQCodebook` per key (see module docstring) plus the dynamic-class bookkeeping.

    Dynamic class of (key, code) = ``num_static_classes + slot(key) * num_codes + code``, where
    slot is the key's rank among ``keys``; size the margin head with :attr:`num_classes`.
    """

    def __init__(self, keys: Sequence[int], dim: int, cfg: VQConfig, num_static_classes: int) -> None:
        super().__init__()
        self.keys = sorted(set(int(k) for k in keys))
        if any(k < 0 for k in self.keys):
            raise ValueError(f"codebook keys must be >= 0, got {self.keys}")
        self.cfg, self.num_static_classes = cfg, num_static_classes
        self.num_codes = cfg.num_codes
        self.codebooks = nn.ModuleDict(
            {str(k): VQCodebook(cfg.num_codes, dim, cfg.decay, cfg.dead_code_threshold) for k in self.keys}
        )
        slot = torch.full((max(self.keys, default=0) + 1,), -1, dtype=torch.long)
        slot[torch.tensor(self.keys, dtype=torch.long)] = torch.arange(len(self.keys))
        self.register_buffer("slot_of_key", slot, persistent=False)  # key -> slot, -1 = no codebook

    @property
    def num_dynamic_classes(self) -> int:
        return len(self.keys) * self.num_codes

    @property
    def num_classes(self) -> int:
        """Static + dynamic classes: the margin head's size when VQ is enabled."""
        return self.num_static_classes + self.num_dynamic_classes

    @property
    def initialized(self) -> bool:
        return any(bool(cb.initialized) for cb in self.codebooks.values())

    def _slots(self, keys: Tensor) -> Tensor:
        keys = keys.to(self.slot_of_key.device).long()
        size = self.slot_of_key.numel()
        return torch.where((keys >= 0) & (keys < size), self.slot_of_key[keys.clamp(0, size - 1)], -1)

    @torch.no_grad()
    def lookup(self, emb: Tensor, keys: Tensor) -> tuple[Tensor, Tensor]:
        """Each clip's codebook (B, K, D) unit codes (zeros without one) and its nearest code (B,)
        (-1 for clips whose key has no codebook, or whose codebook is not initialised yet)."""
        slots = self._slots(keys).to(emb.device)
        if not self.keys:
            return emb.new_zeros(emb.size(0), self.num_codes, emb.size(1)), torch.full_like(slots, -1)
        books = list(self.codebooks.values())
        table = torch.stack([cb.normalized_codes() for cb in books]).to(emb.device, torch.float32)
        ready = torch.stack([cb.initialized for cb in books]).to(emb.device)
        valid = (slots >= 0) & ready[slots.clamp(min=0)]
        codes = table[slots.clamp(min=0)] * valid[:, None, None]
        with _fp32(emb):
            sims = torch.einsum("bd,bkd->bk", F.normalize(emb.detach().float(), dim=-1), codes)
        return codes, torch.where(valid, sims.argmax(1), -1)

    def assign(self, emb: Tensor, keys: Tensor) -> Tensor:
        """Nearest code per clip (B,), -1 where the clip's key has no (initialised) codebook."""
        return self.lookup(emb, keys)[1]

    @torch.no_grad()
    def init_from(self, emb: Tensor, keys: Tensor, generator: torch.Generator | None = None) -> None:
        """(Re-)initialise every codebook by k-means on the rows of ``emb`` with its key."""
        emb, keys = emb.detach().float().cpu(), keys.cpu()
        for key in self.keys:
            rows = emb[keys == key]
            if rows.size(0) == 0:
                log.warning(
                    "VQ: no embeddings for codebook key %d; it stays %s",
                    key,
                    "as it was" if bool(self.codebooks[str(key)].initialized) else "uninitialised",
                )
                continue
            self.codebooks[str(key)].init_kmeans(rows, self.cfg.kmeans_iters, generator)
        log.info(
            "VQ: k-means on %d embeddings for %d codebooks of %d codes",
            int((keys >= 0).sum()),
            len(self.keys),
            self.num_codes,
        )

    @torch.no_grad()
    def update(self, emb: Tensor, keys: Tensor, generator: torch.Generator | None = None) -> None:
        """EMA step of each initialised codebook on its clips of the batch (training only)."""
        keys = keys.to(emb.device)
        for key in torch.unique(keys[keys >= 0]).tolist():
            book = self.codebooks[str(key)] if key in self.keys else None
            if book is not None and bool(book.initialized):
                book.update(emb[keys == key], generator)

    def dynamic_class(self, keys: Tensor, codes: Tensor) -> Tensor:
        """Dynamic class id of each (key, code) pair; -1 where code or key is -1."""
        slots = self._slots(keys).to(codes.device)
        ok = (slots >= 0) & (codes >= 0)
        return torch.where(ok, self.num_static_classes + slots * self.num_codes + codes, -1)

    def pseudo_labels(self, labels: Tensor, keys: Tensor, codes: Tensor) -> Tensor:
        """``labels`` with every clip that has a code replaced by its dynamic class."""
        dynamic = self.dynamic_class(keys, codes).to(labels.device)
        return torch.where(dynamic >= 0, dynamic, labels)
