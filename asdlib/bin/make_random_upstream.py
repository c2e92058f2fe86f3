"""Write a small random-init upstream checkpoint in its official release format.

Recipes, benchmarks and tests use it in place of a downloaded model: the result is read by exactly the
code path of a real checkpoint (``upstream: {name: <name>, path: <out>}``). BEATs: one
``torch.save({"cfg", "model"})`` file; EAT: a Hugging Face directory (config.json + model.safetensors)
or, with ``--size format=fairseq``, a fairseq ``.pt`` file; the s3prl families: s3prl's converted
format (Microsoft's for WavLM). Patch sizes, mel bins and CNN strides stay as in the releases; only
widths and depth shrink. Every registered writer (asdlib.registry.RANDOM_UPSTREAMS) and its size
settings are listed by ``--help``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from asdlib.io.config import from_dict, parse_overrides
from asdlib.registry import RANDOM_UPSTREAMS
from asdlib.utils import run_main, setup_logging

log = logging.getLogger(__name__)


def _sizes() -> str:
    lines = []
    for name in RANDOM_UPSTREAMS.names():
        size = RANDOM_UPSTREAMS.get(name).settings
        lines.append(f"  {name}: " + ", ".join(f"{f.name}={f.default}" for f in dataclasses.fields(size)))
    return "size settings (--size KEY=VALUE) and their defaults:\n" + "\n".join(lines)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, epilog=_sizes(), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--name", choices=RANDOM_UPSTREAMS.names(), required=True, help="upstream name")
    p.add_argument("--out", type=Path, required=True, help="file (or, for a directory format, directory) to write")
    p.add_argument("--seed", type=int, default=0, help="weights depend only on the seed and the size")
    p.add_argument(
        "--size",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a size setting of the upstream (repeatable), e.g. --size layers=3 --size dim=32",
    )
    p.add_argument("--verbose", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    entry = RANDOM_UPSTREAMS.get(args.name)
    size = from_dict(entry.settings, parse_overrides(entry.settings, args.size), f"--size of {args.name}")
    cfg = entry.obj(args.out, args.seed, size)
    log.info("wrote random-init %s checkpoint (seed %d, %s) to %s", args.name, args.seed, cfg, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
