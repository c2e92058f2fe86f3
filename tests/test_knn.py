"""asdlib.backends.knn: cosine kNN with exactly known distances."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import make_utt

from asdlib.backends.knn import KnnBackend

C30, S30 = math.cos(math.pi / 6), 0.5


def _bank():
    """fan 00: source e1, e2; target e3. fan 01: source e1 only (sections must not mix)."""
    utts = [make_utt("fan", "00", "s1"), make_utt("fan", "00", "s2"), make_utt("fan", "00", "t1", "target"),
            make_utt("fan", "01", "s1")]
    emb = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0, 0, 1.0]])
    return utts, emb * np.array([[2.0], [0.5], [3.0], [1.0]])  # norms must not matter


def _queries():
    utts = [make_utt("fan", "00", "q1", "source", "unknown"), make_utt("fan", "00", "q2", "target", "unknown"),
            make_utt("fan", "01", "q3", "source", "unknown")]
    return utts, np.array([[C30, S30, 0], [0, 0.6, 0.8], [7.0, 0, 0]])


def test_k1_domain_wise_min():
    backend = KnnBackend(k=1).fit(*_bank())
    scores = backend.score(*_queries())
    # q1: source nearest e1 at 1 - cos30, target e3 at 1. q2: source e2 at 0.4, target e3 at 0.2.
    # q3 (section 01): only e3 of section 01, orthogonal: 1 (section 00's e1 would give 0).
    np.testing.assert_allclose(scores, [1 - C30, 0.2, 1.0], atol=1e-12)


def test_k2_averages_the_nearest_per_domain():
    scores = KnnBackend(k=2).fit(*_bank()).score(*_queries())
    # q1 source mean(1 - cos30, 0.5), target has one clip: 1. q2: source mean(0.4, 1) = 0.7, target 0.2.
    np.testing.assert_allclose(scores, [(1 - C30 + 0.5) / 2, 0.2, 1.0], atol=1e-12)


def test_pooled_bank_when_not_domain_wise():
    scores = KnnBackend(k=2, domain_wise=False).fit(*_bank()).score(*_queries())
    # q2 over all of section 00: nearest 0.2 (e3) and 0.4 (e2).
    np.testing.assert_allclose(scores, [(1 - C30 + 0.5) / 2, 0.3, 1.0], atol=1e-12)


def test_exclude_self_gives_the_distance_to_the_nearest_other_clip():
    angles = np.deg2rad([0.0, 10.0, 90.0])
    utts = [make_utt("pump", "02", f"n{i}") for i in range(3)]
    emb = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    backend = KnnBackend(k=1).fit(utts, emb)
    np.testing.assert_allclose(backend.score(utts, emb), 0.0, atol=1e-12)
    loo = backend.score(utts, emb, exclude_self=True)
    np.testing.assert_allclose(loo, [1 - math.cos(math.radians(10)), 1 - math.cos(math.radians(10)),
                                     1 - math.cos(math.radians(80))], atol=1e-12)
    k2 = KnnBackend(k=2).fit(utts, emb).score(utts, emb, exclude_self=True)
    np.testing.assert_allclose(k2[0], (1 - math.cos(math.radians(10)) + 1) / 2, atol=1e-12)
    # only the same utt-id is left out: another clip with the same embedding still matches at distance 0
    twin = [make_utt("pump", "02", "other")]
    assert backend.score(twin, emb[:1], exclude_self=True)[0] == pytest.approx(0.0, abs=1e-12)


def test_exclude_self_with_a_single_clip_domain_uses_the_other_domain():
    utts = [make_utt("pump", "02", "s"), make_utt("pump", "02", "t", "target")]
    emb = np.array([[1.0, 0.0], [0.6, 0.8]])
    loo = KnnBackend(k=1).fit(utts, emb).score(utts, emb, exclude_self=True)
    np.testing.assert_allclose(loo, [0.4, 0.4], atol=1e-12)


def test_unknown_machine_or_section():
    backend = KnnBackend().fit(*_bank())
    with pytest.raises(KeyError, match="machine 'fan' section '05'"):
        backend.score([make_utt("fan", "05", "q")], np.ones((1, 3)))
    with pytest.raises(KeyError, match="machine 'valve' section '00'"):
        backend.score([make_utt("valve", "00", "q")], np.ones((1, 3)))


def test_higher_means_more_anomalous_on_separable_data():
    rng = np.random.default_rng(0)
    centre = rng.standard_normal(16)
    normal = centre + 0.1 * rng.standard_normal((50, 16))
    test_normal = centre + 0.1 * rng.standard_normal((10, 16))
    test_anomaly = -centre + 0.1 * rng.standard_normal((10, 16))
    backend = KnnBackend(k=3).fit([make_utt("fan", "00", f"n{i}") for i in range(50)], normal)
    scores = backend.score([make_utt("fan", "00", f"t{i}") for i in range(20)], np.concatenate([test_normal, test_anomaly]))
    assert scores[:10].max() < scores[10:].min()
