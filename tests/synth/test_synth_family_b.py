"""Tests of the second synthetic corpus family (asdlib.synth.family_b, make_synth --family b)."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
from test_synth import _tree_digest, family_probe

from asdlib.bin import compare_results, make_synth, prepare_dcase
from asdlib.data.datadir import read_kv
from asdlib.data.regions import CORPUS_FILE
from asdlib.metrics.official import Evaluation
from asdlib.metrics.report import write_results_json
from asdlib.synth import corpus as synth
from asdlib.synth import family_b
from asdlib.years import YEARS

TINY = ["--n_train_source", "6", "--n_train_target", "2", "--n_test", "2", "--seconds", "0.5"]
TINY_CFG = family_b.default_config(n_train_source=6, n_train_target=2, n_test=2, seconds=0.5)


@pytest.fixture(scope="module")
def corpus_b(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fb") / "b"
    assert make_synth.main(["--family", "b", "--root", str(root), *TINY]) == 0
    return root


def test_machines_are_official_2024_and_not_the_default_corpus():
    info, a = YEARS[2024], synth.SynthConfig()
    assert set(family_b.DEV_MACHINES) <= set(info.dev) and set(family_b.EVAL_MACHINES) <= set(info.eval)
    assert not set(family_b.DEV_MACHINES + family_b.EVAL_MACHINES) & set(a.dev_machines + a.eval_machines)
    assert make_synth.get_parser("b").parse_args(["--root", "x"]).dev_machines == family_b.DEV_MACHINES


def test_prepares_with_eval_list(corpus_b: Path, tmp_path: Path):
    assert prepare_dcase.main(["--year", "2024", "--root", str(corpus_b), "--data_dir", str(tmp_path / "data")]) == 0
    sets = {s: read_kv(tmp_path / "data" / s / "wav.scp") for s in ("dev_train", "dev_test", "eval_train", "eval_test")}
    assert len(sets["dev_train"]) == len(sets["eval_train"]) == 3 * 8 and len(sets["eval_test"]) == 3 * 8
    # every blinded eval clip got its label from the eval list at the root
    labels = read_kv(tmp_path / "data" / "eval_test" / "utt2label")
    assert sorted(labels.values()) == ["anomaly"] * 12 + ["normal"] * 12
    attrs = read_kv(tmp_path / "data" / "dev_train" / "utt2attr")
    assert any("rpm_" in v and "load_" in v for v in attrs.values())
    assert any(v == "noAttribute" for k, v in attrs.items() if "slider" in k)


def test_determinism_and_marker(corpus_b: Path, tmp_path: Path):
    family_b.profile.cache_clear()
    synth.generate_corpus(tmp_path / "same", TINY_CFG, family_b.MODEL)
    assert _tree_digest(tmp_path / "same") == _tree_digest(corpus_b)
    synth.generate_corpus(tmp_path / "other", dataclasses.replace(TINY_CFG, seed=1), family_b.MODEL)
    ours, other = _tree_digest(corpus_b), _tree_digest(tmp_path / "other")
    wavs = [k for k in ours if k.endswith(".wav")]
    assert sum(ours[k] != other.get(k) for k in wavs) > 0.9 * len(wavs)
    # a family-a corpus with the same options is refused in a family-b root, and vice versa
    with pytest.raises(synth.SynthError, match="family"):
        synth.generate_corpus(corpus_b, TINY_CFG)
    kinds = {
        s.anomaly_kind(0, family_b.ANOMALY_KINDS)
        for m in family_b.DEV_MACHINES
        for s in synth.split_specs("dev", m, "test", family_b.default_config(), family_b.MODEL)
        if s.label == "anomaly"
    }
    assert kinds == set(family_b.ANOMALY_KINDS)


def test_default_corpus_unchanged_by_the_family_hook(tmp_path: Path):
    """Family a written through the SoundModel hook equals its golden digest (seed 0, small sizes)."""
    cfg = synth.SynthConfig(
        dev_machines=("fan",),
        eval_machines=("ToothBrush",),
        no_attribute=("ToothBrush",),
        n_train_source=3,
        n_train_target=1,
        n_test=2,
        seconds=0.5,
    )
    synth.generate_corpus(tmp_path / "a", cfg)
    tree = _tree_digest(tmp_path / "a")
    assert tree.pop(CORPUS_FILE)  # written since (the anomaly regions, tests/data/test_regions.py): not in the golden
    digest = hashlib.sha256(repr(sorted(tree.items())).encode()).hexdigest()
    assert digest == GOLDEN_A, digest
    assert "family" not in (tmp_path / "a" / synth.DONE_MARKER).read_text()


# sha256 of the sorted (path, sha256) list, made with the code before the hook existed (HEAD
# asdlib/synth/corpus.py); wav bytes depend on numpy/scipy/libsndfile (tools/requirements.lock).
GOLDEN_A = "8cde1364f1a9855ab8a5cd0b2b98afc0b42c640691f0819ce1b71070e1fd04b2"


def test_anomalies_and_domain_shift_are_real():
    """Mean-log-mel cosine 1-NN to source training clips: anomalies (at strength 2, on this small
    sample) are found in the source domain, and target normals are far from the source bank (the
    shift is real). At strength 1 the same probe on 60/12 clips gives AUC(source) 0.67-0.92."""
    cfg = family_b.default_config(n_train_source=20, n_train_target=2, n_test=6, anomaly_strength=2.0)
    auc_src, auc_dom = family_probe(
        family_b.MODEL, cfg, [("dev", "bearing"), ("dev", "ToyCar"), ("eval", "AirCompressor")]
    )
    print(f"\nfamily b: AUC(source) {np.round(auc_src, 3)}, target-vs-source normals {np.round(auc_dom, 3)}")
    assert np.mean(auc_src) >= 0.75 and min(auc_src) > 0.6, auc_src
    assert min(auc_dom) >= 0.9, auc_dom


def test_compare_results_by_family(tmp_path: Path):
    for root, score in (("exp", 0.7), ("exp_b", 0.5)):
        summary = {"hmean_auc_target": score - 0.2}
        ev = Evaluation(
            year=2024, metric="hmean", official_score=score, per_machine={}, machine_means={}, summary=summary
        )
        write_results_json(ev, tmp_path / root / "sysA" / "results" / "eval_test" / "results.json")
    out = tmp_path / "t.md"
    assert (
        compare_results.main(
            [
                "--set",
                "eval_test",
                "--out",
                str(out),
                "--by_family",
                f"a={tmp_path / 'exp'}",
                "--by_family",
                f"b={tmp_path / 'exp_b'}",
                "sysA",
            ]
        )
        == 0
    )
    official, target = out.read_text().split("h-mean AUC(target) on eval_test")
    assert "| sysA | 70.00 | 50.00 | 60.00 | 50.00 |" in official
    assert "| sysA | 50.00 | 30.00 | 40.00 | 30.00 |" in target
    png = tmp_path / "families.png"
    assert (
        compare_results.main(
            [
                "--set",
                "eval_test",
                "--out",
                str(out),
                "--by_family",
                f"a={tmp_path / 'exp'}",
                "--by_family",
                f"b={tmp_path / 'exp_b'}",
                "--plot",
                str(png),
                "sysA",
            ]
        )
        == 0
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="exactly two --by_family"):
        compare_results.main(
            ["--set", "eval_test", "--out", str(out), "--plot", str(png), str(tmp_path / "exp" / "sysA")]
        )
