"""Training memory and step time: LoRA + MGA against full fine-tuning of a base-size BEATs (CPU).

Each variant trains a few steps in a fresh process, exactly as ``Trainer.train_epoch`` does on
a CPU (forward, ArcFace loss, backward, gradient clipping, AdamW step, zero_grad), on random
waveforms of ``--batch`` x ``--seconds``. The configs are the recipe's own
(``egs/<--recipe>/conf/train.yaml`` for LoRA r64 + MGA, ``conf/tuning/finetune_full.yaml`` for
full fine-tuning; ``--recipe`` dcase2024 by default, dcase2023 with VQ off in the recipe itself)
with the upstream pointed at a random-init base-size BEATs; VQ is switched off (its codebooks and
loss on 256-d embeddings are negligible next to the backbone).

Reported per variant: peak resident memory during training (the high-water mark, reset after the
model is built so the checkpoint-loading transient does not count), the model's resident size
before training, the training delta (peak minus that), and a breakdown: trainable parameters
(= gradients), AdamW state, and the tensors autograd saves for backward (activations, counted by
storage through ``saved_tensors_hooks``; parameters excluded).

Variants (``--variants``): ``full``, ``lora_mga``, ``lora_mga_nodrop`` (the same with
``finetune.dropout: 0``: peft then feeds each LoRA branch the layer input itself instead of a
dropped-out copy that autograd must keep), each optionally with ``+ckpt``: activation
checkpointing of every transformer block through the library option ``model.grad_checkpoint: true``
(non-reentrant ``torch.utils.checkpoint`` per block). ``--steps 0`` measures the warm-up step
alone (it allocates the AdamW state, so its peak is the training peak) and reports its time. ``--malloc mmap`` (default) runs the
children with a fixed glibc mmap threshold so that RSS follows the live tensors; ``--malloc
default`` shows what ``ps`` reports with glibc as is (see MALLOC_ENV).

Run: ``python benchmarks/bench_train_memory.py`` (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

# variant -> (config relative to egs/<recipe>/conf, overrides); a "+ckpt" suffix adds activation checkpointing
VARIANTS = {
    "full": ("tuning/finetune_full.yaml", {}),
    "lora_mga": ("train.yaml", {}),
    "lora_mga_nodrop": ("train.yaml", {"finetune.dropout": 0.0}),
}
CKPT = {"model.grad_checkpoint": True}
# machine types (one MGA group each): dev + eval types of the recipe's year
RECIPE_MACHINES = {"dcase2023": 14, "dcase2024": 16}
# glibc's default malloc raises its mmap threshold after large frees and then serves tensors up to
# 32 MB from heap arenas it rarely returns, so the RSS high-water mark can exceed the live tensors by
# GBs, in amounts that depend on allocation order. A fixed threshold makes RSS track live memory.
MALLOC_ENV = {"mmap": {"MALLOC_MMAP_THRESHOLD_": "131072"}, "default": {}}
NUM_CLASSES = 128


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work_dir", type=Path, default=Path("/tmp/asdlib_bench"), help="holds the random BEATs (360 MB)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--steps", type=int, default=1, help="timed steps after one warm-up step (0: time the warm-up)")
    p.add_argument("--recipe", choices=sorted(RECIPE_MACHINES), default="dcase2024", help="whose configs")
    p.add_argument("--repeats", type=int, default=3, help="fresh processes per variant, interleaved")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument(
        "--variants",
        default="full,lora_mga",
        help=f"comma list of {sorted(VARIANTS)}, each optionally with '+ckpt' (activation checkpointing)",
    )
    p.add_argument(
        "--malloc",
        choices=sorted(MALLOC_ENV),
        default="mmap",
        help="mmap: fixed glibc mmap threshold, RSS tracks live tensors; default: glibc as is",
    )
    p.add_argument("--out", type=Path, help="write all raw results here (JSON)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--beats", type=Path, help=argparse.SUPPRESS)
    return p


@contextlib.contextmanager
def count_saved_tensors(exclude: set[int]) -> Iterator[dict[str, float]]:
    """Bytes of distinct storages autograd saves for backward inside the block (``exclude``: data_ptrs)."""
    import torch

    seen: dict[int, int] = {}
    result = {"mib": 0.0}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in exclude and storage.device.type == "cpu":
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield result
    result["mib"] = sum(seen.values()) / common.MIB


def child(args: argparse.Namespace) -> dict:
    import torch

    from asdlib.config import load_train_config
    from asdlib.models.asd_model import build_model
    from asdlib.models.heads import build_head

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config, overrides = VARIANTS[args.child.removesuffix("+ckpt")]
    if args.child.endswith("+ckpt"):
        overrides = {**overrides, **CKPT}
    num_machines = RECIPE_MACHINES[args.recipe]
    cfg = load_train_config(
        common.REPO / "egs" / args.recipe / "conf" / config,
        {"upstream.path": str(args.beats), "vq.enabled": False, "mixup.enabled": False, **overrides},
    )
    rss_start = common.rss_mib()
    model = build_model(cfg, num_machines)
    head = build_head(cfg.head, cfg.model.embed_dim, NUM_CLASSES)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [{"params": params, "lr": cfg.optim.lr}, {"params": list(head.parameters()), "lr": cfg.optim.lr_head}],
        weight_decay=cfg.optim.weight_decay,
    )
    model.train()
    head.train()
    n = int(args.seconds * cfg.data.sample_rate)
    g = torch.Generator().manual_seed(0)
    wavs = 0.1 * torch.randn(args.batch, n, generator=g)
    lengths = torch.full((args.batch,), n, dtype=torch.long)
    machines = torch.arange(args.batch) % num_machines
    labels = torch.arange(args.batch) % NUM_CLASSES

    def step() -> None:
        emb = model(wavs, lengths, machines)
        loss = head(emb.float(), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(
            [p for grp in optimizer.param_groups for p in grp["params"]], cfg.optim.grad_clip
        )
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    all_params = list(model.parameters()) + list(head.parameters())
    param_ptrs = {p.untyped_storage().data_ptr() for p in all_params}
    gc.collect()
    rss_model = common.rss_mib()
    common.reset_peak_rss()
    times, cpu_times = [], []
    start, start_cpu = time.perf_counter(), time.process_time()
    with count_saved_tensors(param_ptrs) as saved:
        step()  # warm-up; also allocates the AdamW state
    if not args.steps:
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - start_cpu)
    for _ in range(args.steps):
        start, start_cpu = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - start_cpu)
    peak = common.peak_rss_mib()
    state_bytes = sum(
        t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)
    )
    trainable = sum(p.numel() for p in params) + sum(p.numel() for p in head.parameters())
    return {
        "variant": args.child,
        "recipe": args.recipe,
        "batch": args.batch,
        "seconds": args.seconds,
        "threads": args.threads,
        "rss_before_model_mib": rss_start,
        "rss_model_mib": rss_model,
        "peak_mib": peak,
        "train_delta_mib": peak - rss_model,
        "params_mib": sum(p.numel() * p.element_size() for p in all_params) / common.MIB,
        "trainable_params_mib": trainable * 4 / common.MIB,
        "adamw_state_mib": state_bytes / common.MIB,
        "saved_for_backward_mib": saved["mib"],
        "step_s": times,
        "step_cpu_s": cpu_times,
        "loadavg_1min": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    beats = common.base_beats(args.work_dir)
    variants = args.variants.split(",")
    unknown = [v for v in variants if v.removesuffix("+ckpt") not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; use {sorted(VARIANTS)}, optionally with '+ckpt'")
    results: dict[str, list[dict]] = {v: [] for v in variants}
    for r in range(args.repeats):
        for v in variants if r % 2 == 0 else variants[::-1]:  # interleaved, alternating order
            res = common.run_child(
                [
                    __file__,
                    "--child",
                    v,
                    "--beats",
                    str(beats),
                    "--batch",
                    str(args.batch),
                    "--seconds",
                    str(args.seconds),
                    "--steps",
                    str(args.steps),
                    "--recipe",
                    args.recipe,
                    "--threads",
                    str(args.threads),
                ],
                env=MALLOC_ENV[args.malloc],
            )
            results[v].append(res)
            print(
                f"repeat {r + 1} {v}: peak {res['peak_mib']:.0f} MiB, steps {[round(t, 2) for t in res['step_s']]} s",
                file=sys.stderr,
            )
    print(f"# {common.machine_description()}")
    print(
        f"# {args.recipe} configs, batch {args.batch} x {args.seconds:g} s, {args.threads} thread(s), malloc {args.malloc}, {args.repeats} "
        f"fresh processes per variant, {args.steps} timed step(s) each; medians, noise = (max-min)/median; "
        "step_cpu_s: CPU time of the process (robust to other load), step_s: wall time"
    )
    cols = [
        "peak_mib",
        "rss_model_mib",
        "train_delta_mib",
        "trainable_params_mib",
        "adamw_state_mib",
        "saved_for_backward_mib",
    ]
    print("| variant | " + " | ".join(cols) + " | step_cpu_s | cpu noise | step_s | wall noise | peak noise |")
    print("|" + "---|" * (len(cols) + 6))
    summary = {}
    for v in variants:
        rows = results[v]
        steps = [min(x["step_s"]) for x in rows]
        cpu = [min(x["step_cpu_s"]) for x in rows]
        med = {c: common.median([x[c] for x in rows]) for c in cols}
        summary[v] = {**med, "step_s": common.median(steps), "step_cpu_s": common.median(cpu)}
        peak_noise = common.spread([x["peak_mib"] for x in rows])
        print(
            f"| {v} | " + " | ".join(f"{med[c]:.0f}" for c in cols) + f" | {summary[v]['step_cpu_s']:.2f} | "
            f"{common.spread(cpu)} | {summary[v]['step_s']:.2f} | {common.spread(steps)} | {peak_noise} |"
        )
    for lora, full in [(a, b) for a in variants for b in variants if a.startswith("lora") and b.startswith("full")]:
        x, y = summary[lora], summary[full]
        print(
            f"ratio {lora} / {full}: peak {x['peak_mib'] / y['peak_mib']:.2f}, training delta "
            f"{x['train_delta_mib'] / y['train_delta_mib']:.2f}, step CPU time "
            f"{x['step_cpu_s'] / y['step_cpu_s']:.2f}, step wall time {x['step_s'] / y['step_s']:.2f}"
        )
    if args.out:
        args.out.write_text(
            json.dumps(
                {"args": {k: str(v) for k, v in vars(args).items()}, "results": results, "summary": summary}, indent=1
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
