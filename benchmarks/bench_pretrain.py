"""EAT pre-training cost on CPU: throughput, CPU time per update and peak memory.

Each size runs in a fresh process and does what one optimiser update of ``asdlib.bin.train`` with
``pretrain.enabled`` does: fbank of a batch of random waveforms, the teacher's targets, the student
on ``clone_batch`` inverse-block-masked copies, the CNN decoder, both losses, backward, gradient
clipping, AdamW, and the EMA teacher update. The first update is a warm-up (it allocates AdamW's
state) and is not timed.

Sizes (``--sizes``):
* ``tiny``: egs/ssl_synth's upstream and config (2 blocks, width 64, 2 s clips, 12 clips x 16 copies);
* ``base``: EAT-base (12 blocks, width 768, the release's decoder and 10.24 s clips, 16 copies), with
  ``--base_batch`` clips per update (the release: 12 per GPU).

Reported: clips per second (clips, not masked copies), wall and CPU seconds per update (CPU time
over all threads), and the resident-set high-water mark during training.

Run: ``python benchmarks/bench_pretrain.py --out benchmarks/results/pretrain.json`` (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

CONFIG = common.REPO / "egs" / "ssl_synth" / "conf" / "pretrain.yaml"
# size -> (EAT config of the random upstream, config overrides, clip seconds)
SIZES = {
    "tiny": (
        dict(embed_dim=64, depth=2, num_heads=4, mlp_ratio=2.0, max_length=128),
        {},
        2.0,
    ),  # make_random_upstream's
    "base": (
        {},  # EATConfig's defaults are EAT-base's
        {
            "upstream.conf.target_frames": 1024,
            "pretrain.average_top_k_layers": 12,
            "pretrain.decoder_dim": 768,
        },
        10.24,
    ),
}


def child(size: str, batch: int, steps: int) -> dict:
    """One size in this process: ``steps`` timed updates after one warm-up update."""
    import torch

    from asdlib.config import load_train_config
    from asdlib.models.asd_model import build_model
    from asdlib.synth.checkpoints import save_random_eat

    eat_cfg, overrides, seconds = SIZES[size]
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        save_random_eat(Path(tmp) / "eat", **eat_cfg)
        args = {"upstream.path": str(Path(tmp) / "eat"), "pretrain.enabled": True, "optim.batch_size": batch}
        cfg = load_train_config(CONFIG, [f"{k}={v}" for k, v in (args | overrides).items()])
        model = build_model(cfg, num_machines=1).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    wavs = 0.1 * torch.randn(batch, int(seconds * cfg.data.sample_rate))
    lengths = torch.full((batch,), wavs.shape[1])

    def update() -> None:
        loss = model(wavs, lengths).sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        model.update_teacher()

    update()
    common.reset_peak_rss()
    wall, cpu = [], []
    for _ in range(steps):
        w, c = time.perf_counter(), time.process_time()
        update()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return {
        "size": size,
        "batch": batch,
        "copies": cfg.pretrain.clone_batch,
        "seconds": seconds,
        "parameters": sum(p.numel() for p in model.student.parameters()),
        "wall_s": common.median(wall),
        "wall_spread": common.spread(wall),
        "cpu_s": common.median(cpu),
        "clips_per_s": batch / common.median(wall),
        "peak_rss_mib": common.peak_rss_mib(),
        "threads": torch.get_num_threads(),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="tiny,base")
    p.add_argument("--base_batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=5, help="timed updates per size")
    p.add_argument("--out", type=Path)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        size, batch = args.child.split(":")
        print(json.dumps(child(size, int(batch), args.steps)))
        return 0
    rows = []
    for size in args.sizes.split(","):
        batch = 12 if size == "tiny" else args.base_batch
        rows.append(common.run_child([__file__, "--child", f"{size}:{batch}", "--steps", str(args.steps)]))
    print(f"machine: {common.machine_description()}")
    print(
        "| size | parameters | clips x copies per update | clip s | s per update (wall) | CPU s per update | clips/s | peak RSS |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['size']} | {r['parameters'] / 1e6:.2f} M | {r['batch']} x {r['copies']} | {r['seconds']} | "
            f"{r['wall_s']:.3f} ({r['wall_spread']}) | {r['cpu_s']:.3f} | {r['clips_per_s']:.1f} | {r['peak_rss_mib']:.0f} MiB |"
        )
    if args.out:
        args.out.write_text(json.dumps({"machine": common.machine_description(), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
