"""The official ``eval_data_list_20XX.csv``: ground truth of the blinded evaluation test clips.

Layout (docs/dcase.md): a line holding only a machine type, then one row per clip
``<blinded name>,<labelled name>`` (2020 adds a third column ``0|1``); CRLF or LF line endings.
Label and domain are read from the labelled name, which is checked against the year's naming
rules, so a list of the wrong year or a damaged list fails here and not as wrong AUCs later.

The official lists of 2020-2025 are fetched, not shipped (:mod:`asdlib.data.resources`). The 2022 list is
wrong for ToyCar and ToyTrain: :func:`correct_2022_toy_truth` takes their label and domain from
the official 2022 evaluator instead.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import NamedTuple

from asdlib.data.dcase import DcaseNameError, parse_labelled_name, parse_name
from asdlib.data.download import file_digest
from asdlib.data.resources import eval_list_rel, fetched_files, official_eval_list, read_evaluator_truth
from asdlib.years import get_year

logger = logging.getLogger(__name__)

_SHOWN = 5  # example names shown per problem in error messages


class EvalListError(ValueError):
    """A malformed eval list, or one that does not match the evaluation files on disk."""


class EvalEntry(NamedTuple):
    """Ground truth of one blinded clip."""

    label: str  # normal | anomaly
    domain: str  # source | target (2020: source)
    labelled_name: str  # the clip's original name (only feeds label and domain, docs/design.md §4)


#: DCASE 2022 machine types whose eval-list label/domain are replaced by the official evaluator's
TOY_TYPES_2022 = ("ToyCar", "ToyTrain")


def default_eval_list(root: Path, year: int) -> Path:
    """The corpus's own list, preferred to the shipped one when present: ``<root>/eval_data_list_<year>.csv``.

    Synthetic corpora put theirs there; so does ``download_dcase`` (a copy of the official one).
    """
    return root / f"eval_data_list_{year}.csv"


def read_eval_list(path: str | Path, year: int) -> dict[tuple[str, str], EvalEntry]:
    """Read an official eval list into ``{(machine, blinded_name): EvalEntry}`` (list order kept)."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise EvalListError(
            f"eval list {path} not found: pass the official eval_data_list_{year}.csv with --eval_list"
        ) from None
    except UnicodeDecodeError as e:
        raise EvalListError(f"{path}: not UTF-8 text ({e}); is this the official eval_data_list_{year}.csv?") from e
    ncols = get_year(year).eval_list_columns
    entries: dict[tuple[str, str], EvalEntry] = {}
    labelled_seen: dict[tuple[str, str], int] = {}
    machine: str | None = None
    for lineno, row in enumerate(csv.reader(text.splitlines()), 1):
        fields = [f.strip() for f in row]
        where = f"{path}:{lineno}"
        if not any(fields):
            continue
        if len(fields) == 1:
            machine = fields[0]
            continue
        if len(fields) != ncols:
            raise EvalListError(
                f"{where}: expected a machine-type line or {ncols} comma-separated fields "
                f"({'<blinded>,<labelled>,<0|1>' if ncols == 3 else '<blinded>,<labelled>'}), got {len(fields)}: {','.join(row)!r}; "
                f"is this the eval list of {year}?"
            )
        if machine is None:
            raise EvalListError(f"{where}: a clip row comes before the first machine-type line")
        blinded, labelled = fields[0], fields[1]
        entry = _parse_row(year, blinded, labelled, fields[2] if ncols == 3 else None, where)
        key = (machine, blinded)
        if key in entries:
            raise EvalListError(f"{where}: '{blinded}' of {machine} is listed twice")
        if (machine, labelled) in labelled_seen:
            raise EvalListError(
                f"{where}: labelled name '{labelled}' of {machine} also on line {labelled_seen[(machine, labelled)]}"
            )
        labelled_seen[(machine, labelled)] = lineno
        entries[key] = entry
    if not entries:
        raise EvalListError(f"{path}: no clip rows found; expected the official eval_data_list_{year}.csv")
    return entries


def _parse_row(year: int, blinded: str, labelled: str, flag: str | None, where: str) -> EvalEntry:
    try:
        b = parse_name(year, blinded, where)
        lab = parse_labelled_name(year, labelled, where)
    except DcaseNameError as e:
        raise EvalListError(str(e)) from e
    if not b.blinded:
        raise EvalListError(
            f"{where}: first column '{blinded}' is a labelled name; expected the blinded (distributed) name"
        )
    if b.section != lab.section:
        raise EvalListError(f"{where}: section of '{blinded}' ({b.section}) differs from '{labelled}' ({lab.section})")
    if b.domain is not None and b.domain != lab.domain:
        raise EvalListError(f"{where}: domain of '{blinded}' ({b.domain}) differs from '{labelled}' ({lab.domain})")
    if lab.split not in ("test", None):
        raise EvalListError(
            f"{where}: labelled name '{labelled}' is a {lab.split} clip; eval lists hold test clips only"
        )
    assert lab.label is not None and lab.domain is not None  # guaranteed by parse_labelled_name
    if flag is not None:
        if flag not in ("0", "1"):
            raise EvalListError(f"{where}: third column must be 0 (normal) or 1 (anomaly), got {flag!r}")
        if ("anomaly" if flag == "1" else "normal") != lab.label:
            raise EvalListError(f"{where}: label column {flag} contradicts the labelled name '{labelled}'")
    return EvalEntry(lab.label, lab.domain, labelled)


def correct_2022_toy_truth(
    entries: Mapping[tuple[str, str], EvalEntry],
    year: int,
    list_path: str | Path | None = None,
    metadata: str | Path | None = None,
) -> dict[tuple[str, str], EvalEntry]:
    """DCASE 2022 ToyCar/ToyTrain: label and domain from the official evaluator, not the eval list.

    The public ``eval_data_list_2022.csv`` and the 2022 evaluator's ``ground_truth_data`` /
    ``ground_truth_domain`` files disagree on about half of these clips (the other five machine
    types agree row for row). The evaluator's files are the ones the challenge was scored with
    (committed at the evaluator's release; its README's ToyCar AUCs are impossible under labels
    unrelated to the audio), so they win. Applied only to rows identical to the official list's
    (found in the DCASE metadata, or ``list_path`` itself when its sha256 is the published one);
    other lists (synthetic corpora) are left alone. The evaluator's files ship with asdlib (MIT).
    Other years and machine types are returned unchanged.
    """
    out = dict(entries)
    if year != 2022:
        return out
    official_path = official_eval_list(2022, metadata)
    if official_path is None and list_path is not None:
        published = fetched_files().get(eval_list_rel(2022))
        official_path = Path(list_path) if file_digest(Path(list_path), "sha256") == published else None
    official = read_eval_list(official_path, 2022) if official_path is not None else {}
    for machine in TOY_TYPES_2022:
        rows = {k: v for k, v in entries.items() if k[0] == machine}
        if not rows or any(k not in official or official[k].labelled_name != v.labelled_name for k, v in rows.items()):
            continue  # not the official list's rows for this machine type
        truth = read_evaluator_truth(2022, machine)
        changed = 0
        for key, entry in rows.items():
            label, domain = truth[key[1]]
            changed += (label, domain) != (entry.label, entry.domain)
            # the labelled name (and so the attributes it shows) stays as in the list: it comes from
            # the same shuffle and is unverified for these two types. utt2attr never reads it (docs/design.md §4).
            out[key] = entry._replace(label=label, domain=domain)
        logger.info(
            "DCASE 2022 %s: label and domain of %d eval test clips taken from the official 2022 evaluator "
            "(the eval list disagrees on %d); the list's labelled names and attributes are unverified for %s",
            machine,
            len(rows),
            changed,
            "/".join(TOY_TYPES_2022),
        )
    return out


def check_eval_list(
    entries: Mapping[tuple[str, str], EvalEntry], found: Mapping[str, Collection[str]], list_path: str | Path
) -> list[str]:
    """Check that the list covers exactly the eval-test files found per machine.

    ``found`` maps machine -> file names on disk. Raises :class:`EvalListError` naming missing
    (listed, not on disk) and extra (on disk, not listed) files, and machines on disk that the list
    lacks. Listed machines without eval-test files on disk are fine (a partial download, e.g.
    ``--machines``): their rows are ignored, and returned for the caller to report.
    """
    listed: dict[str, set[str]] = {}
    for machine, blinded in entries:
        listed.setdefault(machine, set()).add(blinded)
    problems = []
    for machine in sorted(found):
        on_disk = set(found[machine])
        if machine not in listed:
            problems.append(f"{machine}: not in the list at all ({len(on_disk)} files on disk)")
            continue
        missing = sorted(listed[machine] - on_disk)
        extra = sorted(on_disk - listed[machine])
        if missing:
            problems.append(
                f"{machine}: {len(missing)} listed files missing on disk, e.g. {', '.join(missing[:_SHOWN])}"
            )
        if extra:
            problems.append(f"{machine}: {len(extra)} files on disk not in the list, e.g. {', '.join(extra[:_SHOWN])}")
    if problems:
        raise EvalListError(
            f"eval list {list_path} does not match the evaluation test files: "
            + "; ".join(problems)
            + ". Use the list of the same year as the corpus, re-extract damaged archives, or pass --eval_list none to prepare without ground truth."
        )
    absent = sorted(set(listed) - set(found))
    if absent:
        logger.warning(
            "eval list %s names machines without evaluation test files on disk (their rows are ignored): %s",
            list_path,
            ", ".join(absent),
        )
    return absent
