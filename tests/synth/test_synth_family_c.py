"""Tests of the held-out synthetic corpus family (asdlib.synth.family_c, make_synth --family c)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from test_synth import _tree_digest, family_probe

from asdlib.bin import make_synth, prepare_dcase
from asdlib.data.datadir import read_kv
from asdlib.synth import corpus as synth
from asdlib.synth import family_b, family_c
from asdlib.years import YEARS

TINY = ["--n_train_source", "6", "--n_train_target", "2", "--n_test", "2", "--seconds", "0.5"]
TINY_CFG = family_c.default_config(n_train_source=6, n_train_target=2, n_test=2, seconds=0.5)


@pytest.fixture(scope="module")
def corpus_c(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fc") / "c"
    assert make_synth.main(["--family", "c", "--root", str(root), *TINY]) == 0
    return root


def test_machines_are_official_2024_and_in_no_other_family():
    info, a = YEARS[2024], synth.SynthConfig()
    ours = set(family_c.DEV_MACHINES + family_c.EVAL_MACHINES)
    assert set(family_c.DEV_MACHINES) <= set(info.dev) and set(family_c.EVAL_MACHINES) <= set(info.eval)
    assert not ours & set(a.dev_machines + a.eval_machines + family_b.DEV_MACHINES + family_b.EVAL_MACHINES)
    assert make_synth.get_parser("c").parse_args(["--root", "x"]).eval_machines == family_c.EVAL_MACHINES


def test_prepares_with_eval_list(corpus_c: Path, tmp_path: Path):
    assert prepare_dcase.main(["--year", "2024", "--root", str(corpus_c), "--data_dir", str(tmp_path / "data")]) == 0
    sets = {s: read_kv(tmp_path / "data" / s / "wav.scp") for s in ("dev_train", "dev_test", "eval_train", "eval_test")}
    assert len(sets["dev_train"]) == 8 and len(sets["eval_train"]) == len(sets["eval_test"]) == 3 * 8
    labels = read_kv(tmp_path / "data" / "eval_test" / "utt2label")
    assert sorted(labels.values()) == ["anomaly"] * 12 + ["normal"] * 12
    attrs = read_kv(tmp_path / "data" / "dev_train" / "utt2attr")
    assert all("spm_" in v and "material_" in v for v in attrs.values())
    assert all(
        v == "noAttribute"
        for k, v in read_kv(tmp_path / "data" / "eval_train" / "utt2attr").items()
        if "ToyCircuit" in k
    )


def test_determinism_and_marker(corpus_c: Path, tmp_path: Path):
    family_c.profile.cache_clear()
    synth.generate_corpus(tmp_path / "same", TINY_CFG, family_c.MODEL)
    assert _tree_digest(tmp_path / "same") == _tree_digest(corpus_c)
    synth.generate_corpus(tmp_path / "other", dataclasses.replace(TINY_CFG, seed=1), family_c.MODEL)
    ours, other = _tree_digest(corpus_c), _tree_digest(tmp_path / "other")
    wavs = [k for k in ours if k.endswith(".wav")]
    assert sum(ours[k] != other.get(k) for k in wavs) > 0.9 * len(wavs)
    with pytest.raises(synth.SynthError, match="family"):  # another family's corpus in this root
        synth.generate_corpus(
            corpus_c, family_b.default_config(n_train_source=6, n_train_target=2, n_test=2, seconds=0.5), family_b.MODEL
        )
    kinds = {
        s.anomaly_kind(0, family_c.ANOMALY_KINDS)
        for m in family_c.EVAL_MACHINES
        for s in synth.split_specs("eval", m, "test", family_c.default_config(), family_c.MODEL)
        if s.label == "anomaly"
    }
    assert kinds == set(family_c.ANOMALY_KINDS)


def test_anomalies_and_domain_shift_are_real():
    """Mean-log-mel cosine 1-NN to source training clips: anomalies are found in the source domain
    and target normals are far from the source bank. Measured at strength 1 on 20 source clips and
    12 test clips per domain: AUC(source) 0.61-0.92 over the four machines; target against source
    normals 1.0."""
    cfg = family_c.default_config(n_train_source=20, n_train_target=2, n_test=6)
    auc_src, auc_dom = family_probe(
        family_c.MODEL, cfg, [("dev", "ToyTrain"), ("eval", "RoboticArm"), ("eval", "ToyCircuit")]
    )
    assert np.mean(auc_src) >= 0.75 and min(auc_src) > 0.7, auc_src
    assert min(auc_dom) >= 0.9, auc_dom
