"""Split an scp (or any ``<key> ...`` line file) into N parts for N jobs, like Kaldi's split_scp.pl.

``python -m asdlib.launch.split_scp <in.scp> <out.1.scp> ... <out.N.scp>``
``python -m asdlib.launch.split_scp --nj N <in.scp> <out.JOB.scp>``

Lines are sorted by key in C-locale (byte) order and cut into N contiguous runs whose sizes
differ by at most one (the first runs get the extra lines), so job i gets the same keys for the
same input and N, and concatenating the parts gives the sorted input. An output whose content
would not change is not rewritten: its mtime stays, so a launcher rerun after a re-split still
repeats only the failed jobs (see asdlib.launch.jobs).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from asdlib.io.atomic import atomic_write_text
from asdlib.launch.scp_lines import ScpError, job_files, read_key_lines
from asdlib.utils import setup_logging

logger = logging.getLogger(__name__)
T = TypeVar("T")


def split_even(items: Sequence[T], n: int) -> list[list[T]]:
    """``n`` contiguous runs of ``items``; sizes differ by at most one, larger runs first."""
    size, extra = divmod(len(items), n)
    out, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        out.append(list(items[start:end]))
        start = end
    return out


def write_if_changed(path: str | Path, text: str) -> bool:
    """Write ``text`` atomically unless ``path`` already holds it; True if written."""
    path = Path(path)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    atomic_write_text(path, text)
    return True


def split_scp(input_path: str | Path, outputs: Sequence[str | Path]) -> None:
    """Split ``input_path`` into ``len(outputs)`` files of contiguous sorted keys."""
    lines = sorted(read_key_lines(input_path), key=lambda kl: kl[0].encode("utf-8"))
    if len(outputs) > len(lines):
        raise ScpError(
            f"cannot split {len(lines)} line(s) of {input_path} into {len(outputs)} parts: use at most {len(lines)} jobs"
        )
    for out, part in zip(outputs, split_even(lines, len(outputs))):
        write_if_changed(out, "".join(line + "\n" for _, line in part))


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="utils/split_scp.sh",
        description="Split an scp into N parts of contiguous sorted keys (Kaldi split_scp.pl).",
    )
    parser.add_argument("--nj", type=int, help="number of parts; then give one output name containing JOB")
    parser.add_argument("input", help="input scp (or any '<key> ...' line file)")
    parser.add_argument("outputs", nargs="+", help="output files, or one name with JOB when --nj is given")
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging(force=False)
    args = get_parser().parse_args(argv)
    try:
        split_scp(args.input, job_files(args.outputs, args.nj, "output"))
    except ScpError as e:
        logger.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
