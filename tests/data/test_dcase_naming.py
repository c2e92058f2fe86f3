"""DCASE file-name parsing per year (docs/dcase.md §1-6) against examples and the official lists."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml
from conftest import real_metadata

from asdlib.data.dcase import (
    NO_ATTRIBUTE,
    DcaseNameError,
    parse_labelled_name,
    parse_name,
    parse_supplemental_name,
)
from asdlib.data.resources import eval_list_rel, fetched_files, official_eval_list
from asdlib.years import YEARS, eval_list_years, get_year

# (year, name, section, domain, label, attr, index, split); None = hidden by the name
EXAMPLES = [
    (2020, "normal_id_01_00000000.wav", "01", "source", "normal", NO_ATTRIBUTE, "00000000", None),
    (2020, "anomaly_id_01_00000012.wav", "01", "source", "anomaly", NO_ATTRIBUTE, "00000012", None),
    (2020, "normal_id_04_00000999.wav", "04", "source", "normal", NO_ATTRIBUTE, "00000999", None),
    (2020, "id_05_00000000.wav", "05", "source", None, NO_ATTRIBUTE, "00000000", None),
    (2020, "id_01_00000001.wav", "01", "source", None, NO_ATTRIBUTE, "00000001", None),
    (
        2021,
        "section_00_source_train_normal_0000_strength_1_ambient.wav",
        "00",
        "source",
        "normal",
        "strength_1_ambient",
        "0000",
        "train",
    ),
    (2021, "section_00_target_train_normal_0002_pat.wav", "00", "target", "normal", "pat", "0002", "train"),
    (2021, "section_00_source_test_normal_0000.wav", "00", "source", "normal", NO_ATTRIBUTE, "0000", "test"),
    (2021, "section_02_target_test_anomaly_0099.wav", "02", "target", "anomaly", NO_ATTRIBUTE, "0099", "test"),
    (2021, "section_03_source_test_0000.wav", "03", "source", None, NO_ATTRIBUTE, "0000", "test"),
    (2021, "section_05_target_test_0199.wav", "05", "target", None, NO_ATTRIBUTE, "0199", "test"),
    (2021, "section_03_source_test_anomaly_0000.wav", "03", "source", "anomaly", NO_ATTRIBUTE, "0000", "test"),
    (2022, "section_00_source_train_normal_0989_m-n_W.wav", "00", "source", "normal", "m-n_W", "0989", "train"),
    (2022, "section_00_target_train_normal_0009_vel_21.wav", "00", "target", "normal", "vel_21", "0009", "train"),
    (2022, "section_00_source_test_normal_0000_m-n_W.wav", "00", "source", "normal", "m-n_W", "0000", "test"),
    (2022, "section_01_target_test_anomaly_0049_vel_21.wav", "01", "target", "anomaly", "vel_21", "0049", "test"),
    (2022, "section_03_0000.wav", "03", None, None, NO_ATTRIBUTE, "0000", None),
    (2022, "section_05_0199.wav", "05", None, None, NO_ATTRIBUTE, "0199", None),
    (2023, "section_00_source_train_normal_0000_vel_15.wav", "00", "source", "normal", "vel_15", "0000", "train"),
    (2023, "section_00_source_test_anomaly_0005_vel_15.wav", "00", "source", "anomaly", "vel_15", "0005", "test"),
    (2023, "section_00_0005.wav", "00", None, None, NO_ATTRIBUTE, "0005", None),
    (
        2024,
        "section_00_source_train_normal_0033_noAttribute.wav",
        "00",
        "source",
        "normal",
        NO_ATTRIBUTE,
        "0033",
        "train",
    ),
    (
        2024,
        "section_00_target_train_normal_0010_mdl_B_spd_2.wav",
        "00",
        "target",
        "normal",
        "mdl_B_spd_2",
        "0010",
        "train",
    ),
    (
        2024,
        "section_00_target_test_anomaly_0001_mdl_B_spd_2.wav",
        "00",
        "target",
        "anomaly",
        "mdl_B_spd_2",
        "0001",
        "test",
    ),
    (
        2024,
        "section_00_source_test_normal_0003_spd1000_BckgC.wav",
        "00",
        "source",
        "normal",
        "spd1000_BckgC",
        "0003",
        "test",
    ),
    (2024, "section_00_0200.wav", "00", None, None, NO_ATTRIBUTE, "0200", None),
    (2025, "section_00_source_train_normal_0000_.wav", "00", "source", "normal", NO_ATTRIBUTE, "0000", "train"),
    (2025, "section_00_target_test_anomaly_0049_.wav", "00", "target", "anomaly", NO_ATTRIBUTE, "0049", "test"),
    (
        2025,
        "section_00_source_train_normal_0001_noAttribute.wav",
        "00",
        "source",
        "normal",
        NO_ATTRIBUTE,
        "0001",
        "train",
    ),
    (
        2025,
        "section_00_target_test_anomaly_0012_id_C1_spd_2_mic_2.wav",
        "00",
        "target",
        "anomaly",
        "id_C1_spd_2_mic_2",
        "0012",
        "test",
    ),
    (2025, "section_00_source_test_anomaly_0001_ac_0.03_.wav", "00", "source", "anomaly", "ac_0.03_", "0001", "test"),
    (2025, "section_00_0000.wav", "00", None, None, NO_ATTRIBUTE, "0000", None),
]


@pytest.mark.parametrize("year,name,section,domain,label,attr,index,split", EXAMPLES)
def test_examples_parse(year, name, section, domain, label, attr, index, split):
    p = parse_name(year, name)
    assert (p.section, p.domain, p.label, p.attr, p.index, p.split) == (section, domain, label, attr, index, split)
    assert p.blinded == (label is None)


@pytest.mark.parametrize(
    "year,name",
    [
        (2020, "section_00_source_train_normal_0000_a.wav"),  # later-year name under 2020
        (2021, "section_03_0000.wav"),  # 2022+ blinded form under 2021
        (2022, "section_03_source_test_0000.wav"),  # 2021 blinded form under 2022
        (2022, "normal_id_01_00000000.wav"),
        (2023, "section_00_source_valid_normal_0000_a.wav"),
        (2024, "section_0_0000.wav"),
        (2024, "section_00_source_test_normal_0000_a b.wav"),  # whitespace in the attribute
        (2025, "section_00_source_normal_0000_a.wav"),  # no split token: only eval-list labelled names may
        (2025, "section_00_0000.WAV"),
        (2021, "._section_00_source_test_normal_0000.wav"),  # macOS resource fork
    ],
)
def test_unknown_names_fail_with_message(year, name):
    with pytest.raises(DcaseNameError) as e:
        parse_name(year, name, where="/corpus/fan/test")
    msg = str(e.value)
    assert name in msg and "/corpus/fan/test" in msg and f"DCASE {year}" in msg
    assert "expected one of" in msg and "NNNN" in msg


def test_unknown_year_fails():
    with pytest.raises(ValueError, match="unsupported DCASE year 2019"):
        parse_name(2019, "section_00_0000.wav")


def test_labelled_name_without_test_token_2024():
    """Official 2024 RoboticArm rows: ``section_00_source_normal_0035_weight15_BckgF.wav``."""
    p = parse_labelled_name(2024, "section_00_source_normal_0035_weight15_BckgF.wav")
    assert (p.domain, p.label, p.attr, p.split) == ("source", "normal", "weight15_BckgF", "test")
    with pytest.raises(DcaseNameError, match="labelled"):
        parse_labelled_name(2024, "section_00_0000.wav")
    with pytest.raises(DcaseNameError):
        parse_labelled_name(2021, "section_03_source_normal_0000.wav")


def test_supplemental_names_2025():
    p = parse_supplemental_name(2025, "section_00_machine_0001_.wav")
    assert (p.section, p.domain, p.label, p.attr, p.index, p.split) == (
        "00",
        "source",
        "normal",
        NO_ATTRIBUTE,
        "0001",
        "supplemental",
    )
    p = parse_supplemental_name(2025, "section_00_noise_target_0100_noAttribute.wav")
    assert (p.domain, p.attr, p.index) == ("target", NO_ATTRIBUTE, "0100")
    with pytest.raises(DcaseNameError, match="supplemental"):
        parse_supplemental_name(2025, "section_00_source_train_normal_0000_.wav")
    with pytest.raises(DcaseNameError, match="only in DCASE 2025"):
        parse_supplemental_name(2024, "section_00_machine_0001_.wav")


def datasets() -> Path:
    """The official baseline's datasets/ (ASDLIB_DCASE_METADATA; else the test skips)."""
    return real_metadata() / "baseline_ae" / "datasets"


def _eval_list_rows(year: int) -> list[tuple[str, list[str]]]:
    path = official_eval_list(year, real_metadata())
    assert path is not None and path.is_file(), path
    rows, machine = [], None
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.reader(f):
            if len(row) == 1:
                machine = row[0]
            elif row:
                rows.append((machine, row))
    return rows


def test_eval_lists_published_for_every_year_but_2026():
    assert set(eval_list_years()) == set(YEARS) - {2026} and official_eval_list(2026) is None
    assert {y for y in YEARS if eval_list_rel(y) in fetched_files()} == set(eval_list_years())


@pytest.mark.parametrize("year", eval_list_years())
def test_eval_list_line_endings_match_the_table(year):
    """The table's eval_list_crlf is what the official list uses (the synthetic lists copy it)."""
    data = official_eval_list(year, real_metadata()).read_bytes()
    assert (data.count(b"\r\n") == data.count(b"\n")) == get_year(year).eval_list_crlf


@pytest.mark.parametrize("year", eval_list_years())
def test_every_official_eval_name_parses(year):
    rows = _eval_list_rows(year)
    assert rows
    for machine, row in rows:
        blinded, labelled = parse_name(year, row[0], where=machine), parse_labelled_name(year, row[1], where=machine)
        assert blinded.blinded and not labelled.blinded
        assert blinded.section == labelled.section
        assert blinded.section in YEARS[year].eval[machine]
        if year == 2020:
            assert labelled.label == ("anomaly" if row[2] == "1" else "normal")
            assert blinded.domain == labelled.domain == "source"
        elif year == 2021:
            assert blinded.domain == labelled.domain
        else:
            assert blinded.domain is None and labelled.domain in ("source", "target")
        assert (labelled.label in row[1]) and (labelled.domain in row[1] or year == 2020)


def _yaml_machines(year: int) -> dict[str, dict[str, tuple[str, ...]]]:
    if year <= 2022:
        path = datasets() / "machine_type_legacy.yaml"
        docs = {k: v for d in yaml.safe_load_all(path.read_text()) for k, v in (d or {}).items()}
        block = docs[f"DCASE{year}T2"]
        out: dict[str, dict[str, tuple[str, ...]]] = {"dev": {}, "eval": {}}
        for machine, parts in block["machine_type"].items():
            for part, sections in parts.items():
                out[part][machine] = tuple(sections)
        return {**out, "keyword": block["section_keyword"]}
    out = {}
    for part in ("dev", "eval"):
        path = datasets() / f"machine_type_{year}_{part}.yaml"
        block = yaml.safe_load(path.read_text())[f"DCASE{year}T2"]
        out[part] = {m: tuple(v[part]) for m, v in block["machine_type"].items()}
        out["keyword"] = block["section_keyword"]
    return out


@pytest.mark.parametrize("year", YEARS)
def test_machine_lists_match_official_yaml(year):
    official = _yaml_machines(year)
    info = get_year(year)
    assert dict(info.dev) == official["dev"]
    assert dict(info.eval) == official["eval"]
    assert info.section_keyword == official["keyword"]
