"""DCASE Task 2 (2020-2026) file names and per-year facts.

Every year names its clips differently (docs/dcase.md §1-6), and the blinded evaluation names
hide the label (and from 2022 the domain). This module is the one place that knows those
patterns, so data preparation and the eval-list reader agree on what a name means and an
unexpected name stops the run instead of being skipped or mislabelled.

Machine and section lists are copied from the official baseline's ``datasets/machine_type_*.yaml``
(nttcslab/dcase2023_task2_baseline_ae); tests compare them with those files. DCASE 2026 (stereo, its
evaluation test set not yet released) names its clips as 2022-2025 do, with a ``noise_<n>`` attribute.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

NO_ATTRIBUTE = "noAttribute"
YEARS = (2020, 2021, 2022, 2023, 2024, 2025, 2026)

_MIMII_20_DEV = ("00", "02", "04", "06")
_MIMII_20_EVAL = ("01", "03", "05")
_DEV_21_22 = ("00", "01", "02")
_EVAL_21_22 = ("03", "04", "05")
_S00 = ("00",)


class DcaseNameError(ValueError):
    """A file name that matches none of the year's official patterns."""


@dataclass(frozen=True)
class YearInfo:
    """Official machine types and sections (2020: machine ids) of one challenge year."""

    year: int
    section_keyword: str  # "id" (2020) or "section": the name token before the two digits
    dev: Mapping[str, tuple[str, ...]]  # machine -> sections of the development set
    eval: Mapping[str, tuple[str, ...]]  # machine -> sections of the evaluation set


def _year(year: int, keyword: str, dev: dict[str, tuple[str, ...]], eval_: dict[str, tuple[str, ...]]) -> YearInfo:
    return YearInfo(year, keyword, MappingProxyType(dev), MappingProxyType(eval_))


_DEV_23_25 = {m: _S00 for m in ("ToyCar", "ToyTrain", "bearing", "fan", "gearbox", "slider", "valve")}
YEAR_INFO: Mapping[int, YearInfo] = MappingProxyType(
    {
        2020: _year(
            2020,
            "id",
            {**{m: _MIMII_20_DEV for m in ("fan", "pump", "slider", "valve")}, "ToyCar": ("01", "02", "03", "04"), "ToyConveyor": ("01", "02", "03")},
            {**{m: _MIMII_20_EVAL for m in ("fan", "pump", "slider", "valve")}, "ToyCar": ("05", "06", "07"), "ToyConveyor": ("04", "05", "06")},
        ),
        2021: _year(
            2021,
            "section",
            {m: _DEV_21_22 for m in ("ToyCar", "ToyTrain", "fan", "gearbox", "slider", "pump", "valve")},
            {m: _EVAL_21_22 for m in ("ToyCar", "ToyTrain", "fan", "gearbox", "slider", "pump", "valve")},
        ),
        2022: _year(
            2022,
            "section",
            {m: _DEV_21_22 for m in ("ToyCar", "ToyTrain", "fan", "gearbox", "bearing", "slider", "valve")},
            {m: _EVAL_21_22 for m in ("ToyCar", "ToyTrain", "fan", "gearbox", "bearing", "slider", "valve")},
        ),
        2023: _year(2023, "section", dict(_DEV_23_25), {m: _S00 for m in ("ToyDrone", "ToyNscale", "ToyTank", "Vacuum", "bandsaw", "grinder", "shaker")}),
        2024: _year(
            2024,
            "section",
            dict(_DEV_23_25),
            {
                m: _S00
                for m in (
                    "3DPrinter",
                    "AirCompressor",
                    "Scanner",
                    "ToyCircuit",
                    "HoveringDrone",
                    "HairDryer",
                    "ToothBrush",
                    "RoboticArm",
                    "BrushlessMotor",
                )
            },
        ),
        2025: _year(
            2025,
            "section",
            dict(_DEV_23_25),
            {m: _S00 for m in ("ToyRCCar", "ToyPet", "HomeCamera", "AutoTrash", "Polisher", "ScrewFeeder", "BandSealer", "CoffeeGrinder")},
        ),
        2026: _year(
            2026,
            "section",
            {m: _S00 for m in ("ToyCarEmu", "ToyCar", "bearingEmu", "fan", "gearboxEmu", "sliderEmu", "valveEmu")},
            {m: _S00 for m in ("ToyDrone", "ToothBrush", "SewingMachine", "BlowerDustCollector", "Sander")},
        ),
    }
)


@dataclass(frozen=True)
class ParsedName:
    """The fields a DCASE file name carries. ``None`` means the name hides it (blinded eval test)."""

    section: str
    domain: str | None
    label: str | None
    attr: str
    index: str  # opaque digits: 0- or 1-based depending on machine and year
    split: str | None  # "train"/"test"; None where the name does not say (2020, blinded names)

    @property
    def blinded(self) -> bool:
        return self.label is None


_ATTR = r"(?:_(?P<attr>\S*))?"
_LABELLED_2021_25 = r"section_(?P<section>\d{2})_(?P<domain>source|target)_(?P<split>train|test)_(?P<label>normal|anomaly)_(?P<index>\d+)"
# Each year: (pattern, human-readable form) for every accepted name; first match wins.
_PATTERNS: dict[int, tuple[tuple[re.Pattern[str], str], ...]] = {
    2020: (
        (re.compile(r"(?P<label>normal|anomaly)_id_(?P<section>\d{2})_(?P<index>\d+)\.wav"), "{normal|anomaly}_id_XX_NNNNNNNN.wav"),
        (re.compile(r"id_(?P<section>\d{2})_(?P<index>\d+)\.wav"), "id_XX_NNNNNNNN.wav (blinded eval test)"),
    ),
    2021: (
        (
            re.compile(_LABELLED_2021_25 + _ATTR + r"\.wav"),
            "section_XX_{source|target}_{train|test}_{normal|anomaly}_NNNN[_<attribute>].wav",
        ),
        (
            re.compile(r"section_(?P<section>\d{2})_(?P<domain>source|target)_(?P<split>test)_(?P<index>\d+)\.wav"),
            "section_XX_{source|target}_test_NNNN.wav (blinded eval test)",
        ),
    ),
}
for _y in (2022, 2023, 2024, 2025, 2026):
    _PATTERNS[_y] = (
        (
            re.compile(_LABELLED_2021_25 + _ATTR + r"\.wav"),
            "section_XX_{source|target}_{train|test}_{normal|anomaly}_NNNN_<attribute>.wav",
        ),
        (re.compile(r"section_(?P<section>\d{2})_(?P<index>\d+)\.wav"), "section_XX_NNNN.wav (blinded eval test)"),
    )

# 2024 RoboticArm rows of eval_data_list_2024.csv lack the "test" token
# (``section_00_source_normal_0035_weight15_BckgF.wav``); only eval-list labelled names may do so.
_LABELLED_NO_SPLIT = re.compile(
    r"section_(?P<section>\d{2})_(?P<domain>source|target)_(?P<label>normal|anomaly)_(?P<index>\d+)" + _ATTR + r"\.wav"
)

# 2025 supplemental clips (clean machine or noise-only recordings); forms seen in public descriptions:
# ``section_00_machine_0001_.wav`` and ``section_00_machine_source_0000_noAttribute.wav``.
_SUPPLEMENTAL = re.compile(
    r"section_(?P<section>\d{2})_(?P<kind>machine|noise)(?:_(?P<domain>source|target))?_(?P<index>\d+)" + _ATTR + r"\.wav"
)
_SUPPLEMENTAL_FORM = "section_XX_{machine|noise}[_{source|target}]_NNNN[_<attribute>].wav"


def year_info(year: int) -> YearInfo:
    """The official facts of ``year``; a clear error for years this module does not know."""
    if year not in YEAR_INFO:
        raise ValueError(f"unsupported DCASE year {year}; supported: {', '.join(map(str, YEARS))}")
    return YEAR_INFO[year]


def expected_forms(year: int) -> list[str]:
    """Human-readable name patterns accepted for ``year`` (for error messages and docs)."""
    year_info(year)
    return [form for _, form in _PATTERNS[year]]


def normalize_attr(attr: str | None) -> str:
    """Empty attribute (2025 ``..._0000_.wav``) or none at all -> ``noAttribute``."""
    return attr if attr else NO_ATTRIBUTE


def parse_name(year: int, name: str, where: str | None = None) -> ParsedName:
    """Split a DCASE wav file name (basename) of ``year`` into its fields.

    Accepts the labelled names of train/test clips and the blinded eval-test names. ``where``
    (e.g. the directory or list file) is named in the error.
    """
    year_info(year)
    for pattern, _ in _PATTERNS[year]:
        m = pattern.fullmatch(name)
        if m:
            return _from_match(year, m)
    raise _name_error(year, name, where, expected_forms(year))


def parse_labelled_name(year: int, name: str, where: str | None = None) -> ParsedName:
    """Parse the labelled (second) column of an official eval list; label and domain must be visible.

    Besides :func:`parse_name`'s labelled forms it accepts the 2022-2025 form without the
    ``test`` token that the official 2024 list uses for RoboticArm.
    """
    year_info(year)
    try:
        parsed = parse_name(year, name, where)
    except DcaseNameError:
        m = _LABELLED_NO_SPLIT.fullmatch(name) if year >= 2022 else None
        if m is None:
            raise
        parsed = _from_match(year, m)
    if parsed.label is None:
        raise _name_error(year, name, where, [f for f in expected_forms(year) if "blinded" not in f], kind="labelled ")
    return parsed


def parse_supplemental_name(year: int, name: str, where: str | None = None) -> ParsedName:
    """Parse a 2025 ``supplemental/`` clip: normal by construction, source domain unless named."""
    if year != 2025:
        raise DcaseNameError(f"{where or name}: supplemental clips exist only in DCASE 2025, not {year}")
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
    )


def _from_match(year: int, m: re.Match[str]) -> ParsedName:
    groups = m.groupdict()
    domain = groups.get("domain")
    if year == 2020:
        domain = "source"  # 2020 has no domains; docs/design.md §4 writes "source"
    return ParsedName(
        section=groups["section"],
        domain=domain,
        label=groups.get("label"),
        attr=normalize_attr(groups.get("attr")),
        index=groups["index"],
        split=groups.get("split") or ("test" if "label" in groups and year >= 2021 else None),
    )


def _name_error(year: int, name: str, where: str | None, forms: list[str], kind: str = "") -> DcaseNameError:
    loc = f"{where}: " if where else ""
    return DcaseNameError(
        f"{loc}'{name}' is not a DCASE {year} {kind}file name; expected one of: {'; '.join(forms)}. "
        f"Check --year ({year}) and that the corpus directory holds the official, unrenamed files."
    )
