"""Merge per-job ``ark,scp`` outputs into one sorted ark/scp pair (the reverse of split_scp).

``python -m asdlib.launch.merge_ark [--keys FILE] <out.ark> <out.scp> <in.1.scp> ... <in.N.scp>``
``python -m asdlib.launch.merge_ark --nj N [--keys FILE] <out.ark> <out.scp> <in.JOB.scp>``

The vectors are copied into ONE new ark in C-locale key order (asdlib.io.ark.write_vectors), so
the merged ark and scp are byte-identical whatever nj produced the parts. A key in two inputs is
an error naming both files; ``--keys`` (any file whose first column lists the expected keys, such
as the set's wav.scp) also checks that no key is missing or extra. Outputs are written atomically.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from asdlib.io.ark import ArkError, read_vectors, write_vectors
from asdlib.launch.scp_lines import ScpError, job_files, read_key_lines
from asdlib.utils import setup_logging

logger = logging.getLogger(__name__)


def _check_keys(found: Sequence[str], keys_file: str | Path) -> None:
    expected = {k for k, _ in read_key_lines(keys_file)}
    missing = sorted(expected.difference(found))
    extra = sorted(set(found).difference(expected))
    if missing or extra:
        raise ScpError(
            f"merged keys differ from {keys_file}: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(extra)} extra (e.g. {extra[:3]}); did a job skip utterances or use another key list?"
        )


def merge_arks(
    inputs: Sequence[str | Path], out_ark: str | Path, out_scp: str | Path, keys_file: str | Path | None = None
) -> int:
    """Merge the vectors of ``inputs`` (scp files) into ``out_ark``/``out_scp``; return the count."""
    origin: dict[str, str] = {}
    for scp in inputs:
        for key, _ in read_key_lines(scp):
            if key in origin:
                raise ScpError(f"key '{key}' is in both {origin[key]} and {scp}: the job inputs overlap")
            origin[key] = str(scp)
    if keys_file is not None:
        _check_keys(list(origin), keys_file)
    merged: dict[str, np.ndarray] = {}
    for scp in inputs:
        merged.update(read_vectors(scp))
    write_vectors(out_ark, out_scp, merged)
    logger.info("merged %d vectors from %d file(s) into %s", len(merged), len(inputs), out_scp)
    return len(merged)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="utils/merge_ark.sh", description="Merge per-job ark/scp files into one sorted ark/scp pair."
    )
    parser.add_argument("--nj", type=int, help="number of inputs; then give one input name containing JOB")
    parser.add_argument("--keys", help="file whose first column lists exactly the expected keys")
    parser.add_argument("out_ark", help="merged ark to write")
    parser.add_argument("out_scp", help="merged scp to write")
    parser.add_argument("inputs", nargs="+", help="per-job scp files, or one name with JOB when --nj is given")
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging(force=False)
    args = get_parser().parse_args(argv)
    try:
        merge_arks(job_files(args.inputs, args.nj, "input"), args.out_ark, args.out_scp, args.keys)
    except (ScpError, ArkError) as e:
        logger.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
