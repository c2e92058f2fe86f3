"""Official upstream release files: where to get them, how a download is verified, and the
fingerprint that ties embeddings and trained models to the exact checkpoint they came from.

Why: a missing checkpoint must stop a recipe before stage 1, not in stage 3 after hours of data
preparation; and a checkpoint replaced at the same path must make stage 4 redo its embeddings and
must not be combined silently with a model.pt trained on the old one (docs/upstreams.md).

No release publishes checksums (docs/upstreams.md), so the table has none: a download is checked
against the size the server reports, and the first download records ``<file>.sha256``
(``sha256sum -c`` format) next to the file; later downloads are verified against that record.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from asdlib.data.download import Expected, download, file_digest, mirror_url
from asdlib.io.atomic import atomic_write_text

logger = logging.getLogger(__name__)

#: suffixes of files we write next to a checkpoint (not part of it when hashing a directory)
SIDE_SUFFIXES = (".sha256", ".sha256cache", ".part", ".bad")


@dataclass(frozen=True)
class ReleaseFile:
    """One file of a release; ``rel`` is its name inside an upstream directory ("" = the path itself)."""

    url: str
    rel: str = ""
    size: int | None = None
    sha256: str | None = None  # None: none published; the first download records one


@dataclass(frozen=True)
class Release:
    """An official upstream, known by the file or directory name ``upstream.path`` ends with."""

    name: str
    page: str
    files: tuple[ReleaseFile, ...]


BEATS_PAGE = "https://github.com/microsoft/unilm/tree/master/beats"
#: the read-only container signature of the BEATs README's links (valid until 2033-03-02)
_BEATS_SAS = (
    "?sv=2020-08-04&st=2023-03-01T07%3A51%3A05Z&se=2033-03-02T07%3A51%3A00Z&sr=c&sp=rl"
    "&sig=QJXmSJG9DbMKf48UDIU1MfzIro8HQOf3sqlNXiflY1I%3D"
)


def _beats(name: str) -> Release:
    return Release(
        name, BEATS_PAGE, (ReleaseFile(f"https://valle.blob.core.windows.net/share/BEATs/{name}{_BEATS_SAS}"),)
    )


def _eat(repo: str) -> Release:
    base = f"https://huggingface.co/{repo}/resolve/main"
    return Release(
        repo.split("/")[1],
        f"https://huggingface.co/{repo}",
        tuple(ReleaseFile(f"{base}/{f}", rel=f) for f in ("config.json", "model.safetensors")),
    )


RELEASES: dict[str, Release] = {
    r.name: r
    for r in (
        _beats("BEATs_iter3.pt"),
        _beats("BEATs_iter3_plus_AS2M.pt"),
        _beats("BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt1.pt"),
        _beats("BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt"),
        _beats("BEATs_iter3_plus_AS20K.pt"),
        _beats("BEATs_iter3_plus_AS20K_finetuned_on_AS2M_cpt1.pt"),
        _beats("BEATs_iter3_plus_AS20K_finetuned_on_AS2M_cpt2.pt"),
        _eat("worstchan/EAT-base_epoch30_pretrain"),
        _eat("worstchan/EAT-base_epoch30_finetune_AS2M"),
        _eat("worstchan/EAT-large_epoch20_pretrain"),
        _eat("worstchan/EAT-large_epoch20_finetune_AS2M"),
    )
}


def find_release(path: str | Path) -> Release | None:
    """The official release ``path`` names (by its last component), if any."""
    return RELEASES.get(Path(path).name)


def require_present(path: str | Path, where: str) -> None:
    """Raise FileNotFoundError (one line: the file, the download page, the fix) if ``path`` is absent."""
    if Path(path).exists():
        return
    release = find_release(path)
    page = release.page if release else "the links in docs/upstreams.md"
    fix = " or rerun with --download_upstream true" if release else ""
    raise FileNotFoundError(
        f"upstream checkpoint {path} ({where}) does not exist: download it from {page} (docs/upstreams.md){fix}"
    )


def _sidecar(dest: Path) -> Path:
    return dest.with_name(dest.name + ".sha256")


def fetch_release(path: str | Path, mirror: str | None = None, retries: int = 3) -> Path:
    """Download the official release ``path`` names to ``path`` (resumable, verified); returns it.

    A file already there is verified (against the table's sha256 or the recorded ``<file>.sha256``)
    and fetched again if it does not match. Without a published sha256 the first download records one.
    """
    path = Path(path)
    release = find_release(path)
    if release is None:
        raise ValueError(f"no official download is known for {path.name}; known: {', '.join(sorted(RELEASES))}")
    for f in release.files:
        dest = path / f.rel if f.rel else path
        recorded = _sidecar(dest).read_text(encoding="utf-8").split()[0] if _sidecar(dest).is_file() else None
        url = mirror_url(f.url, mirror)
        logger.info("%s: fetching %s", dest, url.split("?")[0])
        download(url, dest, Expected(size=f.size, sha256=f.sha256 or recorded), retries=retries)
        if f.sha256 is None and recorded is None:
            digest = sha256_of(dest)
            atomic_write_text(_sidecar(dest), f"{digest}  {dest.name}\n")
            logger.info("%s: no published checksum; recorded sha256 %s in %s", dest, digest, _sidecar(dest))
    return path


# ---------------------------------------------------------------------------------------------
# Fingerprints


def _cached_sha256(path: Path) -> str:
    """sha256 of a file, cached in ``<file>.sha256cache`` keyed by size and mtime (hashing a 360 MB
    checkpoint on every stage-4 rerun and every model load would cost seconds each time)."""
    st = path.stat()
    key = f"{st.st_size} {st.st_mtime_ns}"
    cache = path.with_name(path.name + ".sha256cache")
    try:
        cached = cache.read_text(encoding="utf-8").split()
        if len(cached) == 3 and " ".join(cached[:2]) == key:
            return cached[2]
    except OSError:
        pass
    digest = file_digest(path, "sha256")
    try:
        atomic_write_text(cache, f"{key} {digest}\n")
    except OSError:  # a read-only model store: hash again next time
        logger.debug("cannot write %s; the sha256 of %s is not cached", cache, path)
    return digest


def _members(path: Path) -> list[Path]:
    """The files that make up an upstream: the file itself, or every file of its directory."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"upstream checkpoint {path} does not exist (docs/upstreams.md)")
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.endswith(SIDE_SUFFIXES))


def sha256_of(path: str | Path) -> str:
    """sha256 of an upstream file; for a directory, of its files' names and sha256s (cached per file)."""
    path = Path(path)
    if path.is_file():
        return _cached_sha256(path)
    return folder_digest((p.relative_to(path).as_posix(), _cached_sha256(p)) for p in _members(path))


def folder_digest(members: Iterable[tuple[str, str]]) -> str:
    """sha256 of a folder from its files' ``(relative name, sha256)`` in sorted order: what
    :func:`sha256_of` returns for a directory (a packed model recomputes it from its manifest)."""
    return hashlib.sha256("".join(f"{name} {sha}\n" for name, sha in members).encode()).hexdigest()


def fingerprint(path: str | Path) -> str:
    """``<path> <size> <sha256>`` of an upstream (sizes summed for a directory): its content only, so
    a copy or ``touch`` of the same weights keeps stage 4 up to date; the size and mtime only key the
    sha256 cache."""
    size = sum(os.stat(p).st_size for p in _members(Path(path)))
    return f"{path} {size} {sha256_of(path)}"


class UpstreamMismatchError(ValueError):
    """A model.pt trained on other upstream weights than the file ``upstream.path`` names now."""


def upstream_record(path: str) -> dict[str, str] | None:
    """What model.pt records about its upstream: ``{"path", "sha256"}``; None without a local file."""
    if not path or not Path(path).exists():
        return None
    return {"path": str(path), "sha256": sha256_of(path)}


def check_upstream_record(record: object, path: str, model_path: str | Path) -> None:
    """Refuse to combine a model.pt with an upstream file other than the one it was trained on (the
    LoRA/adapter weights are deltas on those exact weights; the result would be silently wrong)."""
    if not isinstance(record, dict) or not record.get("sha256") or not path:
        return  # written before the upstream was recorded, or no local upstream file
    now = sha256_of(path)
    if now != record["sha256"]:
        raise UpstreamMismatchError(
            f"{model_path} was trained on the upstream {record.get('path')} (sha256 {record['sha256']}), but "
            f"upstream.path {path} now has sha256 {now}: retrain (rerun stage 3 with a new --tag) or point "
            "upstream.path at the original file"
        )
