"""Local launcher (Kaldi's run.pl): ``python -m asdlib.launch.local [opts] [JOB=1:N] <log> <cmd> ...``.

Runs the jobs as local processes, at most ``--max_jobs_run`` (default: the CPUs this process may
use) at once. ``--gpu N`` gives each job its own N GPUs: the visible GPUs (the caller's
CUDA_VISIBLE_DEVICES, else nvidia-smi's) are cut into groups of N, at most one job runs per group,
and the job's CUDA_VISIBLE_DEVICES names its group (logged per job). Other resource options
(``--mem``, ``--num_threads``, ``--time``, ``--config`` and any other) are accepted and ignored, as
run.pl does, so ``cmd.sh`` can switch between back ends without touching the calls.
"""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from asdlib.devices import visible_gpus
from asdlib.launch.cli import LaunchError, LaunchRequest, launcher_main
from asdlib.launch.jobs import JobArray

PROG = "local.sh"
NOTE = (
    "Local back end: --gpu N runs at most one job per N visible GPUs, each with its own CUDA_VISIBLE_DEVICES;\n"
    "the other resource options are accepted and ignored (as Kaldi's run.pl does).\n"
)

log = logging.getLogger(__name__)


def gpu_slots(gpus: list[str], per_job: int) -> list[str]:
    """The CUDA_VISIBLE_DEVICES value of each concurrent job slot: the GPUs in groups of ``per_job``."""
    if per_job > len(gpus):
        raise LaunchError(
            f"--gpu {per_job}: only {len(gpus)} GPU(s) are visible "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); lower --gpu "
            "(in a recipe, --ngpu) or make more GPUs visible"
        )
    return [",".join(gpus[k : k + per_job]) for k in range(0, len(gpus) - per_job + 1, per_job)]


def run_local(
    array: JobArray, ids: list[int], max_jobs: int, threads: int, slots: list[str] | None = None
) -> dict[int, int]:
    """Run the given jobs of ``array`` locally with bounded parallelism, each on a free GPU slot
    when ``slots`` is given; return their exit codes."""
    script = str(array.write_script(PROG, threads, source_path_sh=False))
    for i in ids:
        array.log(i).parent.mkdir(parents=True, exist_ok=True)
    free: queue.Queue[str] = queue.Queue()
    for slot in slots or []:
        free.put(slot)

    def one(i: int) -> int:
        if not slots:
            return subprocess.run(["bash", script, str(i)], stdin=subprocess.DEVNULL, check=False).returncode
        slot = free.get()
        log.info("%s: job %d on CUDA_VISIBLE_DEVICES=%s", PROG, i, slot)
        try:
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": slot}
            return subprocess.run(["bash", script, str(i)], stdin=subprocess.DEVNULL, env=env, check=False).returncode
        finally:
            free.put(slot)

    workers = min(max_jobs, len(ids), len(slots) if slots else max_jobs)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(ids, pool.map(one, ids)))


def job_slots(req: LaunchRequest) -> list[str] | None:
    """GPU slots for ``--gpu N`` (None: no GPUs asked for, or none can be told apart here)."""
    per_job = int(req.options.get("gpu", "0"))
    if not per_job:
        return None
    gpus = visible_gpus()
    if gpus is None:
        log.warning(
            "%s --gpu %d: CUDA_VISIBLE_DEVICES is unset and nvidia-smi lists no GPU; jobs share what they see",
            PROG,
            per_job,
        )
        return None
    return gpu_slots(gpus, per_job)


def run(req: LaunchRequest) -> int:
    array = JobArray.from_request(req)
    todo = array.pending()
    returncodes = {}
    if todo:
        max_jobs = req.max_jobs_run or len(os.sched_getaffinity(0))
        try:
            returncodes = run_local(array, todo, max_jobs, req.num_threads, job_slots(req))
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted; unfinished jobs run again on the next identical call", file=sys.stderr)
            return 130
    return array.finish(PROG, returncodes)


def main(argv: list[str] | None = None) -> int:
    return launcher_main(PROG, NOTE, argv, run)


if __name__ == "__main__":
    sys.exit(main())
