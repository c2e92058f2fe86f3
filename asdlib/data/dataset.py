"""Torch datasets and samplers for training and extraction.

Randomness (crops, sampling order) is derived from (seed, epoch, index) rather than from a
global stream, so a resumed run, a run with more data-loader workers, or a DDP run sees
exactly the same examples as an uninterrupted single-process run.
"""

from __future__ import annotations

import collections
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from asdlib.data.audio import load_utt
from asdlib.data.datadir import Utt
from asdlib.data.noise import NoiseAugment, noise_rng


@dataclass
class Example:
    index: int
    wav: np.ndarray
    label: int
    machine: int


class ClipDataset(Dataset):
    """Clips of a data dir; optionally a random crop of ``crop_samples`` per epoch, with ``noise``
    added (training only: :class:`asdlib.data.noise.NoiseAugment`)."""

    def __init__(
        self,
        utts: Sequence[Utt],
        sample_rate: int,
        labels: Sequence[int] | None = None,
        machines: Sequence[int] | None = None,
        crop_samples: int = 0,
        seed: int = 0,
        min_samples: int = 400,
        channel: int | str | None = None,
        resample: bool = False,
        noise: NoiseAugment | None = None,
    ) -> None:
        self.utts = list(utts)
        self.sample_rate = sample_rate
        self.labels = list(labels) if labels is not None else [-1] * len(self.utts)
        self.machines = list(machines) if machines is not None else [-1] * len(self.utts)
        self.crop_samples = crop_samples
        self.seed = seed
        self.min_samples = min_samples
        self.channel = channel
        self.resample = resample
        self.noise = noise
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.utts)

    def __getitem__(self, index: int) -> Example:
        utt = self.utts[index]
        wav = load_utt(utt, self.sample_rate, self.min_samples, self.channel, self.resample)
        if self.crop_samples and wav.size > self.crop_samples:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            start = int(rng.integers(0, wav.size - self.crop_samples + 1))
            wav = wav[start : start + self.crop_samples]
        if self.noise is not None:
            wav = self.noise(wav, utt, noise_rng(self.seed, self.epoch, index))
        return Example(index, wav, self.labels[index], self.machines[index])


@dataclass
class Batch:
    wavs: torch.Tensor  # (B, T) zero-padded
    lengths: torch.Tensor  # (B,) samples
    labels: torch.Tensor  # (B,)
    machines: torch.Tensor  # (B,)
    indices: torch.Tensor  # (B,) dataset indices

    def to(self, device: torch.device) -> Batch:
        return Batch(*(t.to(device) for t in (self.wavs, self.lengths, self.labels, self.machines, self.indices)))


def collate(examples: Sequence[Example]) -> Batch:
    """Zero-pad waveforms to the longest clip of the batch."""
    lengths = torch.tensor([e.wav.size for e in examples], dtype=torch.long)
    wavs = torch.zeros(len(examples), int(lengths.max()))
    for i, e in enumerate(examples):
        wavs[i, : e.wav.size] = torch.from_numpy(e.wav)
    return Batch(
        wavs,
        lengths,
        torch.tensor([e.label for e in examples]),
        torch.tensor([e.machine for e in examples]),
        torch.tensor([e.index for e in examples]),
    )


class BalancedSampler(Sampler[int]):
    """Weighted sampling with replacement that balances groups (e.g. machine x domain).

    Each clip is drawn with probability proportional to ``count(group) ** -power``: power 0 is
    uniform, 1 gives every group the same total weight (target clips are ~1 % of DCASE training
    data, so full balancing repeats them ~50x per epoch; the default 0.5 is a compromise).
    With ``world_size`` > 1 each rank takes an interleaved share of the same global order, so
    DDP sees the same global batches as a single process; the last ``num_samples % world_size``
    draws are dropped so that every rank runs the same number of steps (else DDP would hang).
    """

    def __init__(
        self,
        groups: Sequence[Hashable],
        power: float = 0.5,
        num_samples: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        counts = collections.Counter(groups)
        weights = np.array([counts[g] ** -power for g in groups], dtype=np.float64)
        self.probs = weights / weights.sum()
        self.num_samples = num_samples or len(groups)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_order(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch, 7])
        return rng.choice(len(self.probs), size=self.num_samples, replace=True, p=self.probs)

    def __iter__(self) -> Iterator[int]:
        return iter(self.global_order()[self.rank :: self.world_size][: len(self)].tolist())

    def __len__(self) -> int:
        return self.num_samples // self.world_size
