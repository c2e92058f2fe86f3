"""An exported model (asdlib-export) against its packed model on a labelled test set: equivalence and
the cost of int8.

Every clip of each ``--data_dir`` is scored three ways: the packed model as asdlib-infer scores it
(:func:`asdlib.bin.infer.embed_recording`, ``Packed.score_embeddings``), and the reference scorer of
the export with ``embedder.onnx`` and, when present, ``embedder.int8.onnx``. Reported: the largest
absolute difference of the fp32 export's window embeddings and window scores from the packed
model's, the same for int8, and the official score (``--year``'s rule, with its mean AUC) of each.
Run::

    asdlib-export --packed /work/packs/mini_train --out /tmp/mini_onnx --int8
    python benchmarks/export_accuracy.py --packed /work/packs/mini_train --export /tmp/mini_onnx \
        --data_dir egs/mini/data/eval_test --year 2024
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from asdlib.backends.packed import load_packed
from asdlib.bin.infer import embed_recording
from asdlib.data.datadir import read_data_dir
from asdlib.data.windows import aggregate
from asdlib.export.reference import EMBEDDER_INT8, Scorer
from asdlib.metrics.official import official_score
from asdlib.metrics.records import scored_utts


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--packed", type=Path, required=True)
    p.add_argument("--export", type=Path, required=True, help="asdlib-export's --out of the same pack")
    p.add_argument("--data_dir", type=Path, action="append", required=True, help="labelled test set (repeatable)")
    p.add_argument("--year", type=int, default=2024, help="official rule of the scores")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, help="write the results here (JSON)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    packed = load_packed(args.packed)
    how = packed.trained.cfg.data.window_aggregate
    scorers = {"onnx": Scorer(args.export, threads=args.threads)}
    if (args.export / EMBEDDER_INT8).is_file():
        scorers["onnx_int8"] = Scorer(args.export, int8=True, threads=args.threads)
    results = {}
    for data_dir in args.data_dir:
        utts = read_data_dir(data_dir)
        scores: dict[str, dict[str, float]] = {"torch": {}, **{k: {} for k in scorers}}
        errors = {k: {"embedding": 0.0, "score": 0.0} for k in scorers}
        windows = 0
        with tqdm(desc=data_dir.name, unit="window", file=sys.stderr, disable=None) as bar:
            for u in utts:
                _, want = embed_recording(packed, Path(u.path), u.machine, "cpu", 8, bar)
                s_want = packed.score_embeddings(want, u.machine, u.section)
                scores["torch"][u.utt_id] = aggregate(s_want, how)
                cut = [w for _, _, w in scorers["onnx"].windows(Path(u.path))]
                windows += len(cut)
                for name, scorer in scorers.items():
                    got = scorer.embed(cut, u.machine)
                    s_got = scorer.score_embeddings(got, u.machine, u.section)
                    errors[name]["embedding"] = max(errors[name]["embedding"], float(np.abs(got - want).max()))
                    errors[name]["score"] = max(errors[name]["score"], float(np.abs(s_got - s_want).max()))
                    scores[name][u.utt_id] = aggregate(s_got, how)
        official = {}
        for name, table in scores.items():
            ev = official_score(args.year, scored_utts(utts, table))
            official[name] = {"official_score": ev.official_score, **ev.summary}
        results[data_dir.name] = {"clips": len(utts), "windows": windows, "max_abs_error": errors, "official": official}
    text = json.dumps(results, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
