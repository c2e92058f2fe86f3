"""asdlib.data.dataset: deterministic crops, padding, balanced and DDP-sharded sampling."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import torch
from conftest import make_utt
from torch.utils.data import DataLoader

from asdlib.data.dataset import BalancedSampler, ClipDataset, Example, collate


@pytest.fixture
def clips(write_wav):
    """Three clips of distinct lengths whose samples are all different (so a crop reveals its start)."""
    utts = []
    for i, n in enumerate((16000, 12000, 3000)):
        samples = np.linspace(-0.9, 0.9, n, dtype=np.float32)
        utts.append(make_utt("fan", "00", f"c{i}", path=write_wav(f"c{i}.wav", samples, subtype="FLOAT")))
    return utts


def _start(full: np.ndarray, crop: np.ndarray) -> int:
    start = int(np.argmin(np.abs(full - crop[0])))
    np.testing.assert_array_equal(full[start : start + crop.size], crop)
    return start


def test_crop_is_deterministic_per_seed_epoch_index(clips):
    full = ClipDataset(clips, 16000)[0].wav
    ds = ClipDataset(clips, 16000, labels=[3, 4, 5], machines=[0, 0, 1], crop_samples=4000, seed=1)
    ex = ds[0]
    assert (ex.index, ex.label, ex.machine, ex.wav.size) == (0, 3, 0, 4000)
    starts = {}
    for epoch in range(4):
        ds.set_epoch(epoch)
        starts[epoch] = _start(full, ds[0].wav)
        assert _start(full, ds[0].wav) == starts[epoch]  # same item twice: same crop
    assert len(set(starts.values())) > 1  # the crop changes with the epoch
    again = ClipDataset(clips, 16000, crop_samples=4000, seed=1)  # fresh object, e.g. a resumed run or a worker
    again.set_epoch(2)
    assert _start(full, again[0].wav) == starts[2]
    other_seed = ClipDataset(clips, 16000, crop_samples=4000, seed=2)
    other_starts = []
    for epoch in range(4):
        other_seed.set_epoch(epoch)
        other_starts.append(_start(full, other_seed[0].wav))
    assert other_starts != list(starts.values())


def test_crop_depends_on_index_not_call_order(clips):
    a = ClipDataset(clips, 16000, crop_samples=2000, seed=0)
    b = ClipDataset(clips, 16000, crop_samples=2000, seed=0)
    first = [a[i].wav for i in (0, 1)]
    second = [b[i].wav for i in (1, 0)][::-1]
    for x, y in zip(first, second):
        np.testing.assert_array_equal(x, y)


def test_short_clips_are_not_cropped(clips):
    ds = ClipDataset(clips, 16000, crop_samples=4000)
    assert ds[2].wav.size == 3000
    assert ClipDataset(clips, 16000)[0].wav.size == 16000
    assert ds[1].label == -1 and ds[1].machine == -1


def test_collate_pads_with_zeros():
    examples = [
        Example(4, np.array([1.0, 2.0, 3.0], np.float32), 1, 0),
        Example(7, np.array([5.0, 6.0, 7.0, 8.0, 9.0], np.float32), 2, 1),
    ]
    batch = collate(examples)
    assert batch.wavs.shape == (2, 5) and batch.wavs.dtype == torch.float32
    assert batch.wavs[0].tolist() == [1, 2, 3, 0, 0]
    assert batch.wavs[1].tolist() == [5, 6, 7, 8, 9]
    assert batch.lengths.tolist() == [3, 5]
    assert batch.labels.tolist() == [1, 2] and batch.machines.tolist() == [0, 1] and batch.indices.tolist() == [4, 7]


def _groups() -> list[str]:
    return ["a"] * 90 + ["b"] * 10


@pytest.mark.parametrize("power, share_b", [(0.0, 0.10), (0.5, 10**0.5 / (90**0.5 + 10**0.5)), (1.0, 0.5)])
def test_balancing_power(power, share_b):
    groups = _groups()
    sampler = BalancedSampler(groups, power=power, num_samples=20000, seed=3)
    drawn = list(sampler)
    assert len(drawn) == len(sampler) == 20000
    counts = collections.Counter(groups[i] for i in drawn)
    assert counts["b"] / 20000 == pytest.approx(share_b, abs=0.015)
    per_clip = collections.Counter(drawn)
    if power == 1.0:  # within group b every clip is equally likely: ~1000 draws each
        assert all(700 < per_clip[i] < 1300 for i in range(90, 100))


def test_order_depends_on_seed_and_epoch_only():
    s1, s2 = BalancedSampler(_groups(), seed=5), BalancedSampler(_groups(), seed=5)
    assert list(s1) == list(s2) and list(s1) == list(s1)
    e0 = list(s1)
    s1.set_epoch(1)
    assert list(s1) != e0
    s2.set_epoch(1)
    assert list(s1) == list(s2)
    assert list(BalancedSampler(_groups(), seed=6)) != e0
    assert len(e0) == 100  # default: one pass worth of clips


@pytest.mark.parametrize("num_samples", [100, 101, 103])
def test_rank_shards_interleave_the_global_order(num_samples):
    single = BalancedSampler(_groups(), num_samples=num_samples, seed=2)
    single.set_epoch(3)
    shards = []
    for rank in range(2):
        s = BalancedSampler(_groups(), num_samples=num_samples, seed=2, rank=rank, world_size=2)
        s.set_epoch(3)
        shards.append(list(s))
        assert len(shards[-1]) == len(s)
    assert len(shards[0]) == len(shards[1])  # unequal shards would make DDP ranks wait for each other forever
    order = list(single)
    interleaved = [i for pair in zip(*shards) for i in pair]
    assert interleaved == order[: len(interleaved)]
    assert len(order) - len(interleaved) < 2


@pytest.mark.parametrize("num_samples, batch_size", [(101, 8), (9, 2)])
def test_ddp_global_batches_equal_single_process_batches(num_samples, batch_size):
    """Per-rank batch B/W: the union of the ranks' i-th batches is the single process's i-th batch."""
    data = list(range(100))
    single = DataLoader(
        data, batch_size=batch_size, sampler=BalancedSampler(_groups(), num_samples=num_samples, seed=1), drop_last=True
    )
    ranks = [
        DataLoader(
            data,
            batch_size=batch_size // 2,
            drop_last=True,
            sampler=BalancedSampler(_groups(), num_samples=num_samples, seed=1, rank=r, world_size=2),
        )
        for r in range(2)
    ]
    assert len(ranks[0]) == len(ranks[1]) == len(single)
    for batch, b0, b1 in zip(single, *ranks):
        assert sorted(batch.tolist()) == sorted(b0.tolist() + b1.tolist())
