"""Stage 5 (last step): the official submission CSVs of a scored set.

Decision thresholds are fitted per machine and section on the leave-one-out scores of the
training clips (the official baselines' gamma-fit rule, asdlib.metrics.submission).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from asdlib.data.datadir import read_data_dir
from asdlib.io.ark import read_scores
from asdlib.metrics.records import scored_utts
from asdlib.metrics.submission import fit_decision_thresholds, write_submission
from asdlib.utils import run_main, setup_logging
from asdlib.years import metric_years

log = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument(
        "--year", type=int, required=True, choices=metric_years(), help="challenge year whose file names apply"
    )
    p.add_argument("--data_root", type=Path, default=Path("data"))
    p.add_argument("--scores_dir", type=Path, required=True, help="exp/<tag>/scores (holds <set>/scores.scp)")
    p.add_argument("--test_set", required=True)
    p.add_argument("--train_sets", nargs="+", required=True, help="sets with leave-one-out training scores")
    p.add_argument(
        "--row_names",
        choices=("file", "utt"),
        default="file",
        help="file: the corpus file name (DCASE evaluators match rows by it); utt: the utt-id without its "
        "<machine>-<section>- prefix, unique per recording (a custom corpus may reuse file names across folders)",
    )
    p.add_argument("--verbose", type=int, default=1)
    return p


def load_set(data_root: Path, scores_dir: Path, name: str):
    scp = scores_dir / name / "scores.scp"
    return scored_utts(
        read_data_dir(data_root / name), read_scores(scp), scores_source=str(scp), data_source=str(data_root / name)
    )


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    train = [r for name in args.train_sets for r in load_set(args.data_root, args.scores_dir, name)]
    test = load_set(args.data_root, args.scores_dir, args.test_set)
    if args.row_names == "utt":
        test = [dataclasses.replace(r, file_name=r.utt_id.removeprefix(f"{r.machine}-{r.section}-")) for r in test]
    wanted = {(r.machine, r.section) for r in test}
    thresholds = fit_decision_thresholds([r for r in train if (r.machine, r.section) in wanted])
    paths = write_submission(args.year, test, args.scores_dir / args.test_set, thresholds)
    log.info("%s: %d submission files in %s", args.test_set, len(paths), args.scores_dir / args.test_set)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
