"""Stage 1 (before the audio check): split long recordings into fixed windows.

With ``data.window_seconds`` > 0 in the training config, every recording of each data dir becomes
one utterance per window, ``<recording-id>-w<start_ms>``, and the dir gets ``utt2seg``
(``<utt-id> <recording-id> <start> <end>``, docs/design.md §4). Without it nothing changes.
A data dir that already has ``utt2seg`` is left as it is (stage 1 rewrites the dirs first).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from asdlib.config import add_config_options, load_train_config
from asdlib.data.datadir import SEG_FILE, read_data_dir, write_data_dir
from asdlib.data.windows import split_utts
from asdlib.utils import run_main, setup_logging

log = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_dirs", nargs="+", type=Path)
    p.add_argument("--config", type=Path, required=True, help="training YAML: data.window_* settings")
    add_config_options(p)
    p.add_argument("--verbose", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    data = load_train_config(args.config, args.override, args.train_sets).data
    if not data.window_seconds:
        return 0
    for set_dir in args.data_dirs:
        if (set_dir / SEG_FILE).is_file():
            log.info("%s: already split into windows (%s)", set_dir, set_dir / SEG_FILE)
            continue
        utts = read_data_dir(set_dir)
        windows = split_utts(utts, data.window_seconds, data.hop_seconds, data.window_min_seconds)
        write_data_dir(set_dir, windows)
        log.info(
            "%s: %d recordings -> %d windows of %.3g s (hop %.3g s)",
            set_dir,
            len(utts),
            len(windows),
            data.window_seconds,
            data.hop_seconds,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
