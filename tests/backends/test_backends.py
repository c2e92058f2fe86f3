"""The back-end zoo (backend.kind): each kind helps where it should on constructed embeddings, scores
do not depend on the job split, fusion reads no test label, and a packed model scores as stage 5."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import yaml
from conftest import make_utt
from sklearn.metrics import roc_auc_score

from asdlib.backends.bank import (
    check_packable,
    feature_sources,
    features_for,
    fit_backend,
    make_backend,
    own_widths,
)
from asdlib.backends.knn import BackendError
from asdlib.backends.knn_variants import KnnSmoteBackend
from asdlib.backends.packed import load_bank, save_bank
from asdlib.bin import pack
from asdlib.config import BackendConfig, TrainConfig, load_train_config
from asdlib.data.datadir import write_data_dir
from asdlib.io.ark import write_vectors
from asdlib.io.config import dump_config, from_dict
from asdlib.registry import BACKENDS

D = 16
SINGLE = [k for k in BACKENDS.names() if k != "fusion"]  # every registered kind that scores one stream
FUSION = {"kind": "fusion", "conf": {"members": [{"kind": "knn"}, {"kind": "mahalanobis"}, {"kind": "knn_rescaled"}]}}


def unit(i: int) -> np.ndarray:
    v = np.zeros(D)
    v[i] = 1.0
    return v


def arc(theta: np.ndarray) -> np.ndarray:
    """Points on the quarter circle from unit(1) to unit(2): the target domain's normal manifold."""
    return np.cos(theta)[:, None] * unit(1) + np.sin(theta)[:, None] * unit(2)


def backend(kind: str, **kw) -> object:
    cfg = from_dict(BackendConfig, FUSION if kind == "fusion" else {"kind": kind, **kw})
    return make_backend(cfg, [D])


def auc(
    kind: str, train: tuple[list[str], np.ndarray], labels: np.ndarray, test: np.ndarray, domain: str, **kw
) -> float:
    utts = [make_utt("fan", "00", f"b{i}", dom) for i, dom in enumerate(train[0])]
    queries = [make_utt("fan", "00", f"t{i}", domain, "unknown") for i in range(len(test))]
    return roc_auc_score(labels, backend(kind, **kw).fit(utts, train[1]).score(queries, test))


def three_target_clips(rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
    """A dense source bank around unit(0) and a target bank of 3 clips spread along the arc."""
    src = unit(0) + 0.01 * rng.standard_normal((200, D))
    return ["source"] * 200 + ["target"] * 3, np.concatenate([src, arc(np.array([0, np.pi / 4, np.pi / 2]))])


def target_normals(rng: np.random.Generator, n: int = 50) -> np.ndarray:
    return arc(rng.uniform(0, np.pi / 2, n)) + 0.002 * rng.standard_normal((n, D))


LABELS = np.r_[np.zeros(50), np.ones(50)]


def test_knn_smote_raises_target_auc_with_three_target_clips():
    # Target anomalies sit just off the bank clips; normals lie between them, farther from any clip.
    rng = np.random.default_rng(0)
    train = three_target_clips(rng)
    bank_clips = train[1][-3:]
    anomalies = (
        bank_clips[rng.integers(0, 3, 50)] * np.cos(0.25)
        + np.sin(0.25) * unit(3)
        + 0.002 * rng.standard_normal((50, D))
    )
    test = np.concatenate([target_normals(rng), anomalies])
    plain, smote = auc("knn", train, LABELS, test, "target"), auc("knn_smote", train, LABELS, test, "target")
    assert plain < 0.8 and smote > 0.95


def test_knn_rescaled_raises_target_auc_with_three_target_clips():
    # Target anomalies are closer to the dense source bank than target normals are to the sparse target
    # bank, but far in units of the source bank's own neighbour distances.
    rng = np.random.default_rng(0)
    train = three_target_clips(rng)
    anomalies = unit(0) * np.cos(0.25) + np.sin(0.25) * unit(4) + 0.01 * rng.standard_normal((50, D))
    test = np.concatenate([target_normals(rng), anomalies])
    plain, rescaled = auc("knn", train, LABELS, test, "target"), auc("knn_rescaled", train, LABELS, test, "target")
    assert plain < 0.7 and rescaled > 0.95


def test_kmeans_condensing_absorbs_stray_source_clips():
    # 3 stray training clips lie where the anomalies are: kNN matches them, 2 centroids do not.
    rng = np.random.default_rng(0)
    centres = [unit(0), unit(1), (unit(0) + unit(2)) / np.sqrt(2)]
    src = np.concatenate([c + 0.05 * rng.standard_normal((n, D)) for c, n in zip(centres, (100, 100, 3))])
    train = (["source"] * 203 + ["target"] * 3, np.concatenate([src, unit(5) + 0.05 * rng.standard_normal((3, D))]))
    test = np.concatenate([c + 0.05 * rng.standard_normal((n, D)) for c, n in zip(centres, (25, 25, 50))])
    plain = auc("knn", train, LABELS, test, "source")
    condensed = auc("kmeans", train, LABELS, test, "source", conf={"clusters": 2})
    assert plain < 0.95 and condensed > 0.99


def test_mahalanobis_uses_the_shape_of_the_normal_distribution():
    # Normals spread widely along one axis; anomalies are a small step along a direction normals never take.
    rng = np.random.default_rng(0)

    def normals(n: int) -> np.ndarray:
        x = np.tile(unit(0), (n, 1))
        x[:, 1] += 0.3 * rng.standard_normal(n)
        x[:, 2:] += 0.01 * rng.standard_normal((n, D - 2))
        return x

    train = (
        ["source"] * 200 + ["target"] * 3,
        np.concatenate([normals(200), unit(5) + 0.05 * rng.standard_normal((3, D))]),
    )
    anomalies = normals(50)
    anomalies[:, 2] += 0.04
    test = np.concatenate([normals(50), anomalies])
    assert auc("knn", train, LABELS, test, "source") < 0.9 < auc("mahalanobis", train, LABELS, test, "source")


def _zoo_data(seed: int = 0):
    """Two sections, each with 60 source and 4 target clips, and 300 queries (more than one query block)."""
    rng = np.random.default_rng(seed)
    bank = [make_utt("pump", s, f"b{i}", "target" if i < 4 else "source") for s in ("00", "01") for i in range(64)]
    query = [make_utt("pump", "01" if i % 4 else "00", f"q{i}", "source", "unknown") for i in range(300)]
    return bank, rng.standard_normal((len(bank), D)), query, rng.standard_normal((len(query), D))


@pytest.mark.parametrize("kind", [*SINGLE, "fusion"])
@pytest.mark.parametrize("exclude_self", [False, True])
def test_every_kind_is_bit_identical_for_nj_1_2_3(kind, exclude_self):
    bank, bank_emb, query, query_emb = _zoo_data()
    utts, emb = (bank, bank_emb) if exclude_self else (query, query_emb)
    fitted = backend(kind).fit(bank, bank_emb)
    one = fitted.score(utts, emb, exclude_self=exclude_self)
    assert np.all(np.isfinite(one))
    for nj in (2, 3):
        split = np.empty(len(utts))
        for j in range(nj):
            idx = np.arange(j, len(utts), nj)
            split[idx] = fitted.score([utts[i] for i in idx], emb[idx], exclude_self=exclude_self)
        assert np.array_equal(split, one), f"{kind}: nj={nj} changed the scores"
    # a second fit (another job) gives the same back end
    assert np.array_equal(backend(kind).fit(bank, bank_emb).score(utts, emb, exclude_self=exclude_self), one)


def test_fusion_reads_no_test_label_or_domain():
    bank, bank_emb, query, query_emb = _zoo_data()
    fitted = backend("fusion").fit(bank, bank_emb)
    before = fitted.score(query, query_emb)
    rng = np.random.default_rng(1)
    labels = rng.permutation(["anomaly", "normal"] * 150)
    domains = rng.permutation(["source", "target"] * 150)
    relabelled = [dataclasses.replace(u, label=lab, domain=dom) for u, lab, dom in zip(query, labels, domains)]
    assert np.array_equal(fitted.score(relabelled, query_emb), before)
    removed = [dataclasses.replace(u, label="unknown", domain="unknown") for u in query]
    assert np.array_equal(fitted.score(removed, query_emb), before)


def test_fusion_standardises_each_member_on_leave_one_out_training_scores():
    bank, bank_emb, query, query_emb = _zoo_data()
    fitted = backend("fusion").fit(bank, bank_emb)
    members = [m for m, _ in fitted.members]
    z = []
    for m in members:
        loo = m.score(bank, bank_emb, exclude_self=True)
        s = m.score(query, query_emb)
        for sec in ("00", "01"):
            ref = loo[[u.section == sec for u in bank]]
            sel = np.array([u.section == sec for u in query])
            s[sel] = (s[sel] - ref.mean()) / ref.std()
        z.append(s)
    np.testing.assert_allclose(fitted.score(query, query_emb), np.mean(z, axis=0), rtol=1e-12)
    # standardised on training normals: their leave-one-out fusion scores have mean ~0 per member
    assert abs(np.mean(fitted.score(bank, bank_emb, exclude_self=True))) < 1e-9


def test_fusion_of_two_experiments_reads_each_members_columns():
    cfg = from_dict(
        BackendConfig,
        {
            "kind": "fusion",
            "conf": {"members": [{"kind": "knn"}, {"kind": "knn", "exp_dir": "exp/logmel"}], "combine": "max"},
        },
    )
    assert feature_sources(cfg) == ["", "exp/logmel"]
    fused = make_backend(cfg, [D, 8])
    assert [cols for _, cols in fused.members] == [slice(0, D), slice(D, D + 8)]


def test_fusion_member_on_the_appended_log_mel_reads_the_last_columns():
    members = [{"kind": "knn_rescaled"}, {"kind": "mahalanobis", "features": "logmel"}]
    cfg = from_dict(
        TrainConfig,
        {
            "model": {"embed_dim": D},
            "logmel": {"n_mels": 8},
            "backend": {"kind": "fusion", "conf": {"members": members}},
        },
    )
    assert cfg.backend.uses_logmel and feature_sources(cfg.backend) == ["", "logmel"]
    assert own_widths(cfg, D + 8) == [D, 8]
    fused = make_backend(cfg.backend, own_widths(cfg, D + 8))
    assert [cols for _, cols in fused.members] == [slice(0, D), slice(D, D + 8)]
    check_packable(cfg.backend)  # computed by the packed model itself
    for stale in (D, D + 4, 2 * D):  # embeddings from before the log-mel member, or of another config
        with pytest.raises(BackendError, match="rerun stage 4"):
            own_widths(cfg, stale)
    plain = from_dict(TrainConfig, {"backend": {"kind": "knn"}})
    assert not plain.backend.uses_logmel and own_widths(plain, D) == [D]
    with pytest.raises(ValueError, match="features: logmel is computed with this experiment"):
        from_dict(
            BackendConfig,
            {
                "kind": "fusion",
                "conf": {
                    "members": [{"kind": "knn"}, {"kind": "knn", "features": "logmel", "exp_dir": "exp/logmel_knn"}]
                },
            },
        )


@pytest.mark.parametrize("n_target, synthetic", [(1, 0), (2, 58), (3, 57), (10, 50)])
def test_smote_lowers_k_neighbors_for_small_target_banks(n_target, synthetic):
    rng = np.random.default_rng(0)
    utts = [make_utt("fan", "00", f"s{i}") for i in range(60)] + [
        make_utt("fan", "00", f"t{i}", "target") for i in range(n_target)
    ]
    fitted = KnnSmoteBackend(smote_k=5).fit(utts, rng.standard_normal((60 + n_target, D)))
    target = fitted.banks[("fan", "00")][1]
    assert len(target.ids) == n_target + synthetic and list(target.ids).count("") == synthetic


def _exp(tmp_path, backend_cfg: dict):
    """An experiment dir with embeddings of a training and a test set (no trained model needed)."""
    bank, bank_emb, query, query_emb = _zoo_data()
    data, exp = tmp_path / "data", tmp_path / "exp"
    for name, utts, emb in (("train", bank, bank_emb), ("test", query, query_emb)):
        write_data_dir(data / name, [dataclasses.replace(u, path=str(tmp_path / "x.wav")) for u in utts])
        (exp / "embed" / name).mkdir(parents=True)
        write_vectors(
            exp / "embed" / name / "embeddings.ark",
            exp / "embed" / name / "embeddings.scp",
            {u.utt_id: e.astype(np.float32) for u, e in zip(utts, emb)},
        )
    cfg = from_dict(TrainConfig, {"embedder": "logmel", "data": {"train_sets": ["train"]}, "backend": backend_cfg})
    dump_config(cfg, exp / "config.yaml")
    return cfg, data, exp, query


@pytest.mark.parametrize("kind", [*SINGLE, "fusion"])
def test_packed_bank_scores_as_stage_5(tmp_path, kind):
    """The packed bank (bank.pt) refitted the way asdlib.backends.packed.load_packed does gives stage 5's scores."""
    cfg, data, exp, query = _exp(tmp_path, FUSION if kind == "fusion" else {"kind": kind})
    stage5, utts, emb = fit_backend(cfg, data, exp / "embed")
    save_bank(tmp_path / "bank.pt", utts, emb)
    bank_utts, bank_emb = load_bank(tmp_path / "bank.pt")
    packed = make_backend(cfg.backend, own_widths(cfg, bank_emb.shape[1])).fit(bank_utts, bank_emb)
    test_emb = features_for(cfg, query, exp / "embed", "test")[0]
    assert np.array_equal(packed.score(query, test_emb), stage5.score(query, test_emb))


def test_bank_sets_keep_a_training_set_out_of_the_bank(tmp_path):
    """backend.bank_sets: a set the model trains on (DCASE 2025's clean machine clips) but whose clips
    are no reference for test clips stays out of the bank; a bank set must be a training set."""
    cfg, data, exp, query = _exp(tmp_path, {"kind": "knn"})
    extra = [dataclasses.replace(u, utt_id=u.utt_id + "-clean") for u in query[:5]]
    write_data_dir(data / "clean", extra)
    (exp / "embed" / "clean").mkdir(parents=True)
    test_emb = features_for(cfg, query, exp / "embed", "test")[0]
    write_vectors(
        exp / "embed" / "clean" / "embeddings.ark",
        exp / "embed" / "clean" / "embeddings.scp",
        {u.utt_id: e.astype(np.float32) for u, e in zip(extra, test_emb[:5])},
    )
    both = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, train_sets=["train", "clean"]))
    with_clean, utts, _ = fit_backend(both, data, exp / "embed")
    assert np.allclose(with_clean.score(query[:5], test_emb[:5]), 0.0, atol=1e-6)  # the clips are their own neighbours
    banked = dataclasses.replace(both, backend=dataclasses.replace(both.backend, bank_sets=["train"]))
    without, bank_utts, _ = fit_backend(banked, data, exp / "embed")
    assert len(bank_utts) == len(utts) - 5
    stage5, _, _ = fit_backend(cfg, data, exp / "embed")
    assert np.array_equal(without.score(query, test_emb), stage5.score(query, test_emb))
    wrong = dataclasses.replace(both, backend=dataclasses.replace(both.backend, bank_sets=["test"]))
    with pytest.raises(BackendError, match="backend.bank_sets names test, which is not a training set"):
        fit_backend(wrong, data, exp / "embed")


def test_fusion_with_another_experiment_does_not_pack(tmp_path):
    fusion = {
        "kind": "fusion",
        "conf": {"members": [{"kind": "knn"}, {"kind": "knn", "exp_dir": str(tmp_path / "other")}]},
    }
    cfg, data, exp, _ = _exp(tmp_path, fusion)
    with pytest.raises(BackendError, match="cannot compute for new recordings"):
        check_packable(cfg.backend)
    with pytest.raises(BackendError, match="cannot compute for new recordings"):
        pack.main(
            ["--exp_dir", str(exp), "--data_root", str(data), "--train_sets", "train", "--out_dir", str(exp / "packed")]
        )


def test_backend_tuning_configs_change_only_the_back_end():
    """conf/tuning/backend_<kind>.yaml of each recipe is its train.yaml with another back end, and says
    only that (a diff); a new kind needs none: ``--train_args "backend.kind=<kind>"`` runs it."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    recipes = [repo / "egs" / "mini", *sorted((repo / "egs").glob("dcase20*"))]
    for recipe in recipes:
        found = sorted((recipe / "conf" / "tuning").glob("backend_*.yaml"))
        assert found, recipe
        for path in found:
            tuned = yaml.safe_load(path.read_text())
            assert set(tuned) <= {"base", "backend"} and tuned["base"] == "../train.yaml", path
            assert load_train_config(path).backend.kind == path.stem.removeprefix("backend_"), path


def test_mahalanobis_fits_a_target_domain_of_two_clips():
    """With 2 clips Ledoit-Wolf returns a singular covariance (inverse and Cholesky fail): a small
    domain takes its section's covariance, around its own mean."""
    rng = np.random.default_rng(0)
    train = (
        ["source"] * 200 + ["target"] * 2,
        np.concatenate([unit(0) + 0.05 * rng.standard_normal((200, D)), unit(1) + 0.05 * rng.standard_normal((2, D))]),
    )
    test = np.concatenate(
        [unit(1) + 0.05 * rng.standard_normal((50, D)), unit(3) + 0.05 * rng.standard_normal((50, D))]
    )
    assert auc("mahalanobis", train, LABELS, test, "target") > 0.95
