"""Stage 5: anomaly scores of a data dir (or one job's key subset) with the configured back end (backend.kind)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from asdlib.backends.bank import features_for, fit_backend
from asdlib.config import load_train_config
from asdlib.data.datadir import read_data_dir, select_keys
from asdlib.io.ark import write_scores
from asdlib.utils import run_main, setup_logging

log = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--exp_dir", type=Path, required=True, help="experiment dir (config.yaml gives the back end)")
    p.add_argument("--data_root", type=Path, default=Path("data"))
    p.add_argument("--test_set", required=True, help="name of the set to score, e.g. dev_test")
    p.add_argument("--keys", type=Path, help="file whose first column lists the utt-ids of this job")
    p.add_argument(
        "--leave_one_out",
        action="store_true",
        help="score a training set against banks without each clip itself (for decision thresholds)",
    )
    p.add_argument("--out_ark", type=Path, required=True)
    p.add_argument("--out_scp", type=Path, required=True)
    p.add_argument("--verbose", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    cfg = load_train_config(args.exp_dir / "config.yaml")
    utts = read_data_dir(args.data_root / args.test_set)
    if args.keys:  # checked before the banks are fitted: a stale split fails fast
        utts = select_keys(utts, args.keys, args.data_root / args.test_set)
    embed_dir = args.exp_dir / "embed"
    backend, _, _ = fit_backend(cfg, args.data_root, embed_dir)
    scores = backend.score(utts, features_for(cfg, utts, embed_dir, args.test_set)[0], exclude_self=args.leave_one_out)
    write_scores(args.out_ark, args.out_scp, {u.utt_id: float(s) for u, s in zip(utts, scores)})
    log.info("scored %d clips of %s", len(utts), args.test_set)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
