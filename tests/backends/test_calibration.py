"""Thresholds per domain (asdlib.backends.calibration): the conformal bound, and a target domain of few
clips whose normals a pooled threshold flags far more often than promised."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_utt

from asdlib.backends.bank import make_backend
from asdlib.backends.calibration import CalibrationError, calibrate, conformal_bound, threshold_at
from asdlib.config import BackendConfig

D = 8


def test_conformal_bound_and_rank() -> None:
    assert conformal_bound(10, 0.05) == pytest.approx(1 / 11)  # too few clips for 5 %: the maximum
    assert conformal_bound(990, 0.05) <= 0.05
    assert threshold_at(np.arange(10.0), 0.05) == 9.0
    assert threshold_at(np.arange(100.0), 0.05) == 95.0  # the ceil(101 * 0.95) = 96th smallest


def shifted_section(rng: np.random.Generator, n_source: int, n_target: int) -> tuple[list, np.ndarray]:
    """Source normals close around one direction; a few target normals around another, spread wider."""
    utts = [make_utt("fan", "00", f"s{i:04d}") for i in range(n_source)]
    utts += [make_utt("fan", "00", f"t{i:04d}", domain="target") for i in range(n_target)]
    return utts, np.concatenate([source_clips(rng, n_source), target_clips(rng, n_target)])


def source_clips(rng: np.random.Generator, n: int) -> np.ndarray:
    return (np.eye(D)[0] * 3 + rng.normal(0, 0.5, (n, D))).astype(np.float32)


def target_clips(rng: np.random.Generator, n: int) -> np.ndarray:
    return (np.eye(D)[1] * 3 + rng.normal(0, 1.5, (n, D))).astype(np.float32)


def test_target_threshold_keeps_its_promise_where_the_pooled_one_breaks_it() -> None:
    rng = np.random.default_rng(0)
    utts, x = shifted_section(rng, 300, 12)
    cfg = BackendConfig("knn")
    entry = calibrate(utts, x, cfg, [D], fpr=0.05, folds=4)["fan"]["00"]
    source, target = entry["domains"]["source"], entry["domains"]["target"]
    assert target["n_heldout"] == 12 and target["bound"] == pytest.approx(1 / 13)
    assert entry["threshold"] == max(source["threshold"], target["threshold"]) == target["threshold"]
    assert entry["bound"] == target["bound"]

    backend = make_backend(cfg, [D]).fit(utts, x)
    fresh = [make_utt("fan", "00", f"n{i:04d}", domain="target") for i in range(400)]
    scores = backend.score(fresh, target_clips(rng, 400))
    pooled = threshold_at(np.concatenate([backend.score(utts, x, exclude_self=True)]), 0.05)
    assert np.mean(scores > pooled) > 0.3  # one quantile for both domains: most target normals alarm
    assert np.mean(scores > entry["threshold"]) <= target["bound"] + 0.05  # binomial slack on 400 clips


def test_one_domain_is_the_old_calibration_and_too_few_clips_is_an_error() -> None:
    rng = np.random.default_rng(1)
    utts, x = shifted_section(rng, 100, 0)
    entry = calibrate(utts, x, BackendConfig("knn"), [D], fpr=0.1, folds=5)["fan"]["00"]
    assert list(entry["domains"]) == ["source"]
    assert entry["threshold"] == entry["domains"]["source"]["threshold"]
    assert entry["measured_fpr"] == entry["domains"]["source"]["measured_fpr"]
    with pytest.raises(CalibrationError, match="fan/00: 1 training clip"):
        calibrate(utts[:1], x[:1], BackendConfig("knn"), [D], fpr=0.1)
