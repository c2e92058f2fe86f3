"""The corpus families by name: each one's default options and sound model.

Why one table: make_synth writes a family's corpus and the monitoring streams
(asdlib.synth.streams) render more of its clips; a new family is its module and one entry here.
"""

from __future__ import annotations

from asdlib.synth import family_b, family_c, family_d, family_e
from asdlib.synth.corpus import DEFAULT_MODEL, SoundModel, SynthConfig, SynthError

FAMILIES: dict[str, tuple[SynthConfig, SoundModel]] = {
    "a": (SynthConfig(), DEFAULT_MODEL),
    **{m.MODEL.name: (m.default_config(), m.MODEL) for m in (family_b, family_c, family_d, family_e)},
}


def get_family(name: str) -> tuple[SynthConfig, SoundModel]:
    """(default options, sound model) of family ``name``."""
    if name not in FAMILIES:
        raise SynthError(f"unknown corpus family '{name}'; choose one of {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]
