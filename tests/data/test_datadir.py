"""asdlib.data.datadir: the Kaldi data-dir contract (docs/design.md §4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_utt

from asdlib.data.datadir import (
    DataDirError,
    Utt,
    read_data_dir,
    read_kv,
    summary_table,
    write_data_dir,
)

FILES = ["spk2utt", "utt2attr", "utt2domain", "utt2label", "utt2machine", "utt2section", "utt2spk", "wav.scp"]


def _utts() -> list[Utt]:
    return [
        make_utt("fan", "00", "section_00_source_train_normal_0001", attr="noAttribute"),
        make_utt(
            "bearing",
            "01",
            "section_01_target_test_anomaly_0002_vel_8",
            "target",
            "anomaly",
            "vel_8",
            path="/data/my corpus/bearing/section_01 target é ü 音.wav",
        ),
        make_utt("ToyCar", "00", "section_00_source_test_normal_0003_car_A1", "source", "normal", "car_A1"),
        make_utt("fan", "00", "section_00_target_test_anomaly_0004", "target", "anomaly"),
        make_utt("ToyCar", "00", "section_00_unknown", "unknown", "unknown"),
    ]


def _write(tmp_path: Path) -> Path:
    d = tmp_path / "data" / "dev_test"
    write_data_dir(d, _utts())
    return d


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_round_trip_and_c_locale_order(tmp_path):
    d = _write(tmp_path)
    assert sorted(p.name for p in d.iterdir()) == FILES
    utts = read_data_dir(d)
    assert utts == sorted(_utts(), key=lambda u: u.utt_id.encode())
    ids = [u.utt_id for u in utts]
    assert ids[0].startswith("ToyCar-") and ids[-1].startswith("fan-")  # uppercase before lowercase
    assert ids.index("ToyCar-00-section_00_unknown") < ids.index("bearing-01-section_01_target_test_anomaly_0002_vel_8")
    keys = list(read_kv(d / "wav.scp"))
    assert keys == ids
    for name in FILES[1:]:
        assert list(read_kv(d / name)) == ids


def test_paths_with_spaces_and_non_ascii(tmp_path):
    d = _write(tmp_path)
    bearing = next(u for u in read_data_dir(d) if u.machine == "bearing")
    assert bearing.path == "/data/my corpus/bearing/section_01 target é ü 音.wav"
    assert bearing.file_name == "section_01 target é ü 音.wav"
    assert "bearing-01-section_01_target_test_anomaly_0002_vel_8 /data/my corpus/" in (d / "wav.scp").read_text(
        encoding="utf-8"
    )


def test_spk2utt_and_utt2spk(tmp_path):
    d = _write(tmp_path)
    spk2utt = read_kv(d / "spk2utt")
    assert list(spk2utt) == ["ToyCar-00", "bearing-01", "fan-00"]
    assert spk2utt["fan-00"].split() == [
        "fan-00-section_00_source_train_normal_0001",
        "fan-00-section_00_target_test_anomaly_0004",
    ]
    assert spk2utt["ToyCar-00"].split() == [
        "ToyCar-00-section_00_source_test_normal_0003_car_A1",
        "ToyCar-00-section_00_unknown",
    ]
    utt2spk = read_kv(d / "utt2spk")
    assert utt2spk["bearing-01-section_01_target_test_anomaly_0002_vel_8"] == "bearing-01"
    assert all(v == "-".join(k.split("-")[:2]) for k, v in utt2spk.items()) and len(utt2spk) == 5


def test_missing_dir_and_missing_file(tmp_path):
    with pytest.raises(DataDirError, match="data dir .*nowhere not found"):
        read_data_dir(tmp_path / "nowhere")
    d = _write(tmp_path)
    (d / "utt2attr").unlink()
    with pytest.raises(DataDirError, match="utt2attr is missing"):
        read_data_dir(d)


def test_unsorted_file(tmp_path):
    d = _write(tmp_path)
    lines = (d / "utt2machine").read_text().splitlines(keepends=True)
    (d / "utt2machine").write_text("".join([lines[1], lines[0]] + lines[2:]))
    with pytest.raises(DataDirError, match=r"utt2machine:2: not sorted \(C locale\)"):
        read_data_dir(d)


def test_locale_sorted_file_is_rejected(tmp_path):
    """A file sorted with a non-C locale (case-insensitive: bearing before ToyCar) breaks the contract."""
    d = _write(tmp_path)
    lines = (d / "utt2label").read_text().splitlines(keepends=True)
    (d / "utt2label").write_text("".join(sorted(lines, key=str.lower)))
    with pytest.raises(DataDirError, match="utt2label:.*not sorted"):
        read_data_dir(d)


def test_duplicate_key(tmp_path):
    d = _write(tmp_path)
    lines = (d / "utt2domain").read_text().splitlines(keepends=True)
    (d / "utt2domain").write_text("".join([lines[0], lines[0]] + lines[1:]))
    with pytest.raises(DataDirError, match="utt2domain:2: duplicate key 'ToyCar-00-"):
        read_data_dir(d)


def test_keys_differ_between_files(tmp_path):
    d = _write(tmp_path)
    lines = (d / "utt2label").read_text().splitlines(keepends=True)
    (d / "utt2label").write_text("".join(lines[:-1]))
    with pytest.raises(
        DataDirError, match=r"utt2label: keys differ from .*wav\.scp \(missing \['fan-00-section_00_target"
    ):
        read_data_dir(d)


def test_malformed_line(tmp_path):
    d = _write(tmp_path)
    _edit(
        d / "utt2attr",
        "fan-00-section_00_source_train_normal_0001 noAttribute",
        "fan-00-section_00_source_train_normal_0001",
    )
    with pytest.raises(DataDirError, match="utt2attr:4: expected '<key> <value>'"):
        read_data_dir(d)


@pytest.mark.parametrize(
    "name, old, new, what",
    [
        (
            "utt2section",
            "section_00_source_train_normal_0001 00",
            "section_00_source_train_normal_0001 0",
            "section '0' .* two digits",
        ),
        (
            "utt2domain",
            "section_00_source_train_normal_0001 source",
            "section_00_source_train_normal_0001 src",
            "domain 'src'",
        ),
        (
            "utt2label",
            "section_00_source_train_normal_0001 normal",
            "section_00_source_train_normal_0001 ok",
            "label 'ok'",
        ),
        (
            "utt2machine",
            "section_00_source_train_normal_0001 fan",
            "section_00_source_train_normal_0001 valve",
            "must start with its speaker id 'valve-00-'",
        ),
        (
            "utt2spk",
            "section_00_source_train_normal_0001 fan-00",
            "section_00_source_train_normal_0001 fan-01",
            "utt2spk: must map",
        ),
    ],
)
def test_bad_values_on_read(tmp_path, name, old, new, what):
    d = _write(tmp_path)
    _edit(d / name, old, new)
    with pytest.raises(DataDirError, match=what) as info:
        read_data_dir(d)
    assert "dev_test" in str(info.value)


@pytest.mark.parametrize(
    "utt, what",
    [
        (make_utt("fan", "00", "a", domain="both"), "domain 'both'"),
        (make_utt("fan", "00", "a", label="abnormal"), "label 'abnormal'"),
        (make_utt("fan", "0x", "a"), "section '0x'"),
        (make_utt("fan", "00", "a", attr="has space"), "attr 'has space'"),
        (make_utt("fan", "00", "a", attr=""), "attr ''"),
        (
            Utt("fan-01-a", "/x.wav", "fan", "00", "source", "normal", "noAttribute"),
            "'fan-01-a' must start with its speaker id 'fan-00-'",
        ),
        (Utt("fan-00-a", "", "fan", "00", "source", "normal", "noAttribute"), "empty wav path"),
        (Utt("fan-00-a", "/x\n.wav", "fan", "00", "source", "normal", "noAttribute"), "contains a newline"),
    ],
)
def test_bad_values_on_write(tmp_path, utt, what):
    with pytest.raises(DataDirError, match=what):
        write_data_dir(tmp_path / "set", [make_utt("fan", "00", "ok"), utt])
    assert not (tmp_path / "set" / "wav.scp").exists()


def test_duplicate_utt_id_on_write(tmp_path):
    a, b = make_utt("fan", "00", "x", path="/a/x.wav"), make_utt("fan", "00", "x", path="/b/x.wav")
    with pytest.raises(DataDirError, match=r"duplicate utt-id 'fan-00-x' \(/a/x.wav and /b/x.wav\)"):
        write_data_dir(tmp_path / "set", [a, b])


def test_empty_set(tmp_path):
    with pytest.raises(DataDirError, match="set: refusing to write an empty data dir"):
        write_data_dir(tmp_path / "set", [])
    d = _write(tmp_path)
    for name in FILES:
        (d / name).write_text("")
    with pytest.raises(DataDirError, match=r"wav\.scp.*no utterances"):
        read_data_dir(d)


def test_summary_table_counts():
    utts = (
        [make_utt("fan", "00", f"s{i}") for i in range(3)]
        + [make_utt("fan", "00", "t", "target", "anomaly")]
        + [make_utt("ToyCar", "01", f"s{i}") for i in range(2)]
        + [make_utt("fan", "01", "u", "target", "normal")]
    )
    rows = [line.split() for line in summary_table(utts).splitlines()]
    header = rows[0]
    assert header == [
        "machine",
        "section",
        "source/normal",
        "source/anomaly",
        "target/normal",
        "target/anomaly",
        "total",
    ]
    table = {tuple(r[:2]): [int(c) for c in r[2:]] for r in rows[2:-1]}
    assert list(table) == [("ToyCar", "01"), ("fan", "00"), ("fan", "01")]
    assert table[("ToyCar", "01")] == [2, 0, 0, 0, 2]
    assert table[("fan", "00")] == [3, 0, 0, 1, 4]
    assert table[("fan", "01")] == [0, 0, 1, 0, 1]
    assert rows[-1] == ["total", "5", "0", "1", "1", "7"]
