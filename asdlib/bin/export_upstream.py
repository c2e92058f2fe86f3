"""Last stage of egs/TEMPLATE/ssl.sh: the pre-trained student of ``exp/<tag>`` as ``upstream.pt``.

Why a file in EAT's official (fairseq) format: every ASD recipe then uses it with
``upstream.name: eat`` and ``upstream.path: exp/<tag>/upstream.pt`` and nothing else changes.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from asdlib.models.eat import save_eat_fairseq
from asdlib.models.eat_pretrain import EATPretrainer
from asdlib.models.loading import load_trained
from asdlib.utils import UserError, run_main, setup_logging

log = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument(
        "--exp_dir", type=Path, required=True, help="pre-training experiment dir with config.yaml and model.pt"
    )
    p.add_argument("--model_file", type=Path, help="trained weights (default: <exp_dir>/model.pt)")
    p.add_argument("--out", type=Path, help="upstream checkpoint to write (default: <exp_dir>/upstream.pt)")
    p.add_argument("--verbose", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    trained = load_trained(args.exp_dir, "cpu", args.model_file)
    if not isinstance(trained.model, EATPretrainer):
        raise UserError(
            f"{args.exp_dir / 'config.yaml'}: pretrain.enabled is false, so this is an ASD model, not a "
            "pre-trained upstream; export ASD models with asdlib.bin.export"
        )
    out = args.out or args.exp_dir / "upstream.pt"
    save_eat_fairseq(trained.model.student.model, out)
    log.info("wrote %s (EAT fairseq format; use it as upstream.name=eat upstream.path=%s)", out, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
