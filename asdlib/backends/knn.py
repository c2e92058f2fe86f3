"""k-nearest-neighbour scoring on L2-normalised embeddings (docs/method.md §1.9).

One memory bank of normal training embeddings per (machine, section), split by domain: the
anomaly score is the smallest mean cosine distance to the k nearest clips of either the source
or the target bank, which keeps the ~1 % target clips from being drowned by source clips.

Distances are computed in float32 with torch's matrix product (BLAS) and ``torch.topk``, in a
layout that makes a clip's score independent of the job split (``nj``) and of which other clips
share its job (docs/design.md §5): queries go through :func:`row_blocks` in blocks of exactly
``QUERY_BLOCK`` rows (the last one zero-padded), and the bank in fixed chunks of ``BANK_CHUNK``
rows, so every product has the same shapes whatever the job holds. A BLAS kernel chooses its code
path by shape, so a 1-row product can differ in the last bit from the same row inside a 256-row
block; with fixed shapes, what remains is whether a row's result depends on its position or on its
neighbours within the block. :func:`rows_independent` checks that once per shape on the running
CPU (on the AMD EPYC / MKL of BENCHMARKS.md it holds); where it does not, each query gets a
block of its own (row 0 of a zero block), which is slower but exact. Bank chunks are fixed per
fitted bank, so chunk-wise top-k then a merge top-k is the same in every job.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from asdlib.backends.base import BackendError
from asdlib.backends.portable import Arrays, exports
from asdlib.data.datadir import Utt
from asdlib.registry import BACKENDS

QUERY_BLOCK = 256  # rows per matrix product; a job-independent constant (never derived from the job)
BANK_CHUNK = 65536  # bank rows per product: bounds memory at QUERY_BLOCK x BANK_CHUNK floats

GroupKey = tuple[str, str]


def normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.sqrt(np.sum(x * x, axis=-1, keepdims=True)), 1e-12)


@functools.cache
def rows_independent(dim: int, cols: int, dtype: torch.dtype = torch.float32) -> bool:
    """Whether every row of ``(QUERY_BLOCK x dim) @ (dim x cols)`` is bit-identical wherever it sits in
    the block and whatever its neighbours (checked once per shape on random data with the rows permuted)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(QUERY_BLOCK, dim, generator=gen, dtype=dtype)
    a[QUERY_BLOCK // 2 :] = 0  # padded blocks end in zero rows
    b = torch.randn(dim, cols, generator=gen, dtype=dtype)
    perm = torch.randperm(QUERY_BLOCK, generator=gen)
    return torch.equal(a[perm] @ b, (a @ b)[perm])


def row_blocks(x: torch.Tensor, cols: Sequence[int]) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Yield ``(row indices, padded block)`` with blocks of exactly ``QUERY_BLOCK`` rows, for products
    with ``(dim x c)`` matrices, ``c`` in ``cols``; one row per block where the CPU's kernel is not
    row-independent for one of those shapes."""
    step = QUERY_BLOCK if all(rows_independent(x.shape[1], c, x.dtype) for c in set(cols)) else 1
    for start in range(0, x.shape[0], step):
        rows = np.arange(start, min(start + step, x.shape[0]))
        block = x.new_zeros(QUERY_BLOCK, x.shape[1])
        block[: len(rows)] = x[rows]
        yield rows, block


def nearest_distances(
    queries: torch.Tensor,
    bank: torch.Tensor,
    k: int,
    exclude: np.ndarray | None = None,
    scale: torch.Tensor | None = None,
) -> np.ndarray:
    """The ``min(k, len(bank))`` smallest cosine distances ``1 - q.b`` (each divided by ``scale[b]``
    when given) of every query, ascending, float64; ``exclude[i]`` (a bank row, or -1) is left out
    (as ``inf``). Inputs are float32 and L2-normalised."""
    return nearest(queries, bank, k, exclude, scale)[0]


def nearest(
    queries: torch.Tensor,
    bank: torch.Tensor,
    k: int,
    exclude: np.ndarray | None = None,
    scale: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`nearest_distances` and the bank rows they belong to (int64, same shape)."""
    n = bank.shape[0]
    kk = min(k, n)
    out = np.empty((queries.shape[0], kk))
    out_idx = np.empty((queries.shape[0], kk), dtype=np.int64)
    chunks = [(s, bank[s : s + BANK_CHUNK].T.contiguous()) for s in range(0, n, BANK_CHUNK)]
    for rows, block in row_blocks(queries, [c.shape[1] for _, c in chunks]):
        values, indices = [], []
        for start, chunk in chunks:
            sims = block @ chunk
            if exclude is not None:
                own = exclude[rows] - start
                hit = (own >= 0) & (own < chunk.shape[1])
                sims[torch.from_numpy(np.nonzero(hit)[0]), torch.from_numpy(own[hit])] = -torch.inf
            if scale is None:  # top-k of the similarities; 1 - s only on the k survivors
                top = torch.topk(sims, min(kk, chunk.shape[1]), dim=1)
                values.append(1.0 - top.values)
            else:
                dist = (1.0 - sims) / scale[start : start + chunk.shape[1]]
                top = torch.topk(dist, min(kk, chunk.shape[1]), dim=1, largest=False)
                values.append(top.values)
            indices.append(top.indices + start)
        best, where = values[0], indices[0]
        if len(values) > 1:
            top = torch.topk(torch.cat(values, 1), kk, dim=1, largest=False)
            best, where = top.values, torch.cat(indices, 1).gather(1, top.indices)
        ordered = best.sort(dim=1)
        out[rows] = ordered.values[: len(rows)].double().numpy()
        out_idx[rows] = where.gather(1, ordered.indices)[: len(rows)].numpy()
    return out, out_idx


def mean_finite(nearest: np.ndarray) -> np.ndarray:
    """Mean of the finite entries per row (``inf`` where none: a bank emptied by leave-one-out)."""
    finite = np.isfinite(nearest)
    mean = np.where(finite, nearest, 0.0).sum(1) / np.maximum(finite.sum(1), 1)
    return np.where(finite.any(1), mean, np.inf)


def neighbour_distances(emb: torch.Tensor, k: int) -> np.ndarray | None:
    """Each bank clip's mean distance to its k nearest other clips of the bank, floored at 1e-6 (the
    local density of ``knn_rescaled`` and ``knn_density``); None for a bank of one clip."""
    n = emb.shape[0]
    if n < 2:
        return None
    return np.maximum(mean_finite(nearest_distances(emb, emb, k, exclude=np.arange(n))), 1e-6)


def group_queries(utts: Sequence[Utt], known: Sequence[GroupKey]) -> dict[GroupKey, list[int]]:
    """Indices of ``utts`` per (machine, section); fails on a section without a bank."""
    by_group: dict[GroupKey, list[int]] = defaultdict(list)
    for i, u in enumerate(utts):
        by_group[(u.machine, u.section)].append(i)
    unknown = sorted(set(by_group) - set(known))
    if unknown:
        banks = ", ".join(f"{m}/{s}" for m, s in sorted(known)) or "none"
        raise BackendError(
            f"no training clips for machine '{unknown[0][0]}' section '{unknown[0][1]}' "
            f"({len(unknown)} unknown machine/sections): the memory banks hold {banks}; "
            f"score only those, or add the section's training set to data.train_sets"
        )
    return by_group


def group_training(
    utts: Sequence[Utt], embeddings: np.ndarray, domain_wise: bool
) -> dict[GroupKey, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Training clips per (machine, section) and domain ("all" when not domain-wise) as (utt-ids,
    L2-normalised float64 embeddings), sorted by utt-id so that the fit does not depend on input order."""
    groups: dict[GroupKey, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i in sorted(range(len(utts)), key=lambda i: utts[i].utt_id):
        groups[(utts[i].machine, utts[i].section)][utts[i].domain if domain_wise else "all"].append(i)
    emb = normalize(np.asarray(embeddings, dtype=np.float64))
    ids = np.array([u.utt_id for u in utts])
    return {key: {dom: (ids[idx], emb[idx]) for dom, idx in sorted(doms.items())} for key, doms in groups.items()}


@dataclass
class DomainBank:
    """One domain's bank: entry ids ("" for synthetic entries), float32 L2-normalised rows, and the
    per-entry distance divisors of ``knn_rescaled`` (None: plain distances)."""

    ids: np.ndarray
    emb: torch.Tensor
    scale: torch.Tensor | None = None

    @classmethod
    def of(cls, ids: np.ndarray, emb: np.ndarray) -> DomainBank:
        return cls(ids, torch.from_numpy(normalize(emb).astype(np.float32)))


@dataclass
class KnnSettings:
    """``backend.conf`` of ``knn`` (and ``knn_rescaled``): ``k`` nearest clips, and separate source and
    target banks (``domain_wise``, the minimum over them) or one bank per section."""

    k: int = 1
    domain_wise: bool = True

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")


@BACKENDS.register("knn", KnnSettings)
class KnnBackend:
    """Cosine-distance kNN per machine and section, with per-domain banks. Subclasses change the
    banks (:meth:`make_banks`), never the scoring."""

    def __init__(self, k: int = 1, domain_wise: bool = True) -> None:
        self.k, self.domain_wise = k, domain_wise
        self.banks: dict[GroupKey, list[DomainBank]] = {}

    def make_banks(self, domains: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[DomainBank]:
        """The banks of one (machine, section) from its training clips per domain."""
        return [DomainBank.of(ids, emb) for ids, emb in domains.values()]

    def fit(self, utts: Sequence[Utt], embeddings: np.ndarray) -> KnnBackend:
        groups = group_training(utts, embeddings, self.domain_wise)
        self.banks = {key: self.make_banks(domains) for key, domains in groups.items()}
        return self

    def score(self, utts: Sequence[Utt], embeddings: np.ndarray, exclude_self: bool = False) -> np.ndarray:
        """Anomaly scores (higher = more anomalous). ``exclude_self`` leaves each clip's own
        entry (same utt-id) out of the bank: leave-one-out scores of training clips, used to fit
        decision thresholds."""
        query = torch.from_numpy(normalize(np.asarray(embeddings, dtype=np.float64)).astype(np.float32))
        scores = np.empty(len(utts))
        for key, idx in group_queries(utts, list(self.banks)).items():
            rows = torch.from_numpy(np.array(idx))
            per_domain = []
            for bank in self.banks[key]:
                exclude = None
                if exclude_self:
                    pos = {u: i for i, u in enumerate(bank.ids) if u}
                    exclude = np.array([pos.get(utts[i].utt_id, -1) for i in idx])
                per_domain.append(self.bank_scores(bank, query[rows], exclude))
            scores[idx] = self.combine(key, query[rows], np.stack(per_domain))
        return scores

    def combine(self, key: GroupKey, query: torch.Tensor, per_domain: np.ndarray) -> np.ndarray:
        """A query's score from its score against each bank of section ``key`` (banks x queries): the
        minimum, so the query's domain is never needed."""
        return np.min(per_domain, axis=0)

    def bank_scores(self, bank: DomainBank, query: torch.Tensor, exclude: np.ndarray | None) -> np.ndarray:
        """One bank's score of each (L2-normalised float32) query: the mean distance to its k nearest
        entries; ``exclude[i]``: the bank row left out for query i (-1: none)."""
        return mean_finite(nearest_distances(query, bank.emb, self.k, exclude, bank.scale))


@exports(KnnBackend)
def export_knn(backend: KnnBackend, arrays: Arrays) -> dict:
    """Every (machine, section)'s banks (float32 L2-normalised rows, with their distance divisors
    when rescaled) for ``reference.score_knn``: what :meth:`KnnBackend.score` reads. The variants
    that only change the banks (knn_rescaled, knn_smote, kmeans) register this hook too."""
    return {
        "scorer": "knn",
        "k": backend.k,
        "groups": [
            {
                "machine": machine,
                "section": section,
                "banks": [
                    {
                        "emb": arrays.add(bank.emb.numpy()),
                        "scale": None if bank.scale is None else arrays.add(bank.scale.numpy()),
                    }
                    for bank in banks
                ],
            }
            for (machine, section), banks in sorted(backend.banks.items())
        ],
    }
