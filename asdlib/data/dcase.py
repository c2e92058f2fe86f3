"""DCASE Task 2 (2020-2026) file names.

Every year names its clips differently (docs/dcase.md §1-6), and the blinded evaluation names
hide the label (and from 2022 the domain). This module is the one place that knows those
patterns, so data preparation and the eval-list reader agree on what a name means and an
unexpected name stops the run instead of being skipped or mislabelled. Which pattern a year uses
is its ``naming`` in :mod:`asdlib.years` (the per-year table); DCASE 2026 names its clips as
2022-2025 do, with a ``noise_<n>`` attribute.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from asdlib.years import YEARS, Year, get_year

NO_ATTRIBUTE = "noAttribute"


class DcaseNameError(ValueError):
    """A file name that matches none of the year's official patterns."""


@dataclass(frozen=True)
class ParsedName:
    """The fields a DCASE file name carries. ``None`` means the name hides it (blinded eval test)."""

    section: str
    domain: str | None
    label: str | None
    attr: str
    index: str  # opaque digits: 0- or 1-based depending on machine and year
    split: str | None  # "train"/"test"; None where the name does not say (2020, blinded names)
    kind: str | None = None  # 2025 supplemental clips: "machine" (clean) or "noise" (noise only)

    @property
    def blinded(self) -> bool:
        return self.label is None


_ATTR = r"(?:_(?P<attr>\S*))?"
_LABELLED_2021_25 = r"section_(?P<section>\d{2})_(?P<domain>source|target)_(?P<split>train|test)_(?P<label>normal|anomaly)_(?P<index>\d+)"
# Each naming style (asdlib.years.NAMINGS): (pattern, human-readable form) for every accepted name;
# first match wins.
_PATTERNS: dict[str, tuple[tuple[re.Pattern[str], str], ...]] = {
    "id": (
        (
            re.compile(r"(?P<label>normal|anomaly)_id_(?P<section>\d{2})_(?P<index>\d+)\.wav"),
            "{normal|anomaly}_id_XX_NNNNNNNN.wav",
        ),
        (re.compile(r"id_(?P<section>\d{2})_(?P<index>\d+)\.wav"), "id_XX_NNNNNNNN.wav (blinded eval test)"),
    ),
    "section_domain": (
        (
            re.compile(_LABELLED_2021_25 + _ATTR + r"\.wav"),
            "section_XX_{source|target}_{train|test}_{normal|anomaly}_NNNN[_<attribute>].wav",
        ),
        (
            re.compile(r"section_(?P<section>\d{2})_(?P<domain>source|target)_(?P<split>test)_(?P<index>\d+)\.wav"),
            "section_XX_{source|target}_test_NNNN.wav (blinded eval test)",
        ),
    ),
    "section": (
        (
            re.compile(_LABELLED_2021_25 + _ATTR + r"\.wav"),
            "section_XX_{source|target}_{train|test}_{normal|anomaly}_NNNN_<attribute>.wav",
        ),
        (re.compile(r"section_(?P<section>\d{2})_(?P<index>\d+)\.wav"), "section_XX_NNNN.wav (blinded eval test)"),
    ),
}

# 2024 RoboticArm rows of eval_data_list_2024.csv lack the "test" token
# (``section_00_source_normal_0035_weight15_BckgF.wav``); only eval-list labelled names of the
# ``section`` naming may do so.
_LABELLED_NO_SPLIT = re.compile(
    r"section_(?P<section>\d{2})_(?P<domain>source|target)_(?P<label>normal|anomaly)_(?P<index>\d+)" + _ATTR + r"\.wav"
)

# 2025 supplemental clips (clean machine or noise-only recordings); forms seen in public descriptions:
# ``section_00_machine_0001_.wav`` and ``section_00_machine_source_0000_noAttribute.wav``.
_SUPPLEMENTAL = re.compile(
    r"section_(?P<section>\d{2})_(?P<kind>machine|noise)(?:_(?P<domain>source|target))?_(?P<index>\d+)"
    + _ATTR
    + r"\.wav"
)
_SUPPLEMENTAL_FORM = "section_XX_{machine|noise}[_{source|target}]_NNNN[_<attribute>].wav"


def expected_forms(year: int) -> list[str]:
    """Human-readable name patterns accepted for ``year`` (for error messages and docs)."""
    return [form for _, form in _PATTERNS[get_year(year).naming]]


def normalize_attr(attr: str | None) -> str:
    """Empty attribute (2025 ``..._0000_.wav``) or none at all -> ``noAttribute``."""
    return attr if attr else NO_ATTRIBUTE


def parse_name(year: int, name: str, where: str | None = None) -> ParsedName:
    """Split a DCASE wav file name (basename) of ``year`` into its fields.

    Accepts the labelled names of train/test clips and the blinded eval-test names. ``where``
    (e.g. the directory or list file) is named in the error.
    """
    info = get_year(year)
    for pattern, _ in _PATTERNS[info.naming]:
        m = pattern.fullmatch(name)
        if m:
            return _from_match(info, m)
    raise _name_error(year, name, where, expected_forms(year))


def parse_labelled_name(year: int, name: str, where: str | None = None) -> ParsedName:
    """Parse the labelled (second) column of an official eval list; label and domain must be visible.

    Besides :func:`parse_name`'s labelled forms it accepts the 2022-2025 form without the
    ``test`` token that the official 2024 list uses for RoboticArm.
    """
    info = get_year(year)
    try:
        parsed = parse_name(year, name, where)
    except DcaseNameError:
        m = _LABELLED_NO_SPLIT.fullmatch(name) if info.naming == "section" else None
        if m is None:
            raise
        parsed = _from_match(info, m)
    if parsed.label is None:
        raise _name_error(year, name, where, [f for f in expected_forms(year) if "blinded" not in f], kind="labelled ")
    return parsed


def parse_supplemental_name(year: int, name: str, where: str | None = None) -> ParsedName:
    """Parse a 2025 ``supplemental/`` clip: normal by construction, source domain unless named."""
    if not get_year(year).supplemental:
        having = ", ".join(str(y) for y, info in YEARS.items() if info.supplemental)
        raise DcaseNameError(f"{where or name}: supplemental clips exist only in DCASE {having}, not {year}")
    m = _SUPPLEMENTAL.fullmatch(name)
    if m is None:
        raise _name_error(year, name, where, [_SUPPLEMENTAL_FORM], kind="supplemental ")
    return ParsedName(
        section=m["section"],
        domain=m["domain"] or "source",
        label="normal",
        attr=normalize_attr(m["attr"]),
        index=m["index"],
        split="supplemental",
        kind=m["kind"],
    )


def _from_match(info: Year, m: re.Match[str]) -> ParsedName:
    groups = m.groupdict()
    domain = groups.get("domain")
    if not info.has_domains:
        domain = "source"  # 2020 has no domains; docs/design.md §4 writes "source"
    return ParsedName(
        section=groups["section"],
        domain=domain,
        label=groups.get("label"),
        attr=normalize_attr(groups.get("attr")),
        index=groups["index"],
        split=groups.get("split") or ("test" if "label" in groups and info.has_domains else None),
    )


def _name_error(year: int, name: str, where: str | None, forms: list[str], kind: str = "") -> DcaseNameError:
    loc = f"{where}: " if where else ""
    return DcaseNameError(
        f"{loc}'{name}' is not a DCASE {year} {kind}file name; expected one of: {'; '.join(forms)}. "
        f"Check --year ({year}) and that the corpus directory holds the official, unrenamed files."
    )
