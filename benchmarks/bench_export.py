"""CPU latency and real-time factor of one window, torch (the packed model, as asdlib-infer runs it)
against onnxruntime (an asdlib-export directory: ``embedder.onnx`` and, when exported with --int8,
``embedder.int8.onnx``), side by side in one run.

Each of ``--windows`` seeded noise windows of the model's length (``--seconds`` to override) is
embedded and scored by every runtime in turn (round-robin, so that a busy neighbour on a shared
machine slows all of them alike), after ``--warmup`` untimed windows each. Both runtimes get
``--threads`` intra-op threads. Reported per runtime: median and 95th-percentile latency from samples
to score (embedding plus back end), the real-time factor (compute seconds per audio second; below 1
is faster than real time), and the median speed-up over torch. Run::

    asdlib-export --packed egs/mini/exp/train/packed --out /tmp/mini_onnx --int8
    python benchmarks/bench_export.py --packed egs/mini/exp/train/packed --export /tmp/mini_onnx

``--base`` measures the paper's system instead (LoRA r64 + MGA on a random base-size BEATs,
:func:`common.base_pack`, packed and exported with --int8 in ``--work_dir`` on the first call)::

    python benchmarks/bench_export.py --base --seconds 10 --windows 8
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

from asdlib.backends.packed import load_packed  # noqa: E402
from asdlib.bin import export  # noqa: E402
from asdlib.export.onnx_export import probe_seconds  # noqa: E402
from asdlib.export.reference import EMBEDDER_INT8, MANIFEST, Scorer  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--packed", type=Path, help="a packed model (or --base)")
    p.add_argument("--export", type=Path, help="asdlib-export's --out of the same pack (or --base)")
    p.add_argument("--base", action="store_true", help="the paper's system on a random base BEATs (common.base_pack)")
    p.add_argument("--work_dir", type=Path, default=Path("/tmp/asdlib_bench"))
    p.add_argument("--windows", type=int, default=50)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--seconds", type=float, help="window length (default: the model's)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, help="write the results here (JSON)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    if args.base:
        args.packed, args.export = common.base_pack(args.work_dir), args.work_dir / "onnx_base"
        if not (args.export / MANIFEST).is_file():
            export.main(
                ["--packed", str(args.packed), "--out", str(args.export), "--int8", "--force", "--verbose", "0"]
            )
    if args.packed is None or args.export is None:
        raise SystemExit("bench_export.py: pass --packed and --export, or --base")
    torch.set_num_threads(args.threads)
    packed = load_packed(args.packed)
    machine, section = packed.known()[0]
    seconds = args.seconds or probe_seconds(packed)
    rate = packed.manifest.audio.sample_rate
    # (embed, score the embeddings) of each runtime
    runtimes: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]] = {
        "torch": (
            lambda w: packed.embed([w], machine, "cpu"),
            lambda e: packed.score_embeddings(e, machine, section),
        )
    }
    scorers = {"onnxruntime fp32": Scorer(args.export, threads=args.threads)}
    if (args.export / EMBEDDER_INT8).is_file():
        scorers["onnxruntime int8"] = Scorer(args.export, int8=True, threads=args.threads)
    for name, scorer in scorers.items():
        runtimes[name] = (
            lambda w, s=scorer: s.embed([w], machine),
            lambda e, s=scorer: s.score_embeddings(e, machine, section),
        )
    rng = np.random.default_rng(0)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runtimes}
    for i in range(args.warmup + args.windows):
        w = (rng.standard_normal(int(seconds * rate)) * 0.1).astype(np.float32)
        for name, (embed, score) in runtimes.items():
            start = time.perf_counter()
            e = embed(w)
            mid = time.perf_counter()
            score(e)
            if i >= args.warmup:
                times[name].append((mid - start, time.perf_counter() - mid))
    totals = {name: [a + b for a, b in t] for name, t in times.items()}
    base = statistics.median(totals["torch"])
    results = {
        "packed": str(args.packed),
        "window_seconds": seconds,
        "windows": args.windows,
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "runtimes": {
            name: {
                "median_ms": 1000 * statistics.median(t),
                "p95_ms": 1000 * float(np.percentile(t, 95)),
                "embed_median_ms": 1000 * statistics.median(a for a, _ in times[name]),
                "score_median_ms": 1000 * statistics.median(b for _, b in times[name]),
                "rtf": statistics.median(t) / seconds,
                "speedup_vs_torch": base / statistics.median(t),
            }
            for name, t in totals.items()
        },
    }
    print("| runtime | latency median (ms) | p95 (ms) | embed (ms) | back end (ms) | RTF | speed-up vs torch |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results["runtimes"].items():
        cells = (r["median_ms"], r["p95_ms"], r["embed_median_ms"], r["score_median_ms"], r["rtf"])
        print(
            f"| {name} | "
            + " | ".join(f"{c:.1f}" for c in cells[:4])
            + f" | {cells[4]:.4f} | {r['speedup_vs_torch']:.2f}x |"
        )
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
