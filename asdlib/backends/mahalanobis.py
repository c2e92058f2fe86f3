"""Mahalanobis-distance back end (``backend.kind: mahalanobis``; docs/method.md §1.9).

Per machine, section and domain, the mean and a Ledoit-Wolf shrinkage covariance (scikit-learn) of
the L2-normalised training embeddings; a clip's score is its smallest Mahalanobis distance over the
domains. Shrinkage keeps the covariance invertible with tens of clips in 256 dimensions, but
not with a handful (with 2 clips Ledoit-Wolf can return the rank-1 sample covariance): a domain of
fewer than ``MIN_OWN_COVARIANCE`` clips (a DCASE target domain of 1-3 training clips) uses the
covariance of its whole section with its own mean (identity when the section has one clip). Distances are whitened products ``(x - mean) @ W`` with ``W = V diag(w)^-1/2``
from the covariance's eigendecomposition (eigenvalues floored at 1e-10 of the largest: embeddings of
a trained model can span fewer dimensions than they have, and shrinkage alone then leaves a covariance
too ill-conditioned to invert or factor), computed in float64 in the fixed row blocks of
asdlib/backends/knn.py, so they do not depend on the job split. Leave-one-out keeps the covariance
and leaves the clip out of the mean: its distance grows by n / (n - 1) (inf for a domain of one clip).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.covariance import LedoitWolf

from asdlib.backends.knn import (
    GroupKey,
    group_queries,
    group_training,
    normalize,
    row_blocks,
)
from asdlib.backends.portable import Arrays, exports
from asdlib.data.datadir import Utt
from asdlib.registry import BACKENDS

MIN_OWN_COVARIANCE = 10  # clips a domain needs for a covariance of its own


def _covariance(x: np.ndarray) -> np.ndarray:
    return LedoitWolf().fit(np.asarray(x, dtype=np.float64)).covariance_ if len(x) >= 2 else np.eye(x.shape[1])


def _whitening(cov: np.ndarray) -> np.ndarray:
    """``W`` with ``||(x - mean) @ W||`` the Mahalanobis distance under ``cov`` (see the module docstring)."""
    w, v = np.linalg.eigh(cov)
    return v / np.sqrt(np.maximum(w, w.max() * 1e-10))


@dataclass
class MahalanobisSettings:
    """``backend.conf`` of ``mahalanobis``: a model per domain (the minimum over them) or per section."""

    domain_wise: bool = True


@BACKENDS.register("mahalanobis", MahalanobisSettings)
class MahalanobisBackend:
    def __init__(self, domain_wise: bool = True) -> None:
        self.domain_wise = domain_wise
        # per group: (utt-ids, mean, whitening factor) per domain
        self.models: dict[GroupKey, list[tuple[set[str], np.ndarray, torch.Tensor]]] = {}

    def fit(self, utts: Sequence[Utt], embeddings: np.ndarray) -> MahalanobisBackend:
        self.models = {}
        for key, domains in group_training(utts, embeddings, self.domain_wise).items():
            pooled = _covariance(np.concatenate([emb for _, emb in domains.values()]))
            models = []
            for ids, emb in domains.values():
                cov = _covariance(emb) if len(emb) >= MIN_OWN_COVARIANCE else pooled
                whiten = _whitening(cov)
                models.append((set(ids), emb.mean(0), torch.from_numpy(np.ascontiguousarray(whiten))))
            self.models[key] = models
        return self

    def score(self, utts: Sequence[Utt], embeddings: np.ndarray, exclude_self: bool = False) -> np.ndarray:
        emb = normalize(np.asarray(embeddings, dtype=np.float64))
        scores = np.empty(len(utts))
        for key, idx in group_queries(utts, list(self.models)).items():
            per_domain = []
            for ids, mean, whiten in self.models[key]:
                centred = torch.from_numpy(emb[idx] - mean)
                dist = np.empty(len(idx))
                for rows, block in row_blocks(centred, [whiten.shape[1]]):
                    dist[rows] = torch.sqrt(((block @ whiten) ** 2).sum(1))[: len(rows)].numpy()
                if exclude_self:
                    own = np.array([utts[i].utt_id in ids for i in idx])
                    dist[own] = dist[own] * len(ids) / (len(ids) - 1) if len(ids) > 1 else np.inf
                per_domain.append(dist)
            scores[idx] = np.min(np.stack(per_domain), axis=0)
        return scores


@exports(MahalanobisBackend)
def export_mahalanobis(backend: MahalanobisBackend, arrays: Arrays) -> dict:
    """Each domain's mean and whitening factor per (machine, section), for ``reference.score_mahalanobis``."""
    return {
        "scorer": "mahalanobis",
        "groups": [
            {
                "machine": machine,
                "section": section,
                "domains": [
                    {"mean": arrays.add(mean), "whiten": arrays.add(whiten.numpy())} for _, mean, whiten in models
                ],
            }
            for (machine, section), models in sorted(backend.models.items())
        ],
    }
