"""Extraction throughput: the stage-4 pipeline against the bare model forward (CPU).

Both variants use the same model (the dcase2024 system: random base-size BEATs + LoRA r64 + MGA),
the same clips and the same batch size, each in a fresh process, interleaved over ``--repeats``:

* ``pipeline``: ``asdlib.bin.extract.main`` exactly as stage 4 runs it (read the data dir, read and
  check every wav with soundfile, collate, model forward, pooling, projection, write ark/scp).
  Its wall time is split into the model load (``load_trained``, timed by wrapping it) and the rest;
  the rest is the pipeline's throughput, the load a fixed cost per job.
* ``bare``: the same model loaded the same way, the clips read and collated beforehand (untimed),
  then only ``model(wavs, lengths, machines)`` per batch under ``torch.no_grad``.

Run: ``python benchmarks/bench_extract.py`` (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work_dir", type=Path, default=Path("/tmp/asdlib_bench"))
    p.add_argument("--clips", type=int, default=16)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--batch_size", type=int, default=4, help="asdlib.bin.extract's default")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads (stage-4 jobs run with OMP_NUM_THREADS=1)")
    p.add_argument("--out", type=Path, help="write all raw results here (JSON)")
    p.add_argument("--child", choices=["pipeline", "bare"], help=argparse.SUPPRESS)
    p.add_argument("--exp_dir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--data_dir", type=Path, help=argparse.SUPPRESS)
    return p


def child(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    from asdlib.bin import extract

    if args.child == "pipeline":
        load: list[tuple[float, float]] = []
        load_trained = extract.load_trained

        def timed_load(*a, **kw):
            start, start_cpu = time.perf_counter(), time.process_time()
            out = load_trained(*a, **kw)
            load.append((time.perf_counter() - start, time.process_time() - start_cpu))
            return out

        extract.load_trained = timed_load
        out = args.work_dir / "bench_extract_out"
        out.mkdir(parents=True, exist_ok=True)
        start, start_cpu = time.perf_counter(), time.process_time()
        extract.main(
            [
                "--exp_dir",
                str(args.exp_dir),
                "--data_dir",
                str(args.data_dir),
                "--out_ark",
                str(out / "emb.ark"),
                "--out_scp",
                str(out / "emb.scp"),
                "--batch_size",
                str(args.batch_size),
                "--device",
                "cpu",
                "--verbose",
                "0",
            ]
        )
        total, total_cpu = time.perf_counter() - start, time.process_time() - start_cpu
        return {
            "variant": "pipeline",
            "total_s": total,
            "load_s": load[0][0],
            "work_s": total - load[0][0],
            "total_cpu_s": total_cpu,
            "load_cpu_s": load[0][1],
            "work_cpu_s": total_cpu - load[0][1],
            "loadavg_1min": os.getloadavg()[0],
        }

    from torch.utils.data import DataLoader

    from asdlib.data.datadir import read_data_dir
    from asdlib.data.dataset import ClipDataset, collate
    from asdlib.models.loading import load_trained

    start, start_cpu = time.perf_counter(), time.process_time()
    trained = load_trained(args.exp_dir, "cpu")
    load, load_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    utts = read_data_dir(args.data_dir)
    index = {m: i for i, m in enumerate(trained.machines)}
    dataset = ClipDataset(utts, trained.cfg.data.sample_rate, machines=[index.get(u.machine, -1) for u in utts])
    batches = list(DataLoader(dataset, batch_size=args.batch_size, collate_fn=collate))
    start, start_cpu = time.perf_counter(), time.process_time()
    with torch.no_grad():
        for b in batches:
            trained.model(b.wavs, b.lengths, b.machines)
    work, work_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return {
        "variant": "bare",
        "total_s": load + work,
        "load_s": load,
        "work_s": work,
        "total_cpu_s": load_cpu + work_cpu,
        "load_cpu_s": load_cpu,
        "work_cpu_s": work_cpu,
        "loadavg_1min": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    exp_dir, data_dir = common.extraction_setup(args.work_dir, args.clips, args.seconds)
    variants = ["pipeline", "bare"]
    results: dict[str, list[dict]] = {v: [] for v in variants}
    for r in range(args.repeats):
        for v in variants if r % 2 == 0 else variants[::-1]:
            res = common.run_child(
                [
                    __file__,
                    "--child",
                    v,
                    "--work_dir",
                    str(args.work_dir),
                    "--exp_dir",
                    str(exp_dir),
                    "--data_dir",
                    str(data_dir),
                    "--batch_size",
                    str(args.batch_size),
                    "--threads",
                    str(args.threads),
                ]
            )
            results[v].append(res)
            print(f"repeat {r + 1} {v}: {res}", file=sys.stderr)
    keys = ("total_s", "load_s", "work_s", "total_cpu_s", "load_cpu_s", "work_cpu_s")
    med = {v: {k: common.median([x[k] for x in results[v]]) for k in keys} for v in variants}
    print(f"# {common.machine_description()}")
    print(
        f"# {args.clips} clips x {args.seconds:g} s, batch {args.batch_size}, {args.threads} thread(s), "
        f"{args.repeats} fresh processes per variant; medians, noise = (max-min)/median; "
        "CPU: CPU time of the process (robust to other load), wall: elapsed"
    )
    print("| variant | load CPU s | clips CPU s | clips/CPU s | CPU noise | load wall s | clips wall s | wall noise |")
    print("|---|---|---|---|---|---|---|---|")
    for v in variants:
        m, rows = med[v], results[v]
        print(
            f"| {v} | {m['load_cpu_s']:.2f} | {m['work_cpu_s']:.2f} | {args.clips / m['work_cpu_s']:.3f} | "
            f"{common.spread([x['work_cpu_s'] for x in rows])} | {m['load_s']:.2f} | {m['work_s']:.2f} | "
            f"{common.spread([x['work_s'] for x in rows])} |"
        )
    ratios = {
        "cpu": med["bare"]["work_cpu_s"] / med["pipeline"]["work_cpu_s"],
        "wall": med["bare"]["work_s"] / med["pipeline"]["work_s"],
        "cpu_with_load": med["bare"]["work_cpu_s"] / med["pipeline"]["total_cpu_s"],
    }
    print(
        f"ratio pipeline / bare throughput: CPU time {ratios['cpu']:.3f}, wall time {ratios['wall']:.3f}; "
        f"with the pipeline's model load counted (CPU): {ratios['cpu_with_load']:.3f}"
    )
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "results": results,
                    "medians": med,
                    "ratios": ratios,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
