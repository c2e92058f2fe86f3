"""Stage 3: train the ASD model (resumable; launch with torchrun for DDP)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import torch

from asdlib.config import add_config_options, load_train_config
from asdlib.devices import resolve_device
from asdlib.io.atomic import atomic_write
from asdlib.io.config import dump_config
from asdlib.models.asd_model import build_model, trainable_state
from asdlib.train.trainer import Trainer, load_train_data
from asdlib.utils import run_main, setup_logging, str2bool

log = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", type=Path, required=True, help="training YAML (conf/train.yaml, conf/tuning/*.yaml)")
    p.add_argument("--data_root", type=Path, default=Path("data"), help="directory holding the data/<set> dirs")
    p.add_argument("--exp_dir", type=Path, required=True, help="experiment directory exp/<tag>")
    add_config_options(p, "; recorded in exp_dir/config.yaml")
    p.add_argument("--resume", type=str2bool, default=True, help="continue from the last checkpoint if any")
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu (default), cuda, cuda:N, or auto (cuda when a GPU is visible); the recipe passes it from --ngpu",
    )
    p.add_argument("--verbose", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose, int(os.environ.get("RANK", "0")))
    cfg = load_train_config(args.config, args.override, args.train_sets)
    if cfg.upstream.path:
        cfg.upstream.path = str(Path(cfg.upstream.path).resolve())
    if cfg.embedder == "logmel":
        # Nothing to learn: record the config and the label maps so later stages work unchanged.
        data = load_train_data(cfg, args.data_root)
        args.exp_dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, args.exp_dir / "config.yaml")
        with atomic_write(args.exp_dir / "model.pt", "wb") as f:
            torch.save(
                {
                    "epoch": 0,
                    "model": trainable_state(build_model(cfg, len(data.machines))),
                    "classes": data.classes,
                    "machines": data.machines,
                },
                f,
            )
        log.info("embedder 'logmel' needs no training; wrote %s", args.exp_dir / "model.pt")
        return 0
    Trainer(cfg, args.exp_dir, args.data_root, resolve_device(args.device)).run(args.resume)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
