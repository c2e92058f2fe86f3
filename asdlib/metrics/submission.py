"""Official DCASE Task 2 submission CSVs (docs/design.md §5): what the challenge evaluators read.

Each file holds rows ``<file name>,<value>`` (comma, no header), one file per machine/section
(2021: per domain too). The evaluators read them with ``csv.reader``, sort the rows by file name and
align them positionally with their equally sorted ground truth, so a file must list exactly the
section's clips under their distributed names. File names per year:

* 2020: ``anomaly_score_<machine>_id_<ID>.csv`` (no decision files that year)
* 2021: ``anomaly_score_<machine>_section_<XX>_<source|target>_test.csv`` and ``decision_result_...``
* 2022-2025: ``anomaly_score_<machine>_section_<XX>_test.csv`` and ``decision_result_<machine>_section_<XX>_test.csv``

Decision results (1 = anomaly) follow the official baselines: a gamma distribution is fitted to the
anomaly scores of the normal training clips (``scipy.stats.gamma.fit``) and a test clip is anomalous
when its score is strictly above the fit's 0.9 quantile. asdlib fits one threshold per machine and
section because the KNN back end scores each section against its own training clips.

A year's format follows its ``naming`` in :mod:`asdlib.years` (``id``: 2020, ``section_domain``:
2021, ``section``: 2022 on); only years with an official metric have one.
"""

from __future__ import annotations

import csv
import logging
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import scipy.stats

from asdlib.io.atomic import atomic_write
from asdlib.metrics.records import ScoredUtt
from asdlib.years import Year, get_year, metric_years

logger = logging.getLogger(__name__)

DECISION_QUANTILE = 0.9


def score_file_name(year: int, machine: str, section: str, domain: str | None = None) -> str:
    """Name of the anomaly-score CSV for a machine/section (2021: and domain)."""
    return f"anomaly_score_{_stem(year, machine, section, domain)}.csv"


def decision_file_name(year: int, machine: str, section: str, domain: str | None = None) -> str:
    """Name of the decision-result CSV; 2020 had no decision files."""
    if _format(year).naming == "id":
        raise ValueError("DCASE 2020 submissions have no decision_result files")
    return f"decision_result_{_stem(year, machine, section, domain)}.csv"


def fit_decision_threshold(train_scores: Sequence[float], quantile: float = DECISION_QUANTILE) -> float:
    """The official baselines' decision threshold: ``quantile`` of a gamma fit to normal training scores.

    When the fit fails or gives a non-finite value (e.g. all scores equal), the empirical quantile of
    the training scores is used instead and a warning is logged.
    """
    scores = np.asarray(train_scores, dtype=float)
    if scores.size < 2 or not np.isfinite(scores).all():
        raise ValueError(
            f"decision threshold needs at least 2 finite training scores, got {scores.size} "
            f"({int((~np.isfinite(scores)).sum())} non-finite)"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            shape, loc, scale = scipy.stats.gamma.fit(scores)
            threshold = float(scipy.stats.gamma.ppf(q=quantile, a=shape, loc=loc, scale=scale))
            problem = "a non-finite threshold"
        except (ValueError, RuntimeError, FloatingPointError) as e:
            threshold, problem = float("nan"), f"an error ({e})"
    if not np.isfinite(threshold):
        logger.warning(
            "gamma fit to %d training scores gave %s; using their empirical %.2f quantile",
            scores.size,
            problem,
            quantile,
        )
        threshold = float(np.quantile(scores, quantile))
    return threshold


def fit_decision_thresholds(
    train: Iterable[ScoredUtt] | Mapping[tuple[str, str], Sequence[float]], quantile: float = DECISION_QUANTILE
) -> dict[tuple[str, str], float]:
    """One threshold per (machine, section) from the training clips' scores (records or a ready mapping)."""
    by_section: dict[tuple[str, str], list[float]] = {}
    if isinstance(train, Mapping):
        by_section = {key: list(values) for key, values in train.items()}
    else:
        for r in train:
            by_section.setdefault((r.machine, r.section), []).append(r.score)
    return {key: fit_decision_threshold(values, quantile) for key, values in by_section.items()}


def write_submission(
    year: int, records: Sequence[ScoredUtt], out_dir: Path, thresholds: Mapping[tuple[str, str], float] | None = None
) -> list[Path]:
    """Write the year's anomaly-score (and, given thresholds, decision) CSVs; returns the paths written.

    Rows are sorted by file name, scores written with full float precision (``repr``). Without
    ``thresholds`` no decision files are written (2020 never has them). Every file is written atomically.
    """
    naming = _format(year).naming
    groups: dict[tuple[str, str, str | None], list[ScoredUtt]] = {}
    for r in records:
        domain = r.domain if naming == "section_domain" else None
        groups.setdefault((r.machine, r.section, domain), []).append(r)
    if not groups:
        raise ValueError("no scored utterances to write")
    want_decisions = thresholds is not None and naming != "id"
    if want_decisions:
        missing = sorted({(m, s) for m, s, _ in groups} - set(thresholds))
        if missing:
            raise ValueError(
                "no decision threshold for "
                + ", ".join(f"{m}/{s}" for m, s in missing)
                + "; fit them on that section's training scores"
            )
    written = []
    for (machine, section, domain), utts in groups.items():
        rows = sorted(utts, key=lambda r: r.file_name)
        _check_unique_names(rows, machine, section)
        path = Path(out_dir) / score_file_name(year, machine, section, domain)
        _write_rows(path, [(r.file_name, repr(float(r.score))) for r in rows])
        written.append(path)
        if want_decisions:
            threshold = thresholds[(machine, section)]
            path = Path(out_dir) / decision_file_name(year, machine, section, domain)
            _write_rows(path, [(r.file_name, "1" if r.score > threshold else "0") for r in rows])
            written.append(path)
    logger.info("wrote %d submission files to %s", len(written), out_dir)
    return written


def read_submission_csv(path: Path) -> list[tuple[str, float]]:
    """Read a submission CSV as the evaluators do: ``csv.reader``, rows sorted, values as float."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = [row for row in csv.reader(f) if row]
    out = []
    for row in sorted(rows):
        if len(row) != 2:
            raise ValueError(f"{path}: row {row!r} does not have the form '<file name>,<value>'")
        try:
            out.append((row[0], float(row[1])))
        except ValueError:
            raise ValueError(f"{path}: value {row[1]!r} of {row[0]} is not a number") from None
    return out


def _stem(year: int, machine: str, section: str, domain: str | None) -> str:
    naming = _format(year).naming
    if naming == "id":
        return f"{machine}_id_{section}"
    if naming == "section_domain":
        if domain not in ("source", "target"):
            raise ValueError(f"2021 submission files are per domain; got domain {domain!r}")
        return f"{machine}_section_{section}_{domain}_test"
    return f"{machine}_section_{section}_test"


def _format(year: int) -> Year:
    """The year's row, whose naming sets the file names; an error for years without an official format."""
    if year not in metric_years():
        raise ValueError(f"no DCASE Task 2 submission format for year {year}; known years: {metric_years()}")
    return get_year(year)


def _check_unique_names(rows: Sequence[ScoredUtt], machine: str, section: str) -> None:
    names = [r.file_name for r in rows]
    dupes = sorted({n for n, nxt in zip(names, names[1:]) if n == nxt})
    if dupes:
        raise ValueError(
            f"{machine}/{section}: file names occur twice ({', '.join(dupes[:5])}); the evaluator "
            "matches rows by file name, so each clip must appear once"
        )


def _write_rows(path: Path, rows: Iterable[tuple[str, str]]) -> None:
    with atomic_write(path) as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerows(rows)
