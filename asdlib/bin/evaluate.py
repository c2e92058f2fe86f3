"""Stage 6: evaluate a scored set with the year's official DCASE metric.

Writes results.json (docs/design.md §5), RESULTS.md and ROC/histogram PNGs into --out_dir. A set without
ground truth (labels 'unknown') is an error explaining how to get it, unless --skip_unknown true.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from asdlib.data.datadir import read_data_dir
from asdlib.io.ark import read_scores
from asdlib.metrics.official import UnlabelledDataError, official_score
from asdlib.metrics.plots import write_plots
from asdlib.metrics.records import scored_utts
from asdlib.metrics.report import write_results_json, write_results_md
from asdlib.utils import run_main, setup_logging, str2bool
from asdlib.years import metric_years

log = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--year", type=int, required=True, choices=metric_years(), help="challenge year whose official rule applies"
    )
    p.add_argument("--data_dir", type=Path, required=True, help="Kaldi data dir of the scored set (data/<set>)")
    p.add_argument(
        "--scores", type=Path, required=True, help="scores.scp of the set (exp/<tag>/scores/<set>/scores.scp)"
    )
    p.add_argument("--out_dir", type=Path, required=True, help="where results.json, RESULTS.md and the PNGs go")
    p.add_argument("--title", default=None, help="RESULTS.md heading (default: 'DCASE<year> <set name>')")
    p.add_argument(
        "--skip_unknown",
        type=str2bool,
        default=False,
        help="leave out machine/sections without ground truth instead of failing; a set with "
        "no ground truth at all then writes nothing and exits 0",
    )
    p.add_argument("--plots", type=str2bool, default=True, help="write ROC and histogram PNGs")
    p.add_argument("--verbose", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    records = scored_utts(
        read_data_dir(args.data_dir),
        read_scores(args.scores),
        scores_source=str(args.scores),
        data_source=str(args.data_dir),
    )
    try:
        ev = official_score(args.year, records, skip_unknown=args.skip_unknown)
    except UnlabelledDataError as e:
        if not args.skip_unknown:
            raise UnlabelledDataError(f"{args.data_dir}: {e}") from e
        log.warning("%s: no ground truth, nothing evaluated (%s)", args.data_dir, e)
        return 0
    title = args.title or f"DCASE{args.year} {args.data_dir.name}"
    write_results_json(ev, args.out_dir / "results.json")
    write_results_md(ev, args.out_dir / "RESULTS.md", title)
    if args.plots:
        write_plots(args.year, records, args.out_dir)
    log.info("%s: official score %.4f (%s); results in %s", title, ev.official_score, ev.metric, args.out_dir)
    print(f"{title}: official score {ev.official_score:.6f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
