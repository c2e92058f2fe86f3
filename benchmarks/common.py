"""Shared helpers of the benchmarks: the base-size random BEATs, memory and timing readings.

Peak memory on CPU: torch allocates outside Python's allocator (tracemalloc does not see it), so
each variant runs in a fresh process and reads the kernel's resident-set high-water mark
(``VmHWM``, the value ``getrusage(RUSAGE_SELF).ru_maxrss`` reports). Writing ``5`` to
``/proc/self/clear_refs`` resets that mark (Linux >= 4.0), so the transient of loading the
checkpoint (state dict and model both resident) does not hide the training peak.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
MIB = 2**20

# Architecture flags of the official BEATs iter3 release (12 layers, 768-d, relative position bias
# with GRU gates, deep norm); sizes are BEATsConfig's defaults. Layer drop 0 keeps timings stable.
BEATS_BASE = {
    "relative_position_embedding": True,
    "gru_rel_pos": True,
    "deep_norm": True,
    "num_buckets": 320,
    "max_distance": 800,
    "layer_wise_gradient_decay_ratio": 0.6,
    "encoder_layerdrop": 0.0,
}


def base_beats(work_dir: Path) -> Path:
    """A random-init base-size BEATs in the official format (written once, then reused)."""
    from asdlib.synth.checkpoints import save_random_beats

    path = work_dir / "beats_base_random.pt"
    if not path.is_file():
        work_dir.mkdir(parents=True, exist_ok=True)
        save_random_beats(path, seed=0, **BEATS_BASE)
    return path


def extraction_setup(work_dir: Path, clips: int = 16, seconds: float = 10.0) -> tuple[Path, Path]:
    """(exp dir, data dir) for the extraction benchmarks, made once: the dcase2024 system config
    (LoRA r64 + MGA on the random base BEATs) with untrained adapters, and a data dir of ``clips``
    synthetic ``seconds``-long clips (egs-style corpus through make_synth and prepare_dcase)."""
    from asdlib.config import load_train_config
    from asdlib.io.atomic import atomic_write
    from asdlib.io.config import dump_config
    from asdlib.models.asd_model import build_model, trainable_state

    root = work_dir / f"extract_{clips}x{seconds:g}s"
    exp_dir, data_dir = root / "exp", root / "data" / "dev_train"
    if (exp_dir / "model.pt").is_file():
        return exp_dir, data_dir
    corpus = root / "corpus"
    if not (corpus / ".done").is_file():
        shutil.rmtree(corpus, ignore_errors=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "asdlib.bin.make_synth",
            "--root",
            str(corpus),
            "--dev_machines",
            "fan",
            "--eval_machines",
            "ToyDrone",
            "--no_attribute",
            "",
            "--n_train_source",
            str(clips - 2),
            "--n_train_target",
            "2",
            "--n_test",
            "1",
            "--seconds",
            str(seconds),
        ],
        check=True,
        cwd=REPO,
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "asdlib.bin.prepare_dcase",
            "--year",
            "2024",
            "--root",
            str(corpus),
            "--data_dir",
            str(root / "data"),
        ],
        check=True,
        cwd=REPO,
        capture_output=True,
    )
    cfg = load_train_config(REPO / "egs/dcase2024/conf/train.yaml", {"upstream.path": str(base_beats(work_dir))})
    machines = ["ToyDrone", "fan"]
    model = build_model(cfg, len(machines))
    exp_dir.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, exp_dir / "config.yaml")
    with atomic_write(exp_dir / "model.pt", "wb") as f:
        torch.save(
            {
                "epoch": 0,
                "model": trainable_state(model),
                "classes": ["fan-00-a", "ToyDrone-00-a"],
                "machines": machines,
            },
            f,
        )
    return exp_dir, data_dir


def base_pack(work_dir: Path) -> Path:
    """A packed model of :func:`extraction_setup`'s experiment (the paper's system on the random base
    BEATs, untrained adapters: its scores mean nothing, its speed does), made once: stage 4 on its
    data dir, then stage 7."""
    from asdlib.config import load_train_config

    exp_dir, data_dir = extraction_setup(work_dir)
    packed = exp_dir / "packed"
    if (packed / "manifest.json").is_file():
        return packed
    sets = load_train_config(exp_dir / "config.yaml").data.train_sets
    for name in sets:
        embed = exp_dir / "embed" / name
        if (embed / "embeddings.scp").is_file():
            continue
        embed.mkdir(parents=True, exist_ok=True)
        stage4 = ["--exp_dir", str(exp_dir), "--data_dir", str(data_dir.parent / name), "--device", "cpu"]
        stage4 += ["--out_ark", str(embed / "embeddings.ark"), "--out_scp", str(embed / "embeddings.scp")]
        subprocess.run([sys.executable, "-m", "asdlib.bin.extract", *stage4, "--verbose", "0"], check=True, cwd=REPO)
    stage7 = ["--exp_dir", str(exp_dir), "--data_root", str(data_dir.parent), "--train_sets", *sets]
    stage7 += ["--out_dir", str(packed), "--folds", "2", "--verbose", "0"]
    subprocess.run([sys.executable, "-m", "asdlib.bin.pack", *stage7], check=True, cwd=REPO)
    return packed


def _status_mib(field: str) -> float:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1)) / 1024


def rss_mib() -> float:
    """Resident set size now."""
    return _status_mib("VmRSS")


def peak_rss_mib() -> float:
    """Resident-set high-water mark since the last :func:`reset_peak_rss`."""
    return _status_mib("VmHWM")


def reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def run_child(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python <args>`` in a fresh process (``env`` added to ours); its last stdout line is a JSON result."""
    proc = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine_description() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) / 2**20
    return (
        f"{cpu}, {len(os.sched_getaffinity(0))} cores, {mem:.0f} GiB RAM, "
        f"Linux {platform.release()}, Python {platform.python_version()}, torch {torch.__version__}"
    )


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    """min-max range as a percentage of the median: the noise of repeated runs."""
    m = statistics.median(values)
    return f"{100 * (max(values) - min(values)) / m:.0f}%" if m else "n/a"
