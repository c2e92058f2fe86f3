"""Parse a launcher call: ``[--name value ...] [JOB=1:N] <log> <command> [args ...]`` (Kaldi grammar)."""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from asdlib.utils import setup_logging

USAGE = """\
Usage: {prog} [options] [JOB=1:N] <log-file> <command> [<arg> ...]
  e.g. {prog} --mem 4G JOB=1:4 exp/log/extract.JOB.log python -m asdlib.bin.extract --keys keys.JOB.scp

Runs <command> once per job (through bash -c, so pipes and redirections work as in Kaldi:
arguments without whitespace are pasted as they are, arguments with whitespace are quoted, and a
single argument is taken as a whole command line). JOB (or any name, e.g. SPLIT=1:4) is replaced
by the job index in <log-file> and <command>. Waits for all jobs; exits 1 if any failed, naming
the failed jobs' logs. Calling it again the same way repeats only the jobs that failed or did not
finish (see egs/TEMPLATE/utils/README.md).

Options (both --name value and --name=value; '-' and '_' are the same in names):
  --max_jobs_run N   at most N jobs at once (local default: number of CPUs)
  --gpu N            GPUs per job          --num_threads N   CPUs per job
  --mem M            memory (per CPU)      --time T          time limit
  --config FILE      Slurm option map (slurm.sh; default conf/slurm.conf)
{backend_note}"""

_RANGE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(\d+):(\d+)$")
_LOOKS_LIKE_RANGE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=[^/]*:[^/]*$")
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


class LaunchError(ValueError):
    """A malformed launcher call (the message says what is wrong and how to fix it)."""


@dataclass
class LaunchRequest:
    """One launcher call, parsed."""

    log: str
    command: str
    job_var: str | None = None
    start: int = 1
    end: int = 1
    options: dict[str, str] = field(default_factory=dict)
    max_jobs_run: int | None = None
    config: str | None = None

    @property
    def num_threads(self) -> int:
        """CPUs per job (for the log's accounting line)."""
        return int(self.options.get("num_threads", "1"))


def join_command(args: list[str]) -> str:
    """Paste command arguments into one shell command line the way Kaldi's run.pl does.

    Why: recipes pass pipes and redirections as separate words (``prog a \\| prog b``) and
    rspecifiers with spaces as one quoted word (``"ark:cmd x |"``); both must keep working.
    """
    if len(args) == 1:
        return args[0]
    return " ".join(a if re.fullmatch(r"\S+", a) else shlex.quote(a) for a in args)


def _positive_int(name: str, value: str, minimum: int) -> int:
    if not re.fullmatch(r"\d+", value) or int(value) < minimum:
        raise LaunchError(f"--{name} needs an integer >= {minimum}, got '{value}'")
    return int(value)


def parse_launch_args(argv: list[str]) -> LaunchRequest:
    """Parse launcher arguments; raise :class:`LaunchError` naming the problem for a malformed call."""
    args = list(argv)
    options: dict[str, str] = {}
    while args and args[0].startswith("--"):
        word = args.pop(0)
        if "=" in word:
            name, value = word[2:].split("=", 1)
        else:
            if not args:
                raise LaunchError(f"option {word} needs a value")
            name, value = word[2:], args.pop(0)
        name = name.replace("-", "_")
        if not _NAME.match(name):
            raise LaunchError(f"bad option name '{word}'")
        options[name] = value
    for name, minimum in (("gpu", 0), ("num_threads", 1), ("max_jobs_run", 1)):
        if name in options:
            _positive_int(name, options[name], minimum)
    req = LaunchRequest(log="", command="")
    req.max_jobs_run = int(options.pop("max_jobs_run")) if "max_jobs_run" in options else None
    req.config = options.pop("config", None)
    req.options = options
    if args and (m := _RANGE.match(args[0])):
        args.pop(0)
        req.job_var, req.start, req.end = m.group(1), int(m.group(2)), int(m.group(3))
        if req.start < 1 or req.end < req.start:
            raise LaunchError(f"bad job range '{m.group(0)}': need {req.job_var}=1:N with 1 <= start <= end")
    elif args and _LOOKS_LIKE_RANGE.match(args[0]):
        raise LaunchError(f"bad job range '{args[0]}': expected e.g. JOB=1:4 (is nj empty?)")
    if not args:
        raise LaunchError("no log file and command given")
    req.log = args.pop(0)
    if not args:
        raise LaunchError(f"no command given after the log file '{req.log}'")
    req.command = join_command(args)
    if req.job_var and req.end > req.start and req.job_var not in req.log:
        raise LaunchError(
            f"log file '{req.log}' does not contain {req.job_var}: all {req.end - req.start + 1} jobs would write "
            f"the same log (name it e.g. x.{req.job_var}.log)"
        )
    return req


def usage(prog: str, backend_note: str) -> str:
    """The ``--help`` text of a launcher."""
    return USAGE.format(prog=prog, backend_note=backend_note)


def is_help(argv: list[str]) -> bool:
    """True for ``--help``/``-h`` as the first argument."""
    return bool(argv) and argv[0] in ("--help", "-h")


def launcher_main(prog: str, backend_note: str, argv: list[str] | None, run: Callable[[LaunchRequest], int]) -> int:
    """The entry of every launcher: ``--help``, logging, then ``run`` on the parsed call; a
    :class:`LaunchError` (a bad call, or one the backend rejects) is one line and exit code 2."""
    argv = sys.argv[1:] if argv is None else argv
    if is_help(argv):
        print(usage(f"utils/{prog}", backend_note), end="")
        return 0
    setup_logging()
    try:
        return run(parse_launch_args(argv))
    except LaunchError as e:
        print(f"{prog}: error: {e} (see utils/{prog} --help)", file=sys.stderr)
        return 2
