"""Stage 2: training labels (utt2class, classes.txt) and durations (utt2dur)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from asdlib.data.datadir import read_data_dir
from asdlib.data.labels import build_classes, write_durations, write_labels
from asdlib.utils import run_main, setup_logging

log = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--train_sets", nargs="+", type=Path, required=True, help="training data dirs (share one class set)")
    p.add_argument("--other_sets", nargs="*", type=Path, default=[], help="sets that only get utt2dur")
    p.add_argument("--verbose", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    train = {d: read_data_dir(d) for d in args.train_sets}
    classes = build_classes([u for utts in train.values() for u in utts])
    for d, utts in train.items():
        write_labels(d, utts, classes)
        write_durations(d, utts)
        log.info("%s: %d clips, %d classes", d, len(utts), len(classes))
    for d in args.other_sets:
        write_durations(d, read_data_dir(d))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
