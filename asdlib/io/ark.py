"""Kaldi ark/scp I/O for embeddings and scores (kaldiio), written atomically.

The scp is the "commit record": the ark is renamed into place first and the scp last, so a
reader that finds an scp always finds the complete ark it points to.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path

import kaldiio
import numpy as np

from asdlib.io.atomic import atomic_write_text

#: start of a binary Kaldi float32 vector: binary flag, type token, int32 size marker
_FV_HEADER = b"\0BFV \x04"


class ArkError(ValueError):
    """An scp/ark that cannot be read as asdlib wrote it."""


def write_vectors(
    ark: str | os.PathLike, scp: str | os.PathLike, items: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]]
) -> None:
    """Write float32 vectors as ``ark,scp`` sorted by key (C locale); scp holds absolute ark paths."""
    ark, scp = Path(ark).resolve(), Path(scp)
    pairs = sorted(items.items() if isinstance(items, Mapping) else items, key=lambda kv: kv[0])
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        dup = next(k for i, k in enumerate(keys) if i and keys[i - 1] == k)
        raise ArkError(f"{scp}: duplicate key '{dup}'")
    ark.parent.mkdir(parents=True, exist_ok=True)
    tmp_ark = ark.with_name(f".{ark.name}.{os.getpid()}.tmp")
    tmp_scp = ark.with_name(f".{ark.name}.{os.getpid()}.scp.tmp")
    try:
        try:
            kaldiio.save_ark(
                str(tmp_ark), {k: np.asarray(v, dtype=np.float32).reshape(-1) for k, v in pairs}, scp=str(tmp_scp)
            )
        except OSError as e:  # e.g. ENOSPC/EFBIG, which name no file
            raise OSError(
                e.errno, f"could not write {ark}: {e.strerror or e} (check free disk space and permissions)"
            ) from e
        lines = tmp_scp.read_text(encoding="utf-8").splitlines()
        fixed = [f"{key} {ark}:{ref.rsplit(':', 1)[1]}" for key, ref in (line.split(" ", 1) for line in lines)]
        os.replace(tmp_ark, ark)
        atomic_write_text(scp, "".join(line + "\n" for line in fixed))
    finally:
        for tmp in (tmp_ark, tmp_scp):
            if tmp.exists():
                tmp.unlink()


def read_vectors(scp: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every vector of an scp into memory, keyed by utt-id (insertion order = scp order)."""
    scp = Path(scp)
    if not scp.is_file():
        raise ArkError(f"{scp} not found: run the stage that writes it first")
    out: dict[str, np.ndarray] = {}
    try:
        for key, value in kaldiio.load_scp_sequential(str(scp)):
            out[key] = np.asarray(value, dtype=np.float32)
        declared = _declared_sizes(scp)
    except Exception as e:  # kaldiio raises assorted errors on truncated/corrupt arks
        raise ArkError(f"{scp}: unreadable ark/scp ({e}); rerun the stage that wrote it") from e
    for key, size in declared.items():
        if out[key].size != size:
            raise ArkError(
                f"{scp}: '{key}' has {out[key].size} of its {size} values (truncated ark); rerun the stage that wrote it"
            )
    return out


def _declared_sizes(scp: Path) -> dict[str, int]:
    """Sizes in the headers of the float32 vectors an scp points to.

    kaldiio returns whatever bytes are left for the last vector of a truncated ark, so a cut
    at a 4-byte boundary would otherwise yield a silently shorter vector.
    """
    refs: dict[str, list[tuple[str, int]]] = {}
    for line in scp.read_text(encoding="utf-8").splitlines():
        key, ref = line.split(" ", 1)
        ark, offset = ref.rsplit(":", 1)
        refs.setdefault(ark, []).append((key, int(offset)))
    sizes = {}
    for ark, entries in refs.items():
        with open(ark, "rb") as f:
            for key, offset in entries:
                f.seek(offset)
                head = f.read(len(_FV_HEADER) + 4)
                if head.startswith(_FV_HEADER) and len(head) == len(_FV_HEADER) + 4:
                    sizes[key] = struct.unpack("<i", head[len(_FV_HEADER) :])[0]
    return sizes


def read_scores(scp: str | os.PathLike) -> dict[str, float]:
    """Read anomaly scores (length-1 vectors) keyed by utt-id."""
    scores = {}
    for key, vec in read_vectors(scp).items():
        if vec.size != 1:
            raise ArkError(f"{scp}: score for '{key}' has {vec.size} values, expected 1")
        scores[key] = float(vec[0])
    return scores


def write_scores(ark: str | os.PathLike, scp: str | os.PathLike, scores: Mapping[str, float]) -> None:
    """Write anomaly scores (higher = more anomalous) as length-1 float32 vectors."""
    write_vectors(ark, scp, {k: np.array([v], dtype=np.float32) for k, v in scores.items()})
