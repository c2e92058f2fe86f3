"""Submission rows of a custom corpus (issue 19): test/normal/t000.wav and test/anomaly/t000.wav are two
recordings; ``--row_names utt`` (egs/custom's ``--submission_rows utt``) names rows by utt-id, while
the DCASE default (file names, as the evaluators match them) still refuses the clash."""

from __future__ import annotations

import csv

import pytest

from asdlib.bin import write_submission
from asdlib.data.custom import read_folder
from asdlib.data.datadir import write_data_dir
from asdlib.io.ark import write_scores


def test_same_file_names_in_normal_and_anomaly(tmp_path, write_wav) -> None:
    corpus = tmp_path / "corpus" / "fan"
    for split in ("train", "test/normal", "test/anomaly"):
        (corpus / split).mkdir(parents=True)
        for i in range(3):
            write_wav(f"{split}/t{i:03d}.wav").rename(corpus / split / f"t{i:03d}.wav")
    sets = read_folder(tmp_path / "corpus")
    data, scores = tmp_path / "data", tmp_path / "scores"
    for name, utts in sets.items():
        write_data_dir(data / name, utts)
        (scores / name).mkdir(parents=True)
        write_scores(
            scores / name / "scores.ark", scores / name / "scores.scp", {u.utt_id: float(i) for i, u in enumerate(utts)}
        )
    args = ["--year", "2020", "--data_root", str(data), "--scores_dir", str(scores), "--test_set", "test"]
    args += ["--train_sets", "train", "--verbose", "0"]
    with pytest.raises(ValueError, match="file names occur twice"):
        write_submission.main(args)
    assert write_submission.main([*args, "--row_names", "utt"]) == 0
    (written,) = (scores / "test").glob("anomaly_score_*.csv")
    names = [row[0] for row in csv.reader(written.open())]
    assert sorted(names) == sorted(f"{lab}_t{i:03d}" for lab in ("normal", "anomaly") for i in range(3))
