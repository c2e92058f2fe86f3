"""The official DCASE metadata: the MIT-licensed evaluator files asdlib ships, and where the others are.

Stage 1 needs the evaluation ground truth even when the user has only the Zenodo archives, and the
tests compare asdlib's tables with the official files. The files of the 2021 and 2022 evaluators
(MIT) ship in ``asdlib/resources/dcase``. The official baseline's ``datasets/`` and the 2023 and
2024 evaluators' files come under NTT's "Software License Agreement for Evaluation", which forbids
redistribution, so asdlib does not ship them: ``python -m asdlib.bin.fetch_metadata`` fetches
them from the official repositories at the commits of :data:`SOURCES` and checks each against the
sha256 asdlib publishes (``fetched.sha256``). Every copy keeps the layout
``<folder>/<path in the source repository>`` (folders ``baseline_ae/``, ``evaluator20XX/``).

A metadata directory is found, in this order: the explicit option (``--metadata_dir``), the
environment variable ``ASDLIB_DCASE_METADATA``, the recipe's cache ``downloads/dcase_metadata/``
(relative to the working directory, which is the recipe directory in a recipe).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from asdlib.utils import UserError
from asdlib.years import YEARS

#: root of the shipped copies (the MIT-licensed evaluators): one folder per source repository
DCASE_RESOURCES: Path = Path(__file__).resolve().parents[1] / "resources" / "dcase"
#: sha256 table of the files that are fetched, not shipped (``<sha256>  <relative path>`` lines)
FETCHED_SHA256: Path = DCASE_RESOURCES / "fetched.sha256"
#: environment variable naming a metadata directory (for offline machines and the tests)
METADATA_ENV = "ASDLIB_DCASE_METADATA"
#: the recipe's cache that fetch_metadata fills by default, relative to the recipe directory
RECIPE_CACHE = Path("downloads") / "dcase_metadata"
FETCH_COMMAND = "python -m asdlib.bin.fetch_metadata"


@dataclass(frozen=True)
class Source:
    """One official repository whose data files asdlib reads, pinned at the commit they were checked at."""

    folder: str  # top-level folder of a metadata directory
    repo: str  # owner/name on GitHub
    commit: str
    licence: str
    shipped: bool  # True: in asdlib/resources/dcase (a licence that allows it); False: fetched


SOURCES: dict[str, Source] = {
    s.folder: s
    for s in (
        Source(
            "baseline_ae",
            "nttcslab/dcase2023_task2_baseline_ae",
            "9b64dc42276a64f65b7cbf2761d3c9ec525cff94",
            "NTT Software License Agreement for Evaluation (LICENSEv2.1.pdf in the repository)",
            shipped=False,
        ),
        Source(
            "evaluator2021",
            "y-kawagu/dcase2021_task2_evaluator",
            "1787468",
            "MIT, Copyright (c) 2021 Hitachi, Ltd.",
            shipped=True,
        ),
        Source(
            "evaluator2022",
            "Kota-Dohi/dcase2022_evaluator",
            "de8719b",
            "MIT, Copyright (c) 2022 Kota-Dohi",
            shipped=True,
        ),
        Source(
            "evaluator2023",
            "nttcslab/dcase2023_task2_evaluator",
            "3aa8a9fe09a9a55d9dccb74fd4f17ba9791fb5ea",
            "NTT Software License Agreement for Evaluation (LISENCE.pdf in the repository)",
            shipped=False,
        ),
        Source(
            "evaluator2024",
            "nttcslab/dcase2024_task2_evaluator",
            "b5d17f63769bf4372a5412a7ede1f814c9590047",
            "NTT Software License Agreement for Evaluation (LISENCEv2.1.pdf in the repository)",
            shipped=False,
        ),
    )
}


class MetadataMissingError(FileNotFoundError, UserError):
    """An official metadata file that is neither shipped nor in a metadata directory."""


def fetched_files() -> dict[str, str]:
    """Relative path -> sha256 of every file that is fetched rather than shipped (``fetched.sha256``)."""
    out: dict[str, str] = {}
    for line in FETCHED_SHA256.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            digest, _, rel = line.partition("  ")
            out[rel] = digest
    return out


def source_of(rel: str) -> Source:
    """The source repository of a metadata-relative path (its first component)."""
    folder = rel.split("/", 1)[0]
    if folder not in SOURCES:
        raise ValueError(f"{rel}: not under a known metadata folder ({', '.join(SOURCES)})")
    return SOURCES[folder]


def metadata_dir(explicit: str | Path | None = None) -> Path | None:
    """The metadata directory to read: ``explicit``, else $ASDLIB_DCASE_METADATA, else the recipe cache.

    An explicit directory or environment value that is not a directory is an error (a typo must not
    silently fall through to another copy); an absent recipe cache gives None.
    """
    for value, what in ((explicit, "--metadata_dir"), (os.environ.get(METADATA_ENV) or None, METADATA_ENV)):
        if value is not None:
            path = Path(value).expanduser().resolve()
            if not path.is_dir():
                raise MetadataMissingError(
                    f"{what}={value}: not a directory; give a folder holding baseline_ae/ and evaluator20XX/ "
                    f"as {FETCH_COMMAND} --dest DIR writes it"
                )
            return path
    cache = RECIPE_CACHE.resolve()
    return cache if cache.is_dir() else None


def how_to_get(rel: str) -> str:
    """The one-line advice for a missing metadata file."""
    return (
        f"the official DCASE file {rel} ({source_of(rel).repo}), which asdlib does not ship (its licence forbids "
        f"redistribution): run '{FETCH_COMMAND}' in the recipe directory (writes {RECIPE_CACHE}/), "
        f"or set {METADATA_ENV}=DIR to a copy in the same layout"
    )


def metadata_file(rel: str, explicit: str | Path | None = None, required: bool = False) -> Path | None:
    """The path of metadata file ``rel`` (e.g. ``baseline_ae/datasets/eval_data_list_2023.csv``).

    Shipped files come from the metadata directory when it has them, else from the package; fetched
    files only from the metadata directory. Missing: None, or with ``required`` a
    :class:`MetadataMissingError` saying how to get it.
    """
    folder = metadata_dir(explicit)
    if folder is not None and (folder / rel).is_file():
        return folder / rel
    if source_of(rel).shipped and (DCASE_RESOURCES / rel).is_file():
        return DCASE_RESOURCES / rel
    if required:
        where = f" (looked in {folder})" if folder is not None else ""
        raise MetadataMissingError(how_to_get(rel) + where)
    return None


def eval_list_rel(year: int) -> str:
    """Metadata-relative path of the official eval list of ``year``."""
    return f"baseline_ae/datasets/eval_data_list_{year}.csv"


def official_eval_list(year: int, explicit: str | Path | None = None, required: bool = False) -> Path | None:
    """The official eval list of ``year`` from the metadata; None where none is published (or, unless
    ``required``, where no copy is found)."""
    if year not in YEARS or not YEARS[year].eval_list:
        return None
    return metadata_file(eval_list_rel(year), explicit, required)


def evaluator_dir(year: int, explicit: str | Path | None = None) -> Path | None:
    """Ground-truth folder of the official evaluator of ``year`` (2021-2024); None for the others or
    when the year's files are fetched and no copy is found.

    2020 has no evaluator data (its evaluator reads the 2020 eval list); no 2025 evaluator files are used.
    """
    if year not in YEARS or not YEARS[year].evaluator:
        return None
    folder = f"evaluator{year}"
    found = metadata_dir(explicit)
    if found is not None and (found / folder).is_dir():
        return found / folder
    return DCASE_RESOURCES / folder if SOURCES[folder].shipped else None


def read_evaluator_truth(year: int, machine: str, explicit: str | Path | None = None) -> dict[str, tuple[str, str]]:
    """Blinded file name -> (label, domain) of ``machine`` from the 2022-2024 evaluator's files.

    Reads every ``ground_truth_data/ground_truth_<machine>_section_<XX>_test.csv`` (0 normal, 1
    anomaly) and the same file under ``ground_truth_domain/`` (0 source, 1 target). Raises
    FileNotFoundError when the machine has no files, ValueError on a malformed or inconsistent pair.
    """
    if year not in YEARS or not YEARS[year].evaluator or not YEARS[year].evaluator_truth_files:
        raise ValueError(f"no per-section label/domain files of the official evaluator for DCASE {year}")
    folder = evaluator_dir(year, explicit)
    if folder is None:
        raise MetadataMissingError(how_to_get(f"evaluator{year}/ground_truth_data"))
    paths = sorted((folder / "ground_truth_data").glob(f"ground_truth_{machine}_section_*_test.csv"))
    if not paths:
        raise FileNotFoundError(f"{folder}/ground_truth_data has no files for machine type {machine}")
    out: dict[str, tuple[str, str]] = {}
    for path in paths:
        labels = _read_flags(path)
        domains = _read_flags(folder / "ground_truth_domain" / path.name)
        if labels.keys() != domains.keys():
            raise ValueError(f"{path.name}: label and domain files list different clips")
        for name, flag in labels.items():
            out[name] = (("normal", "anomaly")[flag], ("source", "target")[domains[name]])
    return out


def _read_flags(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for lineno, row in enumerate(csv.reader(f), 1):
            if not row:
                continue
            if len(row) != 2 or row[1].strip() not in ("0", "1"):
                raise ValueError(f"{path}:{lineno}: expected '<file>,<0|1>', got {','.join(row)!r}")
            out[row[0].strip()] = int(row[1])
    return out
