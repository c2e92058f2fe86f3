"""Noise augmentation of training crops: a noise-only clip added at a random SNR (docs/method.md §1.8).

DCASE 2025 ships noise-only recordings per machine type; mixing them into the (clean or ordinary)
training clips at several SNRs teaches the model to ignore the factory background, the same idea as
ESPnet's ``noise_scp``/``noise_apply_prob``/``noise_db_range`` for speech. The noise clip is drawn
from the training clip's machine and section, falling back (``data.noise_fallback``) to its machine
type and then to any machine, so that every pick of a clip is decided at construction and logged once.

Every draw (apply or not, which clip, offset, SNR) comes from a generator seeded by (seed, epoch,
clip index) on a stream of its own, so the result does not depend on data-loader workers and the
random crop of a clip is the same with and without noise. Noise clips are decoded on demand
through :func:`asdlib.data.audio.load_wav` with the training clips' settings; each worker keeps at
most :data:`CACHE_CLIPS` of them decoded, so a large noise set never sits in memory whole.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from asdlib.config import DataConfig
from asdlib.data.audio import load_utt
from asdlib.data.datadir import Utt

log = logging.getLogger(__name__)

#: decoded noise clips kept per process (10 s at 16 kHz: 640 kB each)
CACHE_CLIPS = 32
#: the generator stream of the noise draws, beside the crop's (seed, epoch, index)
NOISE_STREAM = 1


@dataclass(frozen=True)
class NoiseDraw:
    """One decision for one crop: which noise clip, from which sample on (looped), at which SNR."""

    utt: Utt
    offset: int
    snr_db: float


def noise_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of clip ``index``'s noise draws in ``epoch``: a stream apart from its crop's."""
    return np.random.default_rng([seed, epoch, index, NOISE_STREAM])


def mix_at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``clean`` plus ``noise`` scaled so that power(clean) / power(noise) is ``snr_db`` over the crop.

    A mix that would leave [-1, 1] is scaled down as a whole (the SNR stays); a silent noise crop
    leaves the clip as it is (no scale reaches the SNR)."""
    signal = np.mean(np.square(clean, dtype=np.float64))
    power = np.mean(np.square(noise, dtype=np.float64))
    if power == 0.0:
        return clean
    mixed = clean + noise * np.sqrt(signal / (power * 10.0 ** (snr_db / 10.0)))
    peak = np.max(np.abs(mixed))
    if peak > 1.0:
        mixed /= peak
    return mixed.astype(np.float32)


def _pools(noise: Sequence[Utt], targets: Sequence[tuple[str, str]], fallback: str) -> dict[tuple[str, str], list[Utt]]:
    """The noise clips each (machine, section) of ``targets`` draws from; logs each fallback once."""
    by_section: dict[tuple[str, str], list[Utt]] = collections.defaultdict(list)
    by_machine: dict[str, list[Utt]] = collections.defaultdict(list)
    for u in noise:
        by_section[(u.machine, u.section)].append(u)
        by_machine[u.machine].append(u)
    pools = {}
    for machine, section in sorted(set(targets)):
        if (machine, section) in by_section:
            pools[(machine, section)] = by_section[(machine, section)]
        elif machine in by_machine and fallback in ("machine", "any"):
            pools[(machine, section)] = by_machine[machine]
            log.info("noise for %s section %s: none of its section, using its machine type's", machine, section)
        elif fallback == "any":
            pools[(machine, section)] = list(noise)
            log.info("noise for %s section %s: none of its machine type, using every noise clip", machine, section)
        else:
            wider = "machine" if machine in by_machine else "any"
            raise ValueError(
                f"data.noise_sets has no noise clips for {machine} section {section}; add them to a noise set "
                f"or set data.noise_fallback: {wider}"
            )
    return pools


class NoiseAugment:
    """Adds a noise crop to training crops (``data.noise_*``); one per training dataset."""

    def __init__(self, noise: Sequence[Utt], train: Sequence[Utt], data: DataConfig) -> None:
        self.pools = _pools(noise, [(u.machine, u.section) for u in train], data.noise_fallback)
        self.apply_prob = data.noise_apply_prob
        self.lo, self.hi = data.noise_db_range
        self.data = data
        self.cache: collections.OrderedDict[Utt, np.ndarray] = collections.OrderedDict()

    def draw(self, utt: Utt, rng: np.random.Generator) -> NoiseDraw | None:
        """The noise decision for a crop of ``utt`` (None: left clean), in a fixed order of draws."""
        if rng.random() >= self.apply_prob:
            return None
        pool = self.pools[(utt.machine, utt.section)]
        noise = pool[int(rng.integers(len(pool)))]
        return NoiseDraw(noise, int(rng.integers(self.load(noise).size)), float(rng.uniform(self.lo, self.hi)))

    def load(self, utt: Utt) -> np.ndarray:
        """A noise clip decoded like the training clips, through a bounded cache (LRU)."""
        wav = self.cache.pop(utt, None)
        if wav is None:
            wav = load_utt(
                utt,
                self.data.sample_rate,
                int(self.data.min_seconds * self.data.sample_rate),
                self.data.channel,
                self.data.resample,
                skip_hint="remove it from its noise set's data dir (stage 1) or that set from data.noise_sets",
            )
        self.cache[utt] = wav
        if len(self.cache) > CACHE_CLIPS:
            self.cache.popitem(last=False)
        return wav

    def __call__(self, wav: np.ndarray, utt: Utt, rng: np.random.Generator) -> np.ndarray:
        """Crop ``wav`` of ``utt`` with its noise (if ``rng`` draws one) added; ``rng``: :func:`noise_rng`."""
        draw = self.draw(utt, rng)
        if draw is None:
            return wav
        noise = self.load(draw.utt)
        return mix_at_snr(wav, noise[(draw.offset + np.arange(wav.size)) % noise.size], draw.snr_db)
