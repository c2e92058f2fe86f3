"""asdlib.backends.knn: cosine kNN with exactly known distances (float32: to 1e-6), a float64 reference,
and scores that do not depend on the job split."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import make_utt

from asdlib.backends import knn
from asdlib.backends.knn import BackendError, KnnBackend

C30, S30 = math.cos(math.pi / 6), 0.5
ATOL = 1e-6  # distances are float32 products


def _bank():
    """fan 00: source e1, e2; target e3. fan 01: source e1 only (sections must not mix)."""
    utts = [
        make_utt("fan", "00", "s1"),
        make_utt("fan", "00", "s2"),
        make_utt("fan", "00", "t1", "target"),
        make_utt("fan", "01", "s1"),
    ]
    emb = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0, 0, 1.0]])
    return utts, emb * np.array([[2.0], [0.5], [3.0], [1.0]])  # norms must not matter


def _queries():
    utts = [
        make_utt("fan", "00", "q1", "source", "unknown"),
        make_utt("fan", "00", "q2", "target", "unknown"),
        make_utt("fan", "01", "q3", "source", "unknown"),
    ]
    return utts, np.array([[C30, S30, 0], [0, 0.6, 0.8], [7.0, 0, 0]])


def test_k1_domain_wise_min():
    backend = KnnBackend(k=1).fit(*_bank())
    scores = backend.score(*_queries())
    # q1: source nearest e1 at 1 - cos30, target e3 at 1. q2: source e2 at 0.4, target e3 at 0.2.
    # q3 (section 01): only e3 of section 01, orthogonal: 1 (section 00's e1 would give 0).
    np.testing.assert_allclose(scores, [1 - C30, 0.2, 1.0], atol=ATOL)


def test_k2_averages_the_nearest_per_domain():
    scores = KnnBackend(k=2).fit(*_bank()).score(*_queries())
    # q1 source mean(1 - cos30, 0.5), target has one clip: 1. q2: source mean(0.4, 1) = 0.7, target 0.2.
    np.testing.assert_allclose(scores, [(1 - C30 + 0.5) / 2, 0.2, 1.0], atol=ATOL)


def test_pooled_bank_when_not_domain_wise():
    scores = KnnBackend(k=2, domain_wise=False).fit(*_bank()).score(*_queries())
    # q2 over all of section 00: nearest 0.2 (e3) and 0.4 (e2).
    np.testing.assert_allclose(scores, [(1 - C30 + 0.5) / 2, 0.3, 1.0], atol=ATOL)


def test_exclude_self_gives_the_distance_to_the_nearest_other_clip():
    angles = np.deg2rad([0.0, 10.0, 90.0])
    utts = [make_utt("pump", "02", f"n{i}") for i in range(3)]
    emb = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    backend = KnnBackend(k=1).fit(utts, emb)
    np.testing.assert_allclose(backend.score(utts, emb), 0.0, atol=ATOL)
    loo = backend.score(utts, emb, exclude_self=True)
    np.testing.assert_allclose(
        loo, [1 - math.cos(math.radians(10)), 1 - math.cos(math.radians(10)), 1 - math.cos(math.radians(80))], atol=ATOL
    )
    k2 = KnnBackend(k=2).fit(utts, emb).score(utts, emb, exclude_self=True)
    np.testing.assert_allclose(k2[0], (1 - math.cos(math.radians(10)) + 1) / 2, atol=ATOL)
    # only the same utt-id is left out: another clip with the same embedding still matches at distance 0
    twin = [make_utt("pump", "02", "other")]
    assert backend.score(twin, emb[:1], exclude_self=True)[0] == pytest.approx(0.0, abs=ATOL)


def test_exclude_self_with_a_single_clip_domain_uses_the_other_domain():
    utts = [make_utt("pump", "02", "s"), make_utt("pump", "02", "t", "target")]
    emb = np.array([[1.0, 0.0], [0.6, 0.8]])
    loo = KnnBackend(k=1).fit(utts, emb).score(utts, emb, exclude_self=True)
    np.testing.assert_allclose(loo, [0.4, 0.4], atol=ATOL)


def test_unknown_machine_or_section():
    backend = KnnBackend().fit(*_bank())
    with pytest.raises(BackendError, match="machine 'fan' section '05' .*memory banks hold fan/00, fan/01;"):
        backend.score([make_utt("fan", "05", "q")], np.ones((1, 3)))
    with pytest.raises(BackendError, match="machine 'valve' section '00'"):
        backend.score([make_utt("valve", "00", "q")], np.ones((1, 3)))


def test_higher_means_more_anomalous_on_separable_data():
    rng = np.random.default_rng(0)
    centre = rng.standard_normal(16)
    normal = centre + 0.1 * rng.standard_normal((50, 16))
    test_normal = centre + 0.1 * rng.standard_normal((10, 16))
    test_anomaly = -centre + 0.1 * rng.standard_normal((10, 16))
    backend = KnnBackend(k=3).fit([make_utt("fan", "00", f"n{i}") for i in range(50)], normal)
    scores = backend.score(
        [make_utt("fan", "00", f"t{i}") for i in range(20)], np.concatenate([test_normal, test_anomaly])
    )
    assert scores[:10].max() < scores[10:].min()


def _random_set(n_bank: int = 600, n_query: int = 700, dim: int = 48, seed: int = 0):
    """Two sections with source and target banks, and queries of both sections (more than one query block)."""
    rng = np.random.default_rng(seed)
    bank = [
        make_utt("fan", s, f"b{i}", "target" if i % 10 == 0 else "source")
        for s in ("00", "01")
        for i in range(n_bank // 2)
    ]
    query = [make_utt("fan", "00" if i % 3 else "01", f"q{i}", "source", "unknown") for i in range(n_query)]
    return bank, rng.standard_normal((n_bank, dim)), query, rng.standard_normal((n_query, dim))


def _split_scores(backend, utts, emb, nj: int, **kw) -> np.ndarray:
    """Scores computed in nj interleaved jobs, as utils/split_scp deals the keys, put back in order."""
    out = np.empty(len(utts))
    for j in range(nj):
        idx = np.arange(j, len(utts), nj)
        out[idx] = backend.score([utts[i] for i in idx], emb[idx], **kw)
    return out


@pytest.mark.parametrize("exclude_self", [False, True])
def test_scores_are_bit_identical_for_nj_1_2_3(exclude_self):
    bank, bank_emb, query, query_emb = _random_set()
    utts, emb = (bank, bank_emb) if exclude_self else (query, query_emb)
    backend = KnnBackend(k=3).fit(bank, bank_emb)
    one = backend.score(utts, emb, exclude_self=exclude_self)
    for nj in (2, 3):
        assert np.array_equal(_split_scores(backend, utts, emb, nj, exclude_self=exclude_self), one)
    # a clip scored alone, or with its neighbours reversed, gets the same bits too
    assert backend.score(utts[5:6], emb[5:6], exclude_self=exclude_self)[0] == one[5]
    assert np.array_equal(backend.score(utts[::-1], emb[::-1], exclude_self=exclude_self), one[::-1])


@pytest.mark.parametrize("k, domain_wise", [(1, True), (4, True), (2, False)])
def test_matches_a_float64_reference(k, domain_wise, monkeypatch):
    monkeypatch.setattr(knn, "BANK_CHUNK", 64)  # several bank chunks: chunk-wise top-k, then the merge
    bank, bank_emb, query, query_emb = _random_set()
    scores = KnnBackend(k=k, domain_wise=domain_wise).fit(bank, bank_emb).score(query, query_emb)
    b, q = knn.normalize(bank_emb), knn.normalize(query_emb)
    ref = []
    for u, x in zip(query, q):
        per_domain = []
        for dom in ("source", "target") if domain_wise else ("source|target",):
            sel = [i for i, v in enumerate(bank) if v.section == u.section and v.domain in dom.split("|")]
            per_domain.append(np.sort(1.0 - b[sel] @ x)[:k].mean())
        ref.append(min(per_domain))
    np.testing.assert_allclose(scores, ref, atol=ATOL)


def test_one_query_per_block_fallback_gives_the_same_bits(monkeypatch):
    bank, bank_emb, query, query_emb = _random_set(n_query=40)
    backend = KnnBackend(k=2).fit(bank, bank_emb)
    batched = backend.score(query, query_emb)
    assert knn.rows_independent(48, 300)  # measured on this CPU: fixed shapes make rows independent
    monkeypatch.setattr(knn, "rows_independent", lambda *shape: False)
    assert np.array_equal(backend.score(query, query_emb), batched)


def test_fit_does_not_depend_on_the_order_of_the_training_clips():
    bank, bank_emb, query, query_emb = _random_set(n_query=50)
    perm = np.random.default_rng(1).permutation(len(bank))
    a = KnnBackend(k=2).fit(bank, bank_emb).score(query, query_emb)
    b = KnnBackend(k=2).fit([bank[i] for i in perm], bank_emb[perm]).score(query, query_emb)
    assert np.array_equal(a, b)
