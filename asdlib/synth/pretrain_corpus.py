"""The self-supervised pre-training corpus of egs/ssl_synth: every family's sound model, on machines
and seeds that no evaluation corpus uses.

Why a fixed plan: a pre-trained upstream measured on families a-e must not have heard their clips.
A synthetic clip is a pure function of (corpus seed, dataset, machine, split, domain, label, index),
and a machine's acoustic identity is a function of its name, so disjoint machine names and corpus
seeds give disjoint machines and disjoint clips. :func:`check_disjoint` is what the recipe and its
test assert; only training clips (normal, source and target conditions) are prepared.
"""

from __future__ import annotations

import dataclasses

from asdlib.synth.corpus import SynthConfig, SynthError
from asdlib.synth.families import FAMILIES

#: per family: (dev machines, eval machines); no name is a DCASE machine type or an evaluation machine
MACHINES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "a": (("blower", "mixer"), ("Juicer", "Shredder")),
    "b": (("chiller", "winch"), ("Lathe", "Planer")),
    "c": (("riveter", "stapler"), ("Puncher", "Sorter")),
    "d": (("extruder", "kiln"), ("Conveyor", "Centrifuge")),
    "e": (("gimbal", "plotter"), ("CamSlider", "PanTilt")),
}
SEED_BASE = 1000  # family i's corpus seed is SEED_BASE + i; every evaluation corpus uses seed 0
TARGET_SHARE = 0.1  # share of each machine's clips drawn under target conditions


def plan(clips_per_machine: int) -> dict[str, SynthConfig]:
    """Family -> its pre-training corpus options, ``clips_per_machine`` training clips per machine."""
    n_target = max(1, round(clips_per_machine * TARGET_SHARE))
    if clips_per_machine - n_target < 1:
        raise SynthError(f"--clips_per_machine must be at least 2, got {clips_per_machine}")
    out = {}
    for i, (family, (dev, eval_)) in enumerate(sorted(MACHINES.items())):
        base = FAMILIES[family][0]
        out[family] = dataclasses.replace(
            base,
            dev_machines=dev,
            eval_machines=eval_,
            no_attribute=(),
            n_train_source=clips_per_machine - n_target,
            n_train_target=n_target,
            n_test=1,  # the layout needs a test split; it is never prepared
            seed=SEED_BASE + i,
        )
    return out


def check_disjoint(corpus: dict[str, SynthConfig]) -> None:
    """Raise SynthError when the pre-training corpus shares a machine name or a corpus seed with any
    family's evaluation corpus (its default options): either alone keeps every clip apart."""
    eval_machines = {m for cfg, _ in FAMILIES.values() for m in cfg.dev_machines + cfg.eval_machines}
    eval_seeds = {cfg.seed for cfg, _ in FAMILIES.values()}
    names = [m for cfg in corpus.values() for m in cfg.dev_machines + cfg.eval_machines]
    shared = sorted({m.lower() for m in names} & {m.lower() for m in eval_machines})
    if shared:
        raise SynthError(f"pre-training machines {shared} are evaluation machines; rename them")
    if len(set(names)) != len(names):
        raise SynthError("a pre-training machine name is used by two families; give every family its own")
    seeds = sorted({cfg.seed for cfg in corpus.values()} & eval_seeds)
    if seeds:
        raise SynthError(f"pre-training corpus seeds {seeds} are evaluation corpus seeds; pick others")
