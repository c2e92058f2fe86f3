"""Stage 7: a self-contained model directory for scoring new recordings (asdlib.bin.infer).

Holds the resolved config, the trained weights, a copy of the upstream checkpoint, the kNN
memory banks (training embeddings with their machine/section/domain) and the results.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import platform
import shutil
import subprocess
from pathlib import Path

import torch
import yaml

import asdlib
from asdlib.backends.bank import embeddings_for
from asdlib.data.datadir import read_data_dir, write_data_dir
from asdlib.io.ark import write_vectors
from asdlib.io.atomic import atomic_write_text
from asdlib.io.config import dump_config
from asdlib.train.config import load_train_config
from asdlib.utils import setup_logging

log = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--exp_dir", type=Path, required=True)
    p.add_argument("--data_root", type=Path, default=Path("data"))
    p.add_argument("--train_sets", nargs="+", required=True)
    p.add_argument("--out_dir", type=Path, required=True)
    p.add_argument("--verbose", type=int, default=1)
    return p


def git_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(asdlib.__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    cfg = load_train_config(args.exp_dir / "config.yaml")
    tmp = args.out_dir.with_name(args.out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if cfg.upstream.path:
        src = Path(cfg.upstream.path)
        dst = tmp / "upstream" / src.name
        dst.parent.mkdir()
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
        cfg.upstream.path = str(dst.relative_to(tmp))
    dump_config(cfg, tmp / "config.yaml")
    shutil.copy2(args.exp_dir / "model.pt", tmp / "model.pt")
    utts, vectors = [], {}
    for name in args.train_sets:
        set_utts = read_data_dir(args.data_root / name)
        for u, e in zip(set_utts, embeddings_for(set_utts, args.exp_dir / "embed" / name / "embeddings.scp")):
            vectors[u.utt_id] = e
        utts += set_utts
    write_data_dir(tmp / "bank", utts)
    results = args.exp_dir / "results"
    if results.is_dir():
        shutil.copytree(results, tmp / "results")
    meta = {"asdlib_version": asdlib.__version__, "git_revision": git_revision(), "torch": str(torch.__version__),
            "python": platform.python_version(), "created": datetime.datetime.now().isoformat(timespec="seconds"),
            "source_exp": str(args.exp_dir.resolve()), "train_sets": args.train_sets}
    atomic_write_text(tmp / "meta.yaml", yaml.safe_dump(meta, sort_keys=False))
    shutil.rmtree(args.out_dir, ignore_errors=True)
    tmp.rename(args.out_dir)
    # Written in place: the scp holds absolute ark paths, so the ark must already be at its final home.
    write_vectors(args.out_dir / "bank" / "embeddings.ark", args.out_dir / "bank" / "embeddings.scp", vectors)
    log.info("packed %s -> %s", args.exp_dir, args.out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
