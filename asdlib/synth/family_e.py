"""Synthetic corpus family "e": servo-driven devices with DCASE's hard domain shift; held out.

Why: family d (:mod:`asdlib.synth.family_d`) took part in choosing the mini's default, so it is no
longer an untouched test of it. Family e was written to the same hardness and proportions (990
source and 10 target training clips per section, 50 test clips per domain and label) and is used
only to report the default once. Its sounds differ in kind from a, b, c and d: they are not
stationary and not periodic, but programmed moves:

* a device runs a program of moves; each move is a servo sweep (a motor tone gliding up, holding,
  gliding down, with its gear-mesh partials) followed by a short settle; between moves, the driver
  electronics whine (a high, weak tone) and a cooling fan hums;
* attributes are ``program`` (which sequence of moves) and ``speed`` (how fast the moves run);
* the target domain is another installation: unseen programs *drawn per clip* (ten clips cannot
  cover them), a faster speed, the device in a housing that muffles and colours it, a room whose
  reverberation changes per clip, and people talking nearby (babble-like formant noise at a level
  that changes per clip);
* anomalies are subtle: a gear tooth that clicks once per revolution during moves, a servo that
  hunts (a slow wobble while holding), a rubbing cable (soft band noise during moves), a driver whine
  shifted in pitch, a fan bearing; all scaled by ``anomaly_strength``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import fft, signal

from asdlib.synth import corpus as a
from asdlib.synth import family_d as d
from asdlib.synth.corpus import AttrParam, ClipSpec, SoundModel, SynthConfig

FAMILY_VERSION = 1  # bump whenever family e's audio changes (recorded in .done)
ANOMALY_KINDS = ("tooth_click", "hunting", "cable_rub", "whine_shift", "fan_bearing")
# Official DCASE machine types that families a-d do not use.
DEV_MACHINES = ("ToyNscale", "Vacuum", "bandsaw")
EVAL_MACHINES = ("HomeCamera", "AutoTrash", "CoffeeGrinder")
NO_ATTRIBUTE = ("Vacuum", "CoffeeGrinder")

SNR_DB = {"source": (18.0, 24.0), "target": (6.0, 16.0)}  # device to background
CLICK_LEVEL = 0.25  # tooth click RMS (during moves) relative to the device
HUNT_DEPTH = 0.04  # relative pitch wobble while holding
RUB_LEVEL = 0.1  # rubbing noise relative to the device
WHINE_SHIFT = 0.05  # relative shift of the driver whine
FAN_BEARING_LEVEL = 0.08  # bearing tone relative to the device


@dataclass(frozen=True)
class ProfileE:
    """A family-e device's fixed identity, derived from its name."""

    motor_hz: float  # servo tone at full speed
    partials: tuple[float, ...]  # gear-mesh partial amplitudes
    whine_hz: float
    fan_hz: float
    programs: tuple[tuple[float, ...], ...]  # source programs: the relative extent of each move

    def params(self) -> tuple[AttrParam, ...]:
        return (
            AttrParam("program", "program", ("A", "B", "C"), ("X",)),
            AttrParam("speed", "speed", ("50", "75"), ("100",)),
        )


@functools.lru_cache(maxsize=64)
def profile(name: str) -> ProfileE:
    """Derive a device's identity from its name (stable across runs)."""
    rng = a._name_rng("profile_e", name)
    return ProfileE(
        motor_hz=float(rng.uniform(300.0, 700.0)),
        partials=tuple(float(v) for v in rng.uniform(0.1, 1.0, 6) / np.arange(1, 7)),
        whine_hz=float(rng.uniform(5000.0, 7000.0)),
        fan_hz=float(rng.uniform(80.0, 160.0)),
        programs=tuple(tuple(float(v) for v in rng.uniform(0.3, 1.0, int(rng.integers(3, 6)))) for _ in range(3)),
    )


def params(machine: str) -> tuple[AttrParam, ...]:
    return profile(machine).params()


def _program(p: ProfileE, name: str, rng: np.random.Generator) -> tuple[float, ...]:
    """The moves of a clip: a source program as it is, or (target ``X``) a new one per clip."""
    if name == "X":
        return tuple(float(v) for v in rng.uniform(0.2, 1.0, int(rng.integers(3, 7))))
    return p.programs["ABC".index(name)]


def _device(
    p: ProfileE,
    program: tuple[float, ...],
    speed: float,
    rng: np.random.Generator,
    t: np.ndarray,
    sr: int,
    anomaly: str,
    s: float,
) -> np.ndarray:
    n = t.size
    # the servo's pitch envelope: per move glide up, hold, glide down, then a settle at rest
    env = np.zeros(n)
    moving = np.zeros(n)
    slot = t[-1] / len(program)
    for i, extent in enumerate(program):
        start = i * slot + rng.uniform(0.0, 0.1 * slot)
        length = slot * rng.uniform(0.55, 0.75) * (50.0 / speed) ** 0.3
        u = (t - start) / length
        shape = np.clip(np.minimum(u / 0.3, (1.0 - u) / 0.3), 0.0, 1.0) * ((u >= 0) & (u <= 1))
        env = np.maximum(env, extent * shape)
        moving = np.maximum(moving, (u >= 0) & (u <= 1))
    f = p.motor_hz * speed / 100.0 * (0.3 + env)
    if anomaly == "hunting":  # a slow wobble while the servo holds (env at its extent)
        hold = (env > 0.95 * env.max()) if env.max() > 0 else np.zeros(n, dtype=bool)
        if hold.any():  # the motor's partials wobble while it holds
            for s0, s1 in a.true_spans(hold, t):
                a.mark_region(s0, s1, f[hold].min() / 1.1, 6 * f[hold].max() * 1.1, t, sr)
        f = f * (1.0 + HUNT_DEPTH * s * hold * np.sin(2 * np.pi * rng.uniform(3.0, 6.0) * t))
    motor = sum(v * d._sine(t, (k + 1) * f, rng) for k, v in enumerate(p.partials) if (k + 1) * f.max() < sr / 2)
    motor = motor * (0.2 + moving)
    whine_hz = p.whine_hz * (1.0 + WHINE_SHIFT * s * rng.choice([-1.0, 1.0]) if anomaly == "whine_shift" else 1.0)
    if anomaly == "whine_shift":  # the whine left its band for another: both are the region
        a.mark_region(0.0, t[-1], min(whine_hz, p.whine_hz) / 1.02, max(whine_hz, p.whine_hz) * 1.02, t, sr)
    whine = 0.05 * d._sine(t, whine_hz, rng) * (1.0 - 0.5 * moving)
    fan = 0.15 * (d._sine(t, p.fan_hz, rng) + 0.5 * d._sine(t, 2 * p.fan_hz, rng))
    fan = fan + 0.1 * a._colored_noise(rng, 1.0 / np.sqrt(np.maximum(a._freqs(n, sr), 50.0)), n)
    x = motor / a._rms(motor) + whine + fan
    ref = a._rms(x)
    if anomaly == "tooth_click":  # once per motor revolution (motor tone / 20 teeth), only while moving
        phase = np.cumsum(f / 20.0) / sr
        ticks = np.nonzero(np.diff(np.floor(phase)) > 0)[0]
        ticks = ticks[moving[ticks] > 0]
        ring = rng.uniform(2000.0, 4000.0)
        kernel = a._decay_kernel(sr, ring, 0.002, 0.01, rng)
        for s0, s1 in a.true_spans(moving > 0, t):
            a.mark_region(s0, s1, ring / 1.3, ring * 1.3, t, sr)
        click = a._pulse_train(n, sr, ticks / sr, np.ones(ticks.size), kernel)
        x = x + click / a._rms(click) * CLICK_LEVEL * s * ref * np.sqrt(np.mean(moving) + 1e-3)
    elif anomaly == "cable_rub":
        sos = signal.butter(2, [1500.0, 4000.0], btype="bandpass", fs=sr, output="sos")
        rub = signal.sosfilt(sos, rng.standard_normal(n)) * moving
        for s0, s1 in a.true_spans(moving > 0, t):
            a.mark_region(s0, s1, 1500.0, 4000.0, t, sr)
        x = x + rub / a._rms(rub) * RUB_LEVEL * s * ref
    elif anomaly == "fan_bearing":
        fb = rng.uniform(2500.0, 4500.0)
        a.mark_region(0.0, t[-1], fb - 2 * p.fan_hz, fb + 2 * p.fan_hz, t, sr)
        tone = d._sine(t, fb, rng) * (1.0 + 0.5 * d._sine(t, p.fan_hz, rng))
        x = x + tone / a._rms(tone) * FAN_BEARING_LEVEL * s * ref
    return x


@functools.lru_cache(maxsize=64)
def _housing(machine: str, domain: str, n: int, sr: int) -> np.ndarray:
    """Magnitude response of the mounting: open (source) or a muffling, resonant housing (target)."""
    f = a._freqs(n, sr)
    rng = a._name_rng("housing_e", machine, domain)
    if domain == "source":
        return a._frozen(10.0 ** (a._eq_db(f, rng, 2, 1.5) / 20.0))
    lp = rng.uniform(2000.0, 3500.0)
    return a._frozen(10.0 ** (a._eq_db(f, rng, 4, 8.0) / 20.0) / np.sqrt(1.0 + (f / lp) ** 4))


def _babble(rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
    """People talking nearby: noise through moving formant filters, syllable-rate envelopes; unit RMS."""
    n, out = t.size, np.zeros(t.size)
    for _ in range(int(rng.integers(2, 5))):
        src = rng.standard_normal(n)
        voice = np.zeros(n)
        for lo, hi in ((300.0, 900.0), (900.0, 2500.0)):
            fc = rng.uniform(lo, hi)
            sos = signal.butter(2, [fc * 0.8, fc * 1.25], btype="bandpass", fs=sr, output="sos")
            voice += signal.sosfilt(sos, src)
        syllables = np.clip(a._smooth_noise(rng, n, int(4 * t[-1]) + 1), 0.0, None)
        out += voice * syllables
    return out / a._rms(out)


def render(spec: ClipSpec, cfg: SynthConfig, part: str = "mix") -> np.ndarray:
    """Render one family-e clip (or one ``part`` of it, :data:`asdlib.synth.corpus.PARTS`) as float64 samples in [-1, 1)."""
    p = profile(spec.machine)
    rng, anomaly, sr, n, t, attrs = a.clip_start(spec, cfg, ANOMALY_KINDS)
    program = _program(p, attrs["program"], rng)
    x = _device(p, program, float(attrs["speed"]), rng, t, sr, anomaly, cfg.anomaly_strength)
    x = fft.irfft(fft.rfft(x / a._rms(x)) * _housing(spec.machine, spec.domain, n, sr), n)
    x = fft.irfft(fft.rfft(x / a._rms(x)) * d._room(rng, spec.domain, n, sr), n)
    x = x / a._rms(x)
    n_bg = a._colored_noise(rng, 1.0 / np.sqrt(np.maximum(a._freqs(n, sr), 20.0)), n)
    bg = n_bg if spec.domain == "source" else (0.3 * n_bg + _babble(rng, t, sr))
    noise = bg / a._rms(bg) * 10.0 ** (-rng.uniform(*SNR_DB[spec.domain]) / 20.0)
    mix = x + noise
    if spec.events and rng.random() < 0.5:  # a door or a cart: a low thump
        kernel = a._decay_kernel(sr, rng.uniform(50.0, 120.0), 0.08, 0.4, rng)
        thump = a._pulse_train(n, sr, np.array([rng.uniform(0, 0.8 * t[-1])]), np.array([1.0]), kernel)
        thump = thump / a._rms(thump) * 10.0 ** (rng.uniform(-10.0, -2.0) / 20.0)
        mix, noise = mix + thump, noise + thump
    return a.at_level(mix, d.LEVEL, rng, a.select_part(part, mix, x, noise))


MODEL = SoundModel("e", params, render, ANOMALY_KINDS, (("family", "e"), ("family_version", FAMILY_VERSION)))


def default_config(**changes) -> SynthConfig:
    """Family e's machines at DCASE's proportions (``changes`` override any field)."""
    return a.family_config(DEV_MACHINES, EVAL_MACHINES, NO_ATTRIBUTE, **(a.DCASE_PROPORTIONS | changes))
