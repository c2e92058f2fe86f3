"""asdlib.bin.select_backend ranks every candidate back end of each experiment on a labelled set: it
finds the stream that carries the anomalies, and its scores are those stage 5 gives the chosen config."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from conftest import make_utt

from asdlib.backends.bank import embeddings_for, features_for, fit_backend
from asdlib.bin import select_backend
from asdlib.config import TrainConfig
from asdlib.data.datadir import write_data_dir
from asdlib.io.ark import write_vectors
from asdlib.io.config import dump_config, from_dict
from asdlib.metrics.official import official_score
from asdlib.metrics.records import scored_utts

M, L = 8, 6  # model and log-mel embedding widths
SSL = {"upstream": {"name": "beats", "path": "beats.pt"}, "model": {"embed_dim": M}, "data": {"train_sets": ["train"]}}


def _sets(rng: np.random.Generator) -> dict[str, list]:
    train = [
        make_utt(m, "00", f"tr{d}{i}", d)
        for m in ("fan", "valve")
        for d, n in (("source", 30), ("target", 4))
        for i in range(n)
    ]
    test = [
        make_utt(m, "00", f"te{d}{lab}{i}", d, lab)
        for m in ("fan", "valve")
        for d in ("source", "target")
        for lab in ("normal", "anomaly")
        for i in range(10)
    ]
    return {"train": train, "test": test}


def _corpus(tmp_path: Path, informative: str = "logmel") -> tuple[Path, Path, Path, dict[str, list]]:
    """An experiment whose embeddings are noise, and a log-mel experiment in which anomalies stand out
    (``informative="model"``: the other way round)."""
    rng = np.random.default_rng(0)
    sets = _sets(rng)
    data, exp, logmel = tmp_path / "data", tmp_path / "exp" / "train", tmp_path / "exp" / "logmel_knn"
    for name, utts in sets.items():
        write_data_dir(data / name, [dataclasses.replace(u, path=str(tmp_path / "x.wav")) for u in utts])
        for root, width, informs in ((exp, M, informative == "model"), (logmel, L, informative == "logmel")):
            # around one direction; anomalies turn to another one in the informative stream (the
            # kNN distance is cosine)
            vecs = {
                u.utt_id: (
                    np.eye(width)[int(informs and u.label == "anomaly")] + 0.2 * rng.standard_normal(width)
                ).astype(np.float32)
                for u in utts
            }
            (root / "embed" / name).mkdir(parents=True, exist_ok=True)
            write_vectors(root / "embed" / name / "embeddings.ark", root / "embed" / name / "embeddings.scp", vecs)
    dump_config(from_dict(TrainConfig, SSL), exp / "config.yaml")
    dump_config(
        from_dict(TrainConfig, {"embedder": "logmel", "logmel": {"n_mels": L}, "data": {"train_sets": ["train"]}}),
        logmel / "config.yaml",
    )
    return data, exp, logmel, sets


def _table(capsys: pytest.CaptureFixture[str]) -> list[list[str]]:
    rows = [line.strip("|").split("|") for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in r] for r in rows[1:]]  # without the header


def test_ranking_finds_the_informative_stream_and_matches_stage_5(tmp_path, capsys):
    data, exp, logmel, sets = _corpus(tmp_path)
    # the experiment's own log-mel section must match the log-mel experiment's (n_mels L)
    dump_config(from_dict(TrainConfig, {**SSL, "logmel": {"n_mels": L}}), exp / "config.yaml")
    out = tmp_path / "rank.md"
    assert (
        select_backend.main(
            [
                str(exp),
                "--logmel_exp",
                str(logmel),
                "--data_root",
                str(data),
                "--set",
                "test",
                "--year",
                "2024",
                "--kinds",
                "knn,mahalanobis",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = _table(capsys)
    assert len(rows) == 4 + 6  # 4 single back ends, C(4, 2) fusions
    assert out.read_text().count("\n| ") == len(rows) + 1
    assert [r[0] for r in rows] == [str(i) for i in range(1, 11)]
    scores = [float(r[3]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert rows[0][2] in ("knn on logmel", "mahalanobis on logmel") and scores[0] > 90
    assert all("logmel" not in r[2] for r in rows[-1:])  # noise alone ranks last
    # the choice: the best row that reads the model's embedding, not a log-mel baseline above it
    best_with_model = next(r for r in rows if select_backend.reads_model(r[2]))
    assert f"Chosen: {exp.name} with {best_with_model[2]} ({best_with_model[3]} %)." in out.read_text()
    assert best_with_model[2] != rows[0][2] and not select_backend.reads_model("knn on logmel + mahalanobis on logmel")
    # the score of a fusion row is what stage 5 gives the config it stands for (features: logmel)
    fusion = next(r for r in rows if r[2] == "knn + mahalanobis on logmel")
    members = [{"kind": "knn"}, {"kind": "mahalanobis", "features": "logmel"}]
    cfg = from_dict(
        TrainConfig, {**SSL, "logmel": {"n_mels": L}, "backend": {"kind": "fusion", "conf": {"members": members}}}
    )
    fused = tmp_path / "exp" / "fused"  # stage 4 of that config: the model's embedding, then the log-mel
    embed = fused / "embed"
    for name, utts in sets.items():
        a, b = (embeddings_for(utts, root / "embed" / name / "embeddings.scp") for root in (exp, logmel))
        (embed / name).mkdir(parents=True)
        write_vectors(
            embed / name / "embeddings.ark",
            embed / name / "embeddings.scp",
            {u.utt_id: v for u, v in zip(utts, np.concatenate([a, b], axis=1))},
        )
    backend, _, _ = fit_backend(cfg, data, embed)
    test = sets["test"]
    scores5 = backend.score(test, features_for(cfg, test, embed, "test")[0])
    ev = official_score(2024, scored_utts(test, {u.utt_id: float(s) for u, s in zip(test, scores5)}))
    assert f"{100 * ev.official_score:.2f}" == fusion[3]
    # an experiment whose embeddings carry the appended log-mel is ranked on its embedder's columns
    dump_config(cfg, fused / "config.yaml")
    select_backend.main(
        [
            str(fused),
            "--logmel_exp",
            str(logmel),
            "--data_root",
            str(data),
            "--set",
            "test",
            "--year",
            "2024",
            "--kinds",
            "knn,mahalanobis",
        ]
    )
    assert [r[1:] for r in _table(capsys)] == [["fused", *r[2:]] for r in rows]


def test_log_mel_settings_must_match(tmp_path):
    data, exp, logmel, _ = _corpus(tmp_path)  # exp keeps the default n_mels 64, the log-mel experiment has L
    with pytest.raises(ValueError, match="logmel section or data.sample_rate differ"):
        select_backend.main(
            [str(exp), "--logmel_exp", str(logmel), "--data_root", str(data), "--set", "test", "--year", "2024"]
        )
    with pytest.raises(ValueError, match="embedder is ssl, not logmel"):
        select_backend.main(
            [str(logmel), "--logmel_exp", str(exp), "--data_root", str(data), "--set", "test", "--year", "2024"]
        )
    with pytest.raises(ValueError, match="unknown"):
        select_backend.main(
            [str(exp), "--logmel_exp", str(logmel), "--set", "test", "--year", "2024", "--kinds", "lof"]
        )


def test_families_rank_by_the_worst_one(tmp_path, capsys):
    # family x: anomalies show in the log-mel only; family y: in the model's embedding only. A single
    # stream wins one family and fails the other; only a fusion of both streams is good on both.
    for tag, informative in (("x", "logmel"), ("y", "model")):
        _, exp, _, _ = _corpus(tmp_path / tag, informative)
        dump_config(from_dict(TrainConfig, {**SSL, "logmel": {"n_mels": L}}), exp / "config.yaml")
    args = ["train", "--logmel_exp", "logmel_knn", "--set", "test", "--year", "2024", "--kinds", "knn"]
    fams = [f"--family={t}={tmp_path / t / 'data'}:{tmp_path / t / 'exp'}" for t in ("x", "y")]
    assert select_backend.main(args + fams) == 0
    rows = _table(capsys)
    assert rows[0][2] == "knn + knn on logmel" and len(rows) == 3
    worst = [float(r[3]) for r in rows]
    per_family = [[float(c.split()[0]) for c in r[4:6]] for r in rows]
    assert worst == [min(v) for v in per_family] and worst == sorted(worst, reverse=True)
    assert all(max(v) > 90 for v in per_family[1:])  # each single stream wins its own family
    # the rule: beat the log-mel kNN, the untrained experiment with the same back end and the own log-mel member
    table = {
        ("train", "knn on logmel"): [(0.6, 0.5), (0.6, 0.5)],
        ("train", "knn"): [(0.9, 0.9), (0.7, 0.5)],
        ("train", "knn + knn on logmel"): [(0.95, 0.9), (0.65, 0.5)],
        ("untrained", "knn"): [(0.8, 0.8), (0.8, 0.5)],
        ("untrained", "knn + knn on logmel"): [(0.9, 0.9), (0.6, 0.5)],
        ("untrained", "knn on logmel"): [(0.6, 0.5), (0.6, 0.5)],
    }
    assert select_backend.meets_rule(table, ("train", "knn + knn on logmel"), "untrained")
    assert not select_backend.meets_rule(table, ("train", "knn"), "untrained")  # loses to untrained on family 2
    assert not select_backend.meets_rule(table, ("train", "knn on logmel"), "untrained")  # ties the log-mel kNN
    assert not select_backend.meets_rule(table, ("untrained", "knn"), "untrained")
    assert select_backend.main(args + fams + ["--untrained", "train"]) == 0  # the same experiment: nothing meets it
    ranked = _table(capsys)
    assert all(r[-1] == "no" for r in ranked)
    # the rule is reported, not used to rank: the order stays the worst family's
    assert [r[2] for r in ranked] == [r[2] for r in rows]
    with pytest.raises(ValueError, match="TAG=DATA_ROOT:EXP_ROOT"):
        select_backend.main(args + ["--family", "x=data"])


def test_candidates_are_every_single_back_end_and_fusion():
    cands = select_backend.candidates(list(select_backend.KINDS), 2)
    singles = 2 * len(select_backend.KINDS)
    assert len(cands) == singles + singles * (singles - 1) // 2
    assert len(select_backend.candidates(["knn"], 3)) == 2 + 1
