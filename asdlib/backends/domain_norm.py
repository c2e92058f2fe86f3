"""Domain-wise kNN back ends for test clips of unknown domain and a handful of target references
(``backend.kind``; docs/method.md §1.9).

In DCASE the target domain has ~1 % of the training clips and its normal sound can move farther than
many anomalies. A plain domain-wise kNN then fails in one way: a target normal is far from the few
target clips, a subtle anomaly is near the dense source bank, and the minimum over the banks ranks
the normal above the anomaly. Each kind here changes one thing about the banks, and each keeps the
minimum over domains, so the test clip's domain is never needed:

- ``knn_zscore``: every bank's distance is standardised by the same distance of the bank's own
  clips, leave-one-out: ``(d - mean) / sd`` (``statistic: zscore``), or the empirical rank of ``d``
  among them (``statistic: rank``, continued linearly in sd units outside their range, so no two
  clips tie). A sparse bank's large distances become ordinary ones in its own units.
- ``knn_centred``: every training clip is centred on its own domain's mean (``whiten: true`` also
  whitens it with its domain's Ledoit-Wolf covariance, as ``mahalanobis``), and the section keeps
  one bank of all of them. The query is moved by each domain's centre in turn and compared with that
  bank; the minimum over the domains is its score. A condition that moves every clip of a domain the
  same way (a microphone, a room) drops out, so a target clip is compared with the many source clips
  too, not only with the few target ones. Each domain hypothesis is standardised as ``knn_zscore``
  on its own clips' leave-one-out scores.
- ``knn_memmixup``: the target bank gains ``alpha * t + (1 - alpha) * s`` for every target clip
  ``t`` and each of its ``neighbours`` nearest source clips ``s`` (0: all), which fills the space
  between the few target clips towards the source domain. Standardised as ``knn_zscore``.
- ``knn_density``: local-density normalisation of the score: the mean distance to the k nearest
  bank clips divided by those clips' own mean distance to their ``k`` nearest other clips of the
  bank. ``knn_rescaled`` divides every distance before the neighbours are chosen; this divides the
  score after, by the density where the clip landed.

- ``knn_routed``: scored as ``knn_zscore``, but a clip takes the score of one bank instead of the
  minimum: the domain that a classifier fitted on the section's training clips (standardised
  embedding, logistic regression with balanced class weights, inverse regularisation ``c``) assigns
  it to. The minimum lets a subtle source anomaly hide in the sparse target bank, whose own
  distances are large; a recording's domain (its room, microphone, operating point) is usually far
  easier to tell than whether it is anomalous, so routing keeps the anomaly in its own domain's units.

Statistics come from the training clips only; no test clip, label or domain is read. A bank of
more than ``MAX_CALIBRATION`` clips is calibrated on that many of them, evenly spaced in utt-id
order, so the fit costs a pass over the bank rather than a bank-by-bank product. A bank of
fewer than ``MIN_OWN_SPREAD`` clips borrows the spread of its section's other banks: two target
clips give one leave-one-out distance twice, which says nothing about spread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from asdlib.backends.base import BackendError
from asdlib.backends.knn import (
    DomainBank,
    GroupKey,
    KnnBackend,
    group_training,
    mean_finite,
    nearest,
    nearest_distances,
    neighbour_distances,
    normalize,
    row_blocks,
)
from asdlib.backends.mahalanobis import MIN_OWN_COVARIANCE, _covariance, _whitening
from asdlib.backends.portable import Arrays, exports
from asdlib.data.datadir import Utt
from asdlib.registry import BACKENDS

MIN_OWN_SPREAD = 3  # clips a bank needs for a spread (sd) of its own
MAX_CALIBRATION = 2000  # bank clips whose leave-one-out distances calibrate a bank (evenly spaced in utt-id order)
MAX_MIXED = 2_000_000  # MemMixup entries per target bank (target clips x neighbours): bounds its memory
Domains = dict[str, tuple[np.ndarray, np.ndarray]]
Statistic = Literal["zscore", "rank", "none"]


@dataclass
class Calibration:
    """A bank's own leave-one-out distances (sorted) and the mean and sd its scores are put in."""

    loo: np.ndarray
    mean: float
    sd: float


@dataclass
class StandardisedBank(DomainBank):
    """A bank with its calibration, and the centre and whitening its queries are moved by (None: as is)."""

    calibration: Calibration | None = None
    centre: torch.Tensor | None = None
    whiten: torch.Tensor | None = None
    origin: np.ndarray | None = None  # per entry, the row of the real clip it was made from (leave-one-out)
    density: np.ndarray | None = None  # per entry, its mean distance to its k nearest other entries
    own: np.ndarray | None = None  # the rows whose leave-one-out scores calibrate it (None: every real entry)


def _standardise(d: np.ndarray, cal: Calibration, statistic: Statistic) -> np.ndarray:
    if statistic == "zscore":
        return (d - cal.mean) / cal.sd
    if statistic == "rank":
        loo = cal.loo
        if not len(loo):
            return (d - cal.mean) / cal.sd
        below = np.searchsorted(loo, d, side="left")
        equal = np.searchsorted(loo, d, side="right") - below
        rank = (below + 0.5 * equal) / len(loo)
        return rank + np.maximum(d - loo[-1], 0.0) / cal.sd - np.maximum(loo[0] - d, 0.0) / cal.sd
    return d


@dataclass
class StandardisedSettings:
    """``backend.conf`` of ``knn_zscore``: ``k`` nearest clips; ``statistic`` standardising each bank."""

    k: int = 1
    statistic: Statistic = "zscore"

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")


@BACKENDS.register("knn_zscore", StandardisedSettings)
class StandardisedKnnBackend(KnnBackend):
    """Domain-wise kNN whose banks are standardised by their own leave-one-out distances; subclasses
    change the banks (:meth:`transform_banks`) and the raw distance (:meth:`raw_scores`)."""

    def __init__(self, k: int = 1, statistic: Statistic = "zscore") -> None:
        super().__init__(k, domain_wise=True)
        self.statistic = statistic

    def transform_banks(self, domains: Domains) -> list[StandardisedBank]:
        return [StandardisedBank.of(ids, emb) for ids, emb in domains.values()]

    def make_banks(self, domains: Domains) -> list[DomainBank]:
        banks = self.transform_banks(domains)
        if self.statistic == "none":
            return banks
        loos = [self.self_scores(bank) for bank in banks]
        spreads = [float(np.std(x)) for x in loos if len(x) >= MIN_OWN_SPREAD and np.std(x) > 0]
        fallback_sd = float(np.median(spreads)) if spreads else 1.0
        means = [float(np.mean(x)) for x in loos if len(x)]
        for bank, loo in zip(banks, loos):
            sd = float(np.std(loo)) if len(loo) >= MIN_OWN_SPREAD and np.std(loo) > 0 else fallback_sd
            # no leave-one-out distance (one clip): the largest mean of the section's other banks
            mean = float(np.mean(loo)) if len(loo) else (max(means) if means else 0.0)
            bank.calibration = Calibration(np.sort(loo), mean, sd)
        return banks

    def self_scores(self, bank: StandardisedBank) -> np.ndarray:
        """The raw score of each real clip of the bank against the bank without it (and without the
        entries made from it); finite values only."""
        real = bank.own if bank.own is not None else np.nonzero(bank.ids != "")[0]
        if len(real) > MAX_CALIBRATION:  # a sample of a large bank: statistics need no more, the fit stays O(bank)
            real = real[np.linspace(0, len(real) - 1, MAX_CALIBRATION).round().astype(int)]
        if bank.origin is None:
            d = self.raw_scores(bank, bank.emb[real], real, transformed=True)
        else:  # small target banks with synthetic entries: mask every entry made from the clip
            sims = bank.emb[real] @ bank.emb.T
            sims[torch.from_numpy(bank.origin[None, :] == real[:, None])] = -torch.inf
            top = torch.topk(sims, min(self.k, sims.shape[1]), dim=1).values
            d = mean_finite((1.0 - top).double().numpy())
        return d[np.isfinite(d)]

    def raw_scores(
        self, bank: StandardisedBank, query: torch.Tensor, exclude: np.ndarray | None, transformed: bool = False
    ) -> np.ndarray:
        """Mean distance to the k nearest entries; ``transformed``: the query is already in the bank's coordinates."""
        if not transformed:
            query = self.move(bank, query)
        return mean_finite(nearest_distances(query, bank.emb, self.k, exclude, bank.scale))

    @staticmethod
    def move(bank: StandardisedBank, query: torch.Tensor) -> torch.Tensor:
        """A query in the bank's coordinates (centred, whitened, L2-normalised again)."""
        if bank.centre is None:
            return query
        x = query.double() - bank.centre
        if bank.whiten is not None:  # in the fixed row blocks of knn.py: the same bits in every job
            out = torch.empty(x.shape[0], bank.whiten.shape[1], dtype=x.dtype)
            for rows, block in row_blocks(x, [bank.whiten.shape[1]]):
                out[rows] = (block @ bank.whiten)[: len(rows)]
            x = out
        return torch.nn.functional.normalize(x, dim=1, eps=1e-12).float()

    def bank_scores(self, bank: DomainBank, query: torch.Tensor, exclude: np.ndarray | None) -> np.ndarray:
        assert isinstance(bank, StandardisedBank)
        raw = self.raw_scores(bank, query, exclude)
        return raw if bank.calibration is None else _standardise(raw, bank.calibration, self.statistic)


@dataclass
class CentredSettings(StandardisedSettings):
    """``backend.conf`` of ``knn_centred``: as ``knn_zscore``, plus ``whiten`` (Ledoit-Wolf, per domain)."""

    whiten: bool = False


@BACKENDS.register("knn_centred", CentredSettings)
class CentredKnnBackend(StandardisedKnnBackend):
    def __init__(self, k: int = 1, statistic: Statistic = "zscore", whiten: bool = False) -> None:
        super().__init__(k, statistic)
        self.whiten = whiten

    def transform_banks(self, domains: Domains) -> list[StandardisedBank]:
        centres = {dom: emb.mean(0) for dom, (_, emb) in domains.items()}
        whitening: dict[str, np.ndarray | None] = dict.fromkeys(domains)
        if self.whiten:
            pooled = _covariance(np.concatenate([emb - centres[dom] for dom, (_, emb) in domains.items()]))
            for dom, (_, emb) in domains.items():
                whitening[dom] = _whitening(_covariance(emb) if len(emb) >= MIN_OWN_COVARIANCE else pooled)
        moved = []
        for dom, (_, emb) in domains.items():
            y = emb - centres[dom]
            moved.append(y @ whitening[dom] if whitening[dom] is not None else y)
        ids = np.concatenate([ids for ids, _ in domains.values()])
        joint = torch.from_numpy(normalize(np.concatenate(moved)).astype(np.float32))
        ends = np.cumsum([0, *(len(emb) for _, emb in domains.values())])
        banks = []
        for i, dom in enumerate(domains):
            w = whitening[dom]
            bank = StandardisedBank(ids, joint)
            bank.centre = torch.from_numpy(centres[dom])
            bank.whiten = torch.from_numpy(np.ascontiguousarray(w)) if w is not None else None
            bank.own = np.arange(ends[i], ends[i + 1])
            banks.append(bank)
        return banks


@dataclass
class MemMixupSettings(StandardisedSettings):
    """``backend.conf`` of ``knn_memmixup``: mixing weight ``alpha`` of the target clip, and how many
    nearest source clips each target clip is mixed with (0: all of them)."""

    alpha: float = 0.9
    neighbours: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.alpha <= 1.0 or self.neighbours < 0:
            raise ValueError(f"alpha must be in (0, 1] and neighbours >= 0, got {self.alpha} and {self.neighbours}")


@BACKENDS.register("knn_memmixup", MemMixupSettings)
class MemMixupKnnBackend(StandardisedKnnBackend):
    def __init__(self, k: int = 1, statistic: Statistic = "zscore", alpha: float = 0.9, neighbours: int = 0) -> None:
        super().__init__(k, statistic)
        self.alpha, self.neighbours = alpha, neighbours

    def transform_banks(self, domains: Domains) -> list[StandardisedBank]:
        banks = super().transform_banks(domains)
        if "source" not in domains or "target" not in domains:
            return banks
        src, (tgt_ids, tgt) = domains["source"][1], domains["target"]
        n = len(src) if self.neighbours == 0 else min(self.neighbours, len(src))
        if len(tgt) * n > MAX_MIXED:
            raise BackendError(
                f"knn_memmixup: {len(tgt)} target x {n} source clips would add {len(tgt) * n} bank entries "
                f"(limit {MAX_MIXED}); set backend.conf.neighbours to at most {MAX_MIXED // len(tgt)}"
            )
        _, idx = nearest(
            torch.from_numpy(normalize(tgt).astype(np.float32)), torch.from_numpy(normalize(src).astype(np.float32)), n
        )
        mixed = (self.alpha * tgt[:, None, :] + (1.0 - self.alpha) * src[idx]).reshape(-1, tgt.shape[1])
        bank = StandardisedBank.of(np.r_[tgt_ids, np.full(len(mixed), "")], np.concatenate([tgt, mixed]))
        bank.origin = np.r_[np.arange(len(tgt)), np.repeat(np.arange(len(tgt)), n)]
        return [bank if dom == "target" else b for dom, b in zip(domains, banks)]


@dataclass
class DensitySettings(StandardisedSettings):
    """``backend.conf`` of ``knn_density``: ``k`` neighbours (of the query, and of each bank clip for
    its density); ``statistic`` off by default (the ratio is already unit-free)."""

    statistic: Statistic = "none"


@BACKENDS.register("knn_density", DensitySettings)
class DensityKnnBackend(StandardisedKnnBackend):
    def transform_banks(self, domains: Domains) -> list[StandardisedBank]:
        banks = super().transform_banks(domains)
        for bank in banks:
            bank.density = neighbour_distances(bank.emb, self.k)
        known = [b.density for b in banks if b.density is not None]
        fallback = float(np.median(np.concatenate(known))) if known else 1.0
        for bank in banks:  # a bank of one clip: the median density of the section's other banks
            if bank.density is None:
                bank.density = np.full(len(bank.ids), fallback)
        return banks

    def raw_scores(
        self, bank: StandardisedBank, query: torch.Tensor, exclude: np.ndarray | None, transformed: bool = False
    ) -> np.ndarray:
        d, idx = nearest(query, bank.emb, self.k, exclude)
        finite = np.isfinite(d)
        density = bank.density[idx]
        ratio = np.where(finite, d, 0.0).sum(1) / np.maximum(np.where(finite, density, 0.0).sum(1), 1e-12)
        return np.where(finite.any(1), ratio, np.inf)


@dataclass
class RoutedSettings(StandardisedSettings):
    """``backend.conf`` of ``knn_routed``: as ``knn_zscore``, plus the domain classifier's inverse
    regularisation ``c`` (scikit-learn's ``C``), and ``standardise``: distances between embeddings
    whose dimensions are divided by their spread over the section's training clips (else dimensions
    that vary a lot between normal clips, e.g. the loud bins of a log-mel, drown a small change in a
    steady one). They are not centred: a vector near the mean has an arbitrary direction, and the
    cosine distance would follow it."""

    c: float = 1.0
    standardise: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.c > 0:
            raise ValueError(f"c must be > 0, got {self.c}")


@BACKENDS.register("knn_routed", RoutedSettings)
class RoutedKnnBackend(StandardisedKnnBackend):
    def __init__(self, k: int = 1, statistic: Statistic = "zscore", c: float = 1.0, standardise: bool = True) -> None:
        super().__init__(k, statistic)
        self.c, self.standardise = c, standardise
        self.routers: dict[GroupKey, Pipeline | None] = {}

    def transform_banks(self, domains: Domains) -> list[StandardisedBank]:
        if not self.standardise:
            return super().transform_banks(domains)
        scale = 1.0 / np.maximum(np.concatenate([emb for _, emb in domains.values()]).std(0), 1e-6)
        banks = []
        for ids, emb in domains.values():
            bank = StandardisedBank.of(ids, emb * scale)
            bank.centre, bank.whiten = torch.zeros(len(scale), dtype=torch.float64), torch.from_numpy(np.diag(scale))
            banks.append(bank)
        return banks

    def fit(self, utts: Sequence[Utt], embeddings: np.ndarray) -> RoutedKnnBackend:
        groups = group_training(utts, embeddings, domain_wise=True)
        self.banks = {key: self.make_banks(domains) for key, domains in groups.items()}
        self.routers = {key: self.fit_router(domains) for key, domains in groups.items()}
        return self

    def fit_router(self, domains: Domains) -> Pipeline | None:
        """A classifier from a training clip's embedding to the index of its domain's bank (None: one domain)."""
        if len(domains) < 2:
            return None
        x = np.concatenate([emb for _, emb in domains.values()])
        y = np.concatenate([np.full(len(emb), i) for i, (_, emb) in enumerate(domains.values())])
        clf = LogisticRegression(C=self.c, class_weight="balanced", max_iter=5000)
        return make_pipeline(StandardScaler(), clf).fit(x, y)

    def combine(self, key: GroupKey, query: torch.Tensor, per_domain: np.ndarray) -> np.ndarray:
        router = self.routers.get(key)
        if router is None:
            return super().combine(key, query, per_domain)
        bank = router.predict(query.double().numpy())
        return per_domain[bank, np.arange(per_domain.shape[1])]


@exports(RoutedKnnBackend)
def export_routed(backend: RoutedKnnBackend, arrays: Arrays) -> dict:
    """Every (machine, section)'s banks (rows, the per-dimension scale of ``standardise``, calibration)
    and its domain classifier (scaler and logistic-regression weights), for ``reference.score_routed``."""

    def bank_node(bank: StandardisedBank) -> dict:
        cal = bank.calibration
        return {
            "emb": arrays.add(bank.emb.numpy()),
            "scale": None if bank.whiten is None else arrays.add(np.diag(bank.whiten.numpy())),
            "mean": None if cal is None else cal.mean,
            "sd": None if cal is None else cal.sd,
            "loo": None if cal is None else arrays.add(cal.loo),
        }

    def router_node(router: Pipeline | None) -> dict | None:
        if router is None:
            return None
        scaler, clf = router[0], router[-1]
        return {
            "mean": arrays.add(scaler.mean_),
            "scale": arrays.add(scaler.scale_),
            "coef": arrays.add(clf.coef_),
            "intercept": arrays.add(clf.intercept_),
        }

    return {
        "scorer": "routed",
        "k": backend.k,
        "statistic": backend.statistic,
        "groups": [
            {
                "machine": machine,
                "section": section,
                "banks": [bank_node(b) for b in banks],
                "router": router_node(backend.routers.get((machine, section))),
            }
            for (machine, section), banks in sorted(backend.banks.items())
        ],
    }
