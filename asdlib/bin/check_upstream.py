"""Check (or fetch) the upstream checkpoint a training config names, and fingerprint it.

asd.sh calls this before stage 1 whenever stage 3 or 4 will run, so that a missing checkpoint is
one ``ERROR:`` line naming the file and its download page before any work is done, not a traceback
in stage 3 (``--download true`` fetches the official release instead; docs/upstreams.md). Stage 4
calls it with ``--fingerprint_out`` and includes that file in its ``.done`` digest, so replacing
the checkpoint at the same path redoes the embeddings (docs/design.md §3).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from asdlib.config import add_config_options, load_train_config
from asdlib.io.atomic import atomic_write_text
from asdlib.models.upstream_files import fetch_release, fingerprint, require_present
from asdlib.utils import run_main, setup_logging, str2bool

log = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True, help="training config (or exp/<tag>/config.yaml)")
    add_config_options(p)
    p.add_argument(
        "--download",
        type=str2bool,
        default=False,
        help="fetch the official release file upstream.path names when absent or not verified",
    )
    p.add_argument("--mirror", default=None, help="base URL of a mirror laid out as <mirror>/<host>/<path>")
    p.add_argument("--retries", type=int, default=3, help="network retries (each resumes)")
    p.add_argument("--fingerprint_out", type=Path, help="write '<path> <size> <sha256>' of the upstream here")
    p.add_argument("--verbose", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    cfg = load_train_config(args.config, args.override, args.train_sets)
    path = cfg.upstream.path if cfg.embedder == "ssl" else ""
    line = "none"  # embedder logmel: no upstream file
    if path:
        if args.download:
            fetch_release(path, args.mirror, args.retries)
        require_present(path, f"upstream.path of {args.config}")
        if args.fingerprint_out:
            line = fingerprint(path)
    if args.fingerprint_out:
        old = args.fingerprint_out.read_text(encoding="utf-8").strip() if args.fingerprint_out.is_file() else None
        if old != line:
            atomic_write_text(args.fingerprint_out, line + "\n")
    log.info("upstream: %s", line if args.fingerprint_out else path or "none")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
