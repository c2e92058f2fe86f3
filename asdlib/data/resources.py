"""The official DCASE metadata shipped inside asdlib (``asdlib/resources/dcase``, see its README.md).

Stage 1 needs the evaluation ground truth even when the user has only the Zenodo archives, and the
tests compare asdlib's tables with the official files: both read them from here, so a plain clone
or an installed wheel works offline. Files are kept byte for byte as published, under
``<source>/<path in the source repository>``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from asdlib.years import YEARS

#: root of the shipped copies: one folder per source repository
DCASE_RESOURCES: Path = Path(__file__).resolve().parents[1] / "resources" / "dcase"
#: ``datasets/`` of the official baseline: eval lists, machine-type and download-path yaml files
BASELINE_DATASETS: Path = DCASE_RESOURCES / "baseline_ae" / "datasets"


def shipped_eval_list(year: int) -> Path | None:
    """The official eval list of ``year`` shipped with asdlib; None where none is published."""
    if year not in YEARS or not YEARS[year].eval_list:
        return None
    return BASELINE_DATASETS / f"eval_data_list_{year}.csv"


def evaluator_dir(year: int) -> Path | None:
    """Ground-truth folder of the official evaluator of ``year`` (2021-2024); None for the others.

    2020 has no evaluator data (its evaluator reads the 2020 eval list); no 2025 evaluator files are shipped.
    """
    return DCASE_RESOURCES / f"evaluator{year}" if year in YEARS and YEARS[year].evaluator else None


def read_evaluator_truth(year: int, machine: str) -> dict[str, tuple[str, str]]:
    """Blinded file name -> (label, domain) of ``machine`` from the 2022-2024 evaluator's files.

    Reads every ``ground_truth_data/ground_truth_<machine>_section_<XX>_test.csv`` (0 normal, 1
    anomaly) and the same file under ``ground_truth_domain/`` (0 source, 1 target). Raises
    FileNotFoundError when the machine has no files, ValueError on a malformed or inconsistent pair.
    """
    folder = evaluator_dir(year)
    if folder is None or not YEARS[year].evaluator_truth_files:
        raise ValueError(f"no per-section label/domain files of the official evaluator for DCASE {year}")
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
