"""Measure the explanations of a packed model against where the anomalies really are.

    python -m asdlib.bin.measure_explain --packed exp/train/packed --test_dir data/dev_test data/eval_test \
        --train_dir data/dev_train data/eval_train --label "default / a" --out exp/explain/train_a.md

For the anomalous clips of the ``--test_dir`` sets that have a region in its ``utt2anomaly_region``
(at most ``--max_per_kind`` per anomaly kind, spread over the machines), the explanation of
:mod:`asdlib.explain` is compared with random cells and with the energy baseline (the cell farthest
in log energy from the machine's normal training mean, from the ``--train_dir`` sets) by the pointing game
and the deletion drop (:mod:`asdlib.metrics.localisation`). Writes a markdown table (``--out``) and
the per-clip numbers beside it (``.json``); prints the seconds per explained clip.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from asdlib.backends.packed import load_packed
from asdlib.bin.infer import packed_scorer
from asdlib.data.audio import load_utt
from asdlib.data.datadir import Utt, read_data_dir
from asdlib.data.regions import read_anomaly_regions
from asdlib.data.stream import plan
from asdlib.explain import Grid, Perturber, deletion_scores, explain
from asdlib.io.atomic import atomic_write_text, check_writable
from asdlib.metrics.localisation import (
    ClipResult,
    deletion_drop,
    energy_order,
    markdown_table,
    summarise,
    truth_cells,
)
from asdlib.utils import run_main, setup_logging

log = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--packed", type=Path, required=True, help="a packed model (stage 7) that knows the test machines")
    p.add_argument(
        "--test_dir", type=Path, nargs="+", required=True, help="test sets with utt2anomaly_region (stage 1)"
    )
    p.add_argument(
        "--train_dir", type=Path, nargs="+", required=True, help="training sets: the machines' normal energy per band"
    )
    p.add_argument("--label", required=True, help="row label of the table, e.g. 'default / a'")
    p.add_argument("--out", type=Path, required=True, help="markdown table; the per-clip JSON goes beside it")
    p.add_argument("--grid", default="10x8", help="<time segments>x<mel bands>")
    p.add_argument("--steps", type=int, default=8, help="cells removed one after the other for the deletion drop")
    p.add_argument("--max_per_kind", type=int, default=12, help="anomalous clips per kind at most")
    p.add_argument("--n_reference", type=int, default=20, help="clips per machine for the normal references")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0, help="random baseline's cell orders")
    p.add_argument("--verbose", type=int, default=1)
    return p


def pick(utts: list[Utt], kinds: dict[str, str], per_kind: int) -> list[Utt]:
    """Up to ``per_kind`` clips of each kind, taken in turn from the machines (so no machine fills a kind)."""
    by_kind: dict[str, dict[str, list[Utt]]] = defaultdict(lambda: defaultdict(list))
    for u in utts:
        by_kind[kinds[u.utt_id]][u.machine].append(u)
    out = []
    for machines in by_kind.values():
        queues = [list(v) for _, v in sorted(machines.items())]
        taken = 0
        while taken < per_kind and any(queues):
            for q in queues:
                if q and taken < per_kind:
                    out.append(q.pop(0))
                    taken += 1
    return out


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    grid = Grid.parse(args.grid)
    if args.steps < 1 or args.steps > grid.n_time * grid.n_bands:
        raise ValueError(f"--steps must be in 1..{grid.n_time * grid.n_bands} (the cells of --grid), got {args.steps}")
    check_writable(args.out)
    packed = load_packed(args.packed)
    data = packed.trained.cfg.data
    sr = data.sample_rate
    tests, truth = [], {}
    for test_dir in args.test_dir:
        utts = read_data_dir(test_dir)
        found = read_anomaly_regions(test_dir, utts)
        if not found:
            raise ValueError(f"{test_dir}: no utt2anomaly_region; prepare it from a synthetic corpus (stage 1)")
        tests += utts
        truth |= found
    located = [u for u in tests if u.utt_id in truth and truth[u.utt_id].regions]
    chosen = pick(located, {k: v.kind for k, v in truth.items()}, args.max_per_kind)
    trains = [u for train_dir in args.train_dir for u in read_data_dir(train_dir)]
    rng = np.random.default_rng(args.seed)
    refs: dict[tuple[str, str], tuple[np.ndarray, float]] = {}
    results, seconds = [], []

    def read(utt: Utt) -> np.ndarray:
        return load_utt(utt, sr, 1, data.channel, data.resample)

    for u in chosen:
        key = (u.machine, u.section)
        wav = read(u)
        scorer = packed_scorer(packed, u.machine, u.section, "cpu", plan(u.path, data), args.batch_size)
        if key not in refs:  # per machine: normal energy per band, and the spread of normal test scores
            normals = [t for t in trains if (t.machine, t.section) == key][: args.n_reference]
            energy = np.mean([Perturber(read(t), sr, grid).cell_log_energy().mean(0) for t in normals], 0)
            spread = [t for t in tests if (t.machine, t.section) == key and t.label == "normal"][: args.n_reference]
            refs[key] = (energy, float(np.std(scorer(np.stack([read(t) for t in spread])))))
        start = time.perf_counter()
        exp = explain(wav, sr, scorer, grid, args.batch_size)
        seconds.append(time.perf_counter() - start)
        hit = truth_cells(exp.times, exp.edges, truth[u.utt_id].regions).ravel()
        energy, scale = refs[key]
        orders = {
            "method": exp.order(),
            "random": rng.permutation(hit.size),
            "energy": energy_order(Perturber(wav, sr, grid).cell_log_energy(), energy),
        }
        pointing = {m: float(hit[o[0]]) for m, o in orders.items()}
        pointing["random"] = float(hit.mean())  # the expected hit rate of a random cell
        deletion = {
            m: deletion_drop(exp.score, deletion_scores(wav, sr, scorer, grid, o, args.steps, args.batch_size), scale)
            for m, o in orders.items()
        }
        flagged = exp.score > packed.threshold(u.machine, u.section)
        results.append(ClipResult(u.utt_id, truth[u.utt_id].kind, pointing, deletion, flagged))
        log.info("%s (%s): pointing %s, deletion %s", u.utt_id, truth[u.utt_id].kind, pointing, deletion)
    atomic_write_text(args.out, markdown_table(args.label, summarise(results)))
    body = {
        "label": args.label,
        "grid": args.grid,
        "steps": args.steps,
        "seconds_per_clip": float(np.mean(seconds)),
        "clips": [dataclasses.asdict(r) for r in results],
    }
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(body, indent=1) + "\n")
    print(f"{args.label}: {len(results)} clips, {np.mean(seconds):.2f} s per explanation -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
