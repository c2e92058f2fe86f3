"""A packed model (stage 7, docs/design.md §5): one directory that scores new recordings anywhere.

``packed/`` holds ``config.yaml`` (resolved, the upstream path relative to the directory),
``model.pt`` (trained weights, class and machine lists), ``upstream/<checkpoint>``, ``bank.pt``
(the kNN memory banks: embeddings, utt-ids, machine/section/domain; no paths), ``results/`` when
stage 6 ran, and ``manifest.json``: versions, sample rate and windowing, machines and classes,
the calibrated decision thresholds with the false-alarm rate measured on held-out normals, and the
size and sha256 of every other file. :func:`load_packed` verifies every file against the manifest
before anything is unpickled (``torch.load(weights_only=True)`` only), so a missing or altered file
is an error naming it.

Thresholds (:func:`calibrate`): per machine and section, the training normals are split into k
folds (by recording; by windows when a section has fewer recordings than folds). The bank is fitted
on k-1 folds and the held-out fold scored, so every training clip gets a score from a bank that
does not contain it. The threshold is the conformal (1 - fpr) quantile of those held-out scores
(:func:`threshold_at`). The FPR
reported next to the target is cross-validated too: for each fold, the threshold from the other
folds' held-out scores, applied to that fold's held-out scores.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asdlib.backends.bank import check_packable, make_backend, own_widths
from asdlib.backends.base import Backend
from asdlib.config import BackendConfig
from asdlib.data.datadir import Utt
from asdlib.data.download import file_digest
from asdlib.models.loading import TrainedModel, load_trained
from asdlib.utils import UserError

MANIFEST = "manifest.json"
BANK = "bank.pt"
FORMAT = 1


class PackedError(ValueError):
    """A packed model that is missing, incomplete or altered; the message names the file."""


def file_table(root: Path) -> dict[str, dict[str, object]]:
    """``{relative path: {"bytes", "sha256"}}`` of every file under ``root`` but the manifest."""
    return {
        p.relative_to(root).as_posix(): {"bytes": p.stat().st_size, "sha256": file_digest(p, "sha256")}
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def save_bank(path: Path, utts: Sequence[Utt], embeddings: np.ndarray) -> None:
    torch.save(
        {
            "utt_ids": [u.utt_id for u in utts],
            "machines": [u.machine for u in utts],
            "sections": [u.section for u in utts],
            "domains": [u.domain for u in utts],
            "recordings": [u.rec_id for u in utts],
            "embeddings": torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32)),
        },
        path,
    )


def load_bank(path: Path) -> tuple[list[Utt], np.ndarray]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    utts = [
        Utt(i, "", m, s, d, "normal", "noAttribute", rec=r if r != i else "")
        for i, m, s, d, r in zip(
            state["utt_ids"], state["machines"], state["sections"], state["domains"], state["recordings"]
        )
    ]
    return utts, state["embeddings"].numpy()


# --------------------------------------------------------------------------------------------
# Calibration


def _folds(utts: Sequence[Utt], idx: list[int], k: int) -> list[list[int]]:
    recs = sorted({utts[i].rec_id for i in idx}, key=str.encode)
    if len(recs) >= k:  # whole recordings per fold: windows of one recording never straddle folds
        fold_of = {r: n % k for n, r in enumerate(recs)}
        return [[i for i in idx if fold_of[utts[i].rec_id] == f] for f in range(k)]
    order = sorted(idx, key=lambda i: utts[i].utt_id.encode())  # contiguous blocks (time order)
    return [list(block) for block in np.array_split(np.array(order), k)]


def threshold_at(scores: np.ndarray, fpr: float) -> float:
    """The conformal (1 - fpr) quantile of ``n`` normal scores: the ``ceil((n + 1)(1 - fpr))``-th
    smallest. A new normal clip exchangeable with them exceeds it with probability at most ``fpr``
    (decision: score > threshold); with fewer than ``1 / fpr - 1`` scores that is the maximum."""
    ordered = np.sort(np.asarray(scores, dtype=np.float64))
    k = int(np.ceil((ordered.size + 1) * (1.0 - fpr) - 1e-9))
    return float(ordered[min(max(k, 1), ordered.size) - 1])


def calibrate(
    utts: Sequence[Utt],
    embeddings: np.ndarray,
    backend_cfg: BackendConfig,
    widths: Sequence[int],
    fpr: float,
    folds: int = 5,
) -> dict[str, dict[str, dict[str, float]]]:
    """Per machine and section: ``threshold``, ``measured_fpr`` (cross-validated), ``n_heldout``, ``folds``."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, u in enumerate(utts):
        groups[(u.machine, u.section)].append(i)
    out: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for (machine, section), idx in sorted(groups.items()):
        k = min(folds, len(idx))
        if k < 2:
            raise PackedError(
                f"{machine}/{section}: {len(idx)} training clip(s); calibrating a threshold needs at least 2"
            )
        parts = [p for p in _folds(utts, idx, k) if p]
        heldout: list[np.ndarray] = []
        for f, part in enumerate(parts):
            fit = [i for g, p in enumerate(parts) if g != f for i in p]
            backend = make_backend(backend_cfg, widths).fit([utts[i] for i in fit], embeddings[fit])
            heldout.append(backend.score([utts[i] for i in part], embeddings[part]))
        fprs = []
        for f, scores in enumerate(heldout):
            rest = np.concatenate([s for g, s in enumerate(heldout) if g != f])
            fprs.append(float(np.mean(scores > threshold_at(rest, fpr))))
        every = np.concatenate(heldout)
        measured = float(np.average(fprs, weights=[len(s) for s in heldout]))
        out[machine][section] = {
            "threshold": threshold_at(every, fpr),
            "measured_fpr": measured,
            "n_heldout": int(every.size),
            "folds": len(parts),
        }
    return dict(out)


# --------------------------------------------------------------------------------------------
# Loading


@dataclass
class Packed:
    root: Path
    manifest: dict
    trained: TrainedModel
    backend: Backend

    def threshold(self, machine: str, section: str) -> float:
        return float(self.manifest["thresholds"][machine][section]["threshold"])

    def known(self) -> list[tuple[str, str]]:
        return sorted((m, s) for m, secs in self.manifest["thresholds"].items() for s in secs)


def verify(root: Path) -> dict:
    """The manifest of ``root`` after checking every file it lists (size and sha256)."""
    path = root / MANIFEST
    if not path.is_file():
        raise PackedError(f"{path}: missing; {root} is not a packed model (stage 7 writes exp/<tag>/packed)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files = manifest["files"]
    except (ValueError, KeyError, TypeError) as e:
        raise PackedError(f"{path}: not a packed-model manifest ({e}); copy the packed directory again") from e
    for rel, info in files.items():
        f = root / rel
        if not f.is_file():
            raise PackedError(
                f"{f}: missing from the packed model (listed in {MANIFEST}); copy the packed directory again"
            )
        if f.stat().st_size != info["bytes"] or file_digest(f, "sha256") != info["sha256"]:
            raise PackedError(f"{f}: altered (sha256 differs from {MANIFEST}); copy the packed directory again")
    return manifest


def open_packed(path: Path) -> Path:
    """A packed directory, or the directory inside a ``packed.tar`` (extracted to a temporary dir)."""
    if path.is_file() and tarfile.is_tarfile(path):
        tmp = Path(tempfile.mkdtemp(prefix="asdlib-packed-"))
        with tarfile.open(path) as tar:
            tar.extractall(tmp, filter="data")
        dirs = [p for p in tmp.iterdir() if p.is_dir()]
        if len(dirs) != 1:
            raise PackedError(f"{path}: expected one packed directory in the archive, found {len(dirs)}")
        return dirs[0]
    if not path.is_dir():
        raise PackedError(f"{path}: no packed model here (a directory or .tar written by stage 7)")
    return path


def load_packed(path: Path, device: str = "cpu") -> Packed:
    root = open_packed(Path(path))
    manifest = verify(root)
    try:
        trained = load_trained(root, device)
        utts, emb = load_bank(root / BANK)
    except UserError as e:
        raise PackedError(str(e)) from e
    cfg = trained.cfg
    check_packable(cfg.backend)  # the configured back end, fitted as stage 5 fits it (asdlib/backends/bank.py)
    return Packed(root, manifest, trained, make_backend(cfg.backend, own_widths(cfg, emb.shape[1])).fit(utts, emb))
