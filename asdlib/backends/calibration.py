"""Decision thresholds that keep their false-alarm promise in every domain (stages 6 and 7, asdlib-enroll).

Per machine and section, the training normals are split into k folds (by recording; by windows when
a section has fewer recordings than folds). The bank is fitted on k-1 folds and the held-out fold
scored, so every training clip gets a score from a bank that does not contain it.

The thresholds are conformal quantiles of those held-out scores, taken **per domain** (Mondrian
conformal prediction: a separate quantile per category, Vovk et al., "Algorithmic Learning in a
Random World", 2005). A pooled quantile is dominated by the source domain, whose clips are ~99 % of
a DCASE section, so target normals, which the few target references fit worse, exceed it far more
often than promised. The domain's own quantile bounds its false-alarm rate by
:func:`conformal_bound` (at most the target rate, or ``1 / (n + 1)`` when the domain has fewer than
``1 / fpr - 1`` clips: 10 target clips promise 9.1 %, not 5 %). A recording of unknown domain is
decided against the maximum over the domains, which keeps every domain's bound; one of known domain
(``--domain``) against its own.

The measured FPRs are cross-validated: for each fold, the threshold from the other folds' held-out
scores, applied to that fold's held-out scores.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from asdlib.backends.bank import make_backend
from asdlib.backends.noise import NoiseProjection
from asdlib.config import BackendConfig
from asdlib.data.datadir import Utt

METHOD = (
    "k-fold over the training normals: bank fitted on k-1 folds, held-out fold scored; per domain, threshold = "
    "conformal (1 - target_fpr) quantile of that domain's held-out scores (Mondrian), bound = the false-alarm "
    "rate it guarantees; a recording of unknown domain is decided against the maximum over the domains; "
    "measured_fpr cross-validated over the folds; decision: score > threshold"
)


class CalibrationError(ValueError):
    """A section that cannot be calibrated (too few training clips); the message names it."""


def _rank(n: int, fpr: float) -> int:
    """The conformal rank: ``ceil((n + 1)(1 - fpr))``, at most ``n``."""
    return min(max(int(np.ceil((n + 1) * (1.0 - fpr) - 1e-9)), 1), n)


def threshold_at(scores: np.ndarray, fpr: float) -> float:
    """The conformal (1 - fpr) quantile of ``n`` normal scores: the ``ceil((n + 1)(1 - fpr))``-th
    smallest. A new normal clip exchangeable with them exceeds it with probability at most
    :func:`conformal_bound` (decision: score > threshold); with fewer than ``1 / fpr - 1`` scores that is the maximum."""
    ordered = np.sort(np.asarray(scores, dtype=np.float64))
    return float(ordered[_rank(ordered.size, fpr) - 1])


def conformal_bound(n: int, fpr: float) -> float:
    """The false-alarm rate :func:`threshold_at` guarantees from ``n`` scores: ``1 - k / (n + 1)``,
    which is at most ``fpr`` when ``n >= 1 / fpr - 1`` and ``1 / (n + 1)`` below that."""
    return 1.0 - _rank(n, fpr) / (n + 1)


def _folds(utts: Sequence[Utt], idx: list[int], k: int) -> list[list[int]]:
    recs = sorted({utts[i].rec_id for i in idx}, key=str.encode)
    if len(recs) >= k:  # whole recordings per fold: windows of one recording never straddle folds
        fold_of = {r: n % k for n, r in enumerate(recs)}
        return [[i for i in idx if fold_of[utts[i].rec_id] == f] for f in range(k)]
    order = sorted(idx, key=lambda i: utts[i].utt_id.encode())  # contiguous blocks (time order)
    return [list(block) for block in np.array_split(np.array(order), k)]


def _decide_threshold(scores: dict[str, np.ndarray], fpr: float) -> float:
    """The domain-unknown threshold: the maximum of the domains' own (domains without scores left out)."""
    return max(threshold_at(s, fpr) for s in scores.values() if s.size)


def _cross_validated(heldout: list[dict[str, np.ndarray]], fpr: float, domain: str | None) -> float:
    """FPR of fold f's held-out scores (of ``domain``, or all) against the threshold of the other
    folds' (that domain's, or the maximum over domains), weighted by fold size."""
    rates, weights = [], []
    for f, fold in enumerate(heldout):
        mine = fold[domain] if domain is not None else np.concatenate(list(fold.values()))
        rest: dict[str, list[np.ndarray]] = defaultdict(list)
        for g, other in enumerate(heldout):
            if g != f:
                for d, s in other.items():
                    rest[d].append(s)
        pooled = {d: np.concatenate(parts) for d, parts in rest.items()}
        if domain is not None:
            pooled = {domain: pooled.get(domain, np.empty(0))}
        if not mine.size or not any(s.size for s in pooled.values()):
            continue
        rates.append(float(np.mean(mine > _decide_threshold(pooled, fpr))))
        weights.append(mine.size)
    return float(np.average(rates, weights=weights)) if rates else 1.0


def calibrate(
    utts: Sequence[Utt],
    embeddings: np.ndarray,
    backend_cfg: BackendConfig,
    widths: Sequence[int],
    fpr: float,
    folds: int = 5,
    projection: NoiseProjection | None = None,
) -> dict[str, dict[str, dict]]:
    """Per machine and section: ``threshold`` (domain unknown), ``measured_fpr`` (cross-validated),
    ``bound`` (the largest domain bound), ``n_heldout``, ``folds`` and ``domains``: per domain its own
    ``threshold``, ``measured_fpr``, ``bound`` and ``n_heldout``. ``projection``: the
    ``backend.noise`` projection (from the noise clips alone, so the same in every fold)."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, u in enumerate(utts):
        groups[(u.machine, u.section)].append(i)
    out: dict[str, dict[str, dict]] = defaultdict(dict)
    for (machine, section), idx in sorted(groups.items()):
        k = min(folds, len(idx))
        if k < 2:
            raise CalibrationError(
                f"{machine}/{section}: {len(idx)} training clip(s); calibrating a threshold needs at least 2"
            )
        parts = [p for p in _folds(utts, idx, k) if p]
        domains = sorted({utts[i].domain for i in idx})
        heldout: list[dict[str, np.ndarray]] = []
        for f, part in enumerate(parts):
            fit = [i for g, p in enumerate(parts) if g != f for i in p]
            backend = make_backend(backend_cfg, widths, projection).fit([utts[i] for i in fit], embeddings[fit])
            scores = backend.score([utts[i] for i in part], embeddings[part])
            of = np.array([utts[i].domain for i in part])
            heldout.append({d: scores[of == d] for d in domains})
        every = {d: np.concatenate([h[d] for h in heldout]) for d in domains}
        per_domain = {
            d: {
                "threshold": threshold_at(every[d], fpr),
                "measured_fpr": _cross_validated(heldout, fpr, d),
                "bound": conformal_bound(every[d].size, fpr),
                "n_heldout": int(every[d].size),
            }
            for d in domains
        }
        out[machine][section] = {
            "threshold": _decide_threshold(every, fpr),
            "measured_fpr": _cross_validated(heldout, fpr, None),
            "bound": max(t["bound"] for t in per_domain.values()),
            "n_heldout": int(sum(e.size for e in every.values())),
            "folds": len(parts),
            "domains": per_domain,
        }
    return dict(out)


def pooled_fpr(thresholds: dict[str, dict[str, dict]]) -> tuple[float, int]:
    """``calibration.measured_fpr`` and ``n_heldout`` of a manifest: every section's measured FPR
    weighted by its held-out clips, and their number."""
    entries = [t for sections in thresholds.values() for t in sections.values()]
    n = sum(int(t["n_heldout"]) for t in entries)
    return sum(t["measured_fpr"] * t["n_heldout"] for t in entries) / n, n


def describe(machine: str, section: str, entry: dict, fpr: float) -> str:
    """One log line for a section's calibration: the domain-unknown threshold, then each domain's."""
    parts = [
        f"{d} {t['threshold']:.6f} (bound {100 * t['bound']:.1f}%, measured {100 * t['measured_fpr']:.1f}%, "
        f"{t['n_heldout']} clips)"
        for d, t in entry["domains"].items()
    ]
    return (
        f"{machine}/{section}: threshold {entry['threshold']:.6f} at target FPR {100 * fpr:.1f}% "
        f"(domain unknown: bound {100 * entry['bound']:.1f}%, measured {100 * entry['measured_fpr']:.1f}% "
        f"on held-out normals, {entry['folds']} folds); per domain: {'; '.join(parts)}"
    )
