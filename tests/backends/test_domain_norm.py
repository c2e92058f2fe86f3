"""The domain-wise back ends of asdlib/backends/domain_norm.py, each where it helps: constructed
embeddings with a dense source domain, a few target clips, and a target condition that moves normal
clips farther than the anomalies move."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_utt
from test_backends import LABELS, D, auc, backend, unit

from asdlib.backends.base import BackendError
from asdlib.backends.domain_norm import MIN_OWN_SPREAD, Calibration, _standardise


def spread(rng: np.random.Generator, centre: np.ndarray, n: int, sd: float, dims=(1, 2, 3)) -> np.ndarray:
    """``n`` clips around ``centre`` varying along ``dims`` (the normal variation shared by the domains)."""
    x = np.tile(centre, (n, 1)).astype(float)
    x[:, list(dims)] += sd * rng.standard_normal((n, len(dims)))
    return x


def shifted_domains(rng: np.random.Generator, n_target: int = 10) -> tuple[list[str], np.ndarray]:
    """200 source clips around unit(0); ``n_target`` target clips around unit(5) (another microphone),
    with the same normal variation."""
    src, tgt = spread(rng, unit(0), 200, 0.1), spread(rng, unit(5), n_target, 0.1)
    return ["source"] * 200 + ["target"] * n_target, np.concatenate([src, tgt])


def source_anomalies(rng: np.random.Generator, n: int = 50, step: float = 0.08) -> np.ndarray:
    """Subtle source-domain anomalies: normal variation plus a small step along unit(7)."""
    return spread(rng, unit(0), n, 0.1) + step * unit(7)


def test_zscore_ranks_target_normals_below_subtle_source_anomalies():
    # AUC(target) as DCASE computes it: target normals against anomalies (here the source domain's).
    rng = np.random.default_rng(0)
    train = shifted_domains(rng)
    test = np.concatenate([spread(rng, unit(5), 50, 0.1), source_anomalies(rng)])
    plain, zscore = auc("knn", train, LABELS, test, "target"), auc("knn_zscore", train, LABELS, test, "target")
    assert plain < 0.5 and zscore > 0.9
    rank = auc("knn_zscore", train, LABELS, test, "target", conf={"statistic": "rank"})
    assert rank > 0.9


def test_centred_compares_target_clips_with_the_source_bank():
    # Target anomalies are a small step off the normal variation; ten target clips cover that variation
    # too sparsely, but centred on their domain's mean they are compared with the 200 source clips.
    rng = np.random.default_rng(0)
    train = shifted_domains(rng)
    anomalies = spread(rng, unit(5), 50, 0.1) + 0.08 * unit(7)
    test = np.concatenate([spread(rng, unit(5), 50, 0.1), anomalies])
    zscore, centred = (
        auc("knn_zscore", train, LABELS, test, "target"),
        auc("knn_centred", train, LABELS, test, "target"),
    )
    assert zscore < 0.9 and centred > 0.97
    assert auc("knn_centred", train, LABELS, test, "target", conf={"whiten": True}) > 0.95


def test_memmixup_fills_the_way_from_the_target_clips_to_the_source_domain():
    # The target condition is a continuum towards the source domain (e.g. an operating point): its
    # normals lie between the few target clips and the source clips; the anomalies sit beside the target clips.
    rng = np.random.default_rng(0)
    src = unit(0) + 0.005 * rng.standard_normal((200, D))
    tgt = unit(1) + 0.005 * rng.standard_normal((5, D))
    train = (["source"] * 200 + ["target"] * 5, np.concatenate([src, tgt]))
    theta = rng.uniform(np.pi / 2 - 0.12, np.pi / 2, 50)
    normals = np.cos(theta)[:, None] * unit(0) + np.sin(theta)[:, None] * unit(1) + 0.005 * rng.standard_normal((50, D))
    anomalies = unit(1) + 0.08 * unit(3) + 0.005 * rng.standard_normal((50, D))
    test = np.concatenate([normals, anomalies])
    zscore = auc("knn_zscore", train, LABELS, test, "target")
    mixed = auc("knn_memmixup", train, LABELS, test, "target", conf={"alpha": 0.9})
    assert zscore < 0.75 and mixed > 0.95


def test_density_ranks_a_sparse_normal_state_below_anomalies_near_a_dense_one():
    # Two normal operating states in one domain: a dense one and a sparse one. Anomalies leave the dense one a little.
    rng = np.random.default_rng(0)
    dense, sparse = spread(rng, unit(0), 150, 0.01), spread(rng, unit(5), 50, 0.15)
    train = (["source"] * 200 + ["target"] * 3, np.concatenate([dense, sparse, spread(rng, unit(9), 3, 0.01)]))
    test = np.concatenate([spread(rng, unit(5), 50, 0.15), spread(rng, unit(0), 50, 0.01) + 0.06 * unit(7)])
    plain, density = auc("knn", train, LABELS, test, "source"), auc("knn_density", train, LABELS, test, "source")
    assert plain < 0.5 and density > 0.95


def diffuse_target(rng: np.random.Generator, n: int) -> np.ndarray:
    """A target condition near the source domain that changes from clip to clip (a room, a neighbouring
    machine): a small step along unit(5), and a wide spread along five other directions."""
    return spread(rng, unit(0) + 0.3 * unit(5), n, 0.4, dims=(8, 9, 10, 11, 12))


def test_routed_keeps_subtle_source_anomalies_out_of_a_diffuse_target_bank():
    # Ten target clips far apart from each other: in the target bank's own units a source anomaly is an
    # ordinary distance, so the minimum over the banks hides it. The domain is easy to tell (unit(5)).
    rng = np.random.default_rng(0)
    train = (
        ["source"] * 200 + ["target"] * 10,
        np.concatenate([spread(rng, unit(0), 200, 0.1), diffuse_target(rng, 10)]),
    )
    test = np.concatenate([spread(rng, unit(0), 50, 0.1), source_anomalies(rng, step=0.15)])
    zscore, routed = auc("knn_zscore", train, LABELS, test, "source"), auc("knn_routed", train, LABELS, test, "source")
    assert zscore < 0.8 and routed > 0.99
    # AUC(target): target normals against the same anomalies
    test = np.concatenate([diffuse_target(rng, 50), source_anomalies(rng, step=0.15)])
    plain, zscore = auc("knn", train, LABELS, test, "target"), auc("knn_zscore", train, LABELS, test, "target")
    routed = auc("knn_routed", train, LABELS, test, "target")
    assert plain < 0.5 and zscore < 0.8 and routed > 0.99


def test_routed_standardise_finds_a_small_change_in_a_steady_dimension():
    # Two dimensions swing widely from clip to clip (loud bins); the anomaly is a small change of one
    # steady dimension, 10 of its own spreads, which the swinging ones drown unless each is scaled.
    rng = np.random.default_rng(0)

    def normals(n: int) -> np.ndarray:
        return spread(rng, unit(0), n, 0.5, dims=(1, 2)) + 0.002 * rng.standard_normal((n, D))

    train = (["source"] * 200, normals(200))
    test = np.concatenate([normals(50), normals(50) + 0.02 * unit(7)])
    raw = auc("knn_routed", train, LABELS, test, "source", conf={"standardise": False})
    assert auc("knn", train, LABELS, test, "source") < 0.6 and raw < 0.6
    assert auc("knn_routed", train, LABELS, test, "source") > 0.99


def test_routed_routes_by_a_classifier_fitted_on_training_clips_only():
    rng = np.random.default_rng(0)
    names, emb = shifted_domains(rng)
    utts = [make_utt("fan", "00", f"b{i}", dom) for i, dom in enumerate(names)]
    fitted = backend("knn_routed").fit(utts, emb)
    router = fitted.routers[("fan", "00")]
    assert (
        list(router.predict(np.concatenate([spread(rng, unit(0), 20, 0.1), spread(rng, unit(5), 20, 0.1)])))
        == [0] * 20 + [1] * 20
    )
    # one domain: no classifier, the bank's own score
    single = backend("knn_routed").fit(utts[:200], emb[:200])
    assert single.routers[("fan", "00")] is None
    assert np.all(np.isfinite(single.score(utts[:200], emb[:200], exclude_self=True)))
    with pytest.raises(ValueError, match="c must be > 0"):
        backend("knn_routed", conf={"c": 0})


def test_rank_is_monotone_and_never_ties_outside_the_bank():
    cal = Calibration(np.array([0.1, 0.2, 0.3, 0.4]), 0.25, 0.1)
    d = np.array([0.0, 0.05, 0.1, 0.15, 0.4, 0.5, 0.9])
    r = _standardise(d, cal, "rank")
    assert np.all(np.diff(r) > 0)
    assert r[2] == pytest.approx(0.125) and r[-1] == pytest.approx(1 + 0.5 / 0.1)


@pytest.mark.parametrize("kind", ["knn_zscore", "knn_centred", "knn_memmixup", "knn_routed"])
def test_small_target_bank_borrows_the_spread_of_the_source_bank(kind):
    # two target clips give one leave-one-out distance twice: no spread of their own
    rng = np.random.default_rng(0)
    names, emb = shifted_domains(rng, n_target=2)
    utts = [make_utt("fan", "00", f"b{i}", dom) for i, dom in enumerate(names)]
    fitted = backend(kind).fit(utts, emb)
    source, target = fitted.banks[("fan", "00")]
    assert len(target.calibration.loo) < MIN_OWN_SPREAD
    assert target.calibration.sd == pytest.approx(source.calibration.sd)
    scores = fitted.score(utts, emb, exclude_self=True)
    assert np.all(np.isfinite(scores))


def test_no_test_domain_or_label_is_read():
    rng = np.random.default_rng(0)
    names, emb = shifted_domains(rng)
    utts = [make_utt("fan", "00", f"b{i}", dom) for i, dom in enumerate(names)]
    test = np.concatenate([spread(rng, unit(5), 20, 0.1), source_anomalies(rng, 20)])
    for kind in ("knn_zscore", "knn_centred", "knn_memmixup", "knn_density", "knn_routed"):
        fitted = backend(kind).fit(utts, emb)
        a = fitted.score([make_utt("fan", "00", f"q{i}", "source", "normal") for i in range(40)], test)
        b = fitted.score([make_utt("fan", "00", f"q{i}", "target", "unknown") for i in range(40)], test)
        assert np.array_equal(a, b), kind


def test_memmixup_refuses_a_bank_beyond_its_memory_limit(monkeypatch):
    from asdlib.backends import domain_norm

    monkeypatch.setattr(domain_norm, "MAX_MIXED", 100)
    names, emb = shifted_domains(np.random.default_rng(0))
    utts = [make_utt("fan", "00", f"b{i}", dom) for i, dom in enumerate(names)]
    with pytest.raises(BackendError, match=r"10 target x 200 source clips .*backend.conf.neighbours to at most 10$"):
        backend("knn_memmixup").fit(utts, emb)
    backend("knn_memmixup", conf={"neighbours": 10}).fit(utts, emb)


def test_a_large_bank_is_calibrated_on_a_sample_of_its_clips(monkeypatch):
    from asdlib.backends import domain_norm

    names, emb = shifted_domains(np.random.default_rng(0))
    utts = [make_utt("fan", "00", f"b{i:03d}", dom) for i, dom in enumerate(names)]
    full = backend("knn_zscore").fit(utts, emb).banks[("fan", "00")][0].calibration
    monkeypatch.setattr(domain_norm, "MAX_CALIBRATION", 50)
    sampled = backend("knn_zscore").fit(utts, emb).banks[("fan", "00")][0].calibration
    assert len(full.loo) == 200 and len(sampled.loo) == 50
    assert sampled.mean == pytest.approx(full.mean, rel=0.2) and sampled.sd == pytest.approx(full.sd, rel=0.3)
