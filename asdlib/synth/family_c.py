"""Synthetic corpus family "c": impulsive, cyclic machines; a held-out family for the mini recipe.

Why: family b (:mod:`asdlib.synth.family_b`) was looked at while the mini's default was being built,
so it is no longer an untouched hold-out. Family c was written after the default was fixed and is
used only to report it. It keeps the mini corpus layout (a :class:`~asdlib.synth.corpus.SoundModel`
plugged into :func:`~asdlib.synth.corpus.generate_corpus`), and its sounds differ in kind from both
other families:

* machines work in strokes: per cycle a few impacts at fixed phases, each ringing in the machine's
  own structural modes (damped sinusoids), plus a motor whine whose pitch follows the stroke rate
  and a short servo chirp per cycle; the sound is impulsive and periodic, not stationary;
* attributes are ``spm`` (strokes per minute) and ``material`` of the work piece (steel or aluminium
  in the source domain, unseen plastic in the target domain: lower, faster-decaying modes);
* the target domain adds unseen stroke rates and another recording chain: a distant microphone
  (air absorption low-pass, more background) behind a recorder band-limited to 4 kHz;
* backgrounds: ventilation rumble with slow swells (source) or dense rain-like ticks with a
  lamp buzz of odd harmonics (target); a third of the clips carry door thuds or beeps;
* anomalies: a missed or late stroke, an extra knock between strokes, a loose-part rattle after
  each impact, a worn tool (modes lowered and damped) and a drifting motor; all scaled by
  ``anomaly_strength``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import fft

from asdlib.synth import corpus as a
from asdlib.synth.corpus import AttrParam, ClipSpec, SoundModel, SynthConfig

FAMILY_VERSION = 1  # bump whenever family c's audio changes (recorded in .done)
ANOMALY_KINDS = ("missed_stroke", "extra_knock", "rattle", "worn_tool", "motor_drift")
GLOBAL_KINDS = ("worn_tool", "motor_drift")  # no region: every impact's modes, the motor's pitch throughout
# Official DCASE 2024 machine types that neither family a nor family b uses (2024 has one such dev type).
DEV_MACHINES = ("ToyTrain",)
EVAL_MACHINES = ("3DPrinter", "RoboticArm", "ToyCircuit")
NO_ATTRIBUTE = ("ToyCircuit",)

# Calibration (see tests/synth/test_synth_family_c.py).
RATE_JITTER = 0.004  # relative spread of the stroke rate
TIMING_JITTER = 0.002  # s, per impact
LEVEL_JITTER_DB = 0.8  # per-impact level spread
SNR_DB = (12.0, 20.0)  # machine-to-background ratio
LEVEL = 0.05  # full-scale RMS of the mix
EVENT_DB = (0.0, 8.0)  # thud/beep level relative to the machine
MISSED_LATE = 0.03  # s: how late a late stroke comes (times strength)
KNOCK_LEVEL = 0.5  # extra knock amplitude relative to an impact
RATTLE_LEVEL = 0.35  # rattle amplitude relative to an impact
WORN_SHIFT = 0.06  # relative lowering of the modes (times strength)
DRIFT = 0.05  # relative offset of the motor pitch (times strength)
MATERIAL = {"steel": (1.0, 1.0), "alu": (0.85, 0.8), "plastic": (0.6, 0.45)}  # (mode factor, decay factor)


@dataclass(frozen=True)
class ProfileC:
    """A family-c machine's fixed acoustic identity, derived from its name."""

    spm: tuple[int, int, int]  # source stroke rates
    target_spm: tuple[int, int]
    phases: tuple[float, ...]  # impact phases within a cycle
    gains: tuple[float, ...]  # impact amplitudes
    modes: tuple[tuple[float, float], ...]  # (Hz, decay s) of the structural modes
    whine_ratio: float  # motor pitch / stroke rate
    whine_level: float
    chirp: tuple[float, float]  # servo chirp start and end Hz

    def params(self) -> tuple[AttrParam, ...]:
        return (
            AttrParam("spm", "speed", tuple(map(str, self.spm)), tuple(map(str, self.target_spm))),
            AttrParam("material", "load", ("steel", "alu"), ("plastic",)),
        )


@functools.lru_cache(maxsize=64)
def profile(name: str) -> ProfileC:
    """Derive a machine's identity from its name (stable across runs)."""
    rng = a._name_rng("profile_c", name)
    base = int(rng.choice([120, 180, 240, 300]))
    step = 30 * int(rng.integers(1, 3))
    k = int(rng.integers(2, 5))
    return ProfileC(
        spm=(base, base + step, base + 2 * step),
        target_spm=(base - step, base + 3 * step),
        phases=tuple(sorted(float(p) for p in rng.uniform(0.0, 0.9, k))),
        gains=tuple(float(g) for g in rng.uniform(0.4, 1.0, k)),
        modes=tuple(
            (float(np.exp(rng.uniform(np.log(400.0), np.log(5000.0)))), float(rng.uniform(0.01, 0.06)))
            for _ in range(int(rng.integers(3, 6)))
        ),
        whine_ratio=float(rng.uniform(40.0, 90.0)),
        whine_level=float(rng.uniform(0.05, 0.2)),
        chirp=(float(rng.uniform(600.0, 1200.0)), float(rng.uniform(1500.0, 3000.0))),
    )


def params(machine: str) -> tuple[AttrParam, ...]:
    return profile(machine).params()


def _impact(sr: int, modes: tuple[tuple[float, float], ...], rng: np.random.Generator) -> np.ndarray:
    """One impact: the modes struck with random weights, plus a short contact click."""
    length = int(0.25 * sr)
    t = np.arange(length) / sr
    out = sum(
        rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) * np.exp(-t / tau)
        for f, tau in modes
    )
    click = rng.standard_normal(length) * np.exp(-t / 0.0008)
    return out + 0.5 * click


def _machine(
    p: ProfileC,
    spm: float,
    material: str,
    rng: np.random.Generator,
    t: np.ndarray,
    sr: int,
    anomaly: str,
    strength: float,
) -> np.ndarray:
    n = t.size
    mode_f, decay_f = MATERIAL[material]
    modes = tuple((f * mode_f, tau * decay_f) for f, tau in p.modes)
    if anomaly == "worn_tool":
        shift = 1.0 - WORN_SHIFT * strength * rng.uniform(0.6, 1.0)
        modes = tuple((f * shift, tau * 0.6) for f, tau in modes)
    period = 60.0 / spm / (1.0 + RATE_JITTER * rng.standard_normal())
    start = -rng.uniform(0, period)
    cycles = np.arange(start, t[-1], period)
    times, amps = [], []
    missed = int(rng.integers(cycles.size)) if anomaly == "missed_stroke" else -1
    for c, t0 in enumerate(cycles):
        for ph, g in zip(p.phases, p.gains):
            dt = TIMING_JITTER * rng.standard_normal()
            if c == missed and ph == p.phases[0]:  # the stroke's ring is gone or comes late: all bands
                ring = 3 * max(tau for _, tau in modes)
                a.mark_region(t0 + ph * period - 0.01, t0 + ph * period + MISSED_LATE * strength + ring, 0.0, sr, t, sr)
                if rng.random() < 0.5:
                    continue  # missed
                dt += MISSED_LATE * strength  # late
            times.append(t0 + ph * period + dt)
            amps.append(g * 10.0 ** (LEVEL_JITTER_DB * rng.standard_normal() / 20.0))
    kernel = _impact(sr, modes, rng)
    x = a._pulse_train(n, sr, np.array(times), np.array(amps), kernel)
    ref = a._rms(x)
    if anomaly == "extra_knock":
        knock_modes = tuple((f * rng.uniform(1.3, 1.8), tau) for f, tau in modes[:2])
        kt = cycles + period * rng.uniform(0.92, 0.98)
        band = [f for f, _ in knock_modes]
        for k in kt:
            a.mark_region(k, k + 3 * modes[0][1], min(band) / 1.15, max(band) * 1.15, t, sr)
        x = x + a._pulse_train(
            n, sr, kt, np.full(kt.size, KNOCK_LEVEL * strength * max(p.gains)), _impact(sr, knock_modes, rng)
        )
    elif anomaly == "rattle":
        rt = (np.array(times)[:, None] + np.cumsum(rng.uniform(0.004, 0.012, (len(times), 6)), axis=1)).ravel()
        ring = rng.uniform(2500.0, 5000.0)
        rk = a._decay_kernel(sr, ring, 0.002, 0.01, rng)
        a.mark_region(0.0, t[-1], ring / 1.3, ring * 1.3, t, sr)  # after every impact: the whole clip
        rattle = a._pulse_train(n, sr, rt, rng.uniform(0.3, 1.0, rt.size), rk)
        x = x + rattle / a._rms(rattle) * RATTLE_LEVEL * strength * ref
    f_motor = spm / 60.0 * p.whine_ratio
    if anomaly == "motor_drift":
        f_motor *= 1.0 + DRIFT * strength * rng.uniform(0.5, 1.0) * rng.choice([-1.0, 1.0])
        f_motor = f_motor * (1.0 + 0.01 * strength * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t))
    phase = 2 * np.pi * np.cumsum(np.broadcast_to(f_motor, t.shape)) / sr
    whine = np.sin(phase) + 0.4 * np.sin(2 * phase + 0.3) + 0.2 * np.sin(3 * phase + 1.1)
    x = x + whine / a._rms(whine) * p.whine_level * ref
    # servo chirp at the start of every cycle (0.08 s sweep)
    tc = np.arange(int(0.08 * sr)) / sr
    sweep = np.sin(2 * np.pi * (p.chirp[0] * tc + (p.chirp[1] - p.chirp[0]) / (2 * 0.08) * tc**2)) * np.hanning(tc.size)
    x = x + a._pulse_train(n, sr, cycles + 0.02, np.full(cycles.size, 0.15), sweep) * ref / 0.3
    return x


@functools.lru_cache(maxsize=64)
def _chain(machine: str, domain: str, n: int, sr: int) -> np.ndarray:
    """Microphone and recorder: near and flat-ish (source) or distant and band-limited (target)."""
    f = a._freqs(n, sr)
    rng = a._name_rng("chain_c", machine, domain)
    if domain == "source":
        return a._frozen(10.0 ** (a._eq_db(f, rng, 2, 2.0) / 20.0))
    air = np.exp(-f / rng.uniform(3000.0, 5000.0))  # distance: high frequencies absorbed
    recorder = 1.0 / np.sqrt(1.0 + (f / 4000.0) ** 16)  # 4 kHz anti-aliasing of an 8 kHz recorder
    return a._frozen(air * recorder * 10.0 ** (a._eq_db(f, rng, 3, 4.0) / 20.0))


def _background(domain: str, rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
    """Source: ventilation rumble with slow swells; target: rain ticks + lamp buzz; unit RMS."""
    n, f = t.size, a._freqs(t.size, sr)
    if domain == "source":
        rumble = a._colored_noise(rng, 1.0 / (1.0 + (f / 150.0) ** 2) + 0.05, n)
        bg = rumble * (1.0 + 0.4 * a._smooth_noise(rng, n, int(2 * t[-1]) + 1))
    else:
        ticks = rng.uniform(0, t[-1], int(400 * t[-1]) + 1)
        rain = a._pulse_train(
            n, sr, ticks, rng.exponential(1.0, ticks.size), np.diff(np.exp(-np.arange(40) / 6.0), prepend=0.0)
        )
        buzz = sum(np.sin(2 * np.pi * 100.0 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in (1, 3, 5, 7, 9))
        bg = rain / a._rms(rain) + 0.5 * buzz / a._rms(buzz)
    return bg / a._rms(bg)


def _events(rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
    """Normal transients: a door thud (low, damped) or a beep (tone burst)."""
    n = t.size
    level = 10.0 ** (rng.uniform(*EVENT_DB) / 20.0)
    start = rng.uniform(0, 0.8 * t[-1])
    if rng.random() < 0.5:
        kernel = a._decay_kernel(sr, rng.uniform(60.0, 140.0), 0.05, 0.3, rng)
        ev = a._pulse_train(n, sr, np.array([start]), np.array([1.0]), kernel)
    else:
        f0, length = rng.uniform(1000.0, 3000.0), rng.uniform(0.1, 0.3)
        ev = np.sin(2 * np.pi * f0 * t) * ((t >= start) & (t < start + length))
    return ev / a._rms(ev) * level * 0.5


def render(spec: ClipSpec, cfg: SynthConfig, part: str = "mix") -> np.ndarray:
    """Render one family-c clip (or one ``part`` of it, :data:`asdlib.synth.corpus.PARTS`) as float64 samples in [-1, 1)."""
    p = profile(spec.machine)
    rng, anomaly, sr, n, t, attrs = a.clip_start(spec, cfg, ANOMALY_KINDS)
    x = _machine(p, float(attrs["spm"]), attrs["material"], rng, t, sr, anomaly, cfg.anomaly_strength)
    x = x / a._rms(x)
    snr = rng.uniform(*SNR_DB) - (6.0 if spec.domain == "target" else 0.0)  # the distant microphone hears more room
    noise = _background(spec.domain, rng, t, sr) * 10.0 ** (-snr / 20.0)
    mix = x + noise
    if spec.events and rng.random() < 0.67:
        events = _events(rng, t, sr)
        mix, noise = mix + events, noise + events
    chain = _chain(spec.machine, spec.domain, n, sr)
    mix = fft.irfft(fft.rfft(mix) * chain, n)
    return a.at_level(mix, LEVEL, rng, a.select_part(part, mix, x, noise, chain))


MODEL = SoundModel(
    "c", params, render, ANOMALY_KINDS, (("family", "c"), ("family_version", FAMILY_VERSION)), GLOBAL_KINDS
)


def default_config(**changes) -> SynthConfig:
    """The mini corpus options with family c's machines (``changes`` override any field)."""
    return a.family_config(DEV_MACHINES, EVAL_MACHINES, NO_ATTRIBUTE, **changes)
