"""Data preparation (stage 1) on tiny corpora whose evaluation names are the official ones."""

from __future__ import annotations

import collections
import csv
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import real_metadata

from asdlib.bin import prepare_dcase
from asdlib.bin.prepare_dcase import PrepError, prepare
from asdlib.data.datadir import read_data_dir
from asdlib.data.dcase import DcaseNameError
from asdlib.data.evallist import (
    EvalListError,
    check_eval_list,
    correct_2022_toy_truth,
    read_eval_list,
)
from asdlib.data.resources import official_eval_list, read_evaluator_truth
from asdlib.synth.corpus import SynthConfig, generate_corpus
from asdlib.years import eval_list_years, get_year

NO_ATTR_2024 = {"AirCompressor", "HoveringDrone", "ToothBrush", "gearbox", "slider", "ToyTrain"}


def official_list(year: int) -> Path:
    """The official list of the real DCASE metadata (ASDLIB_DCASE_METADATA; else the test skips)."""
    path = official_eval_list(year, real_metadata())
    assert path is not None and path.is_file(), f"no official eval list for {year} in {real_metadata()}"
    return path


def list_rows(path: Path) -> list[tuple[str, list[str]]]:
    """The list's clip rows, read independently of asdlib (to cross-check the reader)."""
    rows, machine = [], None
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.reader(f):
            if len(row) == 1:
                machine = row[0]
            elif row:
                rows.append((machine, row))
    return rows


class Corpus:
    """Writes a corpus skeleton; every wav is a hard link to one 0.05 s clip (fast, tiny)."""

    def __init__(self, root: Path, year: int, raw: bool):
        self.root, self.year, self.raw = root, year, raw
        self.proto = root.parent / f".proto_{root.name}.wav"
        root.mkdir(parents=True, exist_ok=True)
        sf.write(str(self.proto), np.zeros(800, dtype=np.float32), 16000, subtype="PCM_16")

    def mdir(self, part: str, machine: str) -> Path:
        return self.root / part / ("raw" if self.raw else "") / machine

    def add(self, part: str, machine: str, sub: str, name: str) -> Path:
        d = self.mdir(part, machine) / sub
        d.mkdir(parents=True, exist_ok=True)
        try:
            os.link(self.proto, d / name)
        except OSError:
            shutil.copyfile(self.proto, d / name)
        return d / name


def attr_for(year: int, machine: str, i: int) -> str:
    if year == 2024 and machine in NO_ATTR_2024:
        return "_noAttribute"
    if year == 2025 and i % 2:
        return "_"  # 2025 names end in "_.wav" when the attribute is not shown
    return f"_spd_{i % 3}"


def train_names(year: int, machine: str, section: str) -> list[str]:
    if year == 2020:
        return [f"normal_id_{section}_{i:08d}.wav" for i in range(3)]
    return [
        f"section_{section}_{d}_train_normal_{i:04d}{attr_for(year, machine, i)}.wav"
        for d, n in (("source", 2), ("target", 1))
        for i in range(n)
    ]


def dev_test_names(year: int, machine: str, section: str) -> list[tuple[str, str]]:
    """(sub dir, name): one clip per domain x label."""
    if year == 2020:
        return [("test", f"{lab}_id_{section}_{i:08d}.wav") for i, lab in enumerate(("normal", "anomaly", "anomaly"))]
    out = []
    for d in ("source", "target"):
        for i, lab in enumerate(("normal", "anomaly")):
            sub = f"{d}_test" if year == 2021 else "test"
            attr = "" if year == 2021 else attr_for(year, machine, i)
            out.append((sub, f"section_{section}_{d}_test_{lab}_{i:04d}{attr}.wav"))
    return out


def build_corpus(root: Path, year: int, raw: bool, machines: set[str] | None = None, with_list: bool = True) -> Corpus:
    """Dev/eval train and dev test by the year's patterns; eval test named exactly as the official list.

    ``with_list`` puts the official list (as distributed, CRLF or LF) at the default place, the root.
    """
    c = Corpus(root, year, raw)
    if with_list:
        shutil.copyfile(official_list(year), root / f"eval_data_list_{year}.csv")
    info = get_year(year)
    for part, table in (("dev_data", info.dev), ("eval_data", info.eval)):
        for machine, sections in table.items():
            if machines is not None and machine not in machines:
                continue
            for section in sections:
                for name in train_names(year, machine, section):
                    c.add(part, machine, "train", name)
                if part == "dev_data":
                    for sub, name in dev_test_names(year, machine, section):
                        c.add(part, machine, sub, name)
    for machine, row in list_rows(official_list(year)):
        if machines is None or machine in machines:
            sub = ("source_test" if "_source_" in row[0] else "target_test") if year == 2021 else "test"
            c.add("eval_data", machine, sub, row[0])
    return c


def counts(utts) -> collections.Counter:
    return collections.Counter((u.machine, u.section, u.domain, u.label) for u in utts)


def expected_eval_counts(year: int, machines: set[str] | None = None) -> collections.Counter:
    out: collections.Counter = collections.Counter()
    for machine, row in list_rows(official_list(year)):
        if machines is not None and machine not in machines:
            continue
        section = row[0].split("_")[1]
        if year == 2020:
            label, domain = ("anomaly" if row[2] == "1" else "normal"), "source"
        else:
            label = "anomaly" if "_anomaly_" in row[1] else "normal"
            domain = "target" if "_target_" in row[1] else "source"
        out[(machine, section, domain, label)] += 1
    return out


# Facts quoted in docs/dcase.md: (machine, section, domain, label) -> count
DOC_FACTS = {
    2020: {
        ("fan", "01", "source", "normal"): 100,
        ("fan", "01", "source", "anomaly"): 326,
        ("ToyCar", "05", "source", "anomaly"): 265,
        ("fan", "05", "source", "normal"): 109,
        ("ToyConveyor", "06", "source", "anomaly"): 355,
    },
    2021: {
        ("gearbox", "03", "source", "normal"): 130,
        ("gearbox", "03", "source", "anomaly"): 104,
        ("gearbox", "03", "target", "normal"): 104,
        ("gearbox", "03", "target", "anomaly"): 182,
        ("slider", "05", "source", "normal"): 103,
        ("fan", "04", "target", "anomaly"): 100,
    },
    2022: {("bearing", "03", "target", "anomaly"): 50, ("valve", "05", "source", "normal"): 50},
    2023: {
        ("grinder", "00", "source", "normal"): 107,
        ("grinder", "00", "source", "anomaly"): 27,
        ("grinder", "00", "target", "normal"): 36,
        ("grinder", "00", "target", "anomaly"): 30,
        ("bandsaw", "00", "source", "normal"): 67,
        ("shaker", "00", "target", "anomaly"): 46,
    },
    2024: {("RoboticArm", "00", "source", "normal"): 50, ("3DPrinter", "00", "target", "anomaly"): 50},
    2025: {("AutoTrash", "00", "target", "anomaly"): 50, ("CoffeeGrinder", "00", "source", "normal"): 50},
}


@pytest.mark.parametrize("year", eval_list_years())  # 2026: no eval list (test_eval_test_without_list)
def test_real_name_corpus(tmp_path, year):
    """Every official eval-test name of the year, in one of the two layouts (alternating by year)."""
    raw = year % 2 == 0
    build_corpus(tmp_path / "corpus", year, raw=raw)
    built = prepare(year, tmp_path / "corpus", tmp_path / "data")
    assert set(built) == {"dev_train", "dev_test", "eval_train", "eval_test"}
    info = get_year(year)
    got = counts(built["eval_test"])
    assert got == expected_eval_counts(year)
    for key, n in DOC_FACTS[year].items():
        assert got[key] == n, key
    assert len(built["eval_test"]) == len(list_rows(official_list(year)))
    # train/dev sets: every official machine and section, labels from the names
    for set_name, table in (("dev_train", info.dev), ("dev_test", info.dev), ("eval_train", info.eval)):
        seen = {(u.machine, u.section) for u in built[set_name]}
        assert seen == {(m, s) for m, secs in table.items() for s in secs}, set_name
    assert {u.label for u in built["dev_train"] + built["eval_train"]} == {"normal"}
    assert {u.label for u in built["dev_test"]} == {"normal", "anomaly"}
    if year == 2020:
        assert {u.domain for s in built.values() for u in s} == {"source"}
        assert {u.attr for s in built.values() for u in s} == {"noAttribute"}
    # wav.scp: absolute paths of existing files; utt-ids carry the distributed file stem
    for utts in built.values():
        for u in utts:
            assert os.path.isabs(u.path) and os.path.isfile(u.path)
            assert u.utt_id == f"{u.machine}-{u.section}-{Path(u.path).stem}"
            assert (f"{os.sep}raw{os.sep}" in u.path) == raw
    # read back from disk gives the same
    assert read_data_dir(tmp_path / "data" / "eval_test") == built["eval_test"]


def test_attributes_per_year(tmp_path):
    build_corpus(tmp_path / "c24", 2024, raw=True, machines={"ToothBrush", "gearbox", "fan", "3DPrinter"})
    built = prepare(2024, tmp_path / "c24", tmp_path / "d24")
    attrs = {(u.machine, u.attr) for u in built["dev_train"] + built["eval_train"]}
    assert ("gearbox", "noAttribute") in attrs and ("ToothBrush", "noAttribute") in attrs
    assert ("fan", "spd_0") in attrs and ("3DPrinter", "spd_1") in attrs
    # blinded eval names carry no attribute and the labelled name must not feed utt2attr (docs/design.md §4)
    assert {u.attr for u in built["eval_test"]} == {"noAttribute"}
    build_corpus(tmp_path / "c25", 2025, raw=False, machines={"fan", "Polisher"})
    built = prepare(2025, tmp_path / "c25", tmp_path / "d25")
    attrs = {u.utt_id: u.attr for u in built["dev_train"]}
    assert attrs["fan-00-section_00_source_train_normal_0001_"] == "noAttribute"
    assert attrs["fan-00-section_00_source_train_normal_0000_spd_0"] == "spd_0"


def test_attributes_csv_fills_blinded_and_noattribute_names(tmp_path):
    c = build_corpus(tmp_path / "c", 2023, raw=False, machines={"fan", "grinder"})
    (c.mdir("eval_data", "grinder") / "attributes_00.csv").write_text(
        "file_name,d1p,d1v,d2p,d2v\n"
        "grinder/test/section_00_0000.wav,grindstone,1,plate,2\n"
        "grinder/test/section_00_0001.wav,noAttribute,,,\n"
    )
    built = prepare(2023, tmp_path / "c", tmp_path / "d", sets=["eval_test"])
    attrs = {u.utt_id: u.attr for u in built["eval_test"]}
    assert attrs["grinder-00-section_00_0000"] == "grindstone_1_plate_2"
    assert attrs["grinder-00-section_00_0001"] == "noAttribute"
    (c.mdir("eval_data", "grinder") / "attributes_00.csv").write_text("name,d1p\nx.wav,a\n")
    with pytest.raises(PrepError, match="attributes_00.csv: expected a header"):
        prepare(2023, tmp_path / "c", tmp_path / "d", sets=["eval_test"])


def test_both_layouts_give_the_same_sets(tmp_path):
    machines = {"fan", "bearing", "ToyDrone", "Vacuum"}
    build_corpus(tmp_path / "zenodo", 2023, raw=False, machines=machines)
    build_corpus(tmp_path / "baseline", 2023, raw=True, machines=machines)
    a = prepare(2023, tmp_path / "zenodo", tmp_path / "da")
    b = prepare(2023, tmp_path / "baseline", tmp_path / "db")

    def strip(utts):
        return [(u.utt_id, u.machine, u.section, u.domain, u.label, u.attr, Path(u.path).name) for u in utts]

    for set_name in a:
        assert strip(a[set_name]) == strip(b[set_name])
    # both layouts at once is ambiguous
    shutil.copytree(tmp_path / "baseline" / "dev_data" / "raw", tmp_path / "zenodo" / "dev_data" / "raw")
    with pytest.raises(PrepError, match="both directly .* and under raw/"):
        prepare(2023, tmp_path / "zenodo", tmp_path / "dc")


def test_paths_with_spaces_and_non_ascii(tmp_path):
    root = tmp_path / "my corpus ü" / "dcase 2022"
    build_corpus(root, 2022, raw=True, machines={"valve", "bearing"})
    rel = os.path.relpath(root, Path.cwd())  # a relative root is resolved to absolute paths
    prepare(2022, rel, tmp_path / "data")
    utts = read_data_dir(tmp_path / "data" / "dev_test")
    assert all(u.path.startswith(str(root.resolve())) for u in utts)
    line = (tmp_path / "data" / "dev_test" / "wav.scp").read_text(encoding="utf-8").splitlines()[0]
    assert line.split(" ", 1)[1].startswith(str(root.resolve()))


def test_eval_test_without_list(tmp_path):
    """--eval_list none: label unknown; domain from the name (2020 source, 2021 visible) or unknown (2022+)."""
    for year, machine, domains in (
        (2020, "pump", {"source"}),
        (2021, "valve", {"source", "target"}),
        (2022, "fan", {"unknown"}),
    ):
        build_corpus(tmp_path / str(year), year, raw=False, machines={machine}, with_list=False)
        built = prepare(year, tmp_path / str(year), tmp_path / f"d{year}", sets=["eval_test"], eval_list="none")
        assert {u.label for u in built["eval_test"]} == {"unknown"}
        assert {u.domain for u in built["eval_test"]} == domains
    # 2026 publishes no eval list: no ground truth by default
    assert prepare_dcase.resolve_eval_list(tmp_path, 2026, None) is None


def flipped_list(year: int, machine: str) -> str:
    """The official rows of one machine with normal/anomaly swapped in the labelled names (a user's own list)."""
    swap = {"_normal_": "_anomaly_", "_anomaly_": "_normal_"}
    rows = [
        f"{r[0]},{next(r[1].replace(a, b) for a, b in swap.items() if a in r[1])}"
        for m, r in list_rows(official_list(year))
        if m == machine
    ]
    return "\r\n".join([machine, *rows]) + "\r\n"


def test_metadata_list_is_the_default(tmp_path, caplog):
    """No --eval_list and no list in the root: the official list of the DCASE metadata. Its rows of
    machine types absent from a partial corpus are ignored; --eval_list and a root list override it."""
    c = build_corpus(tmp_path / "c", 2024, raw=False, machines={"Scanner"}, with_list=False)
    assert not (tmp_path / "c" / "eval_data_list_2024.csv").exists()
    with caplog.at_level(logging.INFO):
        built = prepare(2024, tmp_path / "c", tmp_path / "d", sets=["eval_test"])
    assert "official DCASE 2024 list of the DCASE metadata" in caplog.text
    assert "their rows are ignored" in caplog.text and "ToyCircuit" in caplog.text  # other machine types: ignored
    assert counts(built["eval_test"]) == expected_eval_counts(2024, {"Scanner"})
    utt2label = dict(line.split() for line in (tmp_path / "d" / "eval_test" / "utt2label").read_text().splitlines())
    utt2domain = dict(line.split() for line in (tmp_path / "d" / "eval_test" / "utt2domain").read_text().splitlines())
    truth = read_eval_list(official_list(2024), 2024)
    for (machine, name), entry in truth.items():
        if machine == "Scanner":
            utt = f"Scanner-00-{Path(name).stem}"
            assert (utt2label[utt], utt2domain[utt]) == (entry.label, entry.domain)
    # --eval_list overrides the metadata's list
    (tmp_path / "mine.csv").write_text(flipped_list(2024, "Scanner"), newline="")
    built = prepare(2024, tmp_path / "c", tmp_path / "d", sets=["eval_test"], eval_list=str(tmp_path / "mine.csv"))
    flipped = {"normal": "anomaly", "anomaly": "normal"}
    got = {Path(u.path).name: (u.label, u.domain) for u in built["eval_test"]}
    assert got == {name: (flipped[e.label], e.domain) for (m, name), e in truth.items() if m == "Scanner"}
    # so does a list in the corpus root
    shutil.copyfile(tmp_path / "mine.csv", tmp_path / "c" / "eval_data_list_2024.csv")
    built = prepare(2024, tmp_path / "c", tmp_path / "d", sets=["eval_test"])
    assert {Path(u.path).name: (u.label, u.domain) for u in built["eval_test"]} == got
    # files on disk missing from the list are still an error, also with the metadata's list
    (tmp_path / "c" / "eval_data_list_2024.csv").unlink()
    c.add("eval_data", "Scanner", "test", "section_00_0999.wav")
    with pytest.raises(EvalListError, match="Scanner: 1 files on disk not in the list"):
        prepare(2024, tmp_path / "c", tmp_path / "d", sets=["eval_test"])


# DCASE 2022: blinded name -> (label, domain) from the official evaluator's ground_truth_data /
# ground_truth_domain files; the public eval list says otherwise for all but the (agree) rows.
TOY_2022 = {
    ("ToyCar", "section_03_0000.wav"): ("anomaly", "target"),  # agree
    ("ToyCar", "section_03_0001.wav"): ("normal", "source"),  # list: target normal
    ("ToyCar", "section_05_0001.wav"): ("anomaly", "source"),  # list: target anomaly
    ("ToyCar", "section_05_0002.wav"): ("normal", "source"),  # list: source anomaly
    ("ToyTrain", "section_03_0000.wav"): ("normal", "source"),  # list: target normal
    ("ToyTrain", "section_03_0001.wav"): ("normal", "target"),  # list: source anomaly
    ("ToyTrain", "section_05_0002.wav"): ("anomaly", "target"),  # list: source anomaly
}


@pytest.mark.parametrize("where", ["metadata", "root", "explicit"])
def test_2022_toy_truth_from_the_evaluator(tmp_path, where, caplog):
    c = build_corpus(tmp_path / "c", 2022, raw=False, machines={"ToyCar", "ToyTrain", "fan"}, with_list=where == "root")
    eval_list = str(official_list(2022)) if where == "explicit" else None
    with caplog.at_level(logging.INFO):
        built = prepare(2022, c.root, tmp_path / "d", sets=["eval_test"], eval_list=eval_list)
    got = {(u.machine, Path(u.path).name): (u.label, u.domain) for u in built["eval_test"]}
    for key, truth in TOY_2022.items():
        assert got[key] == truth, key
    listed = read_eval_list(official_list(2022), 2022)
    assert listed[("ToyCar", "section_03_0001.wav")][:2] == ("normal", "target")  # the list's (wrong) entry
    for machine in ("ToyCar", "ToyTrain"):
        assert {k[1]: v for k, v in got.items() if k[0] == machine} == read_evaluator_truth(2022, machine)
        assert (
            f"DCASE 2022 {machine}: label and domain of 600 eval test clips taken from the official 2022 evaluator"
            in caplog.text
        )
    assert "disagrees on 430" in caplog.text and "disagrees on 451" in caplog.text
    # the other machine types keep the list's label and domain
    assert {k[1]: v for k, v in got.items() if k[0] == "fan"} == {
        k[1]: e[:2] for k, e in listed.items() if k[0] == "fan"
    }
    assert {u.attr for u in built["eval_test"]} == {"noAttribute"}


def test_2022_list_and_evaluator_agree_except_toy_types():
    listed = read_eval_list(official_list(2022), 2022)
    for machine in get_year(2022).eval:
        truth = read_evaluator_truth(2022, machine)
        mine = {k[1]: e[:2] for k, e in listed.items() if k[0] == machine}
        assert mine.keys() == truth.keys() and len(truth) == 600
        differ = sum(mine[n] != truth[n] for n in truth)
        assert differ == {"ToyCar": 430, "ToyTrain": 451}.get(machine, 0), machine
    corrected = correct_2022_toy_truth(listed, 2022)
    assert list(corrected) == list(listed)  # same clips, same order
    assert all(corrected[k] == e for k, e in listed.items() if k[0] not in ("ToyCar", "ToyTrain"))
    assert all(corrected[k].labelled_name == e.labelled_name for k, e in listed.items())  # kept, unverified
    assert correct_2022_toy_truth(read_eval_list(official_list(2023), 2023), 2023) == read_eval_list(
        official_list(2023), 2023
    )


def test_2022_toy_truth_only_for_the_official_rows(tmp_path):
    """A list whose ToyCar rows are not the official ones (a synthetic corpus) keeps its own labels."""
    real_metadata()  # the official rows are recognised by the official list
    official_row = "section_03_0001.wav,section_03_target_test_normal_0030_car_G1_spd_34V_mic_1_noise_6.wav"
    p = tmp_path / "l.csv"
    p.write_text(f"ToyCar\n{official_row}\n")
    assert correct_2022_toy_truth(read_eval_list(p, 2022), 2022)[("ToyCar", "section_03_0001.wav")][:2] == (
        "normal",
        "source",
    )
    p.write_text(f"ToyCar\n{official_row}\nsection_03_0002.wav,section_03_target_test_anomaly_0000_car_X.wav\n")
    entries = read_eval_list(p, 2022)
    assert correct_2022_toy_truth(entries, 2022) == entries


def test_default_and_explicit_eval_list(tmp_path):
    build_corpus(tmp_path / "c", 2024, raw=True, machines={"Scanner"})
    # default: <root>/eval_data_list_2024.csv, CRLF as distributed
    built = prepare(2024, tmp_path / "c", tmp_path / "d", sets=["eval_test"])
    assert counts(built["eval_test"]) == expected_eval_counts(2024, {"Scanner"})
    # 'none' switches the default off
    built = prepare(2024, tmp_path / "c", tmp_path / "d", sets=["eval_test"], eval_list="none")
    assert {u.label for u in built["eval_test"]} == {"unknown"}
    # the list of another year does not match
    with pytest.raises((EvalListError, DcaseNameError)):
        prepare(2024, tmp_path / "c", tmp_path / "d", sets=["eval_test"], eval_list=str(official_list(2021)))
    with pytest.raises(PrepError, match="file not found"):
        prepare(2024, tmp_path / "c", tmp_path / "d", sets=["eval_test"], eval_list=str(tmp_path / "nope.csv"))


def test_eval_list_mismatch_is_a_clear_error(tmp_path):
    c = build_corpus(tmp_path / "c", 2023, raw=False, machines={"ToyTank"})
    test_dir = c.mdir("eval_data", "ToyTank") / "test"
    (test_dir / "section_00_0007.wav").unlink()
    c.add("eval_data", "ToyTank", "test", "section_00_0999.wav")
    with pytest.raises(EvalListError) as e:
        prepare(
            2023, tmp_path / "c", tmp_path / "d", sets=["eval_train", "eval_test"], eval_list=str(official_list(2023))
        )
    msg = str(e.value)
    assert "ToyTank: 1 listed files missing on disk, e.g. section_00_0007.wav" in msg
    assert "ToyTank: 1 files on disk not in the list, e.g. section_00_0999.wav" in msg
    assert not (tmp_path / "d").exists()  # nothing written when any set fails


def test_missing_sets_are_errors_unless_restricted(tmp_path):
    c = build_corpus(tmp_path / "c", 2022, raw=False, machines={"slider"})
    shutil.rmtree(tmp_path / "c" / "eval_data")
    with pytest.raises(PrepError, match="eval_data not found"):
        prepare(2022, tmp_path / "c", tmp_path / "d")
    built = prepare(2022, tmp_path / "c", tmp_path / "d", sets=["dev_train", "dev_test"])
    assert set(built) == {"dev_train", "dev_test"} and not (tmp_path / "d" / "eval_train").exists()
    shutil.rmtree(c.mdir("dev_data", "slider") / "test")
    with pytest.raises(PrepError, match="slider/test not found for machine slider"):
        prepare(2022, tmp_path / "c", tmp_path / "d", sets=["dev_test"])


def test_bad_names_and_contents_fail(tmp_path):
    c = build_corpus(tmp_path / "c", 2021, raw=True, machines={"ToyTrain"})
    bad = c.add("dev_data", "ToyTrain", "train", "section_00_source_train_normal_0000 copy.wav")
    with pytest.raises(DcaseNameError, match="section_00_source_train_normal_0000 copy.wav"):
        prepare(2021, tmp_path / "c", tmp_path / "d", sets=["dev_train"])
    bad.unlink()
    anomaly = c.add("dev_data", "ToyTrain", "train", "section_00_source_train_anomaly_0000_x.wav")
    with pytest.raises(PrepError, match="normal training clips only"):
        prepare(2021, tmp_path / "c", tmp_path / "d", sets=["dev_train"])
    anomaly.unlink()
    wrong_dir = c.add("dev_data", "ToyTrain", "source_test", "section_00_target_test_normal_0005.wav")
    with pytest.raises(PrepError, match="target-domain clip in source_test"):
        prepare(2021, tmp_path / "c", tmp_path / "d", sets=["dev_test"])
    wrong_dir.unlink()
    blinded = c.add("dev_data", "ToyTrain", "source_test", "section_00_source_test_0005.wav")
    with pytest.raises(PrepError, match="blinded name in the development test set"):
        prepare(2021, tmp_path / "c", tmp_path / "d", sets=["dev_test"])
    blinded.unlink()
    with pytest.raises(DcaseNameError, match="not a DCASE 2020"):
        prepare(2020, tmp_path / "c", tmp_path / "d", sets=["dev_train"])  # wrong --year
    (c.mdir("dev_data", "ToyTrain") / "train" / "notes.txt").write_text("x")
    built = prepare(2021, tmp_path / "c", tmp_path / "d", sets=["dev_train"])  # non-wav files are reported, not read
    assert len(built["dev_train"]) == 9


def test_supplemental_2025(tmp_path, caplog):
    c = build_corpus(tmp_path / "c", 2025, raw=True, machines={"bearing", "ToyPet"})
    for i in (1, 2):
        c.add("eval_data", "ToyPet", "supplemental", f"section_00_machine_{i:04d}_.wav")
        c.add("dev_data", "bearing", "supplemental", f"section_00_noise_{i:04d}_.wav")
    with caplog.at_level(logging.WARNING):
        built = prepare(2025, tmp_path / "c", tmp_path / "d")
    assert not any("/supplemental/" in u.path for s in built.values() for u in s)
    assert "add eval_supplemental to --sets" in caplog.text and "add dev_supplemental to --sets" in caplog.text
    built = prepare(2025, tmp_path / "c", tmp_path / "d", sets=["eval_train", "eval_supplemental", "dev_supplemental"])
    sup = built["eval_supplemental"]
    assert [u.utt_id for u in sup] == ["ToyPet-00-section_00_machine_0001_", "ToyPet-00-section_00_machine_0002_"]
    assert {(u.domain, u.label, u.attr) for u in sup} == {("source", "normal", "noAttribute")}
    assert len(built["dev_supplemental"]) == 2 and len(built["eval_train"]) == 3
    c.add(
        "eval_data", "bearing", "train", "section_00_source_train_normal_0000_x.wav"
    )  # a machine without supplemental/
    assert len(prepare(2025, tmp_path / "c", tmp_path / "d", sets=["eval_supplemental"])["eval_supplemental"]) == 2
    shutil.rmtree(c.mdir("dev_data", "bearing") / "supplemental")
    with pytest.raises(PrepError, match="no machine dir has a supplemental/ dir"):
        prepare(2025, tmp_path / "c", tmp_path / "d", sets=["dev_supplemental"])
    with pytest.raises(PrepError, match="only for DCASE 2025"):
        prepare(2024, tmp_path / "c", tmp_path / "d", sets=["eval_supplemental"])


def test_supplemental_kinds_2025(tmp_path, caplog):
    cfg = SynthConfig(
        year=2025,
        dev_machines=("fan",),
        eval_machines=("ToyDrone",),
        no_attribute=(),
        n_train_source=2,
        n_train_target=1,
        n_test=1,
        seconds=0.5,
        n_supplemental_machine=2,
        n_supplemental_noise=2,
    )
    generate_corpus(tmp_path / "c", cfg)
    sets = ["dev_supplemental", "dev_supplemental_machine", "dev_supplemental_noise", "eval_supplemental_machine"]
    with caplog.at_level(logging.WARNING):
        built = prepare(2025, tmp_path / "c", tmp_path / "d", sets=sets)
    assert "to --sets" not in caplog.text  # asking for one kind counts as asking for the supplemental clips
    ids = {s: [u.utt_id.split("-00-")[1] for u in built[s]] for s in sets}
    assert ids["dev_supplemental_machine"] == ["section_00_machine_0000_", "section_00_machine_0001_"]
    assert ids["dev_supplemental_noise"] == ["section_00_noise_0000_", "section_00_noise_0001_"]
    assert sorted(ids["dev_supplemental"]) == sorted(ids["dev_supplemental_machine"] + ids["dev_supplemental_noise"])
    assert {(u.label, u.domain) for s in sets for u in built[s]} == {("normal", "source")}  # what the names tell
    for noise in (tmp_path / "c" / "eval_data" / "raw" / "ToyDrone" / "supplemental").glob("*_noise_*"):
        noise.unlink()
    with pytest.raises(PrepError, match="eval_supplemental_noise: no machine dir has noise clips in supplemental/"):
        prepare(2025, tmp_path / "c", tmp_path / "d", sets=["eval_supplemental_noise"])
    with pytest.raises(PrepError, match="only for DCASE 2025"):
        prepare(2024, tmp_path / "c", tmp_path / "d", sets=["dev_supplemental_noise"])


def test_cli(tmp_path, capsys):
    build_corpus(tmp_path / "c", 2020, raw=False, machines={"ToyConveyor"})
    rc = prepare_dcase.main(
        [
            "--year",
            "2020",
            "--root",
            str(tmp_path / "c"),
            "--data_dir",
            str(tmp_path / "data"),
            "--eval_list",
            str(official_list(2020)),
            "--sets",
            "dev_train,eval_test",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "eval_test: 1665 utterances" in out and "ToyConveyor  04" in out and "dev_train: 9 utterances" in out
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["dev_train", "eval_test"]
    with pytest.raises(PrepError, match="corpus root"):  # python -m: one ERROR line (asdlib.utils.run_main)
        prepare_dcase.main(["--year", "2020", "--root", str(tmp_path / "nowhere"), "--data_dir", str(tmp_path / "x")])


def test_synthetic_mini_corpus(tmp_path):
    """The mini recipe's synthetic corpus (2024 layout, raw/, eval list at the root) prepares as 2024."""
    from asdlib.synth.corpus import SynthConfig, generate_corpus

    cfg = SynthConfig(n_train_source=3, n_train_target=1, n_test=2, seconds=0.5)
    generate_corpus(tmp_path / "mini", cfg)
    built = prepare(2024, tmp_path / "mini", tmp_path / "data")
    assert {u.machine for u in built["eval_test"]} == set(cfg.eval_machines)
    assert {u.label for u in built["eval_test"]} == {"normal", "anomaly"}
    assert {u.domain for u in built["eval_test"]} == {"source", "target"}
    assert len(built["dev_test"]) == 4 * cfg.n_test * len(cfg.dev_machines)


# --- eval list reader -------------------------------------------------------------------------


def test_eval_list_crlf_and_lf_read_the_same(tmp_path):
    src = official_list(2023).read_bytes()
    assert b"\r\n" in src
    (tmp_path / "lf.csv").write_bytes(src.replace(b"\r\n", b"\n"))
    (tmp_path / "crlf.csv").write_bytes(src)
    a, b = read_eval_list(tmp_path / "crlf.csv", 2023), read_eval_list(tmp_path / "lf.csv", 2023)
    assert a == b and len(a) == 1400
    assert all(not k[1].endswith("\r") and not v.labelled_name.endswith("\r") for k, v in a.items())
    assert a[("bandsaw", "section_00_0005.wav")] == (
        "anomaly",
        "source",
        "section_00_source_test_anomaly_0005_vel_15.wav",
    )


def test_eval_list_2020_third_column(tmp_path):
    entries = read_eval_list(official_list(2020), 2020)
    assert entries[("fan", "id_01_00000001.wav")] == ("anomaly", "source", "anomaly_id_01_00000064.wav")
    assert entries[("fan", "id_01_00000000.wav")].label == "normal"
    p = tmp_path / "l.csv"
    p.write_text("fan\nid_01_00000000.wav,normal_id_01_00000098.wav,1\n")
    with pytest.raises(EvalListError, match=r"l.csv:2: label column 1 contradicts"):
        read_eval_list(p, 2020)
    p.write_text("fan\nid_01_00000000.wav,normal_id_01_00000098.wav,x\n")
    with pytest.raises(EvalListError, match="must be 0 \\(normal\\) or 1"):
        read_eval_list(p, 2020)
    p.write_text("fan\nid_01_00000000.wav,normal_id_01_00000098.wav\n")
    with pytest.raises(EvalListError, match="l.csv:2: expected a machine-type line or 3"):
        read_eval_list(p, 2020)


@pytest.mark.parametrize(
    "text,match",
    [
        ("section_00_0000.wav,section_00_source_test_normal_0000_a.wav\n", "before the first machine-type line"),
        ("fan\nsection_00_0000.wav,section_00_source_test_normal_0000_a.wav,0\n", "expected a machine-type line or 2"),
        (
            "fan\nsection_00_0000.wav,section_00_source_test_normal_0000_a.wav\nsection_00_0000.wav,section_00_target_test_normal_0001_a.wav\n",
            "listed twice",
        ),
        (
            "fan\nsection_00_0000.wav,section_00_source_test_normal_0000_a.wav\nsection_00_0001.wav,section_00_source_test_normal_0000_a.wav\n",
            "also on line 2",
        ),
        (
            "fan\nsection_00_0000.wav,section_01_source_test_normal_0000_a.wav\n",
            "section of 'section_00_0000.wav' \\(00\\) differs",
        ),
        (
            "fan\nsection_00_source_test_normal_0000_a.wav,section_00_source_test_normal_0000_a.wav\n",
            "first column .* is a labelled name",
        ),
        ("fan\nsection_00_0000.wav,section_00_source_train_normal_0000_a.wav\n", "eval lists hold test clips only"),
        ("fan\nsection_00_0000.wav,section_00_0001.wav\n", "not a DCASE 2023 labelled file name"),
        ("fan\n\n", "no clip rows found"),
    ],
)
def test_eval_list_malformed(tmp_path, text, match):
    p = tmp_path / "eval_data_list_2023.csv"
    p.write_text(text)
    with pytest.raises(EvalListError, match=match):
        read_eval_list(p, 2023)


def test_eval_list_2021_domain_must_agree(tmp_path):
    p = tmp_path / "l.csv"
    p.write_bytes(b"fan\r\nsection_03_source_test_0000.wav,section_03_target_test_anomaly_0000.wav\r\n")
    with pytest.raises(EvalListError, match="domain of .* \\(source\\) differs"):
        read_eval_list(p, 2021)
    with pytest.raises(EvalListError, match="not found"):
        read_eval_list(tmp_path / "missing.csv", 2021)


def test_check_eval_list_reports_missing_extra_and_unknown_machines(tmp_path, caplog):
    entries = read_eval_list(official_list(2022), 2022)
    names = {m: {b for (mm, b) in entries if mm == m} for m in ("fan", "valve")}
    with caplog.at_level(logging.WARNING):
        absent = check_eval_list(entries, names, "L")
    assert (
        absent == ["ToyCar", "ToyTrain", "bearing", "gearbox", "slider"]
        and "without evaluation test files" in caplog.text
    )
    with pytest.raises(EvalListError, match="pump: not in the list at all"):
        check_eval_list(entries, {**names, "pump": {"section_03_0000.wav"}}, "L")
