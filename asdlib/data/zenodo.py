"""Where the official DCASE Task 2 corpora (2020-2026) are published: Zenodo archives per machine.

The record ids, URL path words and file-name patterns are each year's ``zenodo`` entries in
:mod:`asdlib.years`, those of the official baseline's ``datasets/download_path_*.yaml``
(nttcslab/dcase2023_task2_baseline_ae); ``tests/data/test_download.py`` compares them with a
fetched copy of those files when there is one (:mod:`asdlib.data.resources`). Each year publishes
three Zenodo records: the development set, the evaluation set's training clips ("additional
training data") and its test clips (2026: no evaluation test set yet). Archives unpack to
``<machine>/...``; they are extracted into ``<root>/dev_data/`` or ``<root>/eval_data/``, the
layout :mod:`asdlib.bin.prepare_dcase` reads.

Checksums: Zenodo publishes an md5 per file in each record's API entry
(``https://zenodo.org/api/records/<id>``); :mod:`asdlib.data.download` reads them from there at
download time. ``KNOWN_MD5`` holds the ones confirmed by hand (none yet: "unknown" is not a value).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from asdlib.years import ARCHIVE_KINDS as KINDS
from asdlib.years import YEARS, get_year

ZENODO = "https://zenodo.org"
PART_OF_KIND = MappingProxyType({"dev": "dev_data", "eval_train": "eval_data", "eval_test": "eval_data"})
#: official ground truth of the blinded evaluation test clips (docs/dcase.md), one file per year
EVAL_LIST_URL = (
    "https://raw.githubusercontent.com/nttcslab/dcase2023_task2_baseline_ae/main/datasets/eval_data_list_{year}.csv"
)

#: (file name, record id) -> md5 hex digest, for archives whose checksum was confirmed by hand
KNOWN_MD5: Mapping[tuple[str, int], str] = MappingProxyType({})


@dataclass(frozen=True)
class Archive:
    """One downloadable archive of the official corpus."""

    year: int
    kind: str  # dev | eval_train | eval_test
    machine: str
    record_id: int
    file_name: str
    url: str
    md5: str | None  # None = unknown here (looked up in the Zenodo record at download time)

    @property
    def part(self) -> str:
        """The corpus directory the archive unpacks into: ``dev_data`` or ``eval_data``."""
        return PART_OF_KIND[self.kind]

    @property
    def record_api_url(self) -> str:
        """Zenodo's JSON description of the record (file sizes and md5 checksums)."""
        return f"{ZENODO}/api/records/{self.record_id}"


def machines(year: int, kind: str) -> tuple[str, ...]:
    """Official machine types of ``year`` whose data come in archives of ``kind``."""
    _check(year, kind)
    info = get_year(year)
    return tuple(info.dev if kind == "dev" else info.eval)


def kinds(year: int) -> tuple[str, ...]:
    """The archive kinds published for ``year`` (2026 has no evaluation test set yet)."""
    if year not in YEARS:
        raise ValueError(f"no download table for DCASE {year}; known years: {', '.join(map(str, YEARS))}")
    return tuple(k for k in KINDS if k in YEARS[year].zenodo)


def archive(year: int, kind: str, machine: str) -> Archive:
    """The archive of one machine type; a clear error for machines the year does not have."""
    official = machines(year, kind)
    if machine not in official:
        raise ValueError(
            f"DCASE {year} has no {kind} archive for machine '{machine}'; its machines: {', '.join(official)}"
        )
    info = get_year(year)
    rec = info.zenodo[kind]
    name = info.zenodo_renamed.get((kind, machine), rec.pattern.format(m=machine))
    return Archive(
        year,
        kind,
        machine,
        rec.record_id,
        name,
        f"{ZENODO}/{rec.path}/{rec.record_id}/files/{name}",
        KNOWN_MD5.get((name, rec.record_id)),
    )


def archives(
    year: int, kinds_: tuple[str, ...] | None = None, machines_: tuple[str, ...] | None = None
) -> list[Archive]:
    """Archives of ``year`` (all kinds and machines unless restricted); unknown machine names are errors."""
    wanted_kinds = kinds(year) if kinds_ is None else kinds_
    for k in wanted_kinds:
        _check(year, k)
    if machines_ is not None:
        known = {m for k in kinds(year) for m in machines(year, k)}
        unknown = sorted(set(machines_) - known)
        if unknown:
            raise ValueError(
                f"DCASE {year} has no machine type(s) {', '.join(unknown)}; its machines: {', '.join(sorted(known))}"
            )
    return [archive(year, k, m) for k in wanted_kinds for m in machines(year, k) if machines_ is None or m in machines_]


def eval_list_url(year: int) -> str | None:
    """URL of the official ``eval_data_list_<year>.csv`` (None where none is published)."""
    return EVAL_LIST_URL.format(year=year) if get_year(year).eval_list else None


def _check(year: int, kind: str) -> None:
    if kind not in kinds(year):
        raise ValueError(f"DCASE {year} publishes no '{kind}' archives; choose from {', '.join(kinds(year))}")
