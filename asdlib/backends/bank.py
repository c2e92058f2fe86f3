"""Build the configured back end (``backend.kind``) and fit it on the training embeddings of an
experiment (stage 5); asdlib/backends/packed.py fits the same on a packed model's bank."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from asdlib.backends.fusion import FusionBackend
from asdlib.backends.knn import Backend, BackendError, KnnBackend
from asdlib.backends.knn_variants import (
    KmeansBackend,
    KnnRescaledBackend,
    KnnSmoteBackend,
)
from asdlib.backends.mahalanobis import MahalanobisBackend
from asdlib.config import BackendConfig, TrainConfig
from asdlib.data.datadir import Utt, read_data_dir
from asdlib.io.ark import read_vectors


def embeddings_for(utts: Sequence[Utt], scp: Path) -> np.ndarray:
    """Stack the embeddings of ``utts`` (in order) from an scp; every utt must be present."""
    vectors = read_vectors(scp)
    missing = [u.utt_id for u in utts if u.utt_id not in vectors]
    if missing:
        raise BackendError(f"{scp}: no embedding for {len(missing)} utterances (first: {missing[0]}); rerun stage 4")
    return np.stack([vectors[u.utt_id] for u in utts])


LOGMEL = "logmel"  # the source of fusion members with features: logmel (columns of this experiment's embeddings)


def other_experiments(cfg: BackendConfig) -> list[str]:
    """The other experiments whose embeddings fusion members read (``exp_dir``), once each, in order."""
    return list(dict.fromkeys(m.exp_dir for m in cfg.fusion.members if cfg.kind == "fusion" and m.exp_dir))


def feature_sources(cfg: BackendConfig) -> list[str]:
    """The column groups the back end reads, in order: "" (this experiment's embedder), "logmel" (the
    mean log-mel stage 4 appends to them, :attr:`BackendConfig.uses_logmel`), then :func:`other_experiments`."""
    return ["", *([LOGMEL] if cfg.uses_logmel else []), *other_experiments(cfg)]


def own_widths(cfg: TrainConfig, width: int) -> list[int]:
    """Split the width of this experiment's stage-4 embeddings into its sources: the embedder's, then
    the appended log-mel's (``logmel.n_mels``) when a fusion member reads it."""
    if not cfg.backend.uses_logmel:
        return [width]
    own = cfg.logmel.n_mels if cfg.embedder == "logmel" else cfg.model.embed_dim
    if width != own + cfg.logmel.n_mels:
        raise BackendError(f"embeddings of width {width}, expected {own} (model.embed_dim) + {cfg.logmel.n_mels} "
                           "(logmel.n_mels, appended for backend.fusion features: logmel): they were extracted "
                           "with another config; rerun stage 4")
    return [own, cfg.logmel.n_mels]


def features_for(cfg: TrainConfig, utts: Sequence[Utt], embed_dir: Path, set_name: str) -> tuple[np.ndarray, list[int]]:
    """The embeddings of ``utts`` of every source side by side, and each source's width; ``embed_dir``
    is this experiment's ``exp/<tag>/embed``, another's is ``<exp_dir>/embed``."""
    parts = [embeddings_for(utts, (Path(src) / "embed" if src else embed_dir) / set_name / "embeddings.scp")
             for src in ["", *other_experiments(cfg.backend)]]
    return np.concatenate(parts, axis=1), [*own_widths(cfg, parts[0].shape[1]), *(p.shape[1] for p in parts[1:])]


def _single(kind: str, cfg: BackendConfig) -> Backend:
    if kind == "knn":
        return KnnBackend(cfg.k, cfg.domain_wise)
    if kind == "knn_smote":
        return KnnSmoteBackend(cfg.k, cfg.smote_k, cfg.seed)
    if kind == "kmeans":
        return KmeansBackend(cfg.k, cfg.kmeans_clusters, cfg.seed)
    if kind == "knn_rescaled":
        return KnnRescaledBackend(cfg.k, cfg.domain_wise)
    if kind == "mahalanobis":
        return MahalanobisBackend(cfg.domain_wise)
    raise BackendError(f"unknown backend.kind '{kind}'")


def make_backend(cfg: BackendConfig, widths: Sequence[int]) -> Backend:
    """An unfitted back end; ``widths``: embedding width of each of :func:`feature_sources`."""
    if cfg.kind != "fusion":
        return _single(cfg.kind, cfg)
    sources, ends = feature_sources(cfg), np.cumsum([0, *widths])
    cols = {src: slice(int(ends[i]), int(ends[i + 1])) for i, src in enumerate(sources)}
    return FusionBackend([(_single(m.kind, cfg), cols[LOGMEL if m.features == "logmel" else m.exp_dir])
                          for m in cfg.fusion.members], cfg.fusion.combine)


def fit_backend(cfg: TrainConfig, data_root: Path, embed_dir: Path) -> tuple[Backend, list[Utt], np.ndarray]:
    """Fit ``cfg.backend`` on ``<embed dir>/<set>/embeddings.scp`` of every training set (``data.train_sets``) and source."""
    utts: list[Utt] = []
    embs = []
    for name in cfg.data.train_sets:
        set_utts = read_data_dir(data_root / name)
        emb, widths = features_for(cfg, set_utts, embed_dir, name)
        embs.append(emb)
        utts += set_utts
    emb = np.concatenate(embs)
    return make_backend(cfg.backend, widths).fit(utts, emb), utts, emb


def check_packable(cfg: BackendConfig) -> None:
    """A packed model computes only its own embeddings: fusion members of other experiments cannot pack."""
    others = other_experiments(cfg)
    if others:
        raise BackendError(f"backend.fusion has members on other experiments' embeddings ({', '.join(others)}), "
                           f"which a packed model cannot compute for new recordings; stop before stage 7 "
                           f"(--stop_stage 6) or fuse members of this experiment only")

