"""A packed model (stage 7, docs/design.md §5): one directory that scores new recordings anywhere.

``packed/`` holds ``config.yaml`` (resolved, the upstream path relative to the directory),
``model.pt`` (trained weights, class and machine lists), ``upstream/<checkpoint>``, ``bank.pt``
(the kNN memory banks: embeddings, utt-ids, machine/section/domain; no paths), ``noise.pt`` (the
same for the ``backend.noise`` clips, when the config names them), ``results/`` when stage 6 ran, and ``manifest.json``: versions, sample rate and windowing, machines and classes,
the calibrated decision thresholds with the false-alarm rate measured on held-out normals, and the
size and sha256 of every other file. :func:`load_packed` verifies every file against the manifest
before anything is unpickled (``torch.load(weights_only=True)`` only), so a missing or altered file
is an error naming it.

Thresholds: per machine and section and per domain, from held-out training normals
(:mod:`asdlib.backends.calibration`); a recording of unknown domain is decided against the section's
``threshold``, one of known domain against its domain's (:meth:`Packed.threshold`).
"""

from __future__ import annotations

import hashlib
import json
import lzma
import re
import tarfile
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np
import torch

from asdlib.backends.alarm import AlarmRule
from asdlib.backends.bank import check_packable, make_backend, noise_projection, own_widths
from asdlib.backends.base import Backend
from asdlib.config import TrainConfig, load_train_config
from asdlib.data.datadir import Utt, make_utt_id
from asdlib.data.download import file_digest
from asdlib.io.atomic import atomic_write_text
from asdlib.io.config import from_dict, load_yaml
from asdlib.models.loading import TrainedModel, load_trained
from asdlib.models.upstream_files import SIDE_SUFFIXES, folder_digest
from asdlib.utils import UserError

MANIFEST = "manifest.json"
BANK = "bank.pt"
NOISE = "noise.pt"  # the backend.noise clips, in bank.pt's format: the projection is re-estimated as stage 5 does
FORMAT = 3  # 3: thresholds per domain with their conformal bounds
#: files every packed model holds (the upstream too, when config.yaml names one)
REQUIRED = ("config.yaml", "model.pt", BANK)
#: limits on a packed.tar before anything is extracted: a real pack (BEATs) is ~400 MB in a few files
MAX_MEMBERS = 10_000
MAX_BYTES = 16 * 2**30


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


# --------------------------------------------------------------------------------------------
# The manifest: every field typed and range-checked (asdlib.io.config.from_dict rejects unknown keys)


def _finite(where: str, *values: float) -> None:
    if not all(np.isfinite(v) for v in values):
        raise ValueError(f"{where}: must be a finite number")


@dataclass
class ManifestAudio:
    sample_rate: int
    resample: bool
    channel: int | Literal["mean"] | None
    min_seconds: float

    def __post_init__(self) -> None:
        _finite("audio.min_seconds", self.min_seconds)
        if self.sample_rate <= 0 or self.min_seconds < 0:
            raise ValueError("audio: sample_rate must be > 0 and min_seconds >= 0")


@dataclass
class ManifestWindowing:
    window_seconds: float
    hop_seconds: float
    min_seconds: float
    aggregate: Literal["max", "mean"]
    clip_seconds: float = 0.0  # median length of the training recordings (a live monitor's default window)


@dataclass
class DomainThreshold:
    """A domain's own threshold, its cross-validated FPR and the FPR it guarantees (``bound``)."""

    threshold: float
    measured_fpr: float
    bound: float
    n_heldout: int

    def __post_init__(self) -> None:
        _finite("threshold", self.threshold, self.measured_fpr, self.bound)
        if not 0.0 <= self.measured_fpr <= 1.0 or not 0.0 < self.bound <= 1.0 or self.n_heldout < 1:
            raise ValueError("measured_fpr in [0, 1], bound in (0, 1] and n_heldout >= 1 required")


@dataclass
class Threshold:
    """A section's domain-unknown threshold (the maximum of its domains'), and each domain's."""

    threshold: float
    measured_fpr: float
    bound: float
    n_heldout: int
    folds: int
    domains: dict[str, DomainThreshold]

    def __post_init__(self) -> None:
        _finite("threshold", self.threshold, self.measured_fpr, self.bound)
        if not 0.0 <= self.measured_fpr <= 1.0 or not 0.0 < self.bound <= 1.0 or self.n_heldout < 1 or self.folds < 1:
            raise ValueError("measured_fpr in [0, 1], bound in (0, 1], n_heldout and folds >= 1 required")
        if not self.domains:
            raise ValueError("domains: at least one domain required")
        if self.threshold < max(d.threshold for d in self.domains.values()):
            raise ValueError("threshold: below a domain's threshold (it is the maximum over the domains)")


@dataclass
class Calibration:
    target_fpr: float
    folds: int
    measured_fpr: float
    n_heldout: int
    method: str

    def __post_init__(self) -> None:
        _finite("calibration", self.target_fpr, self.measured_fpr)
        if not 0.0 < self.target_fpr < 1.0 or not 0.0 <= self.measured_fpr <= 1.0 or self.folds < 2:
            raise ValueError("calibration: target_fpr in (0, 1), measured_fpr in [0, 1] and folds >= 2 required")


@dataclass
class FileEntry:
    bytes: int
    sha256: str

    def __post_init__(self) -> None:
        if self.bytes < 0 or not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ValueError("a file entry needs bytes >= 0 and a sha256 of 64 hex digits")


@dataclass
class Parent:
    """The pack an enrolled pack was made from (asdlib-enroll): its manifest digest and where it was."""

    digest: str
    path: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[0-9a-f]{64}", self.digest):
            raise ValueError("parent.digest must be a sha256 of 64 hex digits")


@dataclass
class Enrolment:
    """Normal recordings one asdlib-enroll run added to the bank of ``machine``/``section`` in ``domain``."""

    machine: str
    section: str
    domain: str
    recordings: int
    windows: int
    date: str

    def __post_init__(self) -> None:
        if self.recordings < 1 or self.windows < self.recordings:
            raise ValueError("enrolled: recordings >= 1 and windows >= recordings required")


@dataclass
class Manifest:
    """``manifest.json`` of a packed model (docs/design.md §5)."""

    format: int
    created: str
    versions: dict[str, str]
    train_sets: list[str]
    audio: ManifestAudio
    windowing: ManifestWindowing
    machines: list[str]
    classes: list[str]
    calibration: Calibration
    thresholds: dict[str, dict[str, Threshold]]
    files: dict[str, FileEntry]
    digest: str
    alarm: AlarmRule = field(default_factory=AlarmRule)  # asdlib-monitor's hysteresis rule
    parent: Parent | None = None  # lineage of an enrolled pack: the pack it was made from (None: stage 7)
    enrolled: list[Enrolment] = field(default_factory=list)  # every enrolment since stage 7, oldest first

    def __post_init__(self) -> None:
        if not self.thresholds or not all(self.thresholds.values()):
            raise ValueError("thresholds: at least one machine with one section required")
        for rel in self.files:
            _check_relative(rel, "files")
        missing = [f for f in REQUIRED if f not in self.files]
        if missing:
            raise ValueError(f"files: {', '.join(missing)} not listed (a packed model needs {', '.join(REQUIRED)})")


def _check_relative(rel: str, where: str) -> None:
    """A path inside the pack: relative, POSIX, no ``..`` and no control characters."""
    parts = PurePosixPath(rel).parts
    if not rel or rel.startswith("/") or "\\" in rel or ".." in parts or any(ord(c) < 32 for c in rel):
        raise ValueError(f"{where}: {rel!r} is not a relative path inside the packed model")


def manifest_digest(manifest: dict) -> str:
    """sha256 of the canonical JSON of every manifest field but ``digest`` (sorted keys, no NaN)."""
    body = {k: v for k, v in manifest.items() if k != "digest"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# Loading


@dataclass
class Packed:
    root: Path
    manifest: Manifest
    trained: TrainedModel
    backend: Backend

    def threshold(self, machine: str, section: str, domain: str | None = None) -> float:
        """The decision threshold of ``machine``/``section``: its domain's when ``domain`` is given
        (a ValueError names the known ones), else the domain-unknown one (the maximum)."""
        entry = self.manifest.thresholds[machine][section]
        if domain is None:
            return entry.threshold
        if domain not in entry.domains:
            known = ", ".join(sorted(entry.domains))
            raise ValueError(f"unknown domain '{domain}' of {machine}/{section}: the packed model knows {known}")
        return entry.domains[domain].threshold

    def known(self) -> list[tuple[str, str]]:
        return sorted((m, s) for m, secs in self.manifest.thresholds.items() for s in secs)

    def section_of(self, machine: str, section: str | None, where: str = "") -> str:
        """``section`` of ``machine`` checked against the model, or the machine's only one when None;
        ``where`` (an input's name) goes into the errors, which list what the model knows."""
        known = self.known()
        listing = ", ".join(f"{m}/{s}" for m, s in known)
        sections = [s for m, s in known if m == machine]
        of = f" for {where}" if where else ""
        if not sections:
            raise ValueError(f"unknown machine '{machine}'{of}: the packed model knows {listing}")
        if section is None:
            if len(sections) > 1:
                prefix = f"{where}: " if where else ""
                raise ValueError(f"{prefix}machine '{machine}' has sections {', '.join(sections)}; pass --section")
            return sections[0]
        if section not in sections:
            raise ValueError(
                f"unknown section '{section}' of machine '{machine}'{of}: the packed model knows {listing}"
            )
        return section

    @torch.no_grad()
    def embed(self, windows: Sequence[np.ndarray], machine: str, device: str) -> np.ndarray:
        """Embeddings of equal-length windows (mono float32 at the model's rate) of ``machine``, one batch."""
        x = torch.from_numpy(np.stack(windows)).to(device)
        lengths = torch.full((len(windows),), x.shape[1], dtype=torch.long, device=device)
        index = self.trained.machines.index(machine) if machine in self.trained.machines else -1
        machines = torch.full((len(windows),), index, dtype=torch.long, device=device)
        return self.trained.model(x, lengths, machines).float().cpu().numpy()

    def score_embeddings(self, embeddings: np.ndarray, machine: str, section: str, path: str = "") -> np.ndarray:
        """Anomaly scores of windows of ``machine``/``section`` (domain unknown) against the packed bank."""
        utts = [
            Utt(make_utt_id(machine, section, f"w{i}"), path, machine, section, "unknown", "unknown", "noAttribute")
            for i in range(len(embeddings))
        ]
        return np.asarray(self.backend.score(utts, embeddings), dtype=np.float64)


def _inside(root: Path, rel: str, where: str) -> Path:
    """``root / rel`` after checking that it resolves inside ``root`` (no symlink leads out)."""
    try:
        _check_relative(rel, where)
    except ValueError as e:
        raise PackedError(f"{root / MANIFEST}: {e}; copy the packed directory again") from e
    path = root / rel
    if not path.resolve().is_relative_to(root.resolve()):
        raise PackedError(f"{path}: leads outside the packed model (a symbolic link); copy the packed directory again")
    return path


def verify(root: Path) -> Manifest:
    """The checked manifest of ``root``: format, digest, every field's type and range, then the size
    and sha256 of every file it lists (``config.yaml``, ``model.pt`` and ``bank.pt`` at least)."""
    path = root / MANIFEST
    if not path.is_file():
        raise PackedError(f"{path}: missing; {root} is not a packed model (stage 7 writes exp/<tag>/packed)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as e:
        raise PackedError(f"{path}: not a packed-model manifest ({e}); copy the packed directory again") from e
    if not isinstance(raw, dict):
        raise PackedError(f"{path}: not a packed-model manifest (not a JSON object); copy the packed directory again")
    if raw.get("format") != FORMAT:
        raise PackedError(
            f"{path}: format {raw.get('format')!r}, this asdlib reads format {FORMAT}; repack with stage 7 "
            "(./run.sh --stage 7) of a matching asdlib"
        )
    if raw.get("digest") != manifest_digest(raw):
        raise PackedError(f"{path}: altered (its digest does not match its content); copy the packed directory again")
    try:
        manifest = from_dict(Manifest, raw, where=str(path))
    except ValueError as e:
        raise PackedError(f"{e}; copy the packed directory again") from e
    for rel, info in manifest.files.items():
        f = _inside(root, rel, "files")
        if not f.is_file():
            raise PackedError(
                f"{f}: missing from the packed model (listed in {MANIFEST}); copy the packed directory again"
            )
        if f.stat().st_size != info.bytes or file_digest(f, "sha256") != info.sha256:
            raise PackedError(f"{f}: altered (sha256 differs from {MANIFEST}); copy the packed directory again")
    return manifest


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number a manifest may hold")


def _check_member(tar_path: Path, m: tarfile.TarInfo) -> None:
    kind = "a regular file" if m.isfile() else "a folder" if m.isdir() else ""
    if not kind:
        what = (
            "a symbolic link" if m.issym() else "a hard link" if m.islnk() else "a device, FIFO or other special file"
        )
        raise PackedError(f"{tar_path}: member {m.name!r} is {what}; a packed model holds only files and folders")
    try:
        _check_relative(m.name.rstrip("/"), "member")
    except ValueError as e:
        raise PackedError(f"{tar_path}: {e}; a packed model holds only relative paths") from e


def extract(tar_path: Path, dest: Path) -> Path:
    """Extract a ``packed.tar`` into ``dest`` after checking every member (files and folders only,
    relative paths, at most :data:`MAX_MEMBERS` members and :data:`MAX_BYTES` bytes in all, one top
    folder); returns that folder."""
    try:
        with tarfile.open(tar_path) as tar:
            members, total = [], 0
            for m in tar:
                if len(members) >= MAX_MEMBERS:
                    raise PackedError(f"{tar_path}: more than {MAX_MEMBERS} members; not a packed model")
                _check_member(tar_path, m)
                total += m.size
                if total > MAX_BYTES:
                    raise PackedError(
                        f"{tar_path}: members declare more than {MAX_BYTES} bytes in all (the limit); not a packed model"
                    )
                members.append(m)
            tops = {PurePosixPath(m.name).parts[0] for m in members}
            if len(tops) != 1 or not any(m.isdir() and m.name.rstrip("/") in tops for m in members):
                raise PackedError(f"{tar_path}: expected one packed directory in the archive, found {len(tops)}")
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as e:
        raise PackedError(f"{tar_path}: not a readable packed archive ({e}); copy it again") from e
    return dest / tops.pop()


def _packed_config(root: Path, manifest: Manifest) -> TrainConfig:
    """``config.yaml`` checked for a pack: no ``base``, no unsafe unpickling, the upstream inside the
    pack and listed in the manifest, the audio and windowing the manifest shows."""
    path = root / "config.yaml"
    raw = load_yaml(path)
    if isinstance(raw, dict) and "base" in raw:
        raise PackedError(f"{path}: names a base config; a packed config is whole (repack with stage 7)")
    try:
        cfg = load_train_config(path)
    except ValueError as e:
        raise PackedError(f"{e}; repack with stage 7") from e
    if cfg.upstream.allow_unsafe_pickle:
        raise PackedError(
            f"{path}: upstream.allow_unsafe_pickle is true; a packed model is loaded with weights_only=True only "
            "(never unpickles code): repack with stage 7"
        )
    if cfg.upstream.path:
        rel = cfg.upstream.path
        up = _inside(root, rel, "upstream.path")
        listed = [f for f in manifest.files if f == rel or f.startswith(rel.rstrip("/") + "/")]
        if not listed:
            raise PackedError(f"{path}: upstream.path {rel!r} is not a file of the packed model ({MANIFEST})")
        cfg.upstream.path = str(up)
    d = cfg.data
    want = (
        ManifestAudio(d.sample_rate, d.resample, d.channel, d.min_seconds),
        ManifestWindowing(
            d.window_seconds, d.hop_seconds, d.window_min_seconds, d.window_aggregate, manifest.windowing.clip_seconds
        ),
    )
    if (manifest.audio, manifest.windowing) != want:
        raise PackedError(f"{root / MANIFEST}: audio or windowing differ from {path}; repack with stage 7")
    return cfg


def load_bank(path: Path) -> tuple[list[Utt], np.ndarray]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        cols = [state[k] for k in ("utt_ids", "machines", "sections", "domains", "recordings")]
        emb = state["embeddings"]
        ok = (
            isinstance(emb, torch.Tensor)
            and emb.ndim == 2
            and emb.is_floating_point()
            and all(isinstance(c, list) and len(c) == emb.shape[0] and all(isinstance(v, str) for v in c) for c in cols)
        )
    except Exception as e:  # torch.load raises many kinds on a garbage file
        raise PackedError(f"{path}: unreadable memory bank ({type(e).__name__}: {e}); repack with stage 7") from e
    if not ok or emb.shape[0] == 0:
        raise PackedError(f"{path}: not a memory bank (columns and embeddings disagree); repack with stage 7")
    utts = [Utt(i, "", m, s, d, "normal", "noAttribute", rec=r if r != i else "") for i, m, s, d, r in zip(*cols)]
    return utts, emb.float().numpy()


def _upstream_digest(manifest: Manifest, rel: str) -> str:
    """The upstream's sha256 as :func:`asdlib.models.upstream_files.sha256_of` computes it, from the
    verified manifest (a file's own sha256; for a folder, that of its files' names and sha256s)."""
    if rel in manifest.files:
        return manifest.files[rel].sha256
    prefix = rel.rstrip("/") + "/"
    members = sorted(PurePosixPath(f[len(prefix) :]) for f in manifest.files if f.startswith(prefix))
    return folder_digest(
        (m.as_posix(), manifest.files[prefix + m.as_posix()].sha256)
        for m in members
        if not m.name.endswith(SIDE_SUFFIXES)
    )


def _load_dir(root: Path, device: str) -> tuple[Manifest, TrainedModel, Backend]:
    manifest = verify(root)
    rel = load_yaml(root / "config.yaml")
    cfg = _packed_config(root, manifest)
    upstream_rel = rel.get("upstream", {}).get("path", "") if isinstance(rel, dict) else ""
    try:
        digest = _upstream_digest(manifest, upstream_rel) if cfg.upstream.path else None
        trained = load_trained(root, device, cfg=cfg, upstream_sha256=digest)
        utts, emb = load_bank(root / BANK)
        check_packable(cfg.backend)  # the configured back end, fitted as stage 5 fits it (asdlib/backends/bank.py)
        widths = own_widths(cfg, emb.shape[1])
        noise = load_bank(root / NOISE) if cfg.backend.noise.sets else None  # listed in the manifest, so verified
        projection = noise_projection(cfg.backend, widths, noise)
        backend = make_backend(cfg.backend, widths, projection).fit(utts, emb)
    except (UserError, ValueError) as e:
        if "weights_only" in str(e):
            raise PackedError(
                f"{cfg.upstream.path}: holds Python objects that torch.load(weights_only=True) refuses; a packed "
                "model never unpickles code, so repack with stage 7 from a checkpoint of tensors only"
            ) from e
        raise PackedError(" ".join(str(e).split())) from e
    unknown = sorted(set(manifest.thresholds) - set(trained.machines))
    if unknown:
        raise PackedError(f"{root / MANIFEST}: thresholds of machines the model does not know: {', '.join(unknown)}")
    return manifest, trained, backend


def load_packed(path: Path, device: str = "cpu") -> Packed:
    """A packed directory or ``packed.tar``, verified and loaded into memory. A tar is extracted into
    a temporary directory that is removed before this returns, whether loading succeeded or not."""
    path = Path(path)
    if path.is_dir():
        return Packed(path, *_load_dir(path, device))
    if not path.is_file():
        raise PackedError(f"{path}: no packed model here (a directory or .tar written by stage 7)")
    with tempfile.TemporaryDirectory(prefix="asdlib-packed-") as tmp:
        return Packed(path, *_load_dir(extract(path, Path(tmp)), device))


def seal(root: Path, manifest: dict, what: str) -> None:
    """Finish a pack being written in ``root``: list its files, add the digest, write ``manifest.json``
    and load the pack as asdlib-infer will. A pack that does not load raises here, before the caller
    publishes it; ``what`` names it in that error."""
    manifest["files"] = file_table(root)
    manifest["digest"] = manifest_digest(manifest)
    atomic_write_text(root / MANIFEST, json.dumps(manifest, indent=1, allow_nan=False) + "\n")
    try:
        load_packed(root)
    except PackedError as e:
        raise PackedError(f"{what} does not load ({e})") from e
