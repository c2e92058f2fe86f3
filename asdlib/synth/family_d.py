"""Synthetic corpus family "d": inverter-driven machines with DCASE's hard domain shift.

Why: families a, b and c have target conditions that a trained embedding absorbs. Real DCASE data
does not: the target domain has ~1 % of the training clips, and its normal sound moves farther than
many anomalies do, so target normals outscore anomalies (the official 2025 baseline has AUC(target)
below 50 % on 3 of its 8 evaluation machines). Family d reproduces that, at DCASE's proportions:
990 source and 10 target training clips per section, 50 test clips per domain and label. It keeps
the mini corpus layout (a :class:`~asdlib.synth.corpus.SoundModel` plugged into
:func:`~asdlib.synth.corpus.generate_corpus`), and its sounds differ in kind from a, b and c:

* machines are driven by a frequency inverter: a motor's magnetic comb at multiples of twice the
  output frequency, the inverter's switching carrier with sidebands at ``fc +- 2 fo`` and
  ``2 fc +- fo``, a shaft-mounted cooling fan (broadband noise and its blade-pass tones) and the
  supply transformer's hum at twice the line frequency;
* attributes are ``hz`` (inverter output frequency) and ``load``;
* the target domain is another operating point and another place, and it varies from clip to clip:
  unseen output frequencies with a load-driven wander of several per cent, the carrier switched to
  another frequency, another microphone, a room whose reverberation (RT60 0.2-0.8 s) and distance
  change per clip, and a neighbouring machine whose pitch and level change per clip. Ten target
  clips cannot cover that: a target normal lies far from all of them;
* anomalies are subtle: sparse arcing crackle, laminations that buzz, a bearing tone, a lost phase
  (odd sidebands of the carrier), a damaged fan blade (sidebands of its blade-pass tone); all scaled
  by ``anomaly_strength``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import fft, signal

from asdlib.synth import corpus as a
from asdlib.synth.corpus import AttrParam, ClipSpec, SoundModel, SynthConfig

FAMILY_VERSION = 1  # bump whenever family d's audio changes (recorded in .done)
ANOMALY_KINDS = ("arcing", "lamination", "bearing", "phase_loss", "fan_blade")
GLOBAL_KINDS = ("arcing",)  # no region: broadband crackle throughout the clip
# Official DCASE machine types that families a, b and c do not use.
DEV_MACHINES = ("pump", "shaker", "grinder")
EVAL_MACHINES = ("Polisher", "ScrewFeeder", "BandSealer")
NO_ATTRIBUTE = ("shaker", "BandSealer")

# Calibration (see tests/synth/test_synth_family_d.py).
HZ_JITTER = {"source": 0.002, "target": 0.04}  # relative spread of the output frequency per clip
LEVEL_JITTER_DB = 0.5  # per-component level spread
SNR_DB = {"source": (18.0, 24.0), "target": (6.0, 16.0)}  # machine to background (neighbour + room noise)
RT60 = {"source": (0.15, 0.2), "target": (0.2, 0.8)}  # s, drawn per clip
LEVEL = 0.05  # full-scale RMS of the mix
ARC_LEVEL = 0.12  # crackle RMS relative to the machine
LAMINATION_DB = 5.0  # rise of the hum harmonics
BEARING_LEVEL = 0.06  # bearing tone RMS relative to the machine
PHASE_LOSS_LEVEL = 0.12  # odd carrier sidebands relative to the carrier
FAN_SIDEBAND = 0.25  # fan blade-pass sidebands relative to the blade-pass tone


@dataclass(frozen=True)
class ProfileD:
    """A family-d machine's fixed identity, derived from its name."""

    hz: tuple[int, int, int]  # source output frequencies
    target_hz: tuple[int, int]
    carrier: tuple[float, float]  # switching frequency: source, target
    comb: tuple[float, ...]  # magnetic comb amplitudes at k * 2 fo
    fan_blades: int
    fan_noise: tuple[tuple[float, float, float], ...]  # resonances of the fan noise (Hz, dB, octaves)
    line: float  # 50 or 60 Hz

    def params(self) -> tuple[AttrParam, ...]:
        return (
            AttrParam("hz", "speed", tuple(map(str, self.hz)), tuple(map(str, self.target_hz))),
            AttrParam("load", "load", ("light", "rated"), ("overload",)),
        )


@functools.lru_cache(maxsize=64)
def profile(name: str) -> ProfileD:
    """Derive a machine's identity from its name (stable across runs)."""
    rng = a._name_rng("profile_d", name)
    base = int(rng.choice([30, 35, 40]))
    fc = float(rng.uniform(2000.0, 3500.0))
    return ProfileD(
        hz=(base, base + 5, base + 10),
        target_hz=(base - 10, base + 20),
        carrier=(fc, fc * float(rng.uniform(1.4, 1.7))),
        comb=tuple(float(v) for v in rng.uniform(0.1, 1.0, 12) / np.arange(1, 13) ** 0.5),
        fan_blades=int(rng.integers(5, 12)),
        fan_noise=tuple(
            (float(np.exp(rng.uniform(np.log(300.0), np.log(4000.0)))), float(rng.uniform(4.0, 10.0)), 0.5)
            for _ in range(3)
        ),
        line=float(rng.choice([50.0, 60.0])),
    )


def params(machine: str) -> tuple[AttrParam, ...]:
    return profile(machine).params()


def _sine(t: np.ndarray, f: float | np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A sinusoid of (possibly time-varying) frequency ``f`` with a random phase."""
    phase = 2 * np.pi * np.cumsum(np.broadcast_to(f, t.shape)) * (t[1] - t[0])
    return np.sin(phase + rng.uniform(0, 2 * np.pi))


def _machine(
    p: ProfileD,
    domain: str,
    hz: float,
    load: str,
    rng: np.random.Generator,
    t: np.ndarray,
    sr: int,
    anomaly: str,
    s: float,
) -> np.ndarray:
    n = t.size
    jit = lambda: 10.0 ** (LEVEL_JITTER_DB * rng.standard_normal() / 20.0)  # noqa: E731
    # output frequency: fixed per clip in the source domain, wandering with the load in the target domain
    fo = hz * (1.0 + HZ_JITTER[domain] * rng.standard_normal())
    fo = fo * (1.0 + 0.5 * HZ_JITTER[domain] * a._smooth_noise(rng, n, 4))
    load_gain = {"light": 0.7, "rated": 1.0, "overload": 1.5}[load]
    magnetic = sum(
        amp * jit() * _sine(t, 2 * (k + 1) * fo, rng) for k, amp in enumerate(p.comb) if 2 * (k + 1) * hz < sr / 2
    )
    fc = p.carrier[0 if domain == "source" else 1]
    carrier = sum(
        g * jit() * _sine(t, f, rng)
        for f, g in ((fc - 2 * fo, 0.5), (fc + 2 * fo, 0.5), (2 * fc - fo, 0.3), (2 * fc + fo, 0.3), (fc, 0.15))
        if np.max(f) < sr / 2
    )
    if anomaly == "phase_loss":  # odd sidebands: the carrier's pattern loses its symmetry
        a.mark_region(0.0, t[-1], fc - 3 * np.max(fo) - 20.0, fc + 3 * np.max(fo) + 20.0, t, sr)
        carrier = carrier + PHASE_LOSS_LEVEL * s * sum(
            _sine(t, fc + m * fo, rng) for m in (-3, -1, 1, 3) if fc + m * hz < sr / 2
        )
    fan_rot = fo / 2.0  # a 4-pole motor: shaft at fo / 2
    bpf = fan_rot * p.fan_blades
    fan = a._colored_noise(rng, 10.0 ** (a._resonance_db(a._freqs(n, sr), p.fan_noise) / 20.0), n)
    fan = fan + 0.4 * _sine(t, bpf, rng) + 0.2 * _sine(t, 2 * bpf, rng)
    if anomaly == "fan_blade":
        a.mark_region(0.0, t[-1], np.min(bpf - fan_rot) / 1.05, np.max(bpf + fan_rot) * 1.05, t, sr)
        fan = fan + FAN_SIDEBAND * s * 0.4 * (_sine(t, bpf - fan_rot, rng) + _sine(t, bpf + fan_rot, rng))
    hum_amps = [0.3, 0.12, 0.05]
    if anomaly == "lamination":
        hum_amps = [v * 10.0 ** (LAMINATION_DB * s / 20.0) for v in hum_amps] + [0.05 * s]
        a.mark_region(0.0, t[-1], 0.0, 8 * p.line * 1.1, t, sr)
    hum = sum(v * _sine(t, 2 * (k + 1) * p.line, rng) for k, v in enumerate(hum_amps))
    x = load_gain * magnetic / a._rms(magnetic) + 0.5 * carrier / a._rms(carrier) + 0.6 * fan / a._rms(fan) + hum
    ref = a._rms(x)
    if anomaly == "arcing":  # a few short broadband crackles per second
        times = rng.uniform(0, t[-1], int(rng.uniform(6, 16) * t[-1]))
        kernel = rng.standard_normal(int(0.002 * sr)) * np.exp(-np.arange(int(0.002 * sr)) / (0.0004 * sr))
        crackle = a._pulse_train(n, sr, times, rng.uniform(0.5, 1.0, times.size), kernel)
        x = x + crackle / a._rms(crackle) * ARC_LEVEL * s * ref
    elif anomaly == "bearing":  # a weak high tone, modulated once per revolution
        fb = float(rng.uniform(3000.0, 5000.0))
        a.mark_region(0.0, t[-1], fb - 2 * np.max(fan_rot), fb + 2 * np.max(fan_rot), t, sr)
        tone = _sine(t, fb, rng) * (1.0 + 0.5 * _sine(t, fan_rot, rng))
        x = x + tone / a._rms(tone) * BEARING_LEVEL * s * ref
    return x


def _room(rng: np.random.Generator, domain: str, n: int, sr: int) -> np.ndarray:
    """rfft of a room impulse response drawn per clip (RT60 and direct-to-reverberant ratio)."""
    rt60 = rng.uniform(*RT60[domain])
    drr_db = rng.uniform(6.0, 10.0) if domain == "source" else rng.uniform(-3.0, 6.0)
    length = min(int(1.2 * rt60 * sr), n)
    tt = np.arange(length) / sr
    tail = rng.standard_normal(length) * np.exp(-6.91 * tt / rt60)
    tail[: int(0.003 * sr)] = 0.0
    tail *= 10.0 ** (-drr_db / 20.0) / np.sqrt(np.sum(tail**2))
    tail[0] = 1.0
    return fft.rfft(tail, n)


@functools.lru_cache(maxsize=64)
def _mic(machine: str, domain: str, n: int, sr: int) -> np.ndarray:
    """Microphone response: flat-ish (source) or a cheap capsule with a presence peak (target)."""
    f = a._freqs(n, sr)
    rng = a._name_rng("mic_d", machine, domain)
    if domain == "source":
        return a._frozen(10.0 ** (a._eq_db(f, rng, 2, 1.5) / 20.0))
    hp = rng.uniform(200.0, 400.0)
    gain = (f / hp) ** 2 / np.sqrt(1.0 + (f / hp) ** 4)
    return a._frozen(gain * 10.0 ** (a._eq_db(f, rng, 4, 7.0) / 20.0))


def _background(domain: str, rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
    """Source: a quiet hall (pink noise). Target: a neighbouring machine whose pitch and timbre
    change per clip, over brown noise. Unit RMS."""
    n, f = t.size, a._freqs(t.size, sr)
    noise = a._colored_noise(
        rng, 1.0 / np.sqrt(np.maximum(f, 20.0)) if domain == "source" else 1.0 / np.maximum(f, 20.0), n
    )
    if domain == "source":
        return noise
    f0 = rng.uniform(80.0, 300.0)
    amps = rng.uniform(0.2, 1.0, 15) / np.arange(1, 16)
    neighbour = sum(v * _sine(t, (k + 1) * f0, rng) for k, v in enumerate(amps) if (k + 1) * f0 < sr / 2)
    bg = noise + rng.uniform(0.5, 2.0) * neighbour / a._rms(neighbour)
    return bg / a._rms(bg)


def render(spec: ClipSpec, cfg: SynthConfig, part: str = "mix") -> np.ndarray:
    """Render one family-d clip (or one ``part`` of it, :data:`asdlib.synth.corpus.PARTS`) as float64 samples in [-1, 1)."""
    p = profile(spec.machine)
    rng, anomaly, sr, n, t, attrs = a.clip_start(spec, cfg, ANOMALY_KINDS)
    x = _machine(p, spec.domain, float(attrs["hz"]), attrs["load"], rng, t, sr, anomaly, cfg.anomaly_strength)
    x = fft.irfft(fft.rfft(x / a._rms(x)) * _room(rng, spec.domain, n, sr), n)
    x = x / a._rms(x)
    noise = _background(spec.domain, rng, t, sr) * 10.0 ** (-rng.uniform(*SNR_DB[spec.domain]) / 20.0)
    mix = x + noise
    if spec.events and rng.random() < 0.5:  # a forklift passing: band-passed noise swelling and fading
        sos = signal.butter(2, [300.0, 2500.0], btype="bandpass", fs=sr, output="sos")
        pass_by = signal.sosfilt(sos, rng.standard_normal(n)) * np.hanning(n) ** 2
        pass_by = pass_by / a._rms(pass_by) * 10.0 ** (rng.uniform(-12.0, -4.0) / 20.0)
        mix, noise = mix + pass_by, noise + pass_by
    mic = _mic(spec.machine, spec.domain, n, sr)
    mix = fft.irfft(fft.rfft(mix) * mic, n)
    return a.at_level(mix, LEVEL, rng, a.select_part(part, mix, x, noise, mic))


MODEL = SoundModel(
    "d", params, render, ANOMALY_KINDS, (("family", "d"), ("family_version", FAMILY_VERSION)), GLOBAL_KINDS
)


def default_config(**changes) -> SynthConfig:
    """Family d's machines at DCASE's proportions (``changes`` override any field)."""
    return a.family_config(DEV_MACHINES, EVAL_MACHINES, NO_ATTRIBUTE, **(a.DCASE_PROPORTIONS | changes))
