"""Stage 1 of egs/ssl_synth: the synthetic pre-training corpus and its data dir.

Every corpus family's sound model (a-e) renders its own machines under its own corpus seed, none of
them an evaluation machine or seed (asdlib.synth.pretrain_corpus); only the training clips (normal,
source and target conditions) go into ``<data_dir>/<set>``, one data dir for all families.
Example: python -m asdlib.bin.make_pretrain_corpus --root downloads/ssl_synth --data_dir data
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from asdlib.bin.prepare_dcase import build_set, find_machine_dirs
from asdlib.data.datadir import summary_table, write_data_dir
from asdlib.synth.corpus import generate_corpus
from asdlib.synth.families import FAMILIES
from asdlib.synth.pretrain_corpus import check_disjoint, plan
from asdlib.utils import run_main, setup_logging

log = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--root", type=Path, required=True, help="corpus root; family f is written to <root>/<f>")
    p.add_argument("--data_dir", type=Path, default=Path("data"))
    p.add_argument("--set", default="train", help="name of the data dir written under --data_dir")
    p.add_argument(
        "--clips_per_machine", type=int, default=300, help="training clips per machine (4 machines per family)"
    )
    p.add_argument("--verbose", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    corpus = plan(args.clips_per_machine)
    check_disjoint(corpus)
    utts = []
    for family, cfg in corpus.items():
        start = time.time()
        generate_corpus(args.root / family, cfg, FAMILIES[family][1])
        log.info("family %s: %s ready (%.1f s)", family, args.root / family, time.time() - start)
        for set_name, part in (("dev_train", "dev_data"), ("eval_train", "eval_data")):
            utts += build_set(cfg.year, set_name, find_machine_dirs(args.root / family, part), None, None)
    written = write_data_dir(args.data_dir / args.set, utts)
    log.info(
        "%s: %d training clips of %d families\n%s",
        args.data_dir / args.set,
        len(written),
        len(corpus),
        summary_table(written),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
