"""Build the configured back end (``backend.kind``) and fit it on the training embeddings of an
experiment (stage 5); asdlib/backends/packed.py fits the same on a packed model's bank."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from asdlib.backends.base import Backend, BackendError, build_backend, column_slices
from asdlib.backends.fusion import LOGMEL
from asdlib.backends.noise import NoiseProjected, NoiseProjection
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


def feature_sources(cfg: BackendConfig) -> list[str]:
    """The column groups the back end reads, in order: "" (this experiment's embedder), "logmel" (the
    mean log-mel stage 4 appends to them, :attr:`BackendConfig.uses_logmel`), then the other
    experiments' (:attr:`BackendConfig.exp_dirs`)."""
    return ["", *([LOGMEL] if cfg.uses_logmel else []), *cfg.exp_dirs]


def own_widths(cfg: TrainConfig, width: int) -> list[int]:
    """Split the width of this experiment's stage-4 embeddings into its sources: the embedder's, then
    the appended log-mel's (``logmel.width``) when a back end reads it."""
    if not cfg.backend.uses_logmel:
        return [width]
    own = cfg.logmel.width if cfg.embedder == "logmel" else cfg.model.embed_dim
    if width != own + cfg.logmel.width:
        raise BackendError(
            f"embeddings of width {width}, expected {own} (model.embed_dim) + {cfg.logmel.width} "
            "(logmel.n_mels x len(logmel.stats), appended for a back end on features: logmel): they were "
            "extracted with another config; rerun stage 4"
        )
    return [own, cfg.logmel.width]


def source_scps(cfg: TrainConfig, embed_dir: Path, set_name: str) -> list[Path]:
    """The embeddings.scp of ``set_name`` of every experiment the back end reads: ``embed_dir`` is this
    experiment's ``exp/<tag>/embed``, another's is ``<exp_dir>/embed``."""
    return [
        (Path(src) / "embed" if src else embed_dir) / set_name / "embeddings.scp" for src in ["", *cfg.backend.exp_dirs]
    ]


def features_for(cfg: TrainConfig, utts: Sequence[Utt], embed_dir: Path, set_name: str) -> tuple[np.ndarray, list[int]]:
    """The embeddings of ``utts`` of every source side by side, and each source's width (:func:`source_scps`)."""
    parts = [embeddings_for(utts, scp) for scp in source_scps(cfg, embed_dir, set_name)]
    return np.concatenate(parts, axis=1), [*own_widths(cfg, parts[0].shape[1]), *(p.shape[1] for p in parts[1:])]


def noise_embed_name(set_name: str) -> str:
    """Where stage 4 puts a ``backend.noise`` set's embeddings under ``embed/``: apart from the plain
    set's, since for DCASE 2026 it is the training set itself read with another channel."""
    return f"noise_{set_name}"


def noise_features(cfg: TrainConfig, data_root: Path, embed_dir: Path) -> tuple[list[Utt], np.ndarray] | None:
    """The clips of ``backend.noise.sets`` and their embeddings of every source side by side; None when off."""
    if not cfg.backend.noise.sets:
        return None
    utts: list[Utt] = []
    embs = []
    for name in cfg.backend.noise.sets:
        missing = [scp for scp in source_scps(cfg, embed_dir, noise_embed_name(name)) if not scp.is_file()]
        if missing:
            raise BackendError(f"{missing[0]}: no embeddings of backend.noise set {name}; rerun stage 4")
        set_utts = read_data_dir(data_root / name)
        embs.append(features_for(cfg, set_utts, embed_dir, noise_embed_name(name))[0])
        utts += set_utts
    return utts, np.concatenate(embs)


def noise_projection(
    cfg: BackendConfig, widths: Sequence[int], noise: tuple[Sequence[Utt], np.ndarray] | None
) -> NoiseProjection | None:
    """The projection of ``backend.noise``, estimated once from ``noise`` (:func:`noise_features`, or a
    packed model's noise.pt); None when there is none (noise off)."""
    return None if noise is None else NoiseProjection.estimate(*noise, widths, cfg.noise.rank)


def make_backend(cfg: BackendConfig, widths: Sequence[int], projection: NoiseProjection | None = None) -> Backend:
    """An unfitted back end; ``widths``: embedding width of each of :func:`feature_sources`; with a
    ``projection`` (:func:`noise_projection`) it sees noise-projected embeddings."""
    columns = dict(zip(feature_sources(cfg), column_slices(widths)))
    backend = build_backend(cfg.kind, cfg.conf, columns)
    return backend if projection is None else NoiseProjected(backend, projection)


def bank_sets(cfg: TrainConfig) -> list[str]:
    """The training sets whose clips form the back end's bank: ``backend.bank_sets``, else all of
    ``data.train_sets``."""
    chosen = cfg.backend.bank_sets or cfg.data.train_sets
    unknown = [s for s in chosen if s not in cfg.data.train_sets]
    if unknown:
        raise BackendError(
            f"backend.bank_sets names {unknown[0]}, which is not a training set ({' '.join(cfg.data.train_sets)}); "
            "a bank set must also be in asd.sh --train_sets"
        )
    return list(chosen)


def bank_features(cfg: TrainConfig, data_root: Path, embed_dir: Path) -> tuple[list[Utt], np.ndarray, list[int]]:
    """The clips of every bank set (:func:`bank_sets`), their features of every source side by side
    (:func:`features_for`) and each source's width."""
    utts: list[Utt] = []
    embs = []
    for name in bank_sets(cfg):
        set_utts = read_data_dir(data_root / name)
        emb, widths = features_for(cfg, set_utts, embed_dir, name)
        embs.append(emb)
        utts += set_utts
    return utts, np.concatenate(embs), widths


def fit_backend(cfg: TrainConfig, data_root: Path, embed_dir: Path) -> tuple[Backend, list[Utt], np.ndarray]:
    """Fit ``cfg.backend`` on ``<embed dir>/<set>/embeddings.scp`` of every bank set and source, on
    noise-projected embeddings when ``backend.noise`` names sets."""
    utts, emb, widths = bank_features(cfg, data_root, embed_dir)
    projection = noise_projection(cfg.backend, widths, noise_features(cfg, data_root, embed_dir))
    return make_backend(cfg.backend, widths, projection).fit(utts, emb), utts, emb


def check_packable(cfg: BackendConfig) -> None:
    """A packed model computes only its own embeddings: fusion members of other experiments cannot pack."""
    others = cfg.exp_dirs
    if others:
        raise BackendError(
            f"backend.conf.members of the fusion read other experiments' embeddings ({', '.join(others)}), "
            f"which a packed model cannot compute for new recordings; stop before stage 7 "
            f"(--stop_stage 6) or fuse members of this experiment only"
        )
