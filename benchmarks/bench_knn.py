"""kNN scoring throughput: asdlib's back ends against a bare ``torch.mm`` + ``torch.topk``.

One (machine, section) bank of ``--bank`` random 256-d embeddings and ``--queries`` random
queries (float32, seed 0); ``--target_share`` of the bank is target domain (default 0: all source).
Variants, each in a fresh process, interleaved over ``--repeats``:

- ``asdlib`` (``--kinds knn``, the default): ``KnnBackend(k).score(utts, embeddings)`` on a fitted
  bank, as stage 5 calls it (L2 normalisation, grouping by section, fixed 256-row query blocks, bank
  chunks, top-k merge); the fit (normalisation, float32 copy of the bank) is timed separately.
- any other registered back end named in ``--kinds`` (e.g. ``knn_zscore``), built from its default
  settings (``--conf kind.key=value`` changes one), fitted and scored the same way: the cost of a
  score normalisation against the plain kNN (``knn``) in one run.
- ``bare``: the same L2-normalised float32 arrays as torch tensors, then one
  ``torch.topk(torch.mm(q, bank.T), k)`` over all queries at once (no blocking, no padding, no
  determinism guarantee across job splits).

The ratios are queries per CPU second of each back end over ``bare`` (goal for ``knn`` >= 0.8);
wall times are recorded too. Run: ``python benchmarks/bench_knn.py`` (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bank", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--k", type=int, default=1)
    p.add_argument("--kinds", default="knn", help="comma-separated back ends to time against bare (knn = 'asdlib')")
    p.add_argument("--conf", action="append", default=[], help="kind.key=value: a setting of one back end")
    p.add_argument("--target_share", type=float, default=0.0, help="share of the bank in the target domain")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, help="write all raw results here (JSON)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p


def child(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    bank = rng.standard_normal((args.bank, args.dim), dtype=np.float32)
    query = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    if args.child == "bare":
        from asdlib.backends.knn import normalize

        b = torch.from_numpy(normalize(bank.astype(np.float64)).astype(np.float32))
        q = torch.from_numpy(normalize(query.astype(np.float64)).astype(np.float32))
        c0, w0 = time.process_time(), time.perf_counter()
        dist = 1.0 - torch.topk(torch.mm(q, b.T), args.k, dim=1).values
        fit_cpu = fit_wall = 0.0
    else:
        import yaml

        from asdlib.backends.bank import make_backend
        from asdlib.config import BackendConfig
        from asdlib.data.datadir import Utt
        from asdlib.io.config import from_dict

        kind = "knn" if args.child == "asdlib" else args.child
        conf = {"k": args.k}
        for item in args.conf:
            key, _, value = item.partition("=")
            owner, _, name = key.partition(".")
            if owner == kind:
                conf[name] = yaml.safe_load(value)
        n_target = round(args.target_share * args.bank)

        def utts(n: int, kind: str, target: int = 0) -> list[Utt]:
            return [
                Utt(
                    f"fan-00-{kind}{i:07d}",
                    "/x.wav",
                    "fan",
                    "00",
                    "target" if i < target else "source",
                    "normal",
                    "noAttribute",
                )
                for i in range(n)
            ]

        bank_utts, query_utts = utts(args.bank, "b", n_target), utts(args.queries, "q")
        c0, w0 = time.process_time(), time.perf_counter()
        backend = make_backend(from_dict(BackendConfig, {"kind": kind, "conf": conf}), [args.dim]).fit(bank_utts, bank)
        fit_cpu, fit_wall = time.process_time() - c0, time.perf_counter() - w0
        c0, w0 = time.process_time(), time.perf_counter()
        dist = backend.score(query_utts, query)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    return {
        "cpu": cpu,
        "wall": wall,
        "fit_cpu": fit_cpu,
        "fit_wall": fit_wall,
        "checksum": float(np.asarray(dist, dtype=np.float64).mean()),
    }


def main() -> int:
    args = get_parser().parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return 0
    opts = [
        "--bank",
        str(args.bank),
        "--queries",
        str(args.queries),
        "--dim",
        str(args.dim),
        "--k",
        str(args.k),
        "--threads",
        str(args.threads),
        "--target_share",
        str(args.target_share),
        *(f"--conf={c}" for c in args.conf),
    ]
    env = {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    variants = ["asdlib" if k == "knn" else k for k in args.kinds.split(",") if k] + ["bare"]
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for r in range(args.repeats):
        for variant in variants if r % 2 == 0 else variants[::-1]:
            res = common.run_child([__file__, "--child", variant, *opts], env)
            runs[variant].append(res)
            print(f"repeat {r} {variant}: cpu {res['cpu']:.2f} s, wall {res['wall']:.2f} s", flush=True)
    summary = {}
    for variant, rs in runs.items():
        cpu, wall = [x["cpu"] for x in rs], [x["wall"] for x in rs]
        summary[variant] = {
            "cpu_s": common.median(cpu),
            "wall_s": common.median(wall),
            "cpu_noise": common.spread(cpu),
            "wall_noise": common.spread(wall),
            "queries_per_cpu_s": args.queries / common.median(cpu),
            "fit_cpu_s": common.median([x["fit_cpu"] for x in rs]),
        }
    ratio_cpu = {v: summary["bare"]["cpu_s"] / summary[v]["cpu_s"] for v in variants if v != "bare"}
    ratio_wall = {v: summary["bare"]["wall_s"] / summary[v]["wall_s"] for v in variants if v != "bare"}
    if "asdlib" in ratio_cpu:  # each back end's scoring time over the plain kNN's
        summary["cpu_time_over_knn"] = {v: summary[v]["cpu_s"] / summary["asdlib"]["cpu_s"] for v in ratio_cpu}
    checks = {v: rs[0]["checksum"] for v, rs in runs.items()}
    result = {
        "args": {k: str(v) for k, v in vars(args).items() if k != "child"},
        "machine": common.machine_description(),
        "date": time.strftime("%Y-%m-%d"),
        "runs": runs,
        "summary": summary,
        "throughput_ratio_cpu": ratio_cpu,
        "throughput_ratio_wall": ratio_wall,
        "mean_distance": checks,
    }
    print(
        json.dumps(
            {
                "summary": summary,
                "throughput_ratio_cpu": ratio_cpu,
                "throughput_ratio_wall": ratio_wall,
                "mean_distance": checks,
            },
            indent=1,
        )
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
