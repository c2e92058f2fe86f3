"""Synthetic corpus family "b": a second sound model and domain shift in the mini corpus layout.

Why: the mini recipe's defaults were chosen on family "a" (:mod:`asdlib.synth.corpus`); a default
that only wins there may be fitted to that generator. Family b keeps corpus.py's DCASE 2024 layout,
names, blinding, eval list and writer (it plugs a :class:`~asdlib.synth.corpus.SoundModel` into
:func:`~asdlib.synth.corpus.generate_corpus`), but its sounds and shift differ in kind:

* machines are broadband: noise shaped by structural resonances, plus a comb of rotating orders
  (pitched noise, not sinusoids) at the blade-pass frequency rpm/60 x blades, lowered by load slip,
  modulated once per revolution, plus a fixed electrical hum at twice the line frequency;
* attributes are ``rpm`` and ``load``; the target domain has unseen rpm and load values *and* another
  recording chain: a reverberant room (synthetic impulse response, RT60 0.5-0.9 s instead of
  0.1-0.2 s, less direct sound) and a cheap microphone (high-pass, presence peak, low-pass);
* the stationary background is pink noise + factory hum (source) or brown noise + babble (target);
  half of the clips carry intermittent metallic clanks or air-release hisses;
* anomalies: bearing-fault impulse trains at a non-integer defect order, imbalance (once-per-rev
  modulation and low-order tones), friction squeal bursts, a structural resonance shift, cavitation
  crackle; all scaled by ``anomaly_strength``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import fft

from asdlib.synth import corpus as a
from asdlib.synth.corpus import AttrParam, ClipSpec, SoundModel, SynthConfig

FAMILY_VERSION = 1  # bump whenever family b's audio changes (recorded in .done)
ANOMALY_KINDS = ("bearing", "imbalance", "squeal", "resonance_shift", "cavitation")
# no region: a once-per-rev modulation of the whole sound, all resonances moved, broadband crackle throughout
GLOBAL_KINDS = ("imbalance", "resonance_shift", "cavitation")
# Real DCASE 2023/2024 machine types that the default (family a) corpus does not use.
DEV_MACHINES = ("bearing", "slider", "ToyCar")
EVAL_MACHINES = ("AirCompressor", "BrushlessMotor", "HoveringDrone")
NO_ATTRIBUTE = ("slider", "BrushlessMotor")

# Calibration (see tests/synth/test_synth_family_b.py): per-clip spread and anomaly magnitudes.
RPM_JITTER = 0.003  # relative spread of the rotation speed
LEVEL_JITTER_DB = 0.7  # per-clip spread of each component's level
SNR_DB = (14.0, 22.0)  # machine-to-background ratio
LEVEL = 0.05  # full-scale RMS of the machine
EVENT_DB = (-2.0, 8.0)  # clank/hiss level relative to the machine
BEARING_LEVEL = 0.2  # defect impulse train RMS relative to the machine
IMBALANCE_DEPTH = 0.15  # once-per-rev modulation depth added
IMBALANCE_TONE = 0.15  # 1x/2x rotation tone RMS relative to the machine
SQUEAL_LEVEL = 0.3  # squeal amplitude relative to the machine RMS
RESONANCE_SHIFT = 0.04  # relative shift of the structural resonances
CAVITATION_LEVEL = 0.2  # crackle RMS relative to the machine


@dataclass(frozen=True)
class ProfileB:
    """A family-b machine's fixed acoustic identity, derived from its name."""

    rpm: tuple[int, int, int]  # source rpm values
    target_rpm: tuple[int, int]
    blades: int
    slip: float  # relative speed drop at 100 % load
    resonances: tuple[tuple[float, float, float], ...]  # (centre Hz, gain dB, width octaves)
    tilt_db: float  # broadband slope per octave around 1 kHz
    comb_g: float  # comb feedback: sharpness of the rotating orders
    comb_level: float
    rev_depth: float  # once-per-revolution modulation depth
    hum_freq: float  # 100 or 120 Hz (twice the line frequency)
    hum_level: float
    defect_order: float  # bearing defect frequency / rotation frequency
    defect_res: float  # structural ring excited by the defect (Hz)

    def params(self) -> tuple[AttrParam, ...]:
        return (
            AttrParam("rpm", "speed", tuple(map(str, self.rpm)), tuple(map(str, self.target_rpm))),
            AttrParam("load", "load", ("20", "50"), ("80",)),
        )


@functools.lru_cache(maxsize=64)
def profile(name: str) -> ProfileB:
    """Derive a machine's identity from its name (stable across runs)."""
    rng = a._name_rng("profile_b", name)
    base = int(rng.choice([900, 1200, 1500, 1800, 2400]))
    step = 60 * max(1, round(base * 0.15 / 60))
    return ProfileB(
        rpm=(base, base + step, base + 2 * step),
        target_rpm=(base - step, base + 3 * step),
        blades=int(rng.integers(3, 10)),
        slip=float(rng.uniform(0.03, 0.08)),
        resonances=tuple(
            (
                float(np.exp(rng.uniform(np.log(250.0), np.log(6000.0)))),
                float(rng.uniform(6.0, 14.0)),
                float(rng.uniform(0.15, 0.45)),
            )
            for _ in range(int(rng.integers(3, 5)))
        ),
        tilt_db=float(rng.uniform(-3.0, 0.0)),
        comb_g=float(rng.uniform(0.6, 0.85)),
        comb_level=float(rng.uniform(0.6, 1.2)),
        rev_depth=float(rng.uniform(0.1, 0.3)),
        hum_freq=float(rng.choice([100.0, 120.0])),
        hum_level=float(rng.uniform(0.05, 0.2)),
        defect_order=float(rng.uniform(3.0, 5.5)),
        defect_res=float(rng.uniform(2000.0, 6000.0)),
    )


def params(machine: str) -> tuple[AttrParam, ...]:
    return profile(machine).params()


# ---------------------------------------------------------------------------------------------
# Recording chain: room and microphone per (machine, domain)


@functools.lru_cache(maxsize=64)
def _room_response(machine: str, domain: str, n: int, sr: int) -> np.ndarray:
    """rfft of a synthetic room impulse response (direct sound + exponentially decaying noise),
    applied circularly so that the steady machine sound is in reverberant steady state."""
    rng = a._name_rng("room_b", machine, domain)
    rt60, drr_db = (rng.uniform(0.1, 0.2), 10.0) if domain == "source" else (rng.uniform(0.5, 0.9), 0.0)
    length = min(int(1.2 * rt60 * sr), n)
    t = np.arange(length) / sr
    tail = rng.standard_normal(length) * np.exp(-6.91 * t / rt60)
    tail[: int(0.002 * sr)] = 0.0  # first reflections after 2 ms
    tail *= 10.0 ** (-drr_db / 20.0) / np.sqrt(np.sum(tail**2))
    tail[0] = 1.0
    return a._frozen(fft.rfft(tail, n))


@functools.lru_cache(maxsize=64)
def _mic_gain(machine: str, domain: str, n: int, sr: int) -> np.ndarray:
    """Microphone magnitude response: nearly flat (source) or cheap (target: band-limited, peaky)."""
    f = a._freqs(n, sr)
    rng = a._name_rng("mic_b", machine, domain)
    if domain == "source":
        return a._frozen(10.0 ** (a._eq_db(f, rng, 2, 2.0) / 20.0))
    hp, lp = rng.uniform(250.0, 450.0), rng.uniform(5000.0, 7000.0)
    gain = (f / hp) ** 2 / np.sqrt(1.0 + (f / hp) ** 4) / np.sqrt(1.0 + (f / lp) ** 8)
    return a._frozen(gain * 10.0 ** (a._resonance_db(f, [(rng.uniform(3000.0, 5000.0), 6.0, 0.4)]) / 20.0))


# ---------------------------------------------------------------------------------------------
# Sources


def _tones(t: np.ndarray, f: float, amps: list[float], rng: np.random.Generator) -> np.ndarray:
    """Harmonics k*f with amplitudes ``amps`` and random phases."""
    return sum(amp * np.sin(2 * np.pi * (k + 1) * f * t + rng.uniform(0, 2 * np.pi)) for k, amp in enumerate(amps))


def _machine(
    p: ProfileB,
    rpm: float,
    load: float,
    rng: np.random.Generator,
    t: np.ndarray,
    sr: int,
    anomaly: str,
    strength: float,
) -> np.ndarray:
    """Broadband body + rotating-order comb + hum, with the anomaly; unit-ish RMS."""
    n, f = t.size, a._freqs(t.size, sr)
    f_rot = rpm / 60.0 * (1.0 - p.slip * load) * (1.0 + RPM_JITTER * rng.standard_normal())
    f_bp = f_rot * p.blades
    res = p.resonances
    if anomaly == "resonance_shift":
        factor = 1.0 + RESONANCE_SHIFT * strength * rng.uniform(0.5, 1.0) * rng.choice([-1.0, 1.0])
        res = tuple((fc * factor, g, w) for fc, g, w in res)
    body = 10.0 ** (
        (p.tilt_db * a._log2_ratio(f, 1000.0) + a._resonance_db(f, res) + 3.0 * load * a._log2_ratio(f, 1000.0)) / 20.0
    )
    comb = 1.0 / np.abs(1.0 - p.comb_g * np.exp(-2j * np.pi * f / f_bp)) / np.sqrt(1.0 + (f / (12 * f_bp)) ** 4)
    jit = 10.0 ** (LEVEL_JITTER_DB * rng.standard_normal(3) / 20.0)
    x = (
        a._colored_noise(rng, body * comb, n) * p.comb_level * jit[0]
        + a._colored_noise(rng, body, n) * (0.6 + 0.6 * load) * jit[1]
    )
    rev = 2 * np.pi * f_rot * t + rng.uniform(0, 2 * np.pi)
    x = x * (1.0 + p.rev_depth * np.cos(rev) + 0.4 * p.rev_depth * np.cos(2 * rev))
    x = x + _tones(t, p.hum_freq, [1.0, 0.5, 0.25], rng) / 0.8 * p.hum_level * (0.5 + load) * jit[2]
    ref = a._rms(x)
    if anomaly == "bearing":
        f_d = f_rot * p.defect_order * rng.uniform(0.97, 1.03)
        times = np.arange(rng.uniform(0, 1 / f_d), t[-1], 1 / f_d)
        amps = (1.0 + 0.8 * np.cos(2 * np.pi * f_rot * times)) * rng.uniform(0.7, 1.3, times.size)
        ring = p.defect_res * rng.uniform(0.9, 1.1)
        kernel = a._decay_kernel(sr, ring, 0.0015, 0.015, rng)
        a.mark_region(0.0, t[-1], ring / 1.3, ring * 1.3, t, sr)
        imp = a._pulse_train(n, sr, times, amps, kernel)
        x = x + imp / a._rms(imp) * BEARING_LEVEL * strength * ref
    elif anomaly == "imbalance":
        x = x * (1.0 + IMBALANCE_DEPTH * strength * np.cos(rev + rng.uniform(-0.5, 0.5)))
        x = x + _tones(t, f_rot, [1.0, 0.4], rng) / 0.76 * IMBALANCE_TONE * strength * ref
    elif anomaly == "squeal":
        out = np.zeros(n)
        for _ in range(int(rng.integers(1, 4))):
            start, length = rng.uniform(-0.1, t[-1] - 0.1), rng.uniform(0.1, 0.4)
            fs = rng.uniform(1500.0, 6000.0) * (1.0 + 0.03 * np.sin(2 * np.pi * rng.uniform(6.0, 14.0) * t))
            ph = 2 * np.pi * np.cumsum(fs) / sr
            win = np.sin(np.pi * np.clip((t - start) / length, 0.0, 1.0))
            a.mark_region(start, start + length, fs.min() / 1.03, 2 * fs.max() * 1.03, t, sr)
            out += (np.sin(ph) + 0.3 * np.sin(2 * ph)) * win
        x = x + out * SQUEAL_LEVEL * strength * ref
    elif anomaly == "cavitation":
        times = np.sort(rng.uniform(0, t[-1], int(rng.uniform(15.0, 50.0) * t[-1]) + 1))
        kernel = rng.standard_normal(int(0.004 * sr)) * np.exp(-np.arange(int(0.004 * sr)) / (0.001 * sr))
        kernel = np.diff(kernel, prepend=0.0)  # high-passed crackle
        crackle = a._pulse_train(n, sr, times, rng.exponential(1.0, times.size), kernel)
        x = x + crackle / a._rms(crackle) * CAVITATION_LEVEL * strength * ref
    return x


@functools.lru_cache(maxsize=8)
def _noise_gains(n: int, sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pink, brown and speech-shaped magnitude responses."""
    f = np.maximum(a._freqs(n, sr), 20.0)
    speech = (
        (f / 200.0)
        / (1.0 + (f / 200.0) ** 2)
        * 10.0 ** (a._resonance_db(f, [(500.0, 8.0, 0.5), (1500.0, 6.0, 0.5)]) / 20.0)
    )
    return a._frozen(f**-0.5), a._frozen(f**-1.0), a._frozen(speech)


def _background(domain: str, rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
    """Source: pink noise + factory hum; target: brown noise + babble; unit RMS."""
    n = t.size
    pink, brown, speech = _noise_gains(n, sr)
    if domain == "source":
        bg = a._colored_noise(rng, pink, n) + 0.5 * _tones(t, 50.0, [1.0, 0.6, 0.4, 0.3], rng)
    else:
        talkers = sum(
            a._colored_noise(rng, speech, n) * np.clip(0.5 + a._smooth_noise(rng, n, int(8 * t[-1]) + 1), 0.0, None)
            for _ in range(4)
        )
        bg = a._colored_noise(rng, brown, n) + 0.7 * talkers / a._rms(talkers)
    return bg / a._rms(bg)


def _events(rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
    """Normal transients: metallic clanks (free-bar modes) or air-release hisses."""
    n, out = t.size, np.zeros(t.size)
    for _ in range(int(rng.integers(1, 3))):
        level = 10.0 ** (rng.uniform(*EVENT_DB) / 20.0)
        if rng.random() < 0.5:  # clank
            tk = np.arange(int(0.4 * sr)) / sr
            f1 = rng.uniform(300.0, 1200.0)
            kernel = sum(
                np.sin(2 * np.pi * f1 * r * tk) * np.exp(-tk / (rng.uniform(0.05, 0.2) / r**0.5))
                for r in (1.0, 2.756, 5.404, 8.933)
            )
            count = int(rng.integers(1, 4))
            ev = a._pulse_train(n, sr, rng.uniform(0, t[-1] - 0.1, count), rng.uniform(0.5, 1.0, count), kernel)
            out += ev / (np.max(np.abs(ev)) + 1e-12) * level * 3.0
        else:  # hiss: high-passed noise, fast attack, slow decay
            f = a._freqs(n, sr)
            ev = a._colored_noise(rng, (f / 2000.0) ** 2 / (1.0 + (f / 2000.0) ** 2), n)
            start, decay = rng.uniform(0, 0.7 * t[-1]), rng.uniform(0.2, 0.6)
            env = np.where(
                t < start, 0.0, np.minimum((t - start) / 0.01, 1.0) * np.exp(-np.maximum(t - start, 0.0) / decay)
            )
            out += ev * env * level * 1.5
    return out


def render(spec: ClipSpec, cfg: SynthConfig, part: str = "mix") -> np.ndarray:
    """Render one family-b clip (or one ``part`` of it, :data:`asdlib.synth.corpus.PARTS`) as float64 samples in [-1, 1)."""
    p = profile(spec.machine)
    rng, anomaly, sr, n, t, attrs = a.clip_start(spec, cfg, ANOMALY_KINDS)
    x = _machine(p, float(attrs["rpm"]), float(attrs["load"]) / 100.0, rng, t, sr, anomaly, cfg.anomaly_strength)
    x = fft.irfft(fft.rfft(x) * _room_response(spec.machine, spec.domain, n, sr), n)
    x = x / a._rms(x)
    noise = _background(spec.domain, rng, t, sr) * 10.0 ** (-rng.uniform(*SNR_DB) / 20.0)
    mix = x + noise
    if spec.events:
        events = _events(rng, t, sr)
        mix, noise = mix + events, noise + events
    mic = _mic_gain(spec.machine, spec.domain, n, sr)
    mix = fft.irfft(fft.rfft(mix) * mic, n)
    out = a.select_part(part, mix, x, noise, mic)
    return np.clip(out * LEVEL * 10.0 ** (rng.uniform(-1.0, 1.0) / 20.0), -1.0, a.MAX_SAMPLE)


MODEL = SoundModel(
    "b", params, render, ANOMALY_KINDS, (("family", "b"), ("family_version", FAMILY_VERSION)), GLOBAL_KINDS
)


def default_config(**changes) -> SynthConfig:
    """The mini corpus options with family b's machines (``changes`` override any field)."""
    return a.family_config(DEV_MACHINES, EVAL_MACHINES, NO_ATTRIBUTE, **changes)
