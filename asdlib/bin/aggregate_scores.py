"""Stage 5 (windowed sets): one score per recording from its windows' scores.

For a data dir with ``utt2seg`` (long recordings split into windows, docs/design.md §4) it writes
``<scores_dir>/file_scores.{ark,scp}``: one float32 per recording id, the ``data.window_aggregate``
(max or mean) of its windows' anomaly scores. A set without windows gets nothing.
"""

from __future__ import annotations

import argparse
import collections
import logging
from pathlib import Path

from asdlib.config import load_train_config
from asdlib.data.datadir import read_data_dir
from asdlib.data.windows import aggregate
from asdlib.io.ark import read_scores, write_scores
from asdlib.utils import run_main, setup_logging

log = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp_dir", type=Path, required=True, help="exp/<tag> (config.yaml gives data.window_aggregate)")
    p.add_argument("--data_dir", type=Path, required=True)
    p.add_argument("--scores_dir", type=Path, required=True, help="exp/<tag>/scores/<set> (holds scores.scp)")
    p.add_argument("--verbose", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    utts = read_data_dir(args.data_dir)
    if not any(u.rec for u in utts):
        return 0
    how = load_train_config(args.exp_dir / "config.yaml").data.window_aggregate
    scores = read_scores(args.scores_dir / "scores.scp")
    missing = [u.utt_id for u in utts if u.utt_id not in scores]
    if missing:
        raise ValueError(
            f"{args.scores_dir / 'scores.scp'}: no score for {len(missing)} windows (first: {missing[0]}); rerun stage 5"
        )
    per_rec: dict[str, list[float]] = collections.defaultdict(list)
    for u in utts:
        per_rec[u.rec_id].append(scores[u.utt_id])
    write_scores(
        args.scores_dir / "file_scores.ark",
        args.scores_dir / "file_scores.scp",
        {rec: aggregate(values, how) for rec, values in sorted(per_rec.items(), key=lambda kv: kv[0].encode())},
    )
    log.info("%s: %d windows -> %d recordings (%s)", args.data_dir, len(utts), len(per_rec), how)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
