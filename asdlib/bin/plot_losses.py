"""The training loss curves of one or more experiments (their ``train_losses.json``), one panel per
loss term, as a PNG: ``ssl.sh`` draws ``exp/<tag>/losses.png`` after pre-training.

Example: python -m asdlib.bin.plot_losses --out exp/pretrain/losses.png exp/pretrain
A run that continues another (``NAME=EXP_DIR@OFFSET``) is drawn from epoch OFFSET + 1 on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from asdlib.metrics.plots import plot_losses
from asdlib.utils import UserError, run_main, setup_logging


def _run(spec: str) -> tuple[str, Path, int]:
    """``[NAME=]EXP_DIR[@OFFSET]`` -> (name, experiment dir, epoch offset)."""
    name, _, rest = spec.rpartition("=")
    path, _, offset = rest.partition("@")
    return name or Path(path).name, Path(path), int(offset or 0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=_run, help="[NAME=]EXP_DIR[@EPOCH_OFFSET]")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--verbose", type=int, default=1)
    args = p.parse_args(argv)
    setup_logging(args.verbose)
    runs = {}
    for name, exp, offset in args.runs:
        record = exp / "train_losses.json"
        if not record.is_file():
            raise UserError(f"{record} not found: train {exp} first (stage 2 of ssl.sh, stage 3 of asd.sh)")
        runs[name] = [r | {"epoch": r["epoch"] + offset} for r in json.loads(record.read_text())]
    plot_losses(runs, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
