"""Merge per-job ark/scp pairs into one sorted ark/scp (identical output for any number of jobs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from asdlib.io.ark import ArkError, read_vectors, write_vectors


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out_ark", type=Path, required=True)
    p.add_argument("--out_scp", type=Path, required=True)
    p.add_argument("inputs", nargs="+", type=Path, help="per-job scp files")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    merged = {}
    for scp in args.inputs:
        for key, vec in read_vectors(scp).items():
            if key in merged:
                raise ArkError(f"{scp}: key '{key}' appears in more than one job's output")
            merged[key] = vec
    write_vectors(args.out_ark, args.out_scp, merged)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
