"""Slurm launcher (Kaldi's slurm.pl): ``python -m asdlib.launch.slurm [opts] [JOB=1:N] <log> <cmd> ...``.

Submits the jobs still to run as ONE array job, ``sbatch --wait --array=<ids>[%max_jobs_run]``,
with the resource options mapped to sbatch flags by ``conf/slurm.conf`` (``--config`` to change).
Each task's Slurm output goes to the job's own log (``-o`` with ``%a``, append mode), so a message
from Slurm such as a time-limit cancellation ends up in the log the failure report shows.
``sbatch --wait`` only tells the highest exit code of the array; which tasks failed is read from
the per-task status files (see :mod:`asdlib.launch.jobs`). Ctrl-C stops the waiting, not the
array: cancel it with ``scancel``.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import subprocess
import sys

from asdlib.launch.cli import LaunchError, LaunchRequest, launcher_main
from asdlib.launch.jobs import JobArray, ranges
from asdlib.launch.slurm_conf import SlurmConf

logger = logging.getLogger(__name__)

PROG = "slurm.sh"
STATUS_WAIT_S = 60
NOTE = "Slurm back end: options are mapped to sbatch flags by --config (default conf/slurm.conf).\n"


def sbatch_argv(req: LaunchRequest, array: JobArray, ids: list[int], script: str) -> list[str]:
    """The full sbatch command line for running ``ids`` of ``array``."""
    conf = SlurmConf.load(req.config or "conf/slurm.conf")
    submit = conf.submit_command(req.options)
    spec = ranges(ids) + (f"%{req.max_jobs_run}" if req.max_jobs_run else "")
    out = array.log_template.replace("%", "%%")
    if array.job_var:
        out = out.replace(array.job_var, "%a")
    out = os.path.join(array.cwd.replace("%", "%%"), out)
    return [
        submit[0], "--job-name", array.name, *submit[1:],
        "--wait", f"--array={spec}", "--output", out, "--open-mode=append", script,
    ]  # fmt: skip


def submit(argv: list[str]) -> int | None:
    """Run sbatch and wait; its exit code, or None (after reporting why) if nothing was submitted."""
    if shutil.which(argv[0]) is None:
        raise LaunchError(f"'{argv[0]}' not found: is Slurm installed? (a test cluster: tools/slurm/cluster.sh start)")
    logger.info("%s", shlex.join(argv))
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    m = re.search(r"Submitted batch job (\d+)", proc.stdout)
    if m is None:
        sys.stderr.write(
            f"{PROG}: sbatch could not submit the jobs (exit code {proc.returncode}):\n{proc.stderr.strip()}\n"
            f"  command: {shlex.join(argv)}\n"
        )
        return None
    logger.info("Slurm job %s finished (sbatch exit code %d)", m.group(1), proc.returncode)
    return proc.returncode


def run(req: LaunchRequest) -> int:
    try:
        array = JobArray.from_request(req)
        todo = array.pending()
        if todo:
            script = str(array.write_script(PROG, req.num_threads, source_path_sh=True))
            cmd = sbatch_argv(req, array, todo, script)
            for i in todo:
                array.log(i).parent.mkdir(parents=True, exist_ok=True)
            returncode = submit(cmd)
            if returncode is None:
                return 1
            # All tasks exited 0: their status files must come; else only allow a short lag.
            array.wait_for_status(todo, STATUS_WAIT_S if returncode == 0 else 5)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; the Slurm array may still run: cancel it with scancel", file=sys.stderr)
        return 130
    return array.finish(PROG)


def main(argv: list[str] | None = None) -> int:
    return launcher_main(PROG, NOTE, argv, run)


if __name__ == "__main__":
    sys.exit(main())
