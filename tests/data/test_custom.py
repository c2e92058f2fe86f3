"""A user's corpus (asdlib/data/custom.py, issue 19): labels.csv matched by path relative to test/
(an Excel BOM accepted, a contradictory row refused), symlinked folders followed once, a control
character in a file name refused with its fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from asdlib.data.custom import read_folder
from asdlib.data.datadir import DataDirError


def corpus(tmp_path: Path, write_wav, labels: str, names: tuple[str, ...] = ("day1/x.wav", "day2/x.wav")) -> Path:
    root = tmp_path / "corpus"
    for rel in ("train/a.wav", *(f"test/{n}" for n in names)):
        dest = root / "fan" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_wav("tmp.wav").rename(dest)
    (root / "fan" / "test" / "labels.csv").write_bytes(labels.encode("utf-8"))
    return root


def test_labels_by_relative_path_with_a_bom(tmp_path, write_wav) -> None:
    root = corpus(tmp_path, write_wav, "\ufefffile,label\nday1/x.wav,normal\nday2/x.wav,anomaly\n")
    test = read_folder(root)["test"]
    assert {Path(u.path).parent.name: u.label for u in test} == {"day1": "normal", "day2": "anomaly"}


def test_a_contradictory_row_is_an_error(tmp_path, write_wav) -> None:
    root = corpus(tmp_path, write_wav, "day1/x.wav,normal\nday1/x.wav,anomaly\nday2/x.wav,normal\n")
    with pytest.raises(DataDirError, match="labelled both normal and anomaly"):
        read_folder(root)


def test_symlinked_folders_are_followed_once_and_a_carriage_return_is_named(tmp_path, write_wav) -> None:
    root = corpus(tmp_path, write_wav, "")
    extra = tmp_path / "more"
    extra.mkdir()
    write_wav("tmp.wav").rename(extra / "b.flac")
    (root / "fan" / "train" / "more").symlink_to(extra)
    (extra / "up").symlink_to(root / "fan" / "train")  # a loop back up
    train = read_folder(root)["train"]
    assert sorted(Path(u.path).name for u in train) == ["a.wav", "b.flac"]
    write_wav("tmp.wav").rename(root / "fan" / "train" / "bad\r.wav")
    with pytest.raises(DataDirError, match="control character"):
        read_folder(root)
