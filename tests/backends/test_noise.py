"""backend.noise (asdlib.backends.noise): projecting out the noise recordings' principal directions
turns a background shift from an anomaly into nothing, removes exactly ``rank`` dimensions per column
group, falls back from section to machine to all, packs, and changes nothing when it is off."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
from conftest import make_tiny_pack, make_utt
from sklearn.metrics import roc_auc_score

from asdlib.backends.bank import features_for, fit_backend, make_backend, noise_projection
from asdlib.backends.base import BackendError, build_backend
from asdlib.backends.noise import NoiseProjected, NoiseProjection
from asdlib.backends.packed import NOISE, PackedError, load_packed
from asdlib.bin import noise_sets
from asdlib.config import BackendConfig, TrainConfig, load_train_config
from asdlib.data.datadir import read_data_dir, write_data_dir
from asdlib.io.ark import write_vectors
from asdlib.io.config import ConfigError, dump_config, from_dict, load_yaml
from asdlib.registry import BACKENDS

D = 16
KINDS = [*BACKENDS.names()]  # fusion included: the projection wraps every kind


def unit(i: int) -> np.ndarray:
    v = np.zeros(D)
    v[i] = 1.0
    return v


def shifted_domain(seed: int = 0) -> dict[str, np.ndarray]:
    """In-domain normals around unit(0); a shifted domain's normals moved along the background
    direction unit(1); anomalies moved as far along unit(2); noise clips spread along unit(1)."""
    rng = np.random.default_rng(seed)

    def jitter(n: int) -> np.ndarray:
        return 0.03 * rng.standard_normal((n, D))

    far = rng.uniform(0.5, 1.5, (2, 60, 1))
    return {
        "bank": unit(0) + jitter(80),
        "shifted": unit(0) + far[0] * unit(1) + jitter(60),
        "anomalies": unit(0) + far[1] * unit(2) + jitter(60),
        "noise": unit(3) + rng.standard_normal((30, 1)) * unit(1) + jitter(30),
    }


def utts(n: int, stem: str, machine: str = "fan", section: str = "00", domain: str = "source") -> list:
    return [make_utt(machine, section, f"{stem}{i:03d}", domain) for i in range(n)]


def anomaly_auc(kind: str, projected: bool, seed: int = 0) -> float:
    x = shifted_domain(seed)
    cfg = from_dict(BackendConfig, {"kind": kind, "noise": {"sets": ["noise"], "rank": 1}})
    projection = NoiseProjection.estimate(utts(30, "z"), x["noise"], [D], rank=1) if projected else None
    backend = make_backend(cfg if projected else BackendConfig(kind), [D], projection).fit(utts(80, "b"), x["bank"])
    queries = utts(120, "q", domain="target")
    scores = backend.score(queries, np.concatenate([x["shifted"], x["anomalies"]]))
    return roc_auc_score(np.repeat([0, 1], 60), scores)


@pytest.mark.parametrize("seed", [0, 1])
def test_projection_separates_anomalies_from_a_background_shift(seed: int) -> None:
    plain, projected = anomaly_auc("knn", False, seed), anomaly_auc("knn", True, seed)
    assert 0.35 < plain < 0.65, plain  # the background shift looks as anomalous as the anomalies
    assert projected > 0.95, projected


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_is_wrapped_and_sees_projected_embeddings(kind: str, monkeypatch) -> None:
    conf = {"members": [{"kind": "knn"}, {"kind": "mahalanobis"}]} if kind == "fusion" else None
    cfg = from_dict(BackendConfig, {"kind": kind, "conf": conf, "noise": {"sets": ["noise"], "rank": 1}})
    x = shifted_domain()
    projection = noise_projection(cfg, [D], (utts(30, "z"), x["noise"]))
    backend = make_backend(cfg, [D], projection)
    assert isinstance(backend, NoiseProjected)
    seen = []
    inner_fit = type(backend.inner).fit
    monkeypatch.setattr(type(backend.inner), "fit", lambda self, u, e: seen.append(e) or inner_fit(self, u, e))
    backend.fit(utts(80, "b"), x["bank"])
    assert np.abs(seen[0][:, 1]).max() < 0.05  # unit(1), the noise direction, is gone


def test_projection_removes_rank_dimensions_per_column_group() -> None:
    rng = np.random.default_rng(0)
    widths, rank = [6, 4], 2
    noise = rng.standard_normal((20, 10))
    projection = NoiseProjection.estimate(utts(20, "z"), noise, widths, rank)
    x = rng.standard_normal((50, 10))
    out = projection.apply(utts(50, "q"), x)
    for c, w, v in zip(projection.columns, widths, projection.directions[("fan", "00")]):
        assert v.shape == (rank, w) and np.allclose(v @ v.T, np.eye(rank))
        assert np.linalg.matrix_rank(out[:, c]) == w - rank
        assert np.allclose(out[:, c] @ v.T, 0.0)
        assert np.allclose(out[:, c] - x[:, c], -(x[:, c] @ v.T) @ v)  # nothing else moves


def test_rank_is_clamped_with_a_warning(caplog) -> None:
    rng = np.random.default_rng(0)
    with caplog.at_level(logging.WARNING):
        projection = NoiseProjection.estimate(utts(3, "z"), rng.standard_normal((3, 10)), [7, 3], rank=4)
    model, logmel = projection.directions[("fan", "00")]
    assert model.shape == (2, 7) and logmel.shape == (2, 3)  # 3 clips span 2 centred directions
    assert "rank 4 clamped to 2 (3 noise clips, width 7)" in caplog.text
    projection = NoiseProjection.estimate(utts(20, "z"), rng.standard_normal((20, 10)), [7, 3], rank=4)
    assert [v.shape[0] for v in projection.directions[("fan", "00")]] == [4, 2]  # width 3 keeps 1 column


def test_section_falls_back_to_machine_then_to_all(caplog) -> None:
    rng = np.random.default_rng(0)
    noise = utts(5, "a") + utts(1, "b", section="01") + utts(4, "c", machine="pump")
    projection = NoiseProjection.estimate(noise, rng.standard_normal((10, D)), [D], rank=2)
    with caplog.at_level(logging.INFO):
        levels = [projection.level(m, s) for m, s in (("fan", "00"), ("fan", "01"), ("valve", "00"))]
    assert levels == [("fan", "00"), ("fan",), ()]
    for line in ("fan/00: its own 5 noise clips", "fan/01: machine fan's 6 noise clips", "all machines' 10"):
        assert line in caplog.text


def test_too_few_noise_clips_or_another_width_is_one_line() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(
        BackendError, match="1 noise clip\\(s\\) in all of backend.noise.sets; the projection needs at least 2"
    ):
        NoiseProjection.estimate(utts(1, "z"), rng.standard_normal((1, D)), [D], rank=1)
    with pytest.raises(
        BackendError, match="noise embeddings of width 16, the training embeddings' is 24.*rerun stage 4"
    ):
        NoiseProjection.estimate(utts(5, "z"), rng.standard_normal((5, D)), [D, 8], rank=1)


def _experiment(tmp_path: Path, noise: dict | None, with_noise_embeddings: bool = True):
    """data/{train,test,noise} and exp/embed/{train,test,noise_noise} of :func:`shifted_domain`."""
    x = shifted_domain()
    sets = {
        "train": (utts(80, "b"), x["bank"]),
        "test": (utts(120, "q", domain="target"), np.concatenate([x["shifted"], x["anomalies"]])),
        "noise": (utts(30, "z"), x["noise"]),
    }
    data, exp = tmp_path / "data", tmp_path / "exp"
    for name, (us, emb) in sets.items():
        write_data_dir(data / name, [dataclasses.replace(u, path=str(tmp_path / "x.wav")) for u in us])
        embed = exp / "embed" / (name if name != "noise" else "noise_noise")
        if name == "noise" and not with_noise_embeddings:
            continue
        embed.mkdir(parents=True)
        write_vectors(
            embed / "embeddings.ark",
            embed / "embeddings.scp",
            {u.utt_id: e.astype(np.float32) for u, e in zip(us, emb)},
        )
    backend = {"kind": "knn", **({"noise": noise} if noise is not None else {})}
    cfg = from_dict(TrainConfig, {"embedder": "logmel", "data": {"train_sets": ["train"]}, "backend": backend})
    dump_config(cfg, exp / "config.yaml")
    return cfg, data, exp


def test_stage_5_projects_with_the_noise_sets_embeddings(tmp_path: Path) -> None:
    cfg, data, exp = _experiment(tmp_path, {"sets": ["noise"], "rank": 1})
    backend, _, _ = fit_backend(cfg, data, exp / "embed")
    test = read_data_dir(data / "test")
    scores = backend.score(test, features_for(cfg, test, exp / "embed", "test")[0])
    assert isinstance(backend, NoiseProjected) and roc_auc_score(np.repeat([0, 1], 60), scores) > 0.95


def test_without_noise_scores_are_bit_identical(tmp_path: Path) -> None:
    """No backend.noise: stage 5 fits the bare kind (no wrapper), with the scores of the kind alone."""
    cfg, data, exp = _experiment(tmp_path, None)
    assert not cfg.backend.noise.sets
    backend, train, emb = fit_backend(cfg, data, exp / "embed")
    assert not isinstance(backend, NoiseProjected)
    bare = build_backend("knn", cfg.backend.conf, {"": slice(0, D)}).fit(train, emb)
    test = read_data_dir(data / "test")
    test_emb = features_for(cfg, test, exp / "embed", "test")[0]
    assert np.array_equal(backend.score(test, test_emb), bare.score(test, test_emb))


def test_noise_set_without_embeddings_is_one_line(tmp_path: Path) -> None:
    cfg, data, exp = _experiment(tmp_path, {"sets": ["noise"]}, with_noise_embeddings=False)
    with pytest.raises(BackendError, match=r"no embeddings of backend.noise set noise; rerun stage 4$") as e:
        fit_backend(cfg, data, exp / "embed")
    assert "\n" not in str(e.value) and "noise_noise" in str(e.value)


@pytest.mark.parametrize(
    "noise, named",
    [
        ({"rank": 0}, "backend.noise.rank must be >= 1"),
        ({"sets": ["a"], "rnak": 2}, "unknown key 'rnak'"),
        ({"channel": -1}, "backend.noise.channel must be >= 0"),
        ({"sets": ["a", "a"]}, "names a set twice"),
        ({"channel": "left"}, "noise:channel"),
    ],
)
def test_bad_noise_config_is_one_line(noise: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=named) as e:
        from_dict(BackendConfig, {"kind": "knn", "noise": noise}, where="conf/train.yaml:backend")
    assert "\n" not in str(e.value)


def test_noise_sets_cli_prints_set_embed_dir_and_channel(tmp_path: Path, capsys) -> None:
    cfg = from_dict(
        TrainConfig, {"embedder": "logmel", "backend": {"noise": {"sets": ["dev_train", "x"], "channel": 1}}}
    )
    dump_config(cfg, tmp_path / "on.yaml")
    dump_config(TrainConfig(embedder="logmel"), tmp_path / "off.yaml")
    assert noise_sets.main(["--config", str(tmp_path / "on.yaml")]) == 0
    assert capsys.readouterr().out == "dev_train noise_dev_train 1\nx noise_x 1\n"
    assert noise_sets.main(["--config", str(tmp_path / "off.yaml")]) == 0
    assert capsys.readouterr().out == ""


def test_packed_model_scores_as_stage_5_with_the_projection(tmp_path: Path) -> None:
    noise = {"sets": ["bg"], "rank": 2}
    packed_dir = make_tiny_pack(tmp_path, {"kind": "knn", "noise": noise}, noise_sets=("bg",))
    exp, data = packed_dir.parent, tmp_path / "data"
    cfg = load_train_config(exp / "config.yaml")
    packed = load_packed(packed_dir)
    assert (packed_dir / NOISE).is_file() and NOISE in packed.manifest.files
    assert load_yaml(packed_dir / "config.yaml")["backend"]["noise"] == {**noise, "channel": None}
    stage5, train, emb = fit_backend(cfg, data, exp / "embed")
    queries = [dataclasses.replace(u, utt_id=u.utt_id + "q") for u in train]
    query_emb = emb + np.random.default_rng(1).standard_normal(emb.shape).astype(np.float32)
    assert isinstance(packed.backend, NoiseProjected)
    assert np.array_equal(packed.backend.score(queries, query_emb), stage5.score(queries, query_emb))


def test_packed_model_without_its_noise_file_is_refused(tmp_path: Path) -> None:
    packed_dir = make_tiny_pack(tmp_path, {"noise": {"sets": ["bg"]}}, noise_sets=("bg",))
    (packed_dir / NOISE).unlink()
    with pytest.raises(PackedError, match=f"{NOISE}: missing from the packed model"):
        load_packed(packed_dir)
