"""Resumable, verified downloads and path-safe zip extraction for the official corpora.

Why each piece exists:

* DCASE archives are 1-8 GB each; a dropped connection must not restart from zero. Downloads go
  to ``<file>.part`` and continue with an HTTP ``Range`` request (``file://`` URLs seek), and the
  finished file is renamed into place only after its size and checksum check out.
* Archives from the internet are untrusted input: a member named ``../../x`` or ``/etc/x``, or a
  symlink, could write outside the corpus. :func:`safe_extract` rejects such archives before
  writing anything.
* A mirror (``--mirror``, e.g. a ``file://`` directory laid out as ``<mirror>/<host>/<path>``)
  lets sites without internet, and the tests, use the same code.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import shutil
import stat
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from asdlib.utils import UserError

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
TIMEOUT_S = 60.0
USER_AGENT = "asdlib-download/1 (+DCASE Task 2 recipes)"


class DownloadError(RuntimeError, UserError):
    """A download that failed or whose content does not match its expected size or checksum."""


class UnsafeArchiveError(ValueError):
    """An archive whose members would be written outside the target directory, or are links."""


@dataclass(frozen=True)
class Expected:
    """What a downloaded file must look like; ``None`` fields are not checked."""

    size: int | None = None
    md5: str | None = None
    sha256: str | None = None


def mirror_url(url: str, mirror: str | None) -> str:
    """``https://host/path`` -> ``<mirror>/host/path`` (wget --mirror layout); unchanged without a mirror."""
    if not mirror:
        return url
    parts = urllib.parse.urlsplit(url)
    return f"{mirror.rstrip('/')}/{parts.netloc}{parts.path}"


def _open(url: str, offset: int) -> tuple[object, int | None, bool]:
    """Open ``url`` at byte ``offset``: (stream, total size if known, whether the stream starts at offset)."""
    if url.startswith("file:"):
        path = Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))
        if not path.is_file():
            raise DownloadError(f"{url}: file not found")
        f = open(path, "rb")
        f.seek(offset)
        return f, path.stat().st_size, True
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    try:
        resp = urllib.request.urlopen(req, timeout=TIMEOUT_S)  # noqa: S310 (URLs come from our table or the user)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # range past the end: the .part file is already complete (or too long)
            return _open(url, 0)[0], None, False
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(f"{url}: {getattr(e, 'reason', e)}") from e
    resumed = resp.status == 206
    total = None
    if resumed:
        crange = resp.headers.get("Content-Range", "")  # bytes a-b/total
        if crange.rpartition("/")[2].isdigit():
            total = int(crange.rpartition("/")[2])
        if not crange.startswith(f"bytes {offset}-"):
            resp.close()
            raise DownloadError(f"{url}: server answered the range request for byte {offset} with '{crange}'")
    elif resp.headers.get("Content-Length", "").isdigit():
        total = int(resp.headers["Content-Length"])
    return resp, total, resumed or not offset


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, expected: Expected, what: str) -> None:
    """Raise :class:`DownloadError` when ``path`` does not have the expected size/checksums."""
    size = path.stat().st_size
    if expected.size is not None and size != expected.size:
        raise DownloadError(f"{what}: size {size} bytes, expected {expected.size}")
    for algorithm, want in (("md5", expected.md5), ("sha256", expected.sha256)):
        if want:
            got = file_digest(path, algorithm)
            if got.lower() != want.lower():
                raise DownloadError(f"{what}: {algorithm} {got}, expected {want}")


def download(
    url: str,
    dest: Path,
    expected: Expected = Expected(),
    retries: int = 3,
    progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Download ``url`` to ``dest`` with resume and verification; a no-op if ``dest`` already verifies.

    A bad ``dest`` (wrong size/checksum) is moved aside to ``<dest>.bad`` and fetched again; a
    ``.part`` file that fails verification after completion is deleted, so the next run starts
    clean. ``retries`` counts network failures, each resumed from the bytes already on disk.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file():
        try:
            verify(dest, expected, str(dest))
            logger.info("%s: already downloaded", dest)
            return dest
        except DownloadError as e:
            logger.warning("%s; moving it to %s.bad and downloading again", e, dest)
            os.replace(dest, dest.with_name(dest.name + ".bad"))
    part = dest.with_name(dest.name + ".part")
    attempt = 0
    while True:
        offset = part.stat().st_size if part.is_file() else 0
        if expected.size is not None and offset > expected.size:
            logger.warning("%s is longer than the expected %d bytes; starting again", part, expected.size)
            part.unlink()
            offset = 0
        try:
            if expected.size is None or offset < expected.size:
                _fetch(url, part, offset, progress)
            break
        except DownloadError as e:
            attempt += 1
            if attempt > retries:
                raise DownloadError(f"{e} (gave up after {retries} retries; rerun to resume from {part})") from e
            logger.warning("%s; retry %d of %d in %d s (resuming)", e, attempt, retries, 2**attempt)
            time.sleep(2**attempt)
    try:
        verify(part, expected, url)
    except DownloadError:
        part.unlink()
        raise
    os.replace(part, dest)
    return dest


def _fetch(url: str, part: Path, offset: int, progress: Callable[[int, int | None], None] | None) -> None:
    stream, total, at_offset = _open(url, offset)
    if offset and not at_offset:
        logger.info("%s: the server cannot resume; downloading from the start", url)
        offset = 0
    if offset:
        logger.info("%s: resuming at byte %d", url, offset)
    done = offset
    try:
        with stream, open(part, "ab" if offset else "wb") as out:  # type: ignore[attr-defined]
            while True:
                try:
                    block = stream.read(CHUNK)  # type: ignore[attr-defined]
                except (OSError, http.client.HTTPException) as e:
                    raise DownloadError(f"{url}: connection lost at byte {done} ({e})") from e
                if not block:
                    break
                out.write(block)
                done += len(block)
                if progress is not None:
                    progress(done, total)
    except OSError as e:  # opening or writing the .part file (disk full, permissions)
        raise DownloadError(f"could not write {part}: {e}") from e
    if total is not None and done < total:
        raise DownloadError(f"{url}: connection closed after {done} of {total} bytes")


def fetch_json(url: str) -> object:
    """GET a small JSON document (e.g. a Zenodo record); raises :class:`DownloadError`."""
    stream, _, _ = _open(url, 0)
    try:
        with stream:  # type: ignore[attr-defined]
            return json.loads(stream.read().decode("utf-8"))  # type: ignore[attr-defined]
    except (ValueError, OSError) as e:
        raise DownloadError(f"{url}: not a JSON document ({e})") from e


def zenodo_file_info(record: object, file_name: str) -> Expected:
    """Size and md5 of ``file_name`` from a Zenodo record's JSON (legacy list or InvenioRDM entries)."""
    files = record.get("files") if isinstance(record, dict) else None
    if isinstance(files, dict):  # InvenioRDM: {"entries": {key: {...}} or [...]}
        files = files.get("entries")
        files = list(files.values()) if isinstance(files, dict) else files
    for entry in files if isinstance(files, list) else []:
        if isinstance(entry, dict) and (entry.get("key") or entry.get("filename")) == file_name:
            checksum = str(entry.get("checksum") or "")
            md5 = checksum.split(":", 1)[1] if checksum.startswith("md5:") else None
            size = entry.get("size", entry.get("filesize"))
            return Expected(size=int(size) if isinstance(size, (int, float)) else None, md5=md5)
    return Expected()


# ---------------------------------------------------------------------------------------------
# Extraction


def _member_parts(info: zipfile.ZipInfo, archive: Path) -> tuple[str, ...]:
    """The member's path components, after rejecting anything that could escape the target."""
    name = info.filename.replace("\\", "/")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise UnsafeArchiveError(f"{archive}: member '{info.filename}' is a symbolic link; refusing to extract links")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: member '{info.filename}' has an absolute path")
    parts = tuple(p for p in PurePosixPath(name).parts if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: member '{info.filename}' contains '..'")
    return parts


def safe_extract(
    archive: Path, target: Path, rename: Callable[[tuple[str, ...]], tuple[str, ...] | None] | None = None
) -> list[Path]:
    """Extract a zip under ``target``, refusing absolute paths, ``..``, links and escapes.

    ``rename`` maps a member's path components to the components to write (None = skip the
    member); it is applied after the safety checks, and its result is checked again. Every member
    is checked before the first byte is written, and each file is written to a temp name and
    renamed, so an interrupted extraction leaves no partial files under real names.
    """
    target = Path(target)
    root = target.resolve()
    plan: list[tuple[zipfile.ZipInfo, Path]] = []
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            parts = _member_parts(info, archive)
            if rename is not None and parts:
                parts = rename(parts)
            if not parts:
                continue
            if ".." in parts or any("/" in p or "\\" in p for p in parts):
                raise UnsafeArchiveError(f"{archive}: member '{info.filename}' maps to an unsafe path {parts}")
            dest = target.joinpath(*parts)
            if not dest.resolve().is_relative_to(root):  # e.g. through a symlinked directory already in target
                raise UnsafeArchiveError(f"{archive}: member '{info.filename}' would be written outside {target}")
            plan.append((info, dest))
        written = []
        for info, dest in plan:
            if info.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.extract")
            with zf.open(info) as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, CHUNK)
            os.replace(tmp, dest)
            written.append(dest)
    return written


def strip_prefix(parts: tuple[str, ...], prefixes: Sequence[str]) -> tuple[str, ...]:
    """Drop leading components found in ``prefixes`` (e.g. ``dev_data``, ``raw``) and macOS metadata."""
    if parts and parts[0] == "__MACOSX":
        return ()
    while parts and parts[0] in prefixes:
        parts = parts[1:]
    return parts
