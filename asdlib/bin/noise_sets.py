"""Print the ``backend.noise`` sets of an experiment, for stage 4 of asd.sh to extract.

One line per set: ``<set> <embed name> [<channel>]``, the data set, the directory under
``exp/<tag>/embed/`` its embeddings go to (asdlib.backends.bank.noise_embed_name), and the channel
to read it with when ``backend.noise.channel`` sets one (else the config's ``data.channel``
applies). Nothing is printed when the config names no noise sets.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from asdlib.backends.bank import noise_embed_name
from asdlib.config import load_train_config
from asdlib.utils import run_main, setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True, help="the experiment's config.yaml")
    p.add_argument("--verbose", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    noise = load_train_config(args.config).backend.noise
    channel = "" if noise.channel is None else f" {noise.channel}"
    for name in noise.sets:
        print(f"{name} {noise_embed_name(name)}{channel}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
