"""Tests of the hard-shift corpus family (asdlib.synth.family_d, make_synth --family d)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from conftest import make_utt
from sklearn.metrics import roc_auc_score
from test_synth import _mean_logmel, _tree_digest

from asdlib.backends.knn import KnnBackend
from asdlib.bin import make_synth, prepare_dcase
from asdlib.data.datadir import read_kv
from asdlib.synth import corpus as synth
from asdlib.synth import family_b, family_c, family_d
from asdlib.years import YEARS

TINY = ["--n_train_source", "6", "--n_train_target", "2", "--n_test", "2", "--seconds", "0.5"]
TINY_CFG = family_d.default_config(n_train_source=6, n_train_target=2, n_test=2, seconds=0.5)


@pytest.fixture(scope="module")
def corpus_d(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fd") / "d"
    assert make_synth.main(["--family", "d", "--root", str(root), *TINY]) == 0
    return root


def test_machines_are_official_and_in_no_other_family():
    official = {m for info in YEARS.values() for m in (*info.dev, *info.eval)}
    ours = set(family_d.DEV_MACHINES + family_d.EVAL_MACHINES)
    assert ours <= official
    a = synth.SynthConfig()
    others = a.dev_machines + a.eval_machines
    for fam in (family_b, family_c):
        others += fam.DEV_MACHINES + fam.EVAL_MACHINES
    assert not ours & set(others)


def test_defaults_have_dcase_proportions():
    args = make_synth.get_parser("d").parse_args(["--root", "x"])
    assert (args.n_train_source, args.n_train_target, args.n_test) == (990, 10, 50)
    assert args.eval_machines == family_d.EVAL_MACHINES


def test_prepares_with_eval_list_and_blinded_test_names(corpus_d: Path, tmp_path: Path):
    assert prepare_dcase.main(["--year", "2024", "--root", str(corpus_d), "--data_dir", str(tmp_path / "data")]) == 0
    scp = read_kv(tmp_path / "data" / "eval_test" / "wav.scp")
    assert len(scp) == 3 * 8 and not any("source" in p or "target" in p for p in scp.values())
    labels = read_kv(tmp_path / "data" / "eval_test" / "utt2label")
    assert sorted(labels.values()) == ["anomaly"] * 12 + ["normal"] * 12
    attrs = read_kv(tmp_path / "data" / "dev_train" / "utt2attr")
    assert all("hz_" in v and "load_" in v for k, v in attrs.items() if "shaker" not in k)


def test_determinism_and_marker(corpus_d: Path, tmp_path: Path):
    family_d.profile.cache_clear()
    synth.generate_corpus(tmp_path / "same", TINY_CFG, family_d.MODEL)
    assert _tree_digest(tmp_path / "same") == _tree_digest(corpus_d)
    with pytest.raises(synth.SynthError, match="differs in: seed"):
        synth.generate_corpus(corpus_d, dataclasses.replace(TINY_CFG, seed=1), family_d.MODEL)


def test_target_normals_outscore_anomalies_for_a_log_mel_knn():
    """DCASE's hard shift: with 10 target clips against 100 source clips, a domain-wise log-mel kNN
    ranks target normals above the anomalies (AUC(target) < 50 %) on most dev machines, while it
    still finds anomalies in the source domain. Measured at seed 0 (50 source, 10 target and 10 test
    clips per domain x label, 1 s, dev machines): AUC(target) 0.27, 0.24, 0.63; AUC(source) 0.79,
    0.76, 0.73."""
    cfg = family_d.default_config(n_train_source=50, n_test=10, seconds=1.0)
    auc_src, auc_tgt = [], []
    for machine in family_d.DEV_MACHINES:
        train = synth.split_specs("dev", machine, "train", cfg, family_d.MODEL)
        test = synth.split_specs("dev", machine, "test", cfg, family_d.MODEL)
        bank = np.stack([_mean_logmel(family_d.MODEL.render(s, cfg)) for s in train])
        feats = np.stack([_mean_logmel(family_d.MODEL.render(s, cfg)) for s in test])
        fitted = KnnBackend().fit([make_utt(machine, "00", f"b{i}", s.domain) for i, s in enumerate(train)], bank)
        score = fitted.score([make_utt(machine, "00", f"q{i}", "source", "unknown") for i in range(len(test))], feats)
        domain, anomaly = np.array([s.domain for s in test]), np.array([s.label == "anomaly" for s in test])
        for out, dom in ((auc_src, "source"), (auc_tgt, "target")):
            keep = (domain == dom) | anomaly
            out.append(roc_auc_score(anomaly[keep], score[keep]))
    assert sum(a < 0.5 for a in auc_tgt) >= 2, auc_tgt
    assert min(auc_src) > 0.6, auc_src
