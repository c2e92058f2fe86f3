"""Stage 7: a self-contained model directory for scoring new recordings (asdlib.bin.infer).

Holds the resolved config, the trained weights, a copy of the upstream checkpoint, the kNN memory
banks (training embeddings with machine/section/domain, no paths), the same for the backend.noise
clips when the config names them, the results, and manifest.json:
versions, sample rate and windowing, machines and classes, decision thresholds calibrated per
machine/section at ``--fpr`` on held-out training normals (k-fold, asdlib.backends.packed) with
the false-alarm rate measured that way, and the sha256 of every file. ``--tar true`` also writes
``<out_dir>.tar``. The directory can be copied anywhere: nothing in it refers to exp/ or data/.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import logging
import platform
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

import asdlib
from asdlib.backends.alarm import AlarmRule
from asdlib.backends.bank import bank_features, check_packable, noise_features, noise_projection
from asdlib.backends.calibration import METHOD, calibrate, describe, pooled_fpr
from asdlib.backends.packed import (
    BANK,
    FORMAT,
    NOISE,
    save_bank,
    seal,
)
from asdlib.config import load_train_config
from asdlib.data.datadir import read_kv
from asdlib.io.config import dump_config
from asdlib.models.upstream_files import SIDE_SUFFIXES
from asdlib.utils import run_main, setup_logging, str2bool

log = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp_dir", type=Path, required=True)
    p.add_argument("--data_root", type=Path, default=Path("data"))
    p.add_argument("--train_sets", nargs="+", required=True)
    p.add_argument("--out_dir", type=Path, required=True)
    p.add_argument("--fpr", type=float, default=0.05, help="false-alarm rate the decision thresholds aim at")
    p.add_argument("--folds", type=int, default=5, help="folds over the training normals for the thresholds")
    p.add_argument("--tar", type=str2bool, default=False, help="also write <out_dir>.tar (one file to copy)")
    p.add_argument(
        "--device", default="cpu", help="accepted for symmetry with the other stages; packing needs no model"
    )
    rule = AlarmRule()
    p.add_argument("--raise_k", type=int, default=rule.raise_k, help="asdlib-monitor: raise the alarm when raise_k ...")
    p.add_argument("--raise_n", type=int, default=rule.raise_n, help="... of the last raise_n windows are above")
    p.add_argument("--clear_m", type=int, default=rule.clear_m, help="asdlib-monitor: clear it after clear_m below")
    p.add_argument("--verbose", type=int, default=1)
    return p


def clip_seconds(data_root: Path, train_sets: list[str]) -> float:
    """Median length of the training recordings from stage 2's ``utt2dur`` (0 when a set has none)."""
    durations = []
    for name in train_sets:
        path = data_root / name / "utt2dur"
        if not path.is_file():
            return 0.0
        durations += [float(v) for v in read_kv(path).values()]
    return round(float(np.median(durations)), 3) if durations else 0.0


def git_revision() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=Path(asdlib.__file__).parent
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def software_versions() -> dict[str, str]:
    """The manifest's ``versions``: the software that wrote the pack (stage 7, or asdlib-enroll)."""
    return {
        "asdlib": asdlib.__version__,
        "git_revision": git_revision(),
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "torchaudio": str(torchaudio.__version__),
        "numpy": np.__version__,
        "soundfile": sf.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    if not 0.0 < args.fpr < 1.0 or args.folds < 2:
        raise ValueError(f"--fpr must be in (0, 1) and --folds >= 2, got {args.fpr} and {args.folds}")
    rule = AlarmRule(args.raise_k, args.raise_n, args.clear_m)
    cfg = load_train_config(args.exp_dir / "config.yaml")
    check_packable(cfg.backend)
    if sorted(cfg.data.train_sets) != sorted(args.train_sets):
        raise ValueError(
            f"--train_sets {' '.join(args.train_sets)} differ from data.train_sets {cfg.data.train_sets} of "
            f"{args.exp_dir / 'config.yaml'}: the banks would not be those of stage 5; rerun stage 3 with these sets"
        )
    model_state = torch.load(args.exp_dir / "model.pt", map_location="cpu", weights_only=True)
    utts, embeddings, widths = bank_features(cfg, args.data_root, args.exp_dir / "embed")
    noise = noise_features(cfg, args.data_root, args.exp_dir / "embed")
    projection = noise_projection(cfg.backend, widths, noise)
    thresholds = calibrate(utts, embeddings, cfg.backend, widths, args.fpr, args.folds, projection)
    for machine, sections in thresholds.items():
        for section, entry in sections.items():
            log.info("%s", describe(machine, section, entry, args.fpr))
    overall, n = pooled_fpr(thresholds)
    log.info("all machines: FPR measured on held-out normals %.3f (target %.3f)", overall, args.fpr)

    tmp = args.out_dir.with_name(args.out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if cfg.upstream.path:
        src = Path(cfg.upstream.path)
        dst = tmp / "upstream" / src.name
        dst.parent.mkdir()
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*(f"*{s}" for s in SIDE_SUFFIXES)))
        else:
            shutil.copy2(src, dst)
        cfg.upstream.path = dst.relative_to(tmp).as_posix()
        record = model_state.get("upstream")
        if isinstance(record, dict):  # the training machine's path stays behind; the sha256 is the check
            model_state["upstream"] = {**record, "path": cfg.upstream.path}
    # a packed model never unpickles code (asdlib.backends.packed): its upstream must load with
    # weights_only=True, which the self-check below proves
    cfg.upstream.allow_unsafe_pickle = False
    dump_config(cfg, tmp / "config.yaml")
    torch.save(model_state, tmp / "model.pt")
    save_bank(tmp / BANK, utts, embeddings)
    if noise is not None:
        save_bank(tmp / NOISE, *noise)
    results = args.exp_dir / "results"
    if results.is_dir():
        shutil.copytree(results, tmp / "results")
    data = cfg.data
    manifest = {
        "format": FORMAT,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "versions": software_versions(),
        "train_sets": args.train_sets,
        "audio": {
            "sample_rate": data.sample_rate,
            "resample": data.resample,
            "channel": data.channel,
            "min_seconds": data.min_seconds,
        },
        "windowing": {
            "window_seconds": data.window_seconds,
            "hop_seconds": data.hop_seconds,
            "min_seconds": data.window_min_seconds,
            "aggregate": data.window_aggregate,
            "clip_seconds": clip_seconds(args.data_root, args.train_sets),
        },
        "machines": list(model_state["machines"]),
        "classes": list(model_state["classes"]),
        "calibration": {
            "target_fpr": args.fpr,
            "folds": args.folds,
            "measured_fpr": overall,
            "n_heldout": n,
            "method": METHOD,
        },
        "thresholds": thresholds,
        "files": {},  # listed by seal, once every file is written
        "alarm": dataclasses.asdict(rule),
    }
    seal(tmp, manifest, f"{args.exp_dir}: the packed model")  # a pack that does not load is not published
    shutil.rmtree(args.out_dir, ignore_errors=True)
    tmp.rename(args.out_dir)
    if args.tar:
        tar_path = args.out_dir.with_name(args.out_dir.name + ".tar")
        with tarfile.open(tar_path.with_name(tar_path.name + ".tmp"), "w") as tar:
            tar.add(args.out_dir, arcname=args.out_dir.name)
        tar_path.with_name(tar_path.name + ".tmp").rename(tar_path)
        log.info("wrote %s", tar_path)
    log.info("packed %s -> %s", args.exp_dir, args.out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
