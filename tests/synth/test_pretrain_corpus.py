"""egs/ssl_synth's pre-training corpus never holds an evaluation clip: its machines, corpus seeds and
clip generator keys are disjoint from those of every corpus family's evaluation corpus, no rendered
clip equals an evaluation clip, and only normal training clips reach its data dir."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
from pathlib import Path

import pytest
import soundfile as sf

from asdlib.bin import make_pretrain_corpus
from asdlib.data.datadir import read_data_dir
from asdlib.synth.corpus import SynthError, split_specs
from asdlib.synth.families import FAMILIES
from asdlib.synth.pretrain_corpus import MACHINES, check_disjoint, plan
from asdlib.years import YEARS


def generator_keys(family: str, cfg) -> set[tuple]:
    """What seeds each clip's generator (ClipSpec.rng): corpus seed, dataset, machine, split, domain, label, index."""
    model = FAMILIES[family][1]
    return {
        (cfg.seed, s.dataset, s.machine, s.split, s.domain, s.label, s.index)
        for dataset, machines in (("dev", cfg.dev_machines), ("eval", cfg.eval_machines))
        for machine in machines
        for split in ("train", "test")
        for s in split_specs(dataset, machine, split, cfg, model)
    }


def test_plan_covers_every_family_and_no_evaluation_or_dcase_machine() -> None:
    corpus = plan(300)
    assert sorted(corpus) == sorted(FAMILIES) == sorted(MACHINES)
    check_disjoint(corpus)
    dcase = {m.lower() for y in YEARS.values() for part in (y.dev, y.eval) for m in part}
    names = {m.lower() for cfg in corpus.values() for m in cfg.dev_machines + cfg.eval_machines}
    assert not names & dcase
    evaluation = set().union(*(generator_keys(f, cfg) for f, (cfg, _) in FAMILIES.items()))
    for family, cfg in corpus.items():
        assert cfg.n_train_source + cfg.n_train_target == 300 and cfg.n_train_target == 30
        assert not generator_keys(family, cfg) & evaluation, family


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(dev_machines=("fan", "mixer")), "evaluation machines"),
        (dict(eval_machines=("Lathe", "Shredder")), "two families"),
        (dict(seed=0), "evaluation corpus seeds"),
    ],
)
def test_check_disjoint_rejects_a_shared_machine_or_seed(change: dict, message: str) -> None:
    corpus = plan(10)
    corpus["a"] = dataclasses.replace(corpus["a"], **change)
    with pytest.raises(SynthError, match=message):
        check_disjoint(corpus)


def _digest(path: Path) -> str:
    return hashlib.sha256(sf.read(path, dtype="int16")[0].tobytes()).hexdigest()


def test_corpus_holds_training_normals_only_and_no_evaluation_clip(tmp_path: Path) -> None:
    make_pretrain_corpus.main(
        ["--root", str(tmp_path / "ssl"), "--data_dir", str(tmp_path / "data"), "--clips_per_machine", "3"]
    )
    utts = read_data_dir(tmp_path / "data" / "train")
    corpus = plan(3)
    assert len(utts) == 5 * 4 * 3
    assert {u.label for u in utts} == {"normal"} and {u.domain for u in utts} == {"source", "target"}
    assert {u.machine for u in utts} == {m for dev, eval_ in MACHINES.values() for m in dev + eval_}
    assert all("/train/" in u.path for u in utts)
    # the corpora record exactly the planned machines (keys checked above)
    for family, cfg in corpus.items():
        with open(tmp_path / "ssl" / family / "synth_metadata.csv") as f:
            rows = [r for r in csv.DictReader(f) if r["split"] == "train"]
        assert {r["machine"] for r in rows} == set(cfg.dev_machines + cfg.eval_machines)
    # the audio itself: no pre-training clip equals one of the first evaluation clips of any family
    # (the same dataset/split/domain/index, on the evaluation machines, under the evaluation seed)
    ours = {_digest(Path(u.path)) for u in utts}
    assert len(ours) == len(utts)
    for cfg, model in FAMILIES.values():
        small = dataclasses.replace(cfg, n_train_source=3, n_train_target=3)
        for dataset, machines in (("dev", small.dev_machines), ("eval", small.eval_machines)):
            for spec in split_specs(dataset, machines[0], "train", small, model)[:4]:
                wav = tmp_path / "evaluation.wav"  # written as the corpus writes its clips
                sf.write(wav, model.render(spec, small), small.sample_rate, subtype="PCM_16")
                assert _digest(wav) not in ours
