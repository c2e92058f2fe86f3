"""The jobs of one launcher call: task script, logs, status files, rerun of failed jobs, failure report.

Every back end runs the same generated bash *task script* once per job (``bash q/<name>.sh <i>``
locally, ``sbatch --array`` on Slurm). It writes the job's log (header with the command line,
start time and host; the output; the Kaldi footer ``# Accounting: ...`` / ``# Ended (code N) ...``)
and, as its very last step, a status file ``<log dir>/q/<log name>.status`` holding
``<call-id> <exit-code>``. The launcher reads the status files, not exit codes (``sbatch --wait``
only returns the highest code of the array), so it knows exactly which jobs failed, and a job
killed before it could write one (time limit, OOM, Ctrl-C) counts as unfinished.

Reruns: the call id hashes the job range, log template and command. When a call is made again
with the same call id, jobs whose status says success are not run again; only failed and
unfinished jobs are. A job is rerun anyway when a regular file named in its command line is
newer than its status file (e.g. a retrained model), so edited inputs are never silently
mixed with old outputs. When all jobs of a call have succeeded the status files are deleted, so
the next identical call (e.g. a stage rerun later) runs every job again: skipping only resumes a
call that failed or was interrupted. Delete ``<log dir>/q/*.status`` to force a full rerun.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from asdlib.io.atomic import atomic_write_text
from asdlib.launch.cli import LaunchRequest

logger = logging.getLogger(__name__)

TAIL_LINES = 15
MAX_TAILS = 3

_SCRIPT = r"""#!/usr/bin/env bash
# Written by @PROG@ (asdlib.launch) for one launcher call. Runs one job:
#   bash @SCRIPT@ <job-index>        (under Slurm the index is SLURM_ARRAY_TASK_ID)
# It writes the job's log (header, output, footer) and then its status file
# "<call-id> <exit-code>", which the launcher reads to report failures and to rerun only failed jobs.
job="${1:-${SLURM_ARRAY_TASK_ID:-}}"
case "${job}" in
    "" | *[!0-9]*) echo "$0: no job index given" >&2; exit 2 ;;
esac
cd @CWD@ || exit 2
@ENV@
cmd=@COMMAND@
log=@LOG@
status=@STATUS@
@SUBST@
mkdir -p "$(dirname "${log}")" "$(dirname "${status}")" || exit 2
start=$(date +%s)
{
    while IFS= read -r line; do printf '# %s\n' "${line}"; done <<<"${cmd}"
    echo "# Started at $(date)"
    echo "# Running on ${HOSTNAME:-$(uname -n)}"
    echo "#"
} >"${log}"
bash -c "${cmd}" </dev/null >>"${log}" 2>&1
code=$?
elapsed=$(($(date +%s) - start))
{
    echo "# Accounting: time=${elapsed} threads=@THREADS@"
    echo "# Ended (code ${code}) at $(date), elapsed time ${elapsed} seconds"
} >>"${log}"
printf '%s %s\n' @CALL@ "${code}" >"${status}.tmp.$$" && mv -f "${status}.tmp.$$" "${status}"
exit "${code}"
"""

# The recipe's path.sh restores the environment (venv, LC_ALL, threads) on a compute node, as
# Kaldi's queue.pl/slurm.pl do; sbatch itself exports only what conf/slurm.conf asks for.
_SOURCE_PATH_SH = "if [ -f ./path.sh ]; then . ./path.sh; fi"


@dataclass(frozen=True)
class JobArray:
    """Jobs ``start..end`` of one call; ``job_var`` (e.g. ``JOB``) is replaced by the index.

    ``log_template`` is kept as the caller wrote it (relative to ``cwd``, the directory the jobs
    run in), so only the caller's text is substituted, never a ``JOB`` in the directory names above.
    """

    log_template: str
    command: str
    job_var: str | None
    start: int
    end: int
    cwd: str

    @classmethod
    def from_request(cls, req: LaunchRequest) -> JobArray:
        return cls(req.log, req.command, req.job_var, req.start, req.end, os.getcwd())

    @property
    def ids(self) -> list[int]:
        return list(range(self.start, self.end + 1))

    def _subst(self, text: str, i: int) -> str:
        return text.replace(self.job_var, str(i)) if self.job_var else text

    def log(self, i: int) -> Path:
        return Path(self.cwd, self._subst(self.log_template, i))

    def command_for(self, i: int) -> str:
        return self._subst(self.command, i)

    @property
    def _status_template(self) -> str:
        head, tail = os.path.split(self.log_template)
        return os.path.join(head, "q", tail + ".status")

    def status(self, i: int) -> Path:
        return Path(self.cwd, self._subst(self._status_template, i))

    @property
    def call_id(self) -> str:
        """Identifies "the same call": same range, log template and command line."""
        blob = json.dumps([self.job_var, self.start, self.end, self.cwd, self.log_template, self.command])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def name(self) -> str:
        """Short job name from the log name: ``extract.JOB.log`` -> ``extract``."""
        base = os.path.basename(self.log_template)
        if self.job_var:
            base = base.replace(self.job_var, "")
        base = re.sub(r"\.+", ".", base).strip(".")
        base = base[: -len(".log")] if base.endswith(".log") else base
        return base or "job"

    @property
    def script(self) -> Path:
        return self.log(self.start).parent / "q" / f"{self.name}.sh"

    def write_script(self, prog: str, threads: int, source_path_sh: bool) -> Path:
        """Write the task script (atomically) and return its path."""
        subst = ""
        if self.job_var:
            subst = "\n".join(f'{v}="${{{v}//{self.job_var}/${{job}}}}"' for v in ("cmd", "log", "status"))
        fields = {
            "@PROG@": prog,
            "@SCRIPT@": str(self.script),
            "@CWD@": shlex.quote(self.cwd),
            "@ENV@": _SOURCE_PATH_SH if source_path_sh else "",
            "@COMMAND@": shlex.quote(self.command),
            "@LOG@": shlex.quote(self.log_template),
            "@STATUS@": shlex.quote(self._status_template),
            "@SUBST@": subst,
            "@THREADS@": str(threads),
            "@CALL@": self.call_id,
        }
        text = re.sub("|".join(fields), lambda m: fields[m.group(0)], _SCRIPT)
        atomic_write_text(self.script, text)
        return self.script

    def read_status(self, i: int) -> int | None:
        """Exit code recorded by job ``i`` for this call, or None if it has none (did not finish)."""
        try:
            call, code = self.status(i).read_text(encoding="utf-8").split()
        except (FileNotFoundError, ValueError):
            return None
        return int(code) if call == self.call_id and re.fullmatch(r"-?\d+", code) else None

    def _inputs_newer(self, i: int) -> list[str]:
        """Regular files named in job ``i``'s command that changed after the job finished.

        Relative names resolve against the launcher's working directory, which is ``cwd``.
        """
        done = self.status(i).stat().st_mtime_ns
        try:
            words = shlex.split(self.command_for(i))
        except ValueError:
            words = self.command_for(i).split()
        names = {part for w in words for part in (w, *re.split(r"[=:,]", w)) if part}
        return sorted(n for n in names if os.path.isfile(n) and os.stat(n).st_mtime_ns > done)

    def pending(self) -> list[int]:
        """Jobs to run now: all but those that succeeded in an earlier attempt of this same call."""
        todo, kept = [], []
        for i in self.ids:
            if self.read_status(i) == 0:
                newer = self._inputs_newer(i)
                if not newer:
                    kept.append(i)
                    continue
                logger.info("job %d: rerun because %s changed after it succeeded", i, ", ".join(newer))
            todo.append(i)
            self.status(i).unlink(missing_ok=True)
        if kept:
            logger.warning(
                "not rerunning %d of %d jobs that succeeded in an earlier attempt of this call: %s "
                "(delete %s to rerun them)",
                len(kept),
                len(self.ids),
                ranges(kept),
                self.status(kept[0]).parent / "*.status",
            )
        return todo

    def wait_for_status(self, ids: list[int], timeout: float) -> None:
        """Wait up to ``timeout`` s for status files of ``ids`` written on other hosts.

        Why: on NFS the submit host may not see a file a compute node just wrote (cached
        negative lookups); listing the directory revalidates it, as Kaldi's queue.pl does.
        """
        deadline = time.monotonic() + timeout
        missing = [i for i in ids if self.read_status(i) is None]
        while missing and time.monotonic() < deadline:
            time.sleep(1)
            for d in {self.status(i).parent for i in missing}:
                with contextlib.suppress(OSError):
                    os.listdir(d)
            missing = [i for i in missing if self.read_status(i) is None]

    def finish(self, prog: str, returncodes: dict[int, int] | None = None) -> int:
        """Report failed jobs on stderr and return 1, or clear the status files and return 0.

        ``returncodes`` (process exit codes, when the back end has them) explain jobs that died
        before writing a status file.
        """
        codes = {i: self.read_status(i) for i in self.ids}
        failed = [i for i, c in codes.items() if c != 0]
        if not failed:
            for i in self.ids:
                self.status(i).unlink(missing_ok=True)
            return 0
        lines = [f"{prog}: {len(failed)} of {len(self.ids)} job(s) failed:"]
        for i in failed:
            if codes[i] is not None:
                why = f"exit code {codes[i]}"
            else:
                rc = (returncodes or {}).get(i)
                why = (
                    "did not finish (killed, or it could not start"
                    + (f"; exit code {rc}" if rc is not None else "")
                    + ")"
                )
            lines.append(f"  job {i}: {why}; log: {self.log(i)}")
        for i in failed[:MAX_TAILS]:
            lines.append(f"--- last lines of {self.log(i)} ---")
            lines.extend(_tail(self.log(i), TAIL_LINES))
        lines.append(f"{prog}: run the same command again to repeat only the failed job(s)")
        sys.stderr.write("\n".join(lines) + "\n")
        return 1


def _tail(path: Path, n: int) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            return f.read().decode("utf-8", errors="replace").splitlines()[-n:]
    except FileNotFoundError:
        return ["(log file missing: the job did not start)"]


def ranges(ids: list[int]) -> str:
    """``[1, 2, 3, 5]`` -> ``"1-3,5"`` (also Slurm's --array syntax)."""
    parts: list[str] = []
    run_start = prev = ids[0]
    for i in [*ids[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(run_start) if run_start == prev else f"{run_start}-{prev}")
        if i is not None:
            run_start = prev = i
    return ",".join(parts)
