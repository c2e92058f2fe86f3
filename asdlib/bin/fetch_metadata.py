"""Fetch the official DCASE metadata that asdlib may not redistribute (asdlib/data/resources.py).

The official baseline's ``datasets/`` (eval lists, machine-type and download-path tables) and the
2023/2024 evaluators' ground truth come under NTT's evaluation licence, which forbids
redistribution; stage 1 and the real-metadata tests need them. This fetches each file from its
official GitHub repository at the pinned commit (raw.githubusercontent.com, or ``--base_url`` for
a mirror in the same ``<owner>/<repo>/<commit>/<path>`` layout), resumably, into ``--dest``
(default: the recipe's ``downloads/dcase_metadata/``), and checks it against the sha256 that
asdlib publishes; a file that does not match is refused. ``--check DIR`` only verifies a copy.

    python -m asdlib.bin.fetch_metadata                       # in a recipe directory
    python -m asdlib.bin.fetch_metadata --dest /data/dcase_metadata
    export ASDLIB_DCASE_METADATA=/data/dcase_metadata         # then any recipe or test finds it
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from asdlib.data.download import DownloadError, Expected, download, verify
from asdlib.data.resources import METADATA_ENV, RECIPE_CACHE, SOURCES, fetched_files, source_of
from asdlib.utils import run_main, setup_logging

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://raw.githubusercontent.com"


def file_url(rel: str, base_url: str = DEFAULT_BASE_URL) -> str:
    """``baseline_ae/datasets/x.csv`` -> ``<base_url>/<owner>/<repo>/<commit>/datasets/x.csv``."""
    src = source_of(rel)
    return f"{base_url.rstrip('/')}/{src.repo}/{src.commit}/{rel.split('/', 1)[1]}"


def licence_lines() -> list[str]:
    """One line per fetched source: folder, repository, commit and licence."""
    folders = sorted({rel.split("/", 1)[0] for rel in fetched_files()})
    return [f"{f}/: {SOURCES[f].repo} at {SOURCES[f].commit[:7]}, licence: {SOURCES[f].licence}" for f in folders]


def fetch(dest: Path, base_url: str = DEFAULT_BASE_URL, retries: int = 3) -> list[str]:
    """Fetch every file of the sha256 table into ``dest``; returns the relative paths fetched or verified.

    Raises :class:`DownloadError` naming every file that could not be fetched or did not match its
    sha256 (the others stay, so a rerun fetches only those).
    """
    failed = []
    done = []
    for rel, sha in sorted(fetched_files().items()):
        try:
            download(file_url(rel, base_url), dest / rel, Expected(sha256=sha), retries=retries)
            done.append(rel)
        except DownloadError as e:
            logger.error("%s", e)
            failed.append(rel)
    if failed:
        raise DownloadError(
            f"{len(failed)} of {len(done) + len(failed)} DCASE metadata files refused or not fetched "
            f"(e.g. {failed[0]}); check the network or --base_url and rerun"
        )
    return done


def check(folder: Path) -> list[str]:
    """Verify a metadata directory against the sha256 table; raises :class:`DownloadError` naming the bad files."""
    bad = []
    for rel, sha in sorted(fetched_files().items()):
        path = folder / rel
        try:
            verify(path, Expected(sha256=sha), rel)
        except (DownloadError, FileNotFoundError):
            bad.append(rel if path.is_file() else f"{rel} (missing)")
    if bad:
        raise DownloadError(
            f"{folder}: {len(bad)} DCASE metadata files missing or not the published ones, e.g. {bad[0]}; "
            f"refetch with python -m asdlib.bin.fetch_metadata --dest {folder}"
        )
    return sorted(fetched_files())


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dest", type=Path, default=RECIPE_CACHE, help=f"where to write them [{RECIPE_CACHE}]")
    p.add_argument(
        "--base_url",
        default=DEFAULT_BASE_URL,
        help=f"a mirror laid out as <base_url>/<owner>/<repo>/<commit>/<path> (http(s):// or file://) [{DEFAULT_BASE_URL}]",
    )
    p.add_argument("--retries", type=int, default=3, help="network retries per file, each resumed [3]")
    p.add_argument("--check", type=Path, default=None, metavar="DIR", help="only verify the copy in DIR")
    p.add_argument("--verbose", type=int, default=1)
    args = p.parse_args(argv)
    setup_logging(args.verbose)
    for line in licence_lines():
        print(line)
    if args.check is not None:
        n = len(check(args.check))
        print(f"{args.check}: all {n} DCASE metadata files match their published sha256")
        return 0
    n = len(fetch(args.dest, args.base_url, args.retries))
    dest = args.dest.resolve()
    where = (
        "a recipe run from this directory finds them; elsewhere"
        if dest == RECIPE_CACHE.resolve()
        else "to use them, pass --metadata_dir or"
    )
    print(
        f"{dest}: {n} DCASE metadata files, each checked against its sha256. They are for your own evaluation "
        f"under the licences above; do not redistribute them. {where.capitalize()} set {METADATA_ENV}={dest}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
