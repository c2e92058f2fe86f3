"""Local launcher (Kaldi's run.pl): ``python -m asdlib.launch.local [opts] [JOB=1:N] <log> <cmd> ...``.

Runs the jobs as local processes, at most ``--max_jobs_run`` (default: the CPUs this process may
use) at once. Resource options (``--gpu``, ``--mem``, ``--num_threads``, ``--time``, ``--config``
and any other) are accepted and ignored, as run.pl does, so ``cmd.sh`` can switch between back
ends without touching the calls; ``--gpu`` leaves CUDA_VISIBLE_DEVICES as the caller set it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from asdlib.launch.cli import LaunchRequest, launcher_main
from asdlib.launch.jobs import JobArray

PROG = "local.sh"
NOTE = "Local back end: resource options are accepted and ignored (as Kaldi's run.pl does).\n"


def run_local(array: JobArray, ids: list[int], max_jobs: int, threads: int) -> dict[int, int]:
    """Run the given jobs of ``array`` locally with bounded parallelism; return their exit codes."""
    script = str(array.write_script(PROG, threads, source_path_sh=False))
    for i in ids:
        array.log(i).parent.mkdir(parents=True, exist_ok=True)

    def one(i: int) -> int:
        return subprocess.run(["bash", script, str(i)], stdin=subprocess.DEVNULL, check=False).returncode

    with ThreadPoolExecutor(max_workers=min(max_jobs, len(ids))) as pool:
        return dict(zip(ids, pool.map(one, ids)))


def run(req: LaunchRequest) -> int:
    array = JobArray.from_request(req)
    todo = array.pending()
    returncodes = {}
    if todo:
        max_jobs = req.max_jobs_run or len(os.sched_getaffinity(0))
        try:
            returncodes = run_local(array, todo, max_jobs, req.num_threads)
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted; unfinished jobs run again on the next identical call", file=sys.stderr)
            return 130
    return array.finish(PROG, returncodes)


def main(argv: list[str] | None = None) -> int:
    return launcher_main(PROG, NOTE, argv, run)


if __name__ == "__main__":
    sys.exit(main())
