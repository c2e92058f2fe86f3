"""k-nearest-neighbour scoring on L2-normalised embeddings (method.md §1.9).

One memory bank of normal training embeddings per (machine, section), split by domain: the
anomaly score is the smallest mean cosine distance to the k nearest clips of either the source
or the target bank, which keeps the ~1 % target clips from being drowned by source clips.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from asdlib.data.datadir import Utt


def normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.sqrt(np.sum(x * x, axis=-1, keepdims=True)), 1e-12)


class KnnBackend:
    """Cosine-distance kNN per machine and section, with per-domain banks."""

    def __init__(self, k: int = 1, domain_wise: bool = True) -> None:
        self.k, self.domain_wise = k, domain_wise
        self.banks: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray]]] = {}

    def fit(self, utts: Sequence[Utt], embeddings: np.ndarray) -> "KnnBackend":
        groups: dict[tuple[str, str], dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        for i, u in enumerate(utts):
            groups[(u.machine, u.section)][u.domain if self.domain_wise else "all"].append(i)
        emb = normalize(np.asarray(embeddings, dtype=np.float64))
        ids = np.array([u.utt_id for u in utts])
        self.banks = {key: [(ids[idx], emb[idx]) for _, idx in sorted(doms.items())] for key, doms in groups.items()}
        return self

    def score(self, utts: Sequence[Utt], embeddings: np.ndarray, exclude_self: bool = False) -> np.ndarray:
        """Anomaly scores (higher = more anomalous). ``exclude_self`` leaves each clip's own
        entry (same utt-id) out of the bank: leave-one-out scores of training clips, used to fit
        decision thresholds."""
        emb = normalize(np.asarray(embeddings, dtype=np.float64))
        scores = np.empty(len(utts))
        by_group: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i, u in enumerate(utts):
            by_group[(u.machine, u.section)].append(i)
        for key, idx in by_group.items():
            if key not in self.banks:
                raise KeyError(f"no training clips for machine '{key[0]}' section '{key[1]}': the kNN bank needs that "
                               f"section's training data (check data.train_sets and the scored set)")
            per_domain = []
            for bank_ids, bank in self.banks[key]:
                # Elementwise products and numpy's own summation, no BLAS: BLAS kernels pick blocking
                # and code paths by batch size, alignment and threads, and a clip's score must not
                # depend on which clips share its scoring job (outputs identical for any nj).
                dist = 1.0 - np.stack([np.sum(bank * emb[i], axis=1) for i in idx])
                if exclude_self:
                    dist[np.array([u.utt_id for u in (utts[i] for i in idx)])[:, None] == bank_ids[None, :]] = np.inf
                nearest = np.sort(dist, axis=1)[:, : self.k]
                finite = np.isfinite(nearest)
                mean = np.where(finite, nearest, 0.0).sum(1) / np.maximum(finite.sum(1), 1)
                per_domain.append(np.where(finite.any(1), mean, np.inf))
            scores[idx] = np.min(np.stack(per_domain), axis=0)
        return scores
