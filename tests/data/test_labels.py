"""asdlib.data.labels: stage-2 class ids and durations."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_utt

from asdlib.data.datadir import DataDirError, read_kv
from asdlib.data.labels import (
    build_classes,
    class_name,
    read_labels,
    write_durations,
    write_labels,
)


def _sets():
    """Two training sets, each in data-dir (C-locale) order as read_data_dir returns them."""
    dev = [
        make_utt("fan", "00", "a", attr="noAttribute"),
        make_utt("fan", "01", "b", attr="vel_8"),
        make_utt("ToyCar", "00", "c", attr="car_A1"),
    ]
    ev = [make_utt("fan", "01", "d", attr="vel_8"), make_utt("valve", "03", "e", "target", attr="pat_2")]
    return sorted(dev, key=lambda u: u.utt_id.encode()), ev


def test_class_names_and_order():
    dev, ev = _sets()
    assert class_name(dev[2]) == "fan-01-vel_8"
    assert class_name(dev[1]) == "fan-00-noAttribute"
    assert build_classes(dev + ev) == ["ToyCar-00-car_A1", "fan-00-noAttribute", "fan-01-vel_8", "valve-03-pat_2"]
    assert build_classes(ev + dev) == build_classes(dev + ev)


def test_shared_class_ids_across_sets(tmp_path):
    dev, ev = _sets()
    classes = build_classes(dev + ev)
    for name, utts in (("dev_train", dev), ("eval_train", ev)):
        (tmp_path / name).mkdir()
        write_labels(tmp_path / name, utts, classes)
    dev_ids, dev_names = read_labels(tmp_path / "dev_train", dev)
    ev_ids, ev_names = read_labels(tmp_path / "eval_train", ev)
    assert dev_names == ev_names == classes
    assert [u.utt_id for u in dev] == ["ToyCar-00-c", "fan-00-a", "fan-01-b"]
    assert dev_ids == [0, 1, 2]
    assert ev_ids == [2, 3]  # fan-01-vel_8 has the same id in both sets
    assert read_kv(tmp_path / "dev_train" / "utt2class")["fan-01-b"] == "fan-01-vel_8"


def test_non_normal_training_clip_rejected(tmp_path):
    utts = [make_utt("fan", "00", "a"), make_utt("fan", "00", "b", label="anomaly")]
    with pytest.raises(DataDirError, match="non-normal clip 'fan-00-b' \\(label anomaly\\)"):
        write_labels(tmp_path, utts, build_classes(utts))
    assert not (tmp_path / "utt2class").exists()


def test_read_labels_errors(tmp_path):
    dev, _ = _sets()
    classes = build_classes(dev)
    write_labels(tmp_path, dev[1:], classes)
    with pytest.raises(DataDirError, match="utt2class: does not cover the data dir .*ToyCar-00-c"):
        read_labels(tmp_path, dev)
    write_labels(tmp_path, dev, classes)
    with pytest.raises(DataDirError, match="utt2class: does not cover"):
        read_labels(tmp_path, dev[:2])  # extra entries
    write_labels(tmp_path, dev, classes[:2])
    with pytest.raises(DataDirError, match="classes \\['fan-01-vel_8'\\] not in classes.txt"):
        read_labels(tmp_path, dev)
    (tmp_path / "classes.txt").write_text("ToyCar-00-car_A1 0\nfan-00-noAttribute 2\n")
    with pytest.raises(DataDirError, match="classes.txt: ids must be 0..N-1"):
        read_labels(tmp_path, dev)
    (tmp_path / "classes.txt").unlink()
    with pytest.raises(DataDirError, match="classes.txt is missing"):
        read_labels(tmp_path, dev)


def test_utt2dur(tmp_path, write_wav):
    utts = [
        make_utt("fan", "00", "a", path=write_wav("a.wav", n=8000)),
        make_utt("fan", "00", "b", path=write_wav("b.wav", n=12345)),
        make_utt("fan", "00", "c", path=write_wav("c.wav", n=4410, sr=44100)),
    ]
    write_durations(tmp_path, utts)
    assert read_kv(tmp_path / "utt2dur") == {"fan-00-a": "0.500", "fan-00-b": "0.772", "fan-00-c": "0.100"}


def test_utt2dur_unreadable(tmp_path):
    (tmp_path / "bad.wav").write_bytes(np.random.default_rng(0).bytes(512))
    with pytest.raises(DataDirError, match="cannot read the header of fan-00-a .*bad.wav"):
        write_durations(tmp_path, [make_utt("fan", "00", "a", path=tmp_path / "bad.wav")])
    with pytest.raises(DataDirError, match="cannot read the header of fan-00-b .*gone.wav"):
        write_durations(tmp_path, [make_utt("fan", "00", "b", path=tmp_path / "gone.wav")])
