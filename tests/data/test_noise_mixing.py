"""asdlib.data.noise: noise crops mixed into training crops at the drawn SNR, matched by machine and
section, deterministic per (seed, epoch, index), and bad noise sets named in one line."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import make_utt
from torch.utils.data import DataLoader

from asdlib.config import DataConfig
from asdlib.data.dataset import ClipDataset, collate
from asdlib.data.noise import NoiseAugment, mix_at_snr, noise_rng


def snr_db(clean: np.ndarray, noise: np.ndarray) -> float:
    return float(
        10 * np.log10(np.mean(np.square(clean, dtype=np.float64)) / np.mean(np.square(noise, dtype=np.float64)))
    )


@pytest.fixture
def clips(write_wav):
    """Quiet training clips of fan (00, 01) and valve (00); noise-only clips of fan 00 (a constant
    level each, so a mix reveals which one was added), fan 01 and pump 00."""
    rng = np.random.default_rng(0)
    train = [
        make_utt(m, s, f"t{i}", path=write_wav(f"t{i}.wav", rng.uniform(-0.1, 0.1, 16000).astype(np.float32)))
        for i, (m, s) in enumerate([("fan", "00"), ("fan", "00"), ("fan", "01"), ("valve", "00")])
    ]
    noise = [
        make_utt(m, s, f"n{i}", path=write_wav(f"n{i}.wav", rng.uniform(-0.5, 0.5, 6000).astype(np.float32)))
        for i, (m, s) in enumerate([("fan", "00"), ("fan", "00"), ("fan", "01"), ("pump", "00")])
    ]
    return train, noise


def dataset(train, noise, seed: int = 0, **data) -> ClipDataset:
    aug = None if noise is None else NoiseAugment(noise, train, DataConfig(**data))
    return ClipDataset(train, 16000, crop_samples=8000, seed=seed, noise=aug)


def test_mix_reaches_the_snr_and_stays_in_range():
    rng = np.random.default_rng(1)
    clean = rng.uniform(-0.9, 0.9, 4000).astype(np.float32)
    noise = rng.normal(0, 1.0, 4000).astype(np.float32)
    for snr in (-5.0, 0.0, 7.5, 20.0):
        mixed = mix_at_snr(clean, noise, snr)
        assert mixed.dtype == np.float32 and np.max(np.abs(mixed)) <= 1.0
        # mixed = a * clean + b * noise (a < 1 where the mix was scaled down): the SNR is b's doing
        (a, b), *_ = np.linalg.lstsq(np.stack([clean, noise], 1).astype(np.float64), mixed, rcond=None)
        assert snr_db(a * clean, b * noise) == pytest.approx(snr, abs=0.1)
    assert mix_at_snr(clean, np.zeros_like(noise), 0.0) is clean


def test_achieved_snr_equals_the_drawn_one(clips):
    train, noise = clips
    clean, noisy = dataset(train, None), dataset(train, noise, noise_db_range=[-3.0, 12.0])
    drawn = []
    for epoch in range(3):
        clean.set_epoch(epoch), noisy.set_epoch(epoch)
        for i, utt in enumerate(train):
            draw = noisy.noise.draw(utt, noise_rng(0, epoch, i))
            x, y = clean[i].wav, noisy[i].wav
            assert x.size == y.size == 8000  # the same crop, with noise on top
            assert snr_db(x, y - x) == pytest.approx(draw.snr_db, abs=0.1)
            drawn.append(draw.snr_db)
    assert min(drawn) >= -3.0 and max(drawn) <= 12.0 and len(set(drawn)) == len(drawn)


def test_apply_prob_zero_is_bit_identical_to_no_noise(clips):
    train, noise = clips
    loader = [
        DataLoader(ds, batch_size=4, collate_fn=collate)
        for ds in (dataset(train, None), dataset(train, noise, noise_apply_prob=0.0))
    ]
    for a, b in zip(*loader, strict=True):
        assert a.wavs.numpy().tobytes() == b.wavs.numpy().tobytes()


def test_apply_prob_applies_that_share(clips):
    train, noise = clips
    aug = NoiseAugment(noise, train, DataConfig(noise_apply_prob=0.3))
    applied = [aug.draw(train[0], noise_rng(0, e, 0)) is not None for e in range(2000)]
    assert np.mean(applied) == pytest.approx(0.3, abs=0.04)


def test_same_seed_same_batches_whatever_the_order(clips):
    """Fresh datasets (as each data-loader worker has) and any access order give the same batches."""
    train, noise = clips
    runs = []
    for _ in range(2):
        ds = dataset(train, noise, seed=5)
        ds.set_epoch(2)
        runs.append(next(iter(DataLoader(ds, batch_size=4, collate_fn=collate, num_workers=0))).wavs)
    assert runs[0].numpy().tobytes() == runs[1].numpy().tobytes()
    backwards = dataset(train, noise, seed=5)
    backwards.set_epoch(2)
    for i in reversed(range(len(train))):
        np.testing.assert_array_equal(backwards[i].wav, runs[0][i].numpy())
    other = dataset(train, noise, seed=6)
    other.set_epoch(2)
    assert not np.array_equal(other[0].wav, runs[0][0].numpy())


def test_noise_comes_from_the_clips_machine_and_section(clips, caplog):
    train, noise = clips
    with caplog.at_level(logging.INFO, logger="asdlib.data.noise"):
        aug = NoiseAugment(noise, train, DataConfig())
    for e in range(50):
        for i, utt in enumerate(train):
            picked = aug.draw(utt, noise_rng(0, e, i)).utt
            if utt.machine == "fan":  # its own section's noise exists
                assert (picked.machine, picked.section) == (utt.machine, utt.section)
    assert {u.machine for u in aug.pools[("valve", "00")]} == {"fan", "pump"}  # no valve noise: any
    assert caplog.text.count("valve section 00: none of its machine type") == 1
    assert "fan section" not in caplog.text


def test_fallbacks_and_the_error_without_one(clips, caplog):
    train, noise = clips
    fan02 = [make_utt("fan", "02", "t9", path=train[0].path)]
    with caplog.at_level(logging.INFO, logger="asdlib.data.noise"):
        aug = NoiseAugment(noise, fan02, DataConfig(noise_fallback="machine"))
    assert {u.section for u in aug.pools[("fan", "02")]} == {"00", "01"}
    assert "fan section 02: none of its section, using its machine type's" in caplog.text
    with pytest.raises(ValueError, match=r"no noise clips for fan section 02; .* set data.noise_fallback: machine$"):
        NoiseAugment(noise, fan02, DataConfig(noise_fallback="none"))
    with pytest.raises(ValueError, match=r"no noise clips for valve section 00; .* set data.noise_fallback: any$"):
        NoiseAugment(noise, train, DataConfig(noise_fallback="machine"))


def test_noise_clips_are_read_like_training_clips_and_cached(clips, write_wav):
    train, noise = clips
    stereo = make_utt("fan", "00", "s0", path=write_wav("s0.wav", np.full((6000, 2), [0.2, -0.4], np.float32)))
    aug = NoiseAugment([stereo], train[:1], DataConfig(channel=1))
    assert np.allclose(aug.load(stereo), -0.4, atol=1e-4)  # data.channel picks the noise's channel too
    with pytest.raises(ValueError, match="channels, expected mono"):
        NoiseAugment([stereo], train[:1], DataConfig()).load(stereo)
    aug = NoiseAugment(noise, train, DataConfig())
    assert aug.load(noise[0]) is aug.load(noise[0])
