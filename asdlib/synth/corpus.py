"""Synthetic machine-sound corpus in the DCASE 2023/2024 Task 2 layout.

Why: the recipes, tests and the mini recipe need a corpus that runs in minutes on a CPU, yet is
hard in the same ways as DCASE so that method choices show up in the numbers:

* every machine type has its own tonal/impulsive/noise structure, derived from its name;
* attributes (speed, load, microphone position) change the sound deterministically, and
  ``noAttribute`` machines keep hidden attributes that only their file names do not reveal;
* the target domain uses unseen speeds and a different room/background, with ~1 % target clips;
* loud background events (knocks, babble, a passing hum) occur in normal and anomalous clips
  alike, so a mean-spectrum detector is fooled while a model of the machine itself is not;
* anomalies are subtle and of several kinds (harmonic shift, clicks, modulation change, whine,
  dropouts), scaled by ``anomaly_strength``.

Every clip is drawn from its own seeded generator (seed, set, machine, split, domain, label,
index), so the corpus is byte-identical for a given config and independent of generation order.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile as sf
from scipy import fft
from scipy.signal import fftconvolve

from asdlib.data.regions import CORPUS_FILE, NO_REGION, AnomalyRegion
from asdlib.io.atomic import atomic_write_text

logger = logging.getLogger(__name__)

GENERATOR_VERSION = 1  # bump whenever the rendered audio changes, so old corpora are not reused
DONE_MARKER = ".done"
METADATA_FILE = "synth_metadata.csv"
DOMAINS = ("source", "target")
LABELS = ("normal", "anomaly")
ANOMALY_KINDS = ("harmonic_shift", "clicks", "modulation", "whine", "dropout")
#: family a's kinds spread over the whole clip and spectrum: no time-frequency region to point at
GLOBAL_KINDS = ("harmonic_shift", "modulation")
NO_ATTRIBUTE = "noAttribute"


#: the DCASE years whose layout this module writes (asdlib.synth.years writes the others): 2023/2024;
#: 2025 adds supplemental/ clean-machine and noise-only clips; 2026 is stereo (near and far microphone)
LAYOUT_YEARS = (2023, 2024, 2025, 2026)
SUPPLEMENTAL_YEAR = 2025
STEREO_YEAR = 2026
#: what a render returns: the recorded clip, or what the microphone records of the machine alone or of
#: everything else (background, neighbours, events); machine + noise == mix up to the final clipping
PARTS = ("mix", "machine", "noise")
# The 2026 far microphone (right channel): the machine arrives later and weaker, the background as loud.
FAR_DB = 12.0  # machine attenuation at the far microphone
FAR_DELAY_S = 0.003  # extra travel time of the machine sound (about 1 m)
FAR_SENSOR_RMS = 1e-4  # independent sensor noise of the far microphone (full scale)
# DCASE's proportions per machine (families d and e): 990 source + 10 target training clips, 50 test clips per group
DCASE_PROPORTIONS = {"n_train_source": 990, "n_train_target": 10, "n_test": 50}
MAX_SAMPLE = 1.0 - 1.0 / 32768  # the largest 16-bit sample, as a float: every clip is clipped to [-1, MAX_SAMPLE]


class SynthError(ValueError):
    """A synthetic-corpus request that cannot be fulfilled (bad option or unusable root)."""


@dataclass(frozen=True)
class SynthConfig:
    """Options of the synthetic corpus; all of them are recorded in ``<root>/.done``."""

    year: int = 2024
    dev_machines: tuple[str, ...] = ("fan", "gearbox", "valve")
    eval_machines: tuple[str, ...] = ("ToyDrone", "HairDryer", "ToothBrush")
    no_attribute: tuple[str, ...] = ("gearbox", "ToothBrush")
    n_train_source: int = 198
    n_train_target: int = 2
    n_test: int = 20
    seconds: float = 2.0
    sample_rate: int = 16000
    seed: int = 0
    anomaly_strength: float = 1.0
    n_supplemental_machine: int = 0  # 2025: clean machine clips per machine (supplemental/)
    n_supplemental_noise: int = 0  # 2025: noise-only clips per machine, half source, half target conditions

    def validate(self) -> None:
        """Reject options that would give an unusable or ambiguous corpus."""
        if self.year not in LAYOUT_YEARS:
            raise SynthError(f"year must be one of {', '.join(map(str, LAYOUT_YEARS))}, got {self.year}")
        machines = self.dev_machines + self.eval_machines
        if not self.dev_machines or not self.eval_machines:
            raise SynthError("need at least one dev and one eval machine (--dev_machines, --eval_machines)")
        if len(set(machines)) != len(machines):
            raise SynthError(f"machine names must be unique across dev and eval sets, got {list(machines)}")
        for m in machines:
            if not re.fullmatch(r"[A-Za-z0-9]+", m):
                raise SynthError(f"machine name {m!r} must be ASCII letters and digits only (DCASE style, e.g. ToyCar)")
        unknown = sorted(set(self.no_attribute) - set(machines))
        if unknown:
            raise SynthError(f"--no_attribute names machines that are not generated: {unknown}")
        if self.n_train_source < 1 or self.n_train_target < 1 or self.n_test < 1:
            raise SynthError("n_train_source, n_train_target and n_test must be >= 1")
        if self.n_supplemental_machine < 0 or self.n_supplemental_noise < 0:
            raise SynthError("n_supplemental_machine and n_supplemental_noise must be >= 0")
        if (self.n_supplemental_machine or self.n_supplemental_noise) and self.year != SUPPLEMENTAL_YEAR:
            raise SynthError(
                f"supplemental clips (--n_supplemental_machine/--n_supplemental_noise) exist only for "
                f"--year {SUPPLEMENTAL_YEAR}, got --year {self.year}; set them to 0 or use --year {SUPPLEMENTAL_YEAR}"
            )
        if (
            max(
                self.n_train_source,
                self.n_train_target,
                4 * self.n_test,
                self.n_supplemental_machine,
                self.n_supplemental_noise,
            )
            > 10000
        ):
            raise SynthError("clip counts above 10000 do not fit the 4-digit DCASE file index")
        if not 0.5 <= self.seconds <= 60.0:
            raise SynthError(f"seconds must be in [0.5, 60], got {self.seconds}")
        if self.sample_rate < 8000:
            raise SynthError(f"sample_rate must be >= 8000 Hz, got {self.sample_rate}")
        if self.seed < 0:
            raise SynthError(f"seed must be >= 0, got {self.seed}")
        if not 0.0 <= self.anomaly_strength <= 20.0:
            raise SynthError(f"anomaly_strength must be in [0, 20], got {self.anomaly_strength}")

    def to_json_dict(self) -> dict:
        """Plain-JSON form (tuples as lists) plus the generator version, stored in ``.done``.

        The supplemental counts appear only when non-zero, so the markers of corpora made before
        they existed still match (those corpora are not regenerated)."""
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        for k in ("n_supplemental_machine", "n_supplemental_noise"):
            if not d[k]:
                del d[k]
        d["generator_version"] = GENERATOR_VERSION
        return d


# ---------------------------------------------------------------------------------------------
# Machine profiles and attributes


@dataclass(frozen=True)
class AttrParam:
    """One attribute parameter: its name in file names, what it does, and its values per domain."""

    name: str
    kind: str  # "speed" | "load" | "position"
    source: tuple[str, ...]
    target: tuple[str, ...]


@dataclass(frozen=True)
class MachineProfile:
    """The fixed acoustic identity of a machine type (derived from its name only)."""

    name: str
    f0: float  # fundamental (Hz) at the reference speed
    tilt_db: float  # harmonic amplitude slope per octave
    resonances: tuple[tuple[float, float, float], ...]  # (centre Hz, gain dB, width octaves)
    am_ratio: float  # amplitude-modulation rate = f0 / am_ratio
    am_depth: float
    imp_ratio: float  # impulse rate = f0 / imp_ratio
    imp_level: float  # impulsive component level relative to the tonal part (linear RMS)
    imp_freq: float  # impulse ring frequency (Hz)
    noise_level: float  # machine noise level relative to the tonal part (linear RMS)
    noise_tilt_db: float
    params: tuple[AttrParam, ...]

    def speed_values(self) -> np.ndarray:
        """Source speed values, the reference for speed factors."""
        return np.array([float(v) for v in self.params[0].source])


def _name_rng(*keys: str | int) -> np.random.Generator:
    """A generator seeded by strings/ints, stable across Python runs (no hash randomisation)."""
    ints = [k if isinstance(k, int) else zlib.crc32(k.encode("utf-8")) for k in keys]
    return np.random.default_rng(ints)


def machine_profile(name: str) -> MachineProfile:
    """Derive a machine's acoustic identity and attribute set from its name."""
    rng = _name_rng("profile", name)
    f0 = float(rng.uniform(70.0, 260.0))
    nres = int(rng.integers(2, 4))
    resonances = tuple(
        (
            float(np.exp(rng.uniform(np.log(300.0), np.log(5000.0)))),
            float(rng.uniform(6.0, 14.0)),
            float(rng.uniform(0.2, 0.6)),
        )
        for _ in range(nres)
    )
    speed_name = ("vel", "spd", "rpm")[int(rng.integers(3))]
    base = int(rng.integers(6, 13))
    step = max(1, round(base * float(rng.uniform(0.15, 0.25))))
    speeds = tuple(str(base + step * i) for i in range(3))
    target_speed = (str(base + step * 3),)
    second = ("load", "loc", "mic")[int(rng.integers(3))]
    if second == "load":
        other = AttrParam("load", "load", ("1", "2"), ("1",))
    else:
        other = AttrParam(second, "position", ("A", "B"), ("A",))
    return MachineProfile(
        name=name,
        f0=f0,
        tilt_db=float(rng.uniform(-7.0, -2.0)),
        resonances=resonances,
        am_ratio=float(rng.choice([2.0, 3.0, 4.0, 6.0])) * float(rng.uniform(8.0, 14.0)),
        am_depth=float(rng.uniform(0.15, 0.35)),
        imp_ratio=float(rng.uniform(8.0, 30.0)),
        imp_level=float(rng.uniform(0.15, 0.6)),
        imp_freq=float(rng.uniform(1500.0, 5000.0)),
        noise_level=float(rng.uniform(0.2, 0.5)),
        noise_tilt_db=float(rng.uniform(-4.0, 0.0)),
        params=(AttrParam(speed_name, "speed", speeds, target_speed), other),
    )


def attribute_combos(profile: MachineProfile, domain: str) -> list[tuple[tuple[str, str], ...]]:
    """All (param, value) combinations of a domain, in a fixed order."""
    return param_combos(profile.params, domain)


def param_combos(params: tuple[AttrParam, ...], domain: str) -> list[tuple[tuple[str, str], ...]]:
    """All (param, value) combinations of ``params`` in a domain, in a fixed order."""
    combos: list[tuple[tuple[str, str], ...]] = [()]
    for p in params:
        values = p.source if domain == "source" else p.target
        combos = [c + ((p.name, v),) for c in combos for v in values]
    return combos


def attribute_string(combo: tuple[tuple[str, str], ...]) -> str:
    """``vel_8_loc_A`` style attribute string used in DCASE file names."""
    return "_".join(f"{p}_{v}" for p, v in combo)


# ---------------------------------------------------------------------------------------------
# Signal building blocks (all vectorised over the clip)


def _smooth_noise(rng: np.random.Generator, n: int, points: int) -> np.ndarray:
    """Slowly varying zero-mean unit-ish noise: random control points, linearly interpolated."""
    ctrl = rng.standard_normal(points + 1)
    return np.interp(np.linspace(0.0, points, n), np.arange(points + 1), ctrl)


def _frozen(x: np.ndarray) -> np.ndarray:
    """Cached arrays are shared between clips: make accidental in-place edits fail loudly."""
    x.setflags(write=False)
    return x


@functools.lru_cache(maxsize=8)
def _freqs(n: int, sr: int) -> np.ndarray:
    """rfft bin frequencies of an n-sample clip."""
    return _frozen(fft.rfftfreq(n, 1.0 / sr))


def _colored_noise(rng: np.random.Generator, gain: np.ndarray, n: int) -> np.ndarray:
    """Gaussian noise with the linear magnitude response ``gain`` (one rfft bin each); unit RMS.

    Drawn directly in the frequency domain: one inverse FFT instead of a forward and an inverse.
    """
    spec = (rng.standard_normal(gain.size) + 1j * rng.standard_normal(gain.size)) * gain
    x = fft.irfft(spec, n)
    return x / _rms(x)


def _log2_ratio(freqs: np.ndarray, ref: float) -> np.ndarray:
    """Octaves above ``ref`` (frequencies below 20 Hz clamped, so DC stays finite)."""
    return np.log2(np.maximum(freqs, 20.0) / ref)


def _resonance_db(freqs: np.ndarray, resonances: Iterable[tuple[float, float, float]]) -> np.ndarray:
    """Sum of Gaussian bumps on a log-frequency axis: (centre Hz, gain dB, width octaves)."""
    out = np.zeros_like(freqs, dtype=np.float64)
    for fc, gain, width in resonances:
        out += gain * np.exp(-0.5 * (_log2_ratio(freqs, fc) / width) ** 2)
    return out


def _eq_db(freqs: np.ndarray, key_rng: np.random.Generator, bumps: int, max_db: float) -> np.ndarray:
    """A smooth random EQ (room/microphone colouring), in dB per frequency."""
    centres = np.exp(key_rng.uniform(np.log(150.0), np.log(6000.0), bumps))
    gains = key_rng.uniform(-max_db, max_db, bumps)
    widths = key_rng.uniform(0.3, 0.9, bumps)
    return _resonance_db(freqs, zip(centres, gains, widths))


@functools.lru_cache(maxsize=64)
def _channel_gain(machine: str, position: str, domain: str, n: int, sr: int) -> np.ndarray:
    """Linear response of the microphone position and (target domain) room, one rfft bin each."""
    freqs = _freqs(n, sr)
    db = np.zeros_like(freqs)
    if position:
        db += _eq_db(freqs, _name_rng("position", machine, position), 3, 5.0)
    if domain == "target":
        db += _eq_db(freqs, _name_rng("room", machine), 3, 4.0)
    return _frozen(10.0 ** (db / 20.0))


@functools.lru_cache(maxsize=64)
def _noise_gain(machine: str, n: int, sr: int) -> np.ndarray:
    """Linear colour of a machine's turbulence noise."""
    profile = machine_profile(machine)
    freqs = _freqs(n, sr)
    return _frozen(
        10.0 ** ((profile.noise_tilt_db * _log2_ratio(freqs, 500.0) + _resonance_db(freqs, profile.resonances)) / 20.0)
    )


@functools.lru_cache(maxsize=8)
def _background_gain(domain: str, n: int, sr: int) -> np.ndarray:
    """Linear colour of the stationary background: the domains differ in tilt."""
    return _frozen(10.0 ** ((-3.0 if domain == "source" else -5.0) * _log2_ratio(_freqs(n, sr), 200.0) / 20.0))


def _rms(x: np.ndarray) -> float:
    """Root mean square, never zero (it is used as a divisor)."""
    return float(np.sqrt(np.mean(x**2)) + 1e-12)


def _decay_kernel(sr: int, freq: float, tau: float, length: float, rng: np.random.Generator) -> np.ndarray:
    """A short ringing impulse response (struck resonance plus a noise click)."""
    t = np.arange(int(length * sr)) / sr
    ring = np.sin(2 * np.pi * freq * t) * np.exp(-t / tau)
    click = rng.standard_normal(t.size) * np.exp(-t / (tau / 4))
    return ring + 0.3 * click


def _harmonic_wave(amps: np.ndarray, offsets: np.ndarray, phase: np.ndarray, size: int = 8192) -> np.ndarray:
    """sum_k amps[k-1] * sin(k * phase + offsets[k-1]) via one wavetable: O(n) instead of O(n K)."""
    spec = np.zeros(size // 2 + 1, dtype=np.complex128)
    spec[1 : amps.size + 1] = 0.5 * size * amps * np.exp(1j * (offsets - np.pi / 2))
    table = fft.irfft(spec, size)
    pos = np.mod(phase / (2 * np.pi), 1.0) * size
    return np.interp(pos, np.arange(size + 1), np.append(table, table[0]))


def _pulse_train(n: int, sr: int, times: np.ndarray, amps: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Impulses at ``times`` (s) with ``amps``, each ringing with ``kernel``."""
    pulses = np.zeros(n)
    idx = (times * sr).astype(int)
    keep = (idx >= 0) & (idx < n)
    np.add.at(pulses, idx[keep], amps[keep])
    return fftconvolve(pulses, kernel)[:n]


# ---------------------------------------------------------------------------------------------
# Where an anomaly is: ground truth for explanations (asdlib.explain)


_REGION_SINK: ContextVar[list[AnomalyRegion] | None] = ContextVar("_REGION_SINK", default=None)


def mark_region(start: float, end: float, f_low: float, f_high: float, t: np.ndarray, sr: int) -> None:
    """Note where the anomaly being rendered is, clipped to the clip (time axis ``t``) and to 0..sr/2.

    Why a sink and not a return value: the renderers keep their signatures and their random draws, so
    the audio stays bit-identical; outside :func:`recording_regions` this does nothing."""
    sink = _REGION_SINK.get()
    if sink is None:
        return
    s, e = max(0.0, float(start)), min(float(t[-1]) + 1.0 / sr, float(end))
    lo, hi = max(0.0, float(f_low)), min(sr / 2.0, float(f_high))
    if e > s and hi > lo:
        sink.append(AnomalyRegion(round(s, 3), round(e, 3), round(lo), round(hi)))


def true_spans(mask: np.ndarray, t: np.ndarray) -> list[tuple[float, float]]:
    """(start, end) seconds of the runs where ``mask`` is true."""
    edges = np.diff(np.concatenate([[0], np.asarray(mask, dtype=np.int8), [0]]))
    dt = float(t[1] - t[0])
    return [(float(t[a]), float(t[b - 1]) + dt) for a, b in zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0])]


@contextmanager
def recording_regions() -> Iterator[list[AnomalyRegion]]:
    """Collect the :func:`mark_region` calls of the renders run inside the block."""
    sink: list[AnomalyRegion] = []
    token = _REGION_SINK.set(sink)
    try:
        yield sink
    finally:
        _REGION_SINK.reset(token)


def anomaly_regions(spec: ClipSpec, cfg: SynthConfig, model: SoundModel | None = None) -> tuple[AnomalyRegion, ...]:
    """Where the anomaly of ``spec`` is (re-rendered from its own draws); empty for a normal clip and
    for the kinds of ``model.global_kinds``, which have no region."""
    model = model or DEFAULT_MODEL
    if spec.label != "anomaly" or spec.anomaly_kind(cfg.seed, model.anomaly_kinds) in model.global_kinds:
        return ()
    with recording_regions() as sink:
        model.render(spec, cfg)
    return tuple(dict.fromkeys(sink))


# ---------------------------------------------------------------------------------------------
# Clip synthesis

# Calibration constants. With the defaults, a mean-log-mel cosine 1-NN detector reaches an AUC of
# about 0.69 (0.57-0.80 per machine) at anomaly_strength 1, 0.81 at 3, and 0.83 at 1 without the
# background events; tests/synth/test_synth.py::test_calibration checks these bounds.
# Normal variation within one attribute combination (small: the machine itself is consistent).
F0_JITTER = 0.002  # relative spread of the fundamental
HARM_JITTER_DB = 0.3  # random level of each harmonic
GAIN_DB = 0.5  # overall level spread (+-)
SNR_DB = (19.0, 21.0)  # machine-to-stationary-background ratio
LEVEL = 0.05  # machine RMS in full scale
# Background events (normal): the main nuisance for spectrum-level detectors.
EVENT_PROB = 0.5  # share of clips in every (split, domain, label) group that get events
EVENT_DB = (0.0, 10.0)  # event level relative to the machine
# Anomaly magnitudes at anomaly_strength 1.
HARMONIC_WOBBLE = 0.019  # relative depth of a fundamental frequency wobble
HARMONIC_DETUNE = 0.025  # relative detuning of individual harmonics
MODULATION_DEPTH = 2.5  # relative increase of the rotation AM depth
MODULATION_EXTRA = 0.75  # depth of an extra, unlocked amplitude modulation
CLICK_PEAK = 1.9  # click peak relative to the machine RMS
WHINE_LEVEL = 0.19  # whine amplitude relative to the machine RMS
DROPOUT_DB = 19.0  # attenuation of the machine during dropouts (capped at 40 dB)


@dataclass(frozen=True)
class ClipSpec:
    """Everything that identifies one clip; its random generator is derived from these fields."""

    dataset: str  # "dev" | "eval"
    machine: str
    split: str  # "train" | "test"
    domain: str
    label: str
    index: int
    combo: tuple[tuple[str, str], ...]
    events: bool  # whether loud background events are mixed in

    def rng(self, seed: int) -> np.random.Generator:
        return _name_rng(seed, self.dataset, self.machine, self.split, self.domain, self.label, self.index)

    def anomaly_kind(self, seed: int, kinds: tuple[str, ...] = ANOMALY_KINDS) -> str:
        """The anomaly rendered into this clip ("" for normal clips); ``kinds``: its family's."""
        return draw_anomaly(self.rng(seed), self.label, kinds)


def draw_anomaly(rng: np.random.Generator, label: str, kinds: tuple[str, ...] = ANOMALY_KINDS) -> str:
    """First draw of a clip's generator: which anomaly it gets."""
    return str(rng.choice(kinds)) if label == "anomaly" else ""


def family_config(
    dev: tuple[str, ...], eval_: tuple[str, ...], no_attribute: tuple[str, ...], **changes
) -> SynthConfig:
    """A family's default options: its machines, the mini corpus's other options (``changes`` override any field)."""
    return dataclasses.replace(SynthConfig(dev_machines=dev, eval_machines=eval_, no_attribute=no_attribute), **changes)


def select_part(
    part: str, mix: np.ndarray, machine: np.ndarray, noise: np.ndarray, chain: np.ndarray | None = None
) -> np.ndarray:
    """The signal of ``part``: the mix as rendered (so it stays bit-identical), or its machine or noise
    component through the recording chain that follows the mixing point (``chain``: its rfft gain)."""
    if part not in PARTS:
        raise SynthError(f"part must be one of {', '.join(PARTS)}, got {part!r}")
    if part == "mix":
        return mix
    x = machine if part == "machine" else noise
    return x if chain is None else fft.irfft(fft.rfft(x) * chain, x.size)


def at_level(mix: np.ndarray, level: float, rng: np.random.Generator, part: np.ndarray) -> np.ndarray:
    """``part`` (the mix or one of its parts, :func:`select_part`) with the gain that brings the mix to
    RMS ``level`` and a random gain of +-1 dB (the clip's last draw), clipped to the 16-bit range."""
    return np.clip(part / _rms(mix) * level * 10.0 ** (rng.uniform(-1.0, 1.0) / 20.0), -1.0, MAX_SAMPLE)


def clip_start(
    spec: ClipSpec, cfg: SynthConfig, kinds: tuple[str, ...]
) -> tuple[np.random.Generator, str, int, int, np.ndarray, dict[str, str]]:
    """How every sound model's render begins: the clip's generator, its anomaly (the generator's first
    draw), sample rate, length, time axis and attributes."""
    rng = spec.rng(cfg.seed)
    anomaly = draw_anomaly(rng, spec.label, kinds)
    sr, n = cfg.sample_rate, int(round(cfg.seconds * cfg.sample_rate))
    return rng, anomaly, sr, n, np.arange(n) / sr, dict(spec.combo)


def synthesize_clip(spec: ClipSpec, cfg: SynthConfig, part: str = "mix") -> np.ndarray:
    """Render one clip (or one ``part`` of it, see :data:`PARTS`) as float64 samples in [-1, 1)."""
    profile = machine_profile(spec.machine)
    rng = spec.rng(cfg.seed)
    anomaly = draw_anomaly(rng, spec.label)
    sr, n = cfg.sample_rate, int(round(cfg.seconds * cfg.sample_rate))
    t = np.arange(n) / sr
    attrs = dict(spec.combo)
    machine = _machine_signal(profile, attrs, rng, t, sr, anomaly, cfg.anomaly_strength)
    other = profile.params[1]
    position = attrs[other.name] if other.kind == "position" else ""
    machine = fft.irfft(fft.rfft(machine) * _channel_gain(profile.name, position, spec.domain, n, sr), n)
    machine = machine / _rms(machine)
    noise = _colored_noise(rng, _background_gain(spec.domain, n, sr), n) * 10.0 ** (-rng.uniform(*SNR_DB) / 20.0)
    mix = machine + noise
    if spec.events:
        events = _background_events(rng, n, sr, t)
        mix, noise = mix + events, noise + events
    gain = LEVEL * 10.0 ** (rng.uniform(-GAIN_DB, GAIN_DB) / 20.0)
    return np.clip(select_part(part, mix, machine, noise) * gain, -1.0, MAX_SAMPLE)


def _machine_signal(
    profile: MachineProfile,
    attrs: dict[str, str],
    rng: np.random.Generator,
    t: np.ndarray,
    sr: int,
    anomaly: str,
    strength: float,
) -> np.ndarray:
    """Tonal + impulsive + turbulence parts of the machine, attribute effects and anomaly applied."""
    n = t.size
    speed = float(attrs[profile.params[0].name]) / float(np.mean(profile.speed_values()))
    other = profile.params[1]
    load = float(attrs[other.name]) - 1.5 if other.kind == "load" else 0.0

    # tonal part: harmonics of a slowly drifting fundamental
    f0 = profile.f0 * speed * (1.0 + F0_JITTER * rng.standard_normal())
    inst_f = f0 * (1.0 + 0.001 * _smooth_noise(rng, n, 8))
    shift_mode = str(rng.choice(["wobble", "detune"])) if anomaly == "harmonic_shift" else ""
    if shift_mode == "wobble":
        rate = rng.uniform(3.0, 9.0)
        inst_f = inst_f * (1.0 + HARMONIC_WOBBLE * strength * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)))
    phase = 2 * np.pi * np.cumsum(inst_f) / sr
    k = np.arange(1, int(0.45 * sr / f0) + 1)
    amp_db = profile.tilt_db * np.log2(k) + _resonance_db(k * f0, profile.resonances)
    amp_db += load * 4.0 * (np.log2(k) - 2.0) / 3.0  # load tilts the harmonic weights
    amp_db += HARM_JITTER_DB * rng.standard_normal(k.size)
    amps = 10.0 ** (amp_db / 20.0)
    offsets = rng.uniform(0, 2 * np.pi, k.size)
    if shift_mode == "detune":
        ratio = k * (1.0 + HARMONIC_DETUNE * strength * rng.uniform(0.3, 1.0, k.size) * rng.choice([-1.0, 1.0], k.size))
        tonal = (amps[:, None] * np.sin(ratio[:, None] * phase[None, :] + offsets[:, None])).sum(0)
    else:
        tonal = _harmonic_wave(amps, offsets, phase)

    # amplitude modulation locked to the rotation (its rate follows the speed)
    am_cos = np.cos(phase / profile.am_ratio)
    env = 1.0 + profile.am_depth * am_cos
    if anomaly == "modulation":
        if rng.random() < 0.5:
            env = 1.0 + min(0.95, profile.am_depth * (1.0 + MODULATION_DEPTH * strength)) * am_cos
        else:
            extra = (
                MODULATION_EXTRA * strength * np.cos(2 * np.pi * rng.uniform(1.5, 6.0) * t + rng.uniform(0, 2 * np.pi))
            )
            env = env * np.clip(1.0 + extra, 0.05, None)
    tonal = tonal / _rms(tonal) * env

    # impulsive part: a ringing strike per rotation group (its rate follows the speed)
    imp_rate = f0 / profile.imp_ratio
    times = np.arange(rng.uniform(0, 1 / imp_rate), t[-1], 1 / imp_rate)
    times = times + rng.normal(0, 0.002, times.size)
    kernel = _decay_kernel(sr, profile.imp_freq * (1 + 0.1 * load), 0.006, 0.04, rng)
    imp = _pulse_train(n, sr, times, rng.uniform(0.8, 1.2, times.size), kernel)
    imp = imp / _rms(imp) * profile.imp_level

    # turbulence noise, modulated with the rotation
    noise = _colored_noise(rng, _noise_gain(profile.name, n, sr), n)
    noise = noise * profile.noise_level * (1.0 + 0.5 * profile.am_depth * am_cos) * (1.0 + 0.3 * load)
    machine = tonal + imp + noise
    ref = _rms(machine)

    if anomaly == "clicks":
        rate = rng.uniform(3.0, 10.0)
        ctimes = np.arange(rng.uniform(0, 1 / rate), t[-1], 1 / rate)
        ring = rng.uniform(800.0, 4000.0)
        ckernel = _decay_kernel(sr, ring, 0.003, 0.02, rng)
        mark_region(0.0, t[-1], ring / 1.3, ring * 1.3, t, sr)
        clicks = _pulse_train(n, sr, ctimes, np.ones(ctimes.size), ckernel)
        machine = machine + clicks / (np.max(np.abs(clicks)) + 1e-12) * CLICK_PEAK * strength * ref
    elif anomaly == "whine":
        fw = rng.uniform(800.0, 0.4 * sr) * (1.0 + 0.002 * _smooth_noise(rng, n, 6))
        mark_region(0.0, t[-1], fw.min() / 1.03, fw.max() * 1.03, t, sr)
        machine = machine + np.sin(2 * np.pi * np.cumsum(fw) / sr) * WHINE_LEVEL * strength * ref
    elif anomaly == "dropout":
        gate = np.ones(n)
        for _ in range(int(rng.integers(2, 5))):
            start, length = rng.uniform(0, t[-1] - 0.15), rng.uniform(0.03, 0.12)
            mark_region(start, start + length, 0.0, sr / 2, t, sr)
            gate[(t >= start) & (t < start + length)] = 10.0 ** (-min(40.0, DROPOUT_DB * strength) / 20.0)
        machine = machine * np.convolve(gate, np.ones(64) / 64, mode="same")
    return machine


def _background_events(rng: np.random.Generator, n: int, sr: int, t: np.ndarray) -> np.ndarray:
    """Loud normal transients: knocks, babble bursts, a passing hum (relative to unit machine RMS)."""
    out = np.zeros(n)
    dur_total = n / sr
    for _ in range(int(rng.integers(1, 3))):
        kind = int(rng.integers(3))
        level = 10.0 ** (rng.uniform(*EVENT_DB) / 20.0)
        if kind == 0:  # knocks
            count = int(rng.integers(1, 4))
            times = rng.uniform(0, dur_total - 0.1, count)
            kernel = _decay_kernel(sr, rng.uniform(150.0, 900.0), rng.uniform(0.01, 0.04), 0.2, rng)
            ev = _pulse_train(n, sr, times, rng.uniform(0.5, 1.0, count), kernel)
            ev = ev / (np.max(np.abs(ev)) + 1e-12) * level * 3.0
        elif kind == 1:  # babble-like burst: formant-coloured noise with a syllabic envelope
            formants = [(rng.uniform(300, 900), 12.0, 0.3), (rng.uniform(1000, 2500), 9.0, 0.3)]
            freqs = _freqs(n, sr)
            ev = _colored_noise(
                rng, 10.0 ** ((-6.0 * _log2_ratio(freqs, 300.0) + _resonance_db(freqs, formants)) / 20.0), n
            )
            start, length = rng.uniform(0, dur_total * 0.7), rng.uniform(0.3, 1.0)
            window = np.clip(np.minimum(t - start, start + length - t) / 0.05, 0.0, 1.0)
            syll = np.clip(0.6 + _smooth_noise(rng, n, int(dur_total * 10)), 0.0, None)
            ev = ev * window * syll * level
        else:  # passing hum: low tone with harmonics, gliding, faded in and out
            fh = rng.uniform(50.0, 160.0) * (1.0 + rng.uniform(-0.05, 0.05) * (t / dur_total))
            ph = 2 * np.pi * np.cumsum(fh) / sr
            ev = np.sin(ph) + 0.5 * np.sin(2 * ph) + 0.25 * np.sin(3 * ph)
            start, length = rng.uniform(-0.3, dur_total * 0.6), rng.uniform(0.6, 1.5)
            window = np.sin(np.pi * np.clip((t - start) / length, 0.0, 1.0)) ** 2
            ev = ev / _rms(ev) * window * level * 1.5
        out += ev
    return out


class Render(Protocol):
    """A family's renderer: one clip, or one of its :data:`PARTS`, as float64 samples in [-1, 1)."""

    def __call__(self, spec: ClipSpec, cfg: SynthConfig, part: str = "mix") -> np.ndarray: ...


@dataclass(frozen=True)
class SoundModel:
    """A corpus family: attributes and sound; layout, names, blinding and writing are shared.

    Why: a second family (asdlib.synth.family_b) must prepare exactly like this one, so only what
    differs in kind is pluggable. ``marker`` adds keys to ``.done`` (none for this family, whose
    marker stays as it was).
    """

    name: str
    params: Callable[[str], tuple[AttrParam, ...]]  # machine -> attribute parameters
    render: Render
    anomaly_kinds: tuple[str, ...]
    marker: tuple[tuple[str, str | int], ...] = ()
    global_kinds: tuple[str, ...] = ()  # anomaly kinds with no time-frequency region (:func:`anomaly_regions`)


DEFAULT_MODEL = SoundModel(
    "a", lambda m: machine_profile(m).params, synthesize_clip, ANOMALY_KINDS, global_kinds=GLOBAL_KINDS
)


# ---------------------------------------------------------------------------------------------
# Corpus layout


def _group(
    dataset: str, machine: str, split: str, domain: str, label: str, count: int, cfg: SynthConfig, model: SoundModel
) -> list[ClipSpec]:
    """Clips of one (split, domain, label) group.

    Attribute combinations are balanced but shuffled (the file index must not reveal hidden
    attributes), and exactly round(EVENT_PROB * count) clips, at least one and never all when
    count > 1, carry background events, so every group has the same share of them.
    """
    combos = param_combos(model.params(machine), domain)
    rng = _name_rng(cfg.seed, "layout", dataset, machine, split, domain, label)
    assigned = [combos[i] for i in rng.permutation(count) % len(combos)]
    n_events = min(count - 1, max(1, round(EVENT_PROB * count))) if count > 1 else 0
    with_events = set(rng.permutation(count)[:n_events].tolist())
    return [ClipSpec(dataset, machine, split, domain, label, i, assigned[i], i in with_events) for i in range(count)]


def split_specs(
    dataset: str, machine: str, split: str, cfg: SynthConfig, model: SoundModel | None = None
) -> list[ClipSpec]:
    """All clips of one machine and split: train = source then target normals; test = every
    (domain, label) group with ``n_test`` clips each."""
    model = model or DEFAULT_MODEL
    if split == "train":
        return _group(dataset, machine, "train", "source", "normal", cfg.n_train_source, cfg, model) + _group(
            dataset, machine, "train", "target", "normal", cfg.n_train_target, cfg, model
        )
    return [
        spec
        for domain in DOMAINS
        for label in LABELS
        for spec in _group(dataset, machine, "test", domain, label, cfg.n_test, cfg, model)
    ]


def supplemental_clips(
    dataset: str, machine: str, cfg: SynthConfig, model: SoundModel | None = None
) -> list[tuple[str, str, ClipSpec]]:
    """A machine's 2025 ``supplemental/`` clips as (file name, part, spec).

    Clean machine clips are the machine part of source-domain normal clips; noise-only clips are the
    noise part of normal clips, half under source and half under target conditions, so they cover the
    backgrounds the machine meets (their names do not tell the domain). Their own splits give them
    randomness of their own, apart from the train/test clips and from each other.
    """
    model = model or DEFAULT_MODEL
    n_noise = cfg.n_supplemental_noise
    machine_specs = _group(dataset, machine, "supplemental", "source", "normal", cfg.n_supplemental_machine, cfg, model)
    noise_specs = [
        spec
        for domain, count in (("source", n_noise - n_noise // 2), ("target", n_noise // 2))
        for spec in _group(dataset, machine, "supplemental_noise", domain, "normal", count, cfg, model)
    ]
    return [(f"section_00_machine_{i:04d}_.wav", "machine", s) for i, s in enumerate(machine_specs)] + [
        (f"section_00_noise_{i:04d}_.wav", "noise", s) for i, s in enumerate(noise_specs)
    ]


def clip_samples(spec: ClipSpec, cfg: SynthConfig, model: SoundModel, part: str = "mix") -> np.ndarray:
    """A clip's samples as written: mono, or for 2026 stereo (n, 2).

    Stereo: channel 0 is the near microphone (the mono clip, unchanged); channel 1 the far one, which
    hears the machine part ``FAR_DELAY_S`` later and ``FAR_DB`` weaker, the same noise part as loud,
    and sensor noise of its own.
    """
    near = model.render(spec, cfg, part)
    if cfg.year != STEREO_YEAR:
        return near
    machine, noise = model.render(spec, cfg, "machine"), model.render(spec, cfg, "noise")
    delay = int(round(FAR_DELAY_S * cfg.sample_rate))
    sensor = _name_rng(cfg.seed, "far", spec.dataset, spec.machine, spec.split, spec.domain, spec.label, spec.index)
    far = (
        np.concatenate([np.zeros(delay), machine[: machine.size - delay]]) * 10.0 ** (-FAR_DB / 20.0)
        + noise
        + sensor.standard_normal(noise.size) * FAR_SENSOR_RMS
    )
    return np.stack([near, np.clip(far, -1.0, MAX_SAMPLE)], axis=1)


def labelled_name(spec: ClipSpec, cfg: SynthConfig) -> str:
    """The DCASE 2023/2024 file name that carries domain, label and attributes."""
    attr = NO_ATTRIBUTE if spec.machine in cfg.no_attribute else attribute_string(spec.combo)
    return f"section_00_{spec.domain}_{spec.split}_{spec.label}_{spec.index:04d}_{attr}.wav"


def blinded_order(machine: str, cfg: SynthConfig, count: int) -> np.ndarray:
    """Permutation mapping test-spec position -> blinded index (seeded, machine-specific)."""
    return _name_rng(cfg.seed, "blind", machine).permutation(count)


def _write_wav(path: Path, samples: np.ndarray, sr: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    sf.write(str(tmp), samples, sr, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)


def _attributes_csv(machine: str, specs: list[ClipSpec], cfg: SynthConfig, model: SoundModel) -> str:
    """``attributes_00.csv``: header ``file_name,d1p,d1v,...``; noAttribute machines get one pair."""
    if machine in cfg.no_attribute:
        header = "file_name,d1p,d1v"
        rows = [f"{machine}/{s.split}/{labelled_name(s, cfg)},{NO_ATTRIBUTE}," for s in specs]
    else:
        npairs = len(model.params(machine))
        header = "file_name," + ",".join(f"d{i}p,d{i}v" for i in range(1, npairs + 1))
        rows = [
            f"{machine}/{s.split}/{labelled_name(s, cfg)}," + ",".join(f"{p},{v}" for p, v in s.combo) for s in specs
        ]
    return "\n".join([header] + rows) + "\n"


def _check_root(root: Path, expected: dict) -> bool:
    """True when ``root`` already holds this exact corpus (``.done`` == ``expected``); raise if it holds anything else."""
    marker = root / DONE_MARKER
    if marker.is_file():
        try:
            recorded = json.loads(marker.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise SynthError(f"{marker} is not valid JSON ({e}); delete {root} and generate again") from e
        if recorded != expected:
            diff = sorted(k for k in set(recorded) | set(expected) if recorded.get(k) != expected.get(k))
            raise SynthError(
                f"{root} holds a synthetic corpus made with other options (differs in: {', '.join(diff)}); "
                f"use another --root or delete {root}"
            )
        return True
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise SynthError(
            f"{root} exists and is not an empty directory, and has no {DONE_MARKER} marker "
            f"(an interrupted run or other data); delete it or choose another --root"
        )
    return False


def generate_corpus(root: Path, cfg: SynthConfig, model: SoundModel | None = None) -> None:
    """Write the whole corpus under ``root``; a no-op when ``root`` already holds it.

    Besides the DCASE files, ``synth_metadata.csv`` records for every clip its hidden attributes,
    anomaly kind, whether background events were mixed in and, with supplemental clips, which part of
    the clip it holds (ground truth for diagnostics). Year 2025 adds ``supplemental/`` clips (:func:`supplemental_clips`),
    2026 writes stereo files (:func:`clip_samples`); their train/test names and near-microphone audio
    are those of 2024.
    The ``.done`` marker is written last, so an interrupted run is recognised as such. ``model``:
    the corpus family (default: this module's sound model).
    """
    cfg.validate()
    model = model or DEFAULT_MODEL
    marker = cfg.to_json_dict() | dict(model.marker)
    root = Path(root)
    if _check_root(root, marker):
        if not (root / CORPUS_FILE).is_file():  # a corpus made before the regions were written
            write_regions(root, cfg, model)
        logger.info("%s already holds this synthetic corpus; nothing to do", root)
        return
    eval_list: list[str] = []
    # the part column only where clips are not all mixes, so the other corpora's metadata stays as it was
    with_parts = bool(cfg.n_supplemental_machine or cfg.n_supplemental_noise)
    metadata = ["dataset,machine,split,file_name,domain,label,attributes,anomaly,events" + ",part" * with_parts]
    for dataset, machines in (("dev", cfg.dev_machines), ("eval", cfg.eval_machines)):
        for machine in machines:
            mdir = root / f"{dataset}_data" / "raw" / machine
            train, test = (
                split_specs(dataset, machine, "train", cfg, model),
                split_specs(dataset, machine, "test", cfg, model),
            )
            names = {spec: labelled_name(spec, cfg) for spec in train + test}
            if dataset == "eval":
                blinded = written_test_names(dataset, machine, test, cfg)
                rows = sorted((blinded[spec], names[spec]) for spec in test)
                eval_list += [machine] + [f"{b},{labelled}" for b, labelled in rows]
                names.update(blinded)
            clips = [
                (split, names[spec], "mix", spec)
                for split, specs in (("train", train), ("test", test))
                for spec in specs
            ]
            clips += [("supplemental", *clip) for clip in supplemental_clips(dataset, machine, cfg, model)]
            for split, name, part, spec in clips:
                (mdir / split).mkdir(parents=True, exist_ok=True)
                _write_wav(mdir / split / name, clip_samples(spec, cfg, model, part), cfg.sample_rate)
                metadata.append(
                    f"{dataset},{machine},{split},{name},{spec.domain},{spec.label},{attribute_string(spec.combo)},"
                    f"{spec.anomaly_kind(cfg.seed, model.anomaly_kinds)},{int(spec.events)}" + f",{part}" * with_parts
                )
            atomic_write_text(
                mdir / "attributes_00.csv",
                _attributes_csv(machine, train + test if dataset == "dev" else train, cfg, model),
            )
            logger.info(
                "%s/%s: %d train, %d test, %d supplemental clips",
                dataset,
                machine,
                len(train),
                len(test),
                len(clips) - len(train) - len(test),
            )
    atomic_write_text(root / f"eval_data_list_{cfg.year}.csv", "".join(line + "\r\n" for line in eval_list))
    atomic_write_text(root / METADATA_FILE, "\n".join(metadata) + "\n")
    write_regions(root, cfg, model)
    atomic_write_text(root / DONE_MARKER, json.dumps(marker, sort_keys=True) + "\n")


def written_test_names(dataset: str, machine: str, test: list[ClipSpec], cfg: SynthConfig) -> dict[ClipSpec, str]:
    """The names the test clips are written under: labelled (dev) or blinded (eval)."""
    if dataset != "eval":
        return {spec: labelled_name(spec, cfg) for spec in test}
    blind = blinded_order(machine, cfg, len(test))
    return {spec: f"section_00_{b:04d}.wav" for spec, b in zip(test, blind)}


def write_regions(root: Path, cfg: SynthConfig, model: SoundModel) -> None:
    """``anomaly_regions.csv``: per anomalous test clip its kind and where it is (``regions``: the
    :meth:`AnomalyRegion.text` tokens, space-separated, or ``none`` for the model's global kinds and
    an anomaly that fell outside the clip). Only the anomalous clips are rendered again, so adding
    it to an existing corpus costs a fraction of generating it."""
    lines = ["dataset,machine,split,file_name,anomaly,regions"]
    for dataset, machines in (("dev", cfg.dev_machines), ("eval", cfg.eval_machines)):
        for machine in machines:
            test = split_specs(dataset, machine, "test", cfg, model)
            names = written_test_names(dataset, machine, test, cfg)
            for spec in (s for s in test if s.label == "anomaly"):
                regions = " ".join(r.text() for r in anomaly_regions(spec, cfg, model)) or NO_REGION
                kind = spec.anomaly_kind(cfg.seed, model.anomaly_kinds)
                lines.append(f"{dataset},{machine},test,{names[spec]},{kind},{regions}")
    atomic_write_text(root / CORPUS_FILE, "\n".join(lines) + "\n")
