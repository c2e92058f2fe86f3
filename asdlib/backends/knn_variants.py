"""kNN back ends with transformed memory banks (``backend.kind``; docs/method.md §1.9).

Each changes only the banks of one (machine, section); scoring is :class:`KnnBackend`'s, so the
job-split independence of asdlib/backends/knn.py holds for all of them.

- ``knn_smote``: the target bank is oversampled with SMOTE (imbalanced-learn) to the size of the
  source bank, so the few target clips are not matched only at their exact positions. SMOTE needs
  two classes: source clips are the majority class, target clips the minority. SMOTE interpolates
  between a target clip and one of its ``k_neighbors`` nearest target clips, so it needs at least
  ``k_neighbors + 1`` of them: with fewer, ``k_neighbors`` is lowered to (target clips - 1); a bank
  of one target clip is kept as it is. Leave-one-out (``exclude_self``) removes a clip, not the
  synthetic clips made from it.
- ``kmeans``: the source bank is condensed to ``clusters`` k-means centroids (scikit-learn,
  fixed seed), which smooths dense source regions; the target bank is kept. Centroids carry no
  utt-id, so leave-one-out cannot remove a clip from them.
- ``knn_rescaled``: each distance to a bank clip is divided by that clip's own mean distance to its
  k nearest other clips of the same bank (local density), which puts the sparse target bank and the
  dense source bank on one scale. A bank of one clip takes the median of the section's other
  divisors (1 when there are none).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from imblearn.over_sampling import SMOTE
from sklearn.cluster import KMeans

from asdlib.backends.knn import DomainBank, KnnBackend, KnnSettings, export_knn, neighbour_distances
from asdlib.backends.portable import exports
from asdlib.registry import BACKENDS

Domains = dict[str, tuple[np.ndarray, np.ndarray]]


@dataclass
class KnnSmoteSettings:
    """``backend.conf`` of ``knn_smote`` (always domain-wise: it oversamples the target bank)."""

    k: int = 1
    smote_k: int = 5  # SMOTE k_neighbors; lowered to (target clips - 1) for smaller target banks
    seed: int = 0

    def __post_init__(self) -> None:
        if self.k < 1 or self.smote_k < 1:
            raise ValueError(f"k and smote_k must be >= 1, got {self.k} and {self.smote_k}")


@dataclass
class KmeansSettings:
    """``backend.conf`` of ``kmeans`` (always domain-wise: it condenses the source bank only)."""

    k: int = 1
    clusters: int = 16  # centroids per source bank (at most the bank's size)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.k < 1 or self.clusters < 1:
            raise ValueError(f"k and clusters must be >= 1, got {self.k} and {self.clusters}")


@BACKENDS.register("knn_smote", KnnSmoteSettings)
class KnnSmoteBackend(KnnBackend):
    def __init__(self, k: int = 1, smote_k: int = 5, seed: int = 0) -> None:
        super().__init__(k, domain_wise=True)
        self.smote_k, self.seed = smote_k, seed

    def make_banks(self, domains: Domains) -> list[DomainBank]:
        banks = {dom: DomainBank.of(ids, emb) for dom, (ids, emb) in domains.items()}
        if "source" in domains and "target" in domains:
            src, (tgt_ids, tgt) = domains["source"][1], domains["target"]
            if 2 <= len(tgt) < len(src):
                smote = SMOTE(k_neighbors=min(self.smote_k, len(tgt) - 1), random_state=self.seed)
                x, _ = smote.fit_resample(np.concatenate([src, tgt]), np.r_[np.zeros(len(src)), np.ones(len(tgt))])
                new = x[len(src) + len(tgt) :]  # imblearn appends the synthetic clips after the originals
                banks["target"] = DomainBank.of(np.r_[tgt_ids, np.full(len(new), "")], np.concatenate([tgt, new]))
        return list(banks.values())


@BACKENDS.register("kmeans", KmeansSettings)
class KmeansBackend(KnnBackend):
    def __init__(self, k: int = 1, clusters: int = 16, seed: int = 0) -> None:
        super().__init__(k, domain_wise=True)
        self.n_clusters, self.seed = clusters, seed

    def make_banks(self, domains: Domains) -> list[DomainBank]:
        banks = []
        for dom, (ids, emb) in domains.items():
            if dom == "source" and len(emb) > self.n_clusters:
                centres = KMeans(self.n_clusters, n_init=4, random_state=self.seed).fit(emb).cluster_centers_
                banks.append(DomainBank.of(np.full(self.n_clusters, ""), centres))
            else:
                banks.append(DomainBank.of(ids, emb))
        return banks


@BACKENDS.register("knn_rescaled", KnnSettings)
class KnnRescaledBackend(KnnBackend):
    def make_banks(self, domains: Domains) -> list[DomainBank]:
        banks = super().make_banks(domains)
        scales: list[torch.Tensor | None] = []
        for bank in banks:
            r = neighbour_distances(bank.emb, self.k)
            scales.append(torch.from_numpy(r.astype(np.float32)) if r is not None else None)
        known = [s for s in scales if s is not None]
        fallback = float(torch.cat(known).median()) if known else 1.0
        for bank, s in zip(banks, scales):
            bank.scale = s if s is not None else torch.full((len(bank.ids),), fallback)
        return banks


exports(KnnSmoteBackend, KmeansBackend, KnnRescaledBackend)(export_knn)  # new banks, the kNN's scoring
