"""Stage 1 of egs/custom: Kaldi data dirs ``train`` (and ``test``) from your own recordings.

See asdlib/data/custom.py for the corpus layouts (a folder of ``<machine>/train/`` recordings, or a
``<path> <machine>`` list). Nothing is written when the corpus breaks a rule (duplicate names, a
machine without training recordings, a bad labels.csv).
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from asdlib.data.custom import read_corpus
from asdlib.data.datadir import summary_table, write_data_dir
from asdlib.utils import run_main, setup_logging

log = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, required=True, help="folder of <machine>/train/ (+ test/) or a list file")
    p.add_argument("--data_dir", type=Path, default=Path("data"))
    p.add_argument("--verbose", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    sets = read_corpus(args.corpus)
    tmp = args.data_dir / ".custom.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for name, utts in sets.items():  # validated in a scratch dir first: all sets or none
        write_data_dir(tmp / name, utts)
    shutil.rmtree(tmp)
    for name, utts in sets.items():
        out = args.data_dir / name
        if out.is_dir():  # stage 1 rewrites the set: later stages' files of the old set must go
            shutil.rmtree(out)
        write_data_dir(out, utts)
        log.info("%s:\n%s", out, summary_table(utts))
    if "test" not in sets and (args.data_dir / "test").is_dir():
        shutil.rmtree(args.data_dir / "test")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
