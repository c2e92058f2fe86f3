"""Tabulate the results.json of several experiments side by side (markdown).

With ``--by_family a=exp --by_family b=exp_b`` the positional arguments are experiment names, looked up under
each family's experiment root, and the table has one official-score column per family plus their
mean and minimum: a default should win on every corpus family, not only on the one it was tuned on
(egs/mini/local/two_families.sh).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from asdlib.io.atomic import atomic_write_text
from asdlib.metrics.plots import plot_families
from asdlib.metrics.report import load_results_json
from asdlib.utils import run_main, setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--set", required=True, help="evaluated set, e.g. eval_test")
    p.add_argument("--out", type=Path, required=True, help="markdown file to write")
    p.add_argument("exp_dirs", nargs="+", type=Path, help="experiment dirs (with --by_family: experiment names)")
    p.add_argument(
        "--by_family",
        action="append",
        default=None,
        metavar="LABEL=EXPDIR",
        help="repeatable: one official-score column per family LABEL, experiments under EXPDIR",
    )
    p.add_argument(
        "--plot", type=Path, help="with two --by_family: also draw family a's score against family b's (PNG)"
    )
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
    return (
        "\n".join(
            [
                f"Results on {set_name} (%; official score = {ev.metric}):",
                "",
                "| system | official score | h-mean AUC (source) | h-mean AUC (target) | h-mean pAUC |",
                "|---|---:|---:|---:|---:|",
                *rows,
            ]
        )
        + "\n"
    )


def family_scores(
    set_name: str, names: list[str], families: dict[str, Path]
) -> tuple[dict[str, list[float]], dict[str, list[float]], str]:
    """Official score and h-mean AUC(target) of each experiment name on each family (in the order of
    ``families``), and the metric."""
    out, target, metric = {}, {}, ""
    for name in names:
        out[name], target[name] = [], []
        for root in families.values():
            path = root / name / "results" / set_name / "results.json"
            if not path.is_file():
                raise FileNotFoundError(f"{path} not found: run stage 6 of {root / name} on {set_name} first")
            ev = load_results_json(path)
            out[name].append(ev.official_score)
            target[name].append(ev.summary.get("hmean_auc_target", float("nan")))
            metric = ev.metric
    return out, target, metric


def render_families(
    set_name: str,
    scores_by_name: dict[str, list[float]],
    metric: str,
    families: dict[str, Path],
    target_by_name: dict[str, list[float]] | None = None,
) -> str:
    """One row per experiment name, one official-score column per family, then mean and minimum; then
    the same for the h-mean AUC(target) when given (the domain the official score can hide)."""
    labels = list(families)
    tables = [("Official score", scores_by_name)] + ([("h-mean AUC(target)", target_by_name)] if target_by_name else [])
    lines: list[str] = []
    for title, values in tables:
        rows = []
        for name, scores in values.items():
            cells = scores + [sum(scores) / len(scores), min(scores)]
            rows.append(f"| {name} | " + " | ".join(f"{100 * c:.2f}" for c in cells) + " |")
        lines += [
            *([""] if lines else []),
            f"{title} on {set_name} per corpus family (%; {metric}):",
            "",
            "| system | " + " | ".join(f"family {f}" for f in labels) + " | mean | min |",
            "|---|" + "---:|" * (len(labels) + 2),
            *rows,
        ]
    return "\n".join(lines) + "\n"


def _families(items: list[str]) -> dict[str, Path]:
    out = {}
    for item in items:
        label, sep, root = item.partition("=")
        if not sep or not label or not root:
            raise ValueError(f"--by_family takes LABEL=EXPDIR, got {item!r}")
        out[label] = Path(root)
    return out


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.plot and len(args.by_family or []) != 2:
        raise ValueError("--plot draws one family against another: give exactly two --by_family")
    if args.by_family:
        families = _families(args.by_family)
        scores, target, metric = family_scores(args.set, [str(p) for p in args.exp_dirs], families)
        text = render_families(args.set, scores, metric, families, target)
        if args.plot:
            a, b = families
            plot_families(args.set, {n: (v[0], v[1]) for n, v in scores.items()}, (a, b), args.plot)
    else:
        text = render(args.set, args.exp_dirs)
    atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
