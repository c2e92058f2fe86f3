"""Download and unpack an official DCASE Task 2 corpus (2020-2026) into the layout stage 1 reads.

``<root>/dev_data/<machine>/...`` and ``<root>/eval_data/<machine>/...`` as the Zenodo archives
unpack, plus ``<root>/eval_data_list_<year>.csv`` (the official eval-test ground truth from the
baseline repository). Archives are cached in ``<root>/.downloads/`` while they are needed; a
marker there records each unpacked archive, so a rerun after an interruption resumes the
download in progress and skips finished archives. Checksums: the md5 that Zenodo publishes for
every file is looked up in the record (``--zenodo_checksums``) and checked together with the size.
"""

from __future__ import annotations

import argparse
import logging
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

from asdlib.data import zenodo
from asdlib.data.download import (
    DownloadError,
    Expected,
    UnsafeArchiveError,
    download,
    fetch_json,
    mirror_url,
    safe_extract,
    strip_prefix,
    zenodo_file_info,
)
from asdlib.data.evallist import EvalListError, read_eval_list
from asdlib.io.atomic import atomic_write_text
from asdlib.utils import run_main, setup_logging, str2bool
from asdlib.years import YEARS

logger = logging.getLogger(__name__)

CACHE_DIR = ".downloads"
#: top-level folders some archives (or hand-made mirrors) put before ``<machine>/``
_PREFIXES = ("dev_data", "eval_data", "raw")
#: contents of a machine directory, for archives that omit the ``<machine>/`` folder
_MACHINE_CONTENT = ("train", "test", "source_test", "target_test", "supplemental")


def member_mapper(machine: str, archive_name: str):
    """Map archive members onto ``<machine>/...`` (the Zenodo layout), failing on anything else."""

    def rename(parts: tuple[str, ...]) -> tuple[str, ...] | None:
        parts = strip_prefix(parts, _PREFIXES)
        if not parts:
            return None
        if parts[0] == machine:
            return parts
        if parts[0] in _MACHINE_CONTENT or (len(parts) == 1 and parts[0].startswith("attributes_")):
            return (machine, *parts)
        raise UnsafeArchiveError(
            f"{archive_name}: member '{'/'.join(parts)}' is not under '{machine}/'; the archive does not have the "
            f"expected <machine>/<train|test>/... layout (a changed release?); unpack it by hand into <root>/<part>/{machine}/"
        )

    return rename


def expected_for(arc: zenodo.Archive, mirror: str | None, use_zenodo: bool) -> Expected:
    """Size/md5 of an archive: the table's md5, else Zenodo's record (when asked and reachable)."""
    if not use_zenodo:
        return Expected(md5=arc.md5)
    try:
        info = zenodo_file_info(fetch_json(mirror_url(arc.record_api_url, mirror)), arc.file_name)
    except DownloadError as e:
        logger.warning(
            "%s: checksum lookup failed (%s); checking the size reported by the server only", arc.file_name, e
        )
        return Expected(md5=arc.md5)
    if info.md5 is None:
        logger.warning("%s: record %d lists no md5 for this file; checksum unknown", arc.file_name, arc.record_id)
    return Expected(size=info.size, md5=arc.md5 or info.md5)


def fetch_archive(
    arc: zenodo.Archive, root: Path, mirror: str | None, use_zenodo: bool, keep_zips: bool, retries: int
) -> bool:
    """Download and unpack one archive; False when it was already unpacked by an earlier run."""
    cache = root / CACHE_DIR
    marker = cache / f"{arc.file_name}.done"
    if marker.is_file():
        logger.info("%s: already unpacked (%s)", arc.file_name, marker)
        return False
    zip_path = cache / arc.file_name
    url = mirror_url(arc.url, mirror)
    logger.info("%s: downloading %s", arc.file_name, url)
    download(url, zip_path, expected_for(arc, mirror, use_zenodo), retries=retries, progress=_progress(arc.file_name))
    target = root / arc.part
    try:
        files = safe_extract(zip_path, target, member_mapper(arc.machine, arc.file_name))
    except zipfile.BadZipFile as e:
        zip_path.unlink()
        raise DownloadError(f"{zip_path}: not a valid zip archive ({e}); deleted it, rerun to download it again") from e
    logger.info("%s: %d files unpacked into %s/%s", arc.file_name, len(files), target, arc.machine)
    atomic_write_text(marker, f"{arc.url}\n")
    if not keep_zips:
        zip_path.unlink()
    return True


def fetch_eval_list(year: int, root: Path, mirror: str | None, retries: int) -> Path | None:
    """Fetch the official eval list to ``<root>/eval_data_list_<year>.csv`` unless present; checks that it parses."""
    url = zenodo.eval_list_url(year)
    dest = root / f"eval_data_list_{year}.csv"
    if url is None:
        logger.warning(
            "no official eval list is known for DCASE %d; eval_test will be prepared without ground truth", year
        )
        return None
    if not dest.is_file():
        download(mirror_url(url, mirror), dest, retries=retries)
    try:
        read_eval_list(dest, year)
    except EvalListError as e:
        raise DownloadError(f"{dest} is not a valid DCASE {year} eval list ({e}); delete it and rerun") from e
    return dest


def download_corpus(
    year: int,
    root: Path,
    kinds: Sequence[str] | None = None,
    machines: Sequence[str] | None = None,
    mirror: str | None = None,
    use_zenodo: bool = True,
    keep_zips: bool = False,
    eval_list: bool = True,
    retries: int = 3,
) -> list[zenodo.Archive]:
    """Download the requested archives of ``year`` into ``root``; returns the archives unpacked now."""
    arcs = zenodo.archives(year, tuple(kinds) if kinds else None, tuple(machines) if machines else None)
    if not arcs:
        raise ValueError(f"nothing to download for DCASE {year} with kinds {kinds} and machines {machines}")
    root.mkdir(parents=True, exist_ok=True)
    done = [a for a in arcs if fetch_archive(a, root, mirror, use_zenodo, keep_zips, retries)]
    if eval_list and any(a.kind == "eval_test" for a in arcs):
        fetch_eval_list(year, root, mirror, retries)
    return done


def _progress(name: str):
    """Log every 10 % (or every 500 MB when the size is unknown)."""
    last = [-1]

    def report(done: int, total: int | None) -> None:
        step = done * 10 // total if total else done // (500 << 20)
        if step != last[0]:
            last[0] = step
            logger.info("%s: %.0f MB%s", name, done / 2**20, f" of {total / 2**20:.0f} MB" if total else "")

    return report


def _split(values: Sequence[str] | None) -> list[str] | None:
    return [v for item in values for v in item.replace(",", " ").split()] if values else None


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--year", type=int, required=True, choices=tuple(YEARS))
    p.add_argument("--root", type=Path, required=True, help="corpus root (receives dev_data/ and eval_data/)")
    p.add_argument(
        "--kinds", nargs="+", default=None, help="archive kinds: dev eval_train eval_test (default: all of the year)"
    )
    p.add_argument("--machines", nargs="+", default=None, help="machine types (default: all of the year)")
    p.add_argument(
        "--mirror",
        default=None,
        help="base URL of a mirror laid out as <mirror>/<host>/<path> (e.g. file:///data/mirror); default: the internet",
    )
    p.add_argument(
        "--zenodo_checksums",
        type=str2bool,
        default=True,
        help="look up size and md5 of every archive in its Zenodo record and verify them",
    )
    p.add_argument("--keep_zips", type=str2bool, default=False, help=f"keep the archives in <root>/{CACHE_DIR}/")
    p.add_argument("--eval_list", type=str2bool, default=True, help="also fetch the official eval_data_list_<year>.csv")
    p.add_argument("--retries", type=int, default=3, help="network retries per file (each resumes)")
    p.add_argument("--verbose", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    done = download_corpus(
        args.year,
        args.root,
        _split(args.kinds),
        _split(args.machines),
        args.mirror,
        args.zenodo_checksums,
        args.keep_zips,
        args.eval_list,
        args.retries,
    )
    logger.info("DCASE %d corpus in %s (%d archives unpacked now)", args.year, args.root, len(done))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
