"""Load the configured back end fitted on the training embeddings of an experiment."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from asdlib.backends.knn import BackendError, KnnBackend
from asdlib.data.datadir import Utt, read_data_dir
from asdlib.io.ark import read_vectors
from asdlib.train.config import BackendConfig


def embeddings_for(utts: Sequence[Utt], scp: Path) -> np.ndarray:
    """Stack the embeddings of ``utts`` (in order) from an scp; every utt must be present."""
    vectors = read_vectors(scp)
    missing = [u.utt_id for u in utts if u.utt_id not in vectors]
    if missing:
        raise BackendError(f"{scp}: no embedding for {len(missing)} utterances (first: {missing[0]}); rerun stage 4")
    return np.stack([vectors[u.utt_id] for u in utts])


def fit_backend(cfg: BackendConfig, data_root: Path, embed_dir: Path, train_sets: Sequence[str]) -> tuple[KnnBackend, list[Utt], np.ndarray]:
    """Fit the back end on ``embed_dir/<set>/embeddings.scp`` of every training set."""
    utts: list[Utt] = []
    embs = []
    for name in train_sets:
        set_utts = read_data_dir(data_root / name)
        embs.append(embeddings_for(set_utts, embed_dir / name / "embeddings.scp"))
        utts += set_utts
    emb = np.concatenate(embs)
    return KnnBackend(cfg.k, cfg.domain_wise).fit(utts, emb), utts, emb
