"""Write a small random-init upstream checkpoint in its official (s3prl) format.

The mini recipe and the tests use it in place of a downloaded model: the file is read by exactly
the code path of a real checkpoint (``upstream: {name: <name>, path: <file>}``). The CNN keeps the
standard 320-sample stride (20 ms frames), so only the widths shrink.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from asdlib.io.atomic import atomic_write
from asdlib.models.upstream import S3PRL_NAMES
from asdlib.utils import run_main, setup_logging

log = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--name", choices=S3PRL_NAMES, required=True, help="upstream family")
    p.add_argument("--out", type=Path, required=True, help="checkpoint file to write")
    p.add_argument("--seed", type=int, default=0, help="weights depend only on the seed and sizes")
    p.add_argument("--layers", type=int, default=2, help="transformer blocks")
    p.add_argument("--dim", type=int, default=64, help="hidden size")
    p.add_argument("--ffn_dim", type=int, default=128, help="feed-forward inner size")
    p.add_argument("--heads", type=int, default=4, help="attention heads")
    p.add_argument("--conv_dim", type=int, default=32, help="CNN channels")
    p.add_argument("--conv_pos", type=int, default=16, help="positional convolution kernel")
    p.add_argument("--conv_pos_groups", type=int, default=4, help="positional convolution groups")
    p.add_argument("--verbose", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    from asdlib.synth.checkpoints import RandomModelSize, random_checkpoint

    size = RandomModelSize(
        layers=args.layers, dim=args.dim, ffn_dim=args.ffn_dim, heads=args.heads,
        conv_dim=args.conv_dim, conv_pos=args.conv_pos, conv_pos_groups=args.conv_pos_groups,
    )
    state = random_checkpoint(args.name, seed=args.seed, size=size)
    with atomic_write(args.out, "wb") as f:
        torch.save(state, f)
    log.info("wrote random-init %s checkpoint (seed %d, %s) to %s", args.name, args.seed, size, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
