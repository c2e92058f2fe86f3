"""Stage-4 extraction with nj=1 against nj=2, through the recipe and the local launcher (CPU).

A mini recipe copy (symlinks to egs/mini's run.sh, asd.sh, utils/, local/, cmd.sh, db.sh, as the
end-to-end test mirrors it) gets the extraction benchmark's experiment (random base-size BEATs +
LoRA r64 + MGA) and data dir; then ``./asd.sh --stage 4 --stop_stage 4 --nj N`` runs with
``cmd_backend=local`` (``utils/local.sh``: N parallel jobs, each with OMP_NUM_THREADS=1), the
embeddings directory removed before every run. Wall times of whole stage-4 runs, interleaved over
``--repeats``; the speed-up is time(nj=1) / time(nj=2) (ideal: 2 on 2 idle cores, less the fixed
per-job cost of starting Python and loading the model, which every job pays). On a machine shared
with other work the wall times say little, so the CPU time of all processes of a run (children's
rusage) is reported too, and with it the speed-up the jobs would reach on otherwise idle cores:
CPU(nj=1) / (CPU(nj=2) / 2), which assumes an even split of the clips.

Run: ``python benchmarks/bench_nj.py`` (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

MINI = common.REPO / "egs" / "mini"
TAG = "bench"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work_dir", type=Path, default=Path("/tmp/asdlib_bench"))
    p.add_argument("--clips", type=int, default=16)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--nj", default="1,2", help="comma list of job counts to compare")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, help="write all raw results here (JSON)")
    return p


def make_recipe(work_dir: Path, exp_dir: Path, data_dir: Path) -> Path:
    recipe = work_dir / "recipe" / "egs" / "mini"
    if recipe.exists():
        shutil.rmtree(recipe)
    recipe.mkdir(parents=True)
    for name in ("run.sh", "asd.sh", "utils", "local", "cmd.sh", "db.sh"):
        (recipe / name).symlink_to((MINI / name).resolve())
    (recipe / "path.sh").write_text(f'. "{common.REPO}/path.sh"\n')
    shutil.copytree(MINI / "conf", recipe / "conf")
    (recipe / "data").mkdir()
    (recipe / "data" / "dev_train").symlink_to(data_dir)
    (recipe / "exp" / TAG).mkdir(parents=True)
    for name in ("config.yaml", "model.pt"):
        (recipe / "exp" / TAG / name).symlink_to(exp_dir / name)
    return recipe


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def stage4(recipe: Path, nj: int) -> tuple[float, float, float]:
    """(wall time, CPU time of all its processes, load average of the last minute at the start) of one run."""
    shutil.rmtree(recipe / "exp" / TAG / "embed", ignore_errors=True)
    load = os.getloadavg()[0]
    cpu = children_cpu_s()
    start = time.perf_counter()
    proc = subprocess.run(
        [
            "./asd.sh",
            "--year",
            "2024",
            "--stage",
            "4",
            "--stop_stage",
            "4",
            "--nj",
            str(nj),
            "--tag",
            TAG,
            "--train_sets",
            "dev_train",
            "--test_sets",
            "",
        ],
        cwd=recipe,
        capture_output=True,
        text=True,
        env={**os.environ, "cmd_backend": "local"},
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"stage 4 with nj={nj} failed:\n{proc.stderr[-4000:]}")
    return wall, children_cpu_s() - cpu, load


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    exp_dir, data_dir = common.extraction_setup(args.work_dir, args.clips, args.seconds)
    recipe = make_recipe(args.work_dir, exp_dir, data_dir)
    njs = [int(n) for n in args.nj.split(",")]
    walls: dict[int, list[float]] = {n: [] for n in njs}
    cpus: dict[int, list[float]] = {n: [] for n in njs}
    loads: dict[int, list[float]] = {n: [] for n in njs}
    for r in range(args.repeats):
        for n in njs if r % 2 == 0 else njs[::-1]:
            wall, cpu, load = stage4(recipe, n)
            walls[n].append(wall)
            cpus[n].append(cpu)
            loads[n].append(load)
            print(
                f"repeat {r + 1} nj={n}: {wall:.1f} s wall, {cpu:.1f} s CPU (load average {load:.2f})", file=sys.stderr
            )
    print(f"# {common.machine_description()}")
    print(
        f"# stage 4 of {args.clips} clips x {args.seconds:g} s through utils/local.sh, {args.repeats} runs per nj "
        "(interleaved); medians, noise = (max-min)/median"
    )
    print("| nj | stage-4 wall s | wall noise | CPU s (all processes) | CPU noise | load average at the starts |")
    print("|---|---|---|---|---|---|")
    for n in njs:
        print(
            f"| {n} | {common.median(walls[n]):.1f} | {common.spread(walls[n])} | {common.median(cpus[n]):.1f} | "
            f"{common.spread(cpus[n])} | {', '.join(f'{x:.1f}' for x in loads[n])} |"
        )
    base, base_cpu = common.median(walls[njs[0]]), common.median(cpus[njs[0]])
    for n in njs[1:]:
        # CPU(nj=1) / (CPU(nj=n) / n): the wall-time speed-up on n otherwise idle cores if the jobs
        # split the work evenly; less than n by the work every job repeats (start-up, model load).
        print(
            f"speed-up nj={n} over nj={njs[0]}: measured wall time {base / common.median(walls[n]):.2f}; "
            f"on {n} idle cores from the CPU times {n * base_cpu / common.median(cpus[n]):.2f}"
        )
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "walls": {str(k): v for k, v in walls.items()},
                    "cpu": {str(k): v for k, v in cpus.items()},
                    "loadavg_1min": {str(k): v for k, v in loads.items()},
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
