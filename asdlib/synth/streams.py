"""Long synthetic recordings of one running machine, for measuring a live monitor: normal sound,
and normal sound with an anomaly from a known time.

A stream is a run of clips of a corpus family's sound model, rendered like that family's test
clips but with draws of their own (split ``stream<episode>``, so no clip equals a corpus clip), and
at one operating condition per stream (one attribute combination of the domain, drawn once): a
running machine does not change its settings every few seconds. Background events come and go as
in the corpus (:data:`asdlib.synth.corpus.EVENT_PROB` of the clips). Clips are yielded one at a time,
so a stream of hours never sits in memory.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from asdlib.synth.corpus import EVENT_PROB, ClipSpec, SynthConfig, SynthError, _name_rng, param_combos
from asdlib.synth.families import get_family


def stream_config(family: str) -> SynthConfig:
    """The family's default options (clip length, sample rate, seed, anomaly strength)."""
    return get_family(family)[0]


def stream_clips(
    family: str, machine: str, domain: str, seconds: float, anomaly_from: float | None = None, episode: int = 0
) -> Iterator[np.ndarray]:
    """Clips (float64, mono) of ``machine`` in ``domain`` for at least ``seconds``; from
    ``anomaly_from`` seconds on (rounded up to a clip boundary) every clip is anomalous. Bad options
    raise here, before the first clip."""
    cfg, model = get_family(family)
    if machine not in cfg.dev_machines + cfg.eval_machines:
        raise SynthError(f"machine '{machine}' is not one of family {family}'s: {cfg.dev_machines + cfg.eval_machines}")
    if domain not in ("source", "target") or seconds <= 0:
        raise SynthError(f"domain must be source or target and seconds > 0, got {domain!r}, {seconds}")
    dataset = "dev" if machine in cfg.dev_machines else "eval"
    rng = _name_rng(cfg.seed, "stream", machine, domain, episode)
    combos = param_combos(model.params(machine), domain)
    combo = combos[int(rng.integers(len(combos)))]
    first_anomaly = math.ceil(anomaly_from / cfg.seconds) if anomaly_from is not None else None

    def clips() -> Iterator[np.ndarray]:
        for i in range(math.ceil(seconds / cfg.seconds)):
            label = "anomaly" if first_anomaly is not None and i >= first_anomaly else "normal"
            events = bool(rng.random() < EVENT_PROB)
            yield model.render(ClipSpec(dataset, machine, f"stream{episode}", domain, label, i, combo, events), cfg)

    return clips()
