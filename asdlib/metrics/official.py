"""Official DCASE Task 2 scores (2020-2025), computed exactly as the challenge evaluators compute them.

Which rule below scores a year is that year's ``metric`` in :mod:`asdlib.years` (its ``rule`` and
``max_fpr``); a year without one (2026) has no official score yet.

Building blocks, identical in every official evaluator (see docs/dcase.md):

* AUC  = ``sklearn.metrics.roc_auc_score(y_true, y_score)`` with 0 = normal, 1 = anomaly.
* pAUC = ``roc_auc_score(y_true, y_score, max_fpr=0.1)``: sklearn returns the McClish-standardised
  partial AUC, ``0.5 * (1 + (A - p^2/2) / (p - p^2/2))`` with A the raw ROC area over FPR in [0, p];
  0.5 is chance and 1 perfect. The official numbers are exactly this value.
* Harmonic means: ``scipy.stats.hmean(numpy.maximum(values, sys.float_info.epsilon), axis=None)``; the
  floor keeps a zero AUC from crashing the mean and turns it into an eps-sized score instead.

Year rules (the single number in ``Evaluation.official_score``):

* 2020: AUC and pAUC per machine ID (``section``) on all of the ID's clips; arithmetic mean over IDs per
  machine type. The evaluator stops there; the single number used here (as in the papers) is
  ``(mean_m AUC_m + mean_m pAUC_m) / 2``, i.e. the arithmetic mean over all machine types of the per-type
  mean AUC and the per-type mean pAUC, averaged with equal weight.
* 2021: AUC and pAUC per (machine, section, domain) on that domain's clips only (normals and anomalies
  of that domain); official = one harmonic mean over the pooled list of all those AUCs and pAUCs.
* 2022-2025: per (machine, section), AUC(source) = source-domain normals vs ALL anomalies of the section
  (both domains), AUC(target) likewise, pAUC on all clips of the section; official = one harmonic mean
  over the pooled list [all AUC(source)] + [all AUC(target)] + [all pAUC].
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.stats
from sklearn.metrics import roc_auc_score

from asdlib.metrics.records import ScoredUtt
from asdlib.years import DEFAULT_MAX_FPR as MAX_FPR
from asdlib.years import YEARS, Metric, get_year, metric_years

logger = logging.getLogger(__name__)

EPS = sys.float_info.epsilon

PerMachine = dict[str, dict[str, dict[str, float]]]


class UnlabelledDataError(ValueError):
    """The set holds clips labelled ``unknown`` (a blind evaluation set without its ground truth)."""


@dataclass(frozen=True)
class Evaluation:
    """The outcome of one official evaluation.

    ``per_machine[machine][section]`` holds the section's metrics in [0, 1]:
    2020 ``auc`` (= ``auc_source``, all 2020 clips are source domain) and ``pauc``;
    2021 ``auc_source``, ``auc_target``, ``pauc_source``, ``pauc_target`` (the official inputs) and
    ``pauc`` (both domains together, the 2022 definition, informational);
    2022-2025 ``auc_source``, ``auc_target``, ``pauc`` (the official inputs) and ``auc_all``.
    ``machine_means`` are arithmetic means over a machine's sections (the evaluators' per-type "Average"
    rows, the papers' per-machine cells); ``summary`` holds the pooled h-means and a-means.
    ``skipped`` lists ``machine/section`` groups left out for lack of ground truth.
    """

    year: int
    metric: str
    official_score: float
    per_machine: PerMachine
    machine_means: dict[str, dict[str, float]]
    summary: dict[str, float]
    skipped: tuple[str, ...] = field(default=())


def auc(y_true: Sequence[int] | np.ndarray, y_score: Sequence[float] | np.ndarray) -> float:
    """ROC AUC exactly as the evaluators call it (0 = normal, 1 = anomaly)."""
    return float(roc_auc_score(y_true, y_score))


def pauc(y_true: Sequence[int] | np.ndarray, y_score: Sequence[float] | np.ndarray, max_fpr: float = MAX_FPR) -> float:
    """McClish-standardised partial AUC over FPR in [0, max_fpr] (sklearn's ``max_fpr``), as official."""
    return float(roc_auc_score(y_true, y_score, max_fpr=max_fpr))


def hmean_eps(values: Iterable[float]) -> float:
    """Harmonic mean with every value floored at machine epsilon, as the evaluators compute it."""
    arr = np.asarray(list(values), dtype=float)
    if arr.size == 0:
        raise ValueError("harmonic mean of an empty list of metric values")
    return float(scipy.stats.hmean(np.maximum(arr, EPS), axis=None))


def amean(values: Iterable[float]) -> float:
    """Arithmetic mean (numpy.mean, as the evaluators compute it)."""
    arr = np.asarray(list(values), dtype=float)
    if arr.size == 0:
        raise ValueError("arithmetic mean of an empty list of metric values")
    return float(np.mean(arr))


def metric_name(year: int) -> str:
    """The human-readable rule name stored as ``metric`` in results.json."""
    return metric_of(year).name


def domain_mask(year: int, labels: np.ndarray, domains: np.ndarray, domain: str) -> np.ndarray:
    """Which clips of a section enter the year's AUC for ``domain`` (labels 0/1, domains as strings).

    2020 has no domains (all clips); 2021 uses the domain's own clips; 2022+ uses the domain's normals
    plus every anomaly of the section.
    """
    rule = metric_of(year).rule
    if rule == "amean_per_type":
        return np.ones(len(labels), dtype=bool)
    if rule == "hmean_per_domain":
        return domains == domain
    return (domains == domain) | (labels == 1)


def official_score(year: int, records: Sequence[ScoredUtt], *, skip_unknown: bool = False) -> Evaluation:
    """Evaluate scored test clips with the official rule of ``year`` (see the module docstring).

    Clips labelled ``unknown`` (from 2021 on, also clips of ``unknown`` domain) cannot be evaluated: by
    default that is an :class:`UnlabelledDataError` telling how to get the ground truth; with
    ``skip_unknown`` every (machine, section) holding such clips is left out (logged, listed in
    ``Evaluation.skipped``), and the error is raised only if nothing is left.
    """
    metric = metric_of(year)
    if not records:
        raise ValueError("no scored utterances to evaluate")
    groups = _group(records)
    unlabelled = [key for key, utts in groups.items() if any(_lacks_truth(year, u) for u in utts)]
    if unlabelled:
        names = [f"{m}/{s}" for m, s in unlabelled]
        if not skip_unknown or len(unlabelled) == len(groups):
            raise UnlabelledDataError(unlabelled_message(year, names))
        logger.warning("skipping %d machine/section groups without ground truth: %s", len(names), ", ".join(names))
        for key in unlabelled:
            del groups[key]
    per_machine: PerMachine = {}
    for (machine, section), utts in groups.items():
        per_machine.setdefault(machine, {})[section] = _section_metrics(year, metric, machine, section, utts)
    return Evaluation(
        year=year,
        metric=metric.name,
        official_score=official_from_per_machine(year, per_machine),
        per_machine=per_machine,
        machine_means=machine_means(per_machine),
        summary=summary_from_per_machine(year, per_machine),
        skipped=tuple(f"{m}/{s}" for m, s in unlabelled),
    )


def official_from_per_machine(year: int, per_machine: Mapping[str, Mapping[str, Mapping[str, float]]]) -> float:
    """The year's single official number from per-section metrics (also usable on a results.json).

    Values are pooled in the evaluators' order (machines and sections in the mapping's order), so the
    result matches their output to the last bit.
    """
    rule = metric_of(year).rule
    if rule == "amean_per_type":
        means = machine_means(per_machine)
        return (amean(m["auc"] for m in means.values()) + amean(m["pauc"] for m in means.values())) / 2
    if rule == "hmean_per_domain":
        pooled = []
        for sections in per_machine.values():
            for metrics in sections.values():
                for domain in ("source", "target"):
                    if f"auc_{domain}" in metrics:
                        pooled += [metrics[f"auc_{domain}"], metrics[f"pauc_{domain}"]]
        return hmean_eps(pooled)
    return hmean_eps(
        _column(per_machine, "auc_source") + _column(per_machine, "auc_target") + _column(per_machine, "pauc")
    )


def summary_from_per_machine(
    year: int, per_machine: Mapping[str, Mapping[str, Mapping[str, float]]]
) -> dict[str, float]:
    """Pooled means the evaluators print below the per-machine tables (all values in [0, 1]).

    2020: ``amean_auc``/``amean_pauc`` = mean over machine types of the per-type means.
    2021: h-means and a-means per domain (``hmean_auc_source`` ...) and over both domains (``hmean_auc`` ...).
    2022+: h-mean and a-mean of each of AUC(source), AUC(target), pAUC, and ``amean_total`` (the papers'
    a-mean "TOTAL score" over the pooled list).
    """
    rule = metric_of(year).rule
    if rule == "amean_per_type":
        means = machine_means(per_machine)
        return {
            "amean_auc": amean(m["auc"] for m in means.values()),
            "amean_pauc": amean(m["pauc"] for m in means.values()),
        }
    if rule == "hmean_per_domain":
        src_auc, tgt_auc = _column(per_machine, "auc_source"), _column(per_machine, "auc_target")
        src_pauc, tgt_pauc = _column(per_machine, "pauc_source"), _column(per_machine, "pauc_target")
        out = {
            "hmean_auc": hmean_eps(src_auc + tgt_auc),
            "hmean_pauc": hmean_eps(src_pauc + tgt_pauc),
            "amean_auc": amean(src_auc + tgt_auc),
            "amean_pauc": amean(src_pauc + tgt_pauc),
        }
        for name, col in (
            ("auc_source", src_auc),
            ("auc_target", tgt_auc),
            ("pauc_source", src_pauc),
            ("pauc_target", tgt_pauc),
        ):
            if col:
                out[f"hmean_{name}"] = hmean_eps(col)
                out[f"amean_{name}"] = amean(col)
        return out
    cols = {name: _column(per_machine, name) for name in ("auc_source", "auc_target", "pauc")}
    out = {f"hmean_{name}": hmean_eps(col) for name, col in cols.items()}
    out.update({f"amean_{name}": amean(col) for name, col in cols.items()})
    out["amean_total"] = amean(cols["auc_source"] + cols["auc_target"] + cols["pauc"])
    return out


def machine_means(per_machine: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict[str, dict[str, float]]:
    """Arithmetic mean over each machine's sections of every metric the sections share."""
    out: dict[str, dict[str, float]] = {}
    for machine, sections in per_machine.items():
        keys = [k for k in next(iter(sections.values())) if all(k in m for m in sections.values())]
        out[machine] = {k: amean(m[k] for m in sections.values()) for k in keys}
    return out


def unlabelled_message(year: int, groups: Sequence[str]) -> str:
    """The error text for a set without ground truth: what is missing and where to get it."""
    shown = ", ".join(groups[:6]) + (f" and {len(groups) - 6} more" if len(groups) > 6 else "")
    return (
        f"cannot evaluate: {shown} have clips with label or domain 'unknown' (a blind evaluation set prepared without "
        f"its ground truth). Evaluation needs the official eval_data_list_{year}.csv: re-run data preparation "
        f"(stage 1), which uses the official list of the DCASE metadata (python -m asdlib.bin.fetch_metadata, or "
        f"ASDLIB_DCASE_METADATA=DIR; 2020-2025) unless "
        f'the corpus root has its own, or name one with --local_data_opts "--eval_list '
        f'/path/eval_data_list_{year}.csv". To evaluate only the labelled groups (or skip a blind set), pass '
        f"--skip_unlabelled true to asd.sh (evaluate CLI: --skip_unknown true)."
    )


def metric_of(year: int) -> Metric:
    """The official rule of ``year`` (asdlib.years); a clear error for years without one."""
    metric = YEARS[year].metric if year in YEARS else None
    if metric is None:
        raise ValueError(
            f"no official DCASE Task 2 metric for year {year}; known years: {', '.join(map(str, metric_years()))}"
        )
    return metric


def _group(records: Sequence[ScoredUtt]) -> dict[tuple[str, str], list[ScoredUtt]]:
    groups: dict[tuple[str, str], list[ScoredUtt]] = {}
    for r in records:
        groups.setdefault((r.machine, r.section), []).append(r)
    return groups


def _lacks_truth(year: int, utt: ScoredUtt) -> bool:
    """A clip whose label (or, from 2021 on, domain) is unknown cannot enter the year's metric."""
    return utt.label == "unknown" or (get_year(year).has_domains and utt.domain == "unknown")


def _column(per_machine: Mapping[str, Mapping[str, Mapping[str, float]]], key: str) -> list[float]:
    return [m[key] for sections in per_machine.values() for m in sections.values() if key in m]


def _section_metrics(
    year: int, metric: Metric, machine: str, section: str, utts: Sequence[ScoredUtt]
) -> dict[str, float]:
    y = np.array([1 if u.label == "anomaly" else 0 for u in utts])
    s = np.array([u.score for u in utts], dtype=float)
    d = np.array([u.domain for u in utts])
    where = f"{machine} section {section}"
    if not np.isfinite(s).all():
        raise ValueError(f"{where}: non-finite anomaly scores (NaN/inf); check the scoring stage output")
    _require_both_labels(y, where)
    if metric.rule == "amean_per_type":
        value = auc(y, s)
        return {"auc": value, "auc_source": value, "pauc": pauc(y, s, metric.max_fpr)}
    if metric.rule == "hmean_per_domain":
        out: dict[str, float] = {}
        for domain in ("source", "target"):
            mask = domain_mask(year, y, d, domain)
            if mask.any():
                _require_both_labels(y[mask], f"{where} domain {domain}")
                out[f"auc_{domain}"] = auc(y[mask], s[mask])
                out[f"pauc_{domain}"] = pauc(y[mask], s[mask], metric.max_fpr)
        out["pauc"] = pauc(y, s, metric.max_fpr)
        return out
    out = {}
    for domain in ("source", "target"):
        if not ((d == domain) & (y == 0)).any():
            raise ValueError(
                f"{where}: no {domain}-domain normal clips, so AUC({domain}) is undefined; the "
                f"{year} rule needs normal clips of both domains in every section"
            )
        mask = domain_mask(year, y, d, domain)
        out[f"auc_{domain}"] = auc(y[mask], s[mask])
    out["pauc"] = pauc(y, s, metric.max_fpr)
    out["auc_all"] = auc(y, s)
    return out


def _require_both_labels(y: np.ndarray, where: str) -> None:
    if not (y == 0).any() or not (y == 1).any():
        present = "anomaly" if (y == 1).any() else "normal"
        raise ValueError(f"{where}: only {present} clips, AUC is undefined (need normal and anomaly clips)")
