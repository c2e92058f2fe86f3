"""Tests of the held-out hard-shift family (asdlib.synth.family_e, make_synth --family e). They check
layout, determinism and the structure of the sounds, never a detector's score: family e is looked at
once, to report the mini's default (egs/mini/RESULTS.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_synth import _tree_digest

from asdlib.bin import make_synth, prepare_dcase
from asdlib.data.datadir import read_kv
from asdlib.synth import corpus as synth
from asdlib.synth import family_b, family_c, family_d, family_e
from asdlib.years import YEARS

TINY = ["--n_train_source", "6", "--n_train_target", "2", "--n_test", "2", "--seconds", "0.5"]
TINY_CFG = family_e.default_config(n_train_source=6, n_train_target=2, n_test=2, seconds=0.5)


@pytest.fixture(scope="module")
def corpus_e(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fe") / "e"
    assert make_synth.main(["--family", "e", "--root", str(root), *TINY]) == 0
    return root


def test_machines_are_official_and_in_no_other_family():
    official = {m for info in YEARS.values() for m in (*info.dev, *info.eval)}
    ours = set(family_e.DEV_MACHINES + family_e.EVAL_MACHINES)
    assert ours <= official
    a = synth.SynthConfig()
    others = a.dev_machines + a.eval_machines
    for fam in (family_b, family_c, family_d):
        others += fam.DEV_MACHINES + fam.EVAL_MACHINES
    assert not ours & set(others)
    args = make_synth.get_parser("e").parse_args(["--root", "x"])
    assert (args.n_train_source, args.n_train_target, args.n_test) == (990, 10, 50)


def test_prepares_and_is_deterministic(corpus_e: Path, tmp_path: Path):
    assert prepare_dcase.main(["--year", "2024", "--root", str(corpus_e), "--data_dir", str(tmp_path / "data")]) == 0
    attrs = read_kv(tmp_path / "data" / "dev_train" / "utt2attr")
    assert all("program_" in v and "speed_" in v for k, v in attrs.items() if "Vacuum" not in k)
    family_e.profile.cache_clear()
    synth.generate_corpus(tmp_path / "same", TINY_CFG, family_e.MODEL)
    assert _tree_digest(tmp_path / "same") == _tree_digest(corpus_e)


def test_target_programs_change_per_clip_and_source_programs_do_not():
    p = family_e.profile("ToyNscale")
    rng = np.random.default_rng(0)
    assert family_e._program(p, "A", rng) == family_e._program(p, "A", rng)
    assert family_e._program(p, "X", rng) != family_e._program(p, "X", rng)


def test_anomalies_change_the_sound_and_normals_are_in_range():
    cfg = family_e.default_config(seconds=1.0)
    specs = [s for s in synth.split_specs("dev", "bandsaw", "test", cfg, family_e.MODEL) if s.domain == "source"]
    kinds = {s.anomaly_kind(cfg.seed, family_e.ANOMALY_KINDS) for s in specs}
    assert kinds == {"", *family_e.ANOMALY_KINDS}
    x = family_e.MODEL.render(specs[0], cfg)
    assert x.shape == (16000,) and np.all(np.abs(x) < 1.0) and 0.01 < np.sqrt(np.mean(x**2)) < 0.2
