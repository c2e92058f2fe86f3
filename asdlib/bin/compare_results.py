"""Tabulate the results.json of several experiments side by side (markdown)."""

from __future__ import annotations

import argparse
from pathlib import Path

from asdlib.io.atomic import atomic_write_text
from asdlib.metrics.report import load_results_json
from asdlib.utils import run_main, setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--set", required=True, help="evaluated set, e.g. eval_test")
    p.add_argument("--out", type=Path, required=True, help="markdown file to write")
    p.add_argument("exp_dirs", nargs="+", type=Path)
    p.add_argument("--verbose", type=int, default=1)
    return p


def render(set_name: str, exp_dirs: list[Path]) -> str:
    rows = []
    for exp in exp_dirs:
        path = exp / "results" / set_name / "results.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run stage 6 of {exp} on {set_name} first")
        ev = load_results_json(path)
        s = ev.summary
        cells = [ev.official_score, s.get("hmean_auc_source"), s.get("hmean_auc_target"), s.get("hmean_pauc")]
        rows.append(f"| {exp.name} | " + " | ".join("-" if c is None else f"{100 * c:.2f}" for c in cells) + " |")
    return "\n".join([f"Results on {set_name} (%; official score = {ev.metric}):", "",
                      "| system | official score | h-mean AUC (source) | h-mean AUC (target) | h-mean pAUC |",
                      "|---|---:|---:|---:|---:|", *rows]) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    atomic_write_text(args.out, render(args.set, args.exp_dirs))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
