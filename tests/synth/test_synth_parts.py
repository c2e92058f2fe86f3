"""Parts of a synthetic clip (asdlib.synth.corpus.PARTS) for every corpus family.

Why: the 2025/2026 layouts are built from a clip's machine and noise parts, and adding them must not
change a single sample of the corpora that recipes and results already use.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest

from asdlib.synth import corpus as a
from asdlib.synth import family_b, family_c, family_d, family_e

MODELS = {"a": (a.SynthConfig(), a.DEFAULT_MODEL)} | {
    m.MODEL.name: (m.default_config(), m.MODEL) for m in (family_b, family_c, family_d, family_e)
}
# sha256 (first 16 hex digits) of the mix of a few dev test clips per family, recorded on the code
# before parts existed: (family, domain, label, index, digest)
MIX_DIGESTS = [
    ("a", "source", "normal", 0, "8ca087f03e0131b3"),
    ("a", "source", "normal", 1, "6e452ab837f6bf4b"),
    ("a", "target", "anomaly", 1, "70322712cc097108"),
    ("a", "target", "anomaly", 0, "3484c86b3b8c4eaf"),
    ("b", "source", "normal", 0, "aec2d759a34eb368"),
    ("b", "source", "normal", 1, "2f74227ecd08ca9b"),
    ("b", "target", "anomaly", 1, "d12841fd3d195a85"),
    ("b", "target", "anomaly", 0, "aac819cd6e15477b"),
    ("c", "source", "normal", 0, "032c6503d6052dbf"),
    ("c", "source", "normal", 1, "847ba6d7b24abcba"),
    ("c", "target", "anomaly", 1, "c37edc4da770fe9e"),
    ("c", "target", "anomaly", 0, "0f6fe63bf72ee347"),
    ("d", "source", "normal", 0, "114776afc28240b7"),
    ("d", "source", "normal", 1, "f57b4a9ce721d1f7"),
    ("d", "target", "anomaly", 1, "6906b96822875059"),
    ("d", "target", "anomaly", 0, "9c52c8b596b83767"),
    ("e", "source", "normal", 0, "7d1f85671202e2ab"),
    ("e", "source", "normal", 1, "cb42f91aea811e87"),
    ("e", "target", "anomaly", 1, "794f59164e020e2c"),
    ("e", "target", "anomaly", 0, "65cfa958c6e0cf27"),
]


def _small(family: str) -> tuple[a.SynthConfig, a.SoundModel]:
    cfg, model = MODELS[family]
    return dataclasses.replace(cfg, seconds=0.5, n_test=2, n_train_source=2, n_train_target=1), model


def _spec(family: str, domain: str, label: str, index: int) -> a.ClipSpec:
    cfg, model = _small(family)
    specs = a.split_specs("dev", cfg.dev_machines[0], "test", cfg, model)
    return next(s for s in specs if (s.domain, s.label, s.index) == (domain, label, index))


@pytest.mark.parametrize(("family", "domain", "label", "index", "digest"), MIX_DIGESTS)
def test_mix_is_bit_identical_to_before_parts(family: str, domain: str, label: str, index: int, digest: str):
    cfg, model = _small(family)
    spec = _spec(family, domain, label, index)
    for x in (model.render(spec, cfg), model.render(spec, cfg, "mix")):
        assert hashlib.sha256(x.tobytes()).hexdigest()[:16] == digest


@pytest.mark.parametrize("family", sorted(MODELS))
def test_machine_plus_noise_is_the_mix(family: str):
    cfg, model = _small(family)
    for domain, label, index, _ in [(d, lab, i, h) for f, d, lab, i, h in MIX_DIGESTS if f == family]:
        spec = _spec(family, domain, label, index)
        mix, machine, noise = (model.render(spec, cfg, part) for part in a.PARTS)
        np.testing.assert_allclose(machine + noise, mix, rtol=0, atol=1e-9)
        assert np.std(machine) > 0 and np.std(noise) > 0
        # without events the noise part is the weaker one (machine-to-background ratio > 0 dB)
        assert spec.events or np.std(noise) < np.std(machine), (family, spec)


def test_events_are_in_the_noise_part():
    cfg, model = _small("a")
    spec = next(s for s in a.split_specs("dev", "fan", "train", cfg, model) if s.events)
    quiet = dataclasses.replace(spec, events=False)
    # the machine part differs only by the final gain (drawn after the events); the noise part changes
    ratio = model.render(spec, cfg, "machine") / model.render(quiet, cfg, "machine")
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-9)
    assert np.std(model.render(spec, cfg, "noise")) > 2 * np.std(model.render(quiet, cfg, "noise"))


@pytest.mark.parametrize("family", sorted(MODELS))
def test_unknown_part_is_rejected(family: str):
    cfg, model = _small(family)
    with pytest.raises(a.SynthError, match="part must be one of mix, machine, noise"):
        model.render(_spec(family, "source", "normal", 0), cfg, "background")
