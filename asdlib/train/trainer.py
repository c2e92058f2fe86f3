"""Training loop: the loss terms of the configured objectives (asdlib.train.objectives: the margin
loss on machine/section/attribute classes and its options), AdamW, warm-up + cosine, gradient
accumulation, AMP (float16 on CUDA, bfloat16 on CUDA or CPU), a checkpoint per epoch, exact resume
and torchrun DDP. The loop knows no method: objectives add loss terms, hooks and checkpoint entries.
Rank 0 also keeps ``exp/<tag>/train_losses.json``: per epoch, the loss and each term averaged over
all ranks, and the lr.

Resume is exact because every random choice of an epoch (sampling order, crops, SpecAugment,
dropout) is re-seeded from (seed, epoch, rank) at the epoch's start: an interrupted run continued
from its last checkpoint produces the same weights as an uninterrupted one.
"""

from __future__ import annotations

import functools
import io
import itertools
import json
import logging
import math
import operator
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from asdlib.config import OptimConfig, TrainConfig
from asdlib.data.datadir import DataDirError, Utt, read_data_dir
from asdlib.data.dataset import BalancedSampler, Batch, ClipDataset, collate
from asdlib.data.labels import read_labels
from asdlib.data.noise import NoiseAugment
from asdlib.devices import sm
from asdlib.io.atomic import atomic_write, atomic_write_text
from asdlib.io.config import dump_config
from asdlib.models.asd_model import (
    CheckpointError,
    build_model,
    load_trainable_state,
    trainable_state,
)
from asdlib.models.upstream_files import upstream_record
from asdlib.train.objectives import OBJECTIVES, Objective, Step, TrainSetup
from asdlib.utils import seed_everything

log = logging.getLogger(__name__)


@dataclass
class TrainData:
    utts: list[Utt]
    labels: list[int]
    classes: list[str]
    machines: list[str]

    def machine_ids(self) -> list[int]:
        """Each clip's machine index (its position in ``machines``)."""
        index = {m: i for i, m in enumerate(self.machines)}
        return [index[u.machine] for u in self.utts]


def load_train_data(cfg: TrainConfig, data_root: Path) -> TrainData:
    """Read the training sets and their stage-2 labels; all sets must share one class list."""
    utts: list[Utt] = []
    labels: list[int] = []
    classes: list[str] | None = None
    for name in cfg.data.train_sets:
        set_dir = data_root / name
        set_utts = read_data_dir(set_dir)
        set_labels, set_classes = read_labels(set_dir, set_utts)
        if classes is not None and set_classes != classes:
            raise ValueError(
                f"{set_dir / 'classes.txt'} differs from the other training sets; rerun stage 2 for all sets together"
            )
        classes = set_classes
        utts += set_utts
        labels += set_labels
    machines = sorted({u.machine for u in utts})
    return TrainData(utts, labels, classes or [], machines)


def load_noise(cfg: TrainConfig, data_root: Path, train: list[Utt]) -> NoiseAugment | None:
    """The noise augmentation of ``data.noise_sets`` (None when it is empty), its sets read as data dirs."""
    if not cfg.data.noise_sets:
        return None
    noise: list[Utt] = []
    for name in cfg.data.noise_sets:
        try:
            noise += read_data_dir(data_root / name)
        except DataDirError as e:
            raise DataDirError(f"data.noise_sets {name}: {e}; or drop it from data.noise_sets") from e
    return NoiseAugment(noise, train, cfg.data)


def lr_lambda(step: int, warmup: int, total: int) -> float:
    """Linear warm-up then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def ddp_backend(device_type: str) -> str:
    """NCCL for CUDA; gloo for CPU processes (``--ngpu 0 --nproc N``), where NCCL cannot run."""
    return "nccl" if device_type == "cuda" else "gloo"


def process_device(device: str, world_size: int, local_rank: int, local_world_size: int = 1) -> str:
    """This process's device: under DDP each CUDA rank takes GPU ``LOCAL_RANK``; CPU stays CPU.

    Why check the count: with fewer visible GPUs than ``--ngpu`` the surplus ranks would fail
    deep inside NCCL or CUDA with "invalid device ordinal"."""
    if not (device.startswith("cuda") and world_size > 1):
        return device
    count = torch.cuda.device_count()
    if local_world_size > count:
        raise ValueError(
            f"--ngpu {local_world_size}: only {count} GPU(s) are visible to this job "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); lower --ngpu or make "
            "more GPUs visible"
        )
    return f"cuda:{local_rank}"


BF16 = Literal["native", "emulated", "unsupported"]


def bf16_decision(device_type: str, capability: tuple[int, int] | None, native: bool) -> BF16:
    """What ``optim.amp_dtype: bfloat16`` does on a device: ``native`` runs it; ``emulated`` (CPUs
    without AVX512-BF16/AMX) runs it slowly with a warning; ``unsupported`` is CUDA below sm_80,
    where torch emulates bf16 through float32 at fp32 speed and some kernels lack it altogether."""
    if native and (device_type != "cuda" or capability is None or capability >= (8, 0)):
        return "native"
    return "unsupported" if device_type == "cuda" else "emulated"


def bf16_native(device: torch.device) -> bool:
    """Whether the hardware computes bfloat16 natively (CPU: AVX512-BF16/AMX via oneDNN; CUDA: sm_80 or newer)."""
    if device.type == "cuda":
        with torch.cuda.device(device):
            return torch.cuda.is_bf16_supported(including_emulation=False)
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast_dtype(optim: OptimConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of training, None for float32: ``amp_dtype: float16`` only on CUDA (old
    configs' ``amp: true`` keeps meaning this), ``bfloat16`` on CUDA from sm_80 and on CPU."""
    if not optim.amp or (optim.amp_dtype == "float16" and device.type != "cuda"):
        return None
    if optim.amp_dtype == "float16":
        return torch.float16
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    decision = bf16_decision(device.type, capability, bf16_native(device))
    if decision == "unsupported":
        raise ValueError(
            f"optim.amp_dtype bfloat16: {device} is {sm(capability or (0, 0))}, without native bfloat16 (needs "
            "sm_80, Ampere or newer); set optim.amp_dtype: float16"
        )
    if decision == "emulated":
        log.warning("optim.amp_dtype bfloat16: %s has no native bfloat16 support; it runs emulated and slowly", device)
    return torch.bfloat16


class Trainer:
    """Owns model, objectives, optimiser and the experiment directory (only rank 0 writes to it)."""

    def __init__(self, cfg: TrainConfig, exp_dir: Path, data_root: Path, device: str = "cpu") -> None:
        self.cfg, self.exp_dir = cfg, exp_dir
        self.rank = int(os.environ.get("RANK", "0"))
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.device = torch.device(
            process_device(
                device,
                self.world_size,
                int(os.environ.get("LOCAL_RANK", "0")),
                int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
            )
        )
        if self.device.type == "cuda" and self.device.index is not None:
            torch.cuda.set_device(self.device)  # before NCCL starts, else every rank's context lands on GPU 0
        if self.world_size > 1 and not dist.is_initialized():
            # device_id binds NCCL's communicator to this rank's GPU at once (no guessing, no barrier on GPU 0)
            device_id = self.device if self.device.type == "cuda" else None
            dist.init_process_group(ddp_backend(self.device.type), device_id=device_id)
        if cfg.optim.batch_size % self.world_size:
            raise ValueError(
                f"optim.batch_size {cfg.optim.batch_size} must be divisible by the number of processes {self.world_size}"
            )
        seed_everything(cfg.seed, str(self.device))
        self.data = load_train_data(cfg, data_root)
        entries = [OBJECTIVES.get(name) for name in OBJECTIVES.names()]
        kinds = {e.name: e.obj for e in entries if e.obj.select(cfg)}  # config errors before anything is built
        self.model = build_model(cfg, len(self.data.machines)).to(self.device)
        setup = TrainSetup(
            cfg,
            self.data,
            self.device,
            len(self.data.classes) + sum(kind.extra_classes(cfg, self.data) for kind in kinds.values()),
        )
        # in registration order; the objectives built after the model draw from the global RNG after it
        self.objectives: dict[str, Objective] = {name: kind(setup) for name, kind in kinds.items()}
        self.objective_modules = [m for o in self.objectives.values() for m in o.modules()]
        self.dataset = ClipDataset(
            self.data.utts,
            cfg.data.sample_rate,
            self.data.labels,
            self.data.machine_ids(),
            crop_samples=int(cfg.data.crop_seconds * cfg.data.sample_rate),
            seed=cfg.seed,
            min_samples=int(cfg.data.min_seconds * cfg.data.sample_rate),
            channel=cfg.data.channel,
            resample=cfg.data.resample,
            noise=load_noise(cfg, data_root, self.data.utts),
        )
        self.sampler = BalancedSampler(
            [(u.machine, u.domain) for u in self.data.utts],
            cfg.data.balance_power,
            seed=cfg.seed,
            rank=self.rank,
            world_size=self.world_size,
        )
        per_rank = cfg.optim.batch_size // self.world_size
        self.loader = DataLoader(
            self.dataset,
            batch_size=per_rank,
            sampler=self.sampler,
            collate_fn=collate,
            num_workers=cfg.data.num_workers,
            drop_last=True,
        )
        self.steps_per_epoch = len(self.loader) // cfg.optim.grad_accum
        if cfg.optim.epochs and self.steps_per_epoch == 0:
            raise ValueError(
                f"{len(self.dataset)} training clips are fewer than one batch "
                f"({cfg.optim.batch_size} x grad_accum {cfg.optim.grad_accum}); lower optim.batch_size"
            )
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            [
                {"params": params, "lr": cfg.optim.lr},
                {"params": [p for m in self.objective_modules for p in m.parameters()], "lr": cfg.optim.lr_head},
            ],
            weight_decay=cfg.optim.weight_decay,
        )
        total = self.steps_per_epoch * cfg.optim.epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_lambda(s, cfg.optim.warmup_steps, total)
        )
        self.amp_dtype = autocast_dtype(cfg.optim, self.device)
        self.use_amp = self.amp_dtype is not None
        # Only float16 needs loss scaling (its small exponent range underflows gradients); bfloat16 does not.
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        # Modules that skip whole layers in training (BEATs encoder_layerdrop): they draw from a
        # generator seeded alike on all ranks (see train_epoch), so every rank skips the same layers.
        self.layerdrop_modules = [
            m for m in self.model.modules() if hasattr(m, "layerdrop_generator") and getattr(m, "layerdrop", 0) > 0
        ]
        self.ddp_model: nn.Module = self.model
        if self.world_size > 1 and params:
            # Some trainable parameters never get a gradient (full fine-tuning of s3prl models: the
            # CNN runs under no_grad, mask_emb/label_embs are unused), which plain DDP rejects:
            # static_graph allows it when the set is the same every step. Layer drop changes the set
            # from step to step, which needs find_unused_parameters (a globally unused parameter's
            # gradient is left as it is, as in one process).
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            if self.layerdrop_modules:
                self.ddp_model = nn.parallel.DistributedDataParallel(
                    self.model, device_ids=device_ids, find_unused_parameters=True
                )
            else:
                self.ddp_model = nn.parallel.DistributedDataParallel(
                    self.model, device_ids=device_ids, static_graph=True
                )
        self.epoch = 0
        self.losses: list[dict[str, float]] = []  # per-epoch record, written to train_losses.json

    # -- checkpoints ---------------------------------------------------------------------
    @property
    def ckpt_dir(self) -> Path:
        return self.exp_dir / "checkpoints"

    def save_checkpoint(self) -> None:
        if self.rank:
            return
        state = {
            "epoch": self.epoch,
            "model": trainable_state(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "classes": self.data.classes,
            "machines": self.data.machines,
        }
        for objective in self.objectives.values():
            state.update(objective.state_dict())
        path = self.ckpt_dir / f"epoch_{self.epoch}.pt"
        with atomic_write(path, "wb") as f:
            torch.save(state, f)
        atomic_write_text(self.ckpt_dir / "latest", path.name + "\n")
        for old in sorted(self.ckpt_dir.glob("epoch_*.pt"), key=lambda p: int(p.stem.split("_")[1]))[
            : -self.cfg.optim.keep_checkpoints
        ]:
            old.unlink()
        log.info("saved %s", path)

    def resume(self) -> None:
        latest = self.ckpt_dir / "latest"
        if not latest.is_file():
            log.info("no checkpoint in %s: starting from scratch", self.ckpt_dir)
            return
        path = self.ckpt_dir / latest.read_text().strip()
        try:
            # on CPU first: load_state_dict copies each tensor to its parameter's device, and AdamW's
            # step counters stay on CPU as in an uninterrupted run
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(
                f"{path}: unreadable checkpoint ({e}); delete it and point {latest} at the previous epoch"
            ) from e
        if state["classes"] != self.data.classes or state["machines"] != self.data.machines:
            raise CheckpointError(
                f"{path}: the training classes/machines changed since this checkpoint; use a new --tag"
            )
        load_trainable_state(self.model, state["model"], str(path))
        for objective in self.objectives.values():
            objective.load_state_dict(state)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self._load_scaler_state(state["scaler"], path)
        self.epoch = int(state["epoch"])
        record = self.exp_dir / "train_losses.json"
        if record.is_file():
            self.losses = [r for r in json.loads(record.read_text()) if r["epoch"] <= self.epoch]
        log.info("resumed from %s (epoch %d)", path, self.epoch)

    def _load_scaler_state(self, state: dict, path: Path) -> None:
        """A checkpoint written without AMP (CPU, or ``amp: false``) holds ``{}``, which an enabled
        GradScaler refuses: then the loss scale starts afresh (it re-adapts within a few steps)."""
        if state:
            self.scaler.load_state_dict(state)
        elif self.scaler.is_enabled():
            log.info("%s was saved without AMP: the AMP loss scale starts afresh", path)

    def save_model(self) -> None:
        """The inference artefact: trainable weights plus the label maps.

        An identical existing file is left alone: a rerun with nothing left to train keeps its
        mtime, so the launcher does not redo the extraction jobs that already used it.
        """
        if self.rank:
            return
        buf = io.BytesIO()
        torch.save(
            {
                "epoch": self.epoch,
                "model": trainable_state(self.model),
                "classes": self.data.classes,
                "machines": self.data.machines,
                "upstream": upstream_record(self.cfg.upstream.path),
            },
            buf,
        )
        path = self.exp_dir / "model.pt"
        if path.is_file() and path.read_bytes() == buf.getvalue():
            log.info("%s is up to date", path)
            return
        with atomic_write(path, "wb") as f:
            f.write(buf.getvalue())

    # -- training ------------------------------------------------------------------------
    def train_epoch(self) -> tuple[float, dict[str, float]]:
        """One epoch; returns the mean loss and the mean of each named term, over all ranks' batches."""
        cfg = self.cfg.optim
        # Global RNG per rank (one seed gave every rank's shard the same dropout/SpecAugment masks);
        # the generator (the objectives' draws) is shared: their state updates must agree on all ranks.
        torch.manual_seed(self.cfg.seed * 100003 + self.epoch + 7919 * self.rank)
        self.generator = torch.Generator().manual_seed(self.cfg.seed * 100003 + self.epoch)
        layerdrop = torch.Generator().manual_seed(self.cfg.seed * 100003 + self.epoch + 50021)  # shared too
        for m in self.layerdrop_modules:
            m.layerdrop_generator = layerdrop
        for objective in self.objectives.values():
            objective.on_epoch_start(self)
        self.sampler.set_epoch(self.epoch)
        self.dataset.set_epoch(self.epoch)
        self.model.train()
        for m in self.objective_modules:
            m.train()
        total, count = 0.0, 0
        term_totals: dict[str, float] = {}
        # Only whole accumulation groups: a trailing partial group's gradient would leak into the next
        # epoch's first step, and a resumed run (gradients are not checkpointed) would lose it.
        batches = self.steps_per_epoch * cfg.grad_accum
        bar = tqdm(
            itertools.islice(self.loader, batches),
            total=batches,
            desc=f"epoch {self.epoch + 1}",
            disable=self.rank > 0,
            file=sys.stderr,
            mininterval=1.0 if sys.stderr.isatty() else 30.0,
            ascii=not sys.stderr.isatty(),
        )
        for i, batch in enumerate(bar):
            batch = batch.to(self.device)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
                terms = self.batch_terms(batch)
                loss = functools.reduce(operator.add, terms.values())  # in objective order
            self.scaler.scale(loss / cfg.grad_accum).backward()
            total += loss.item()
            count += 1
            for name, term in terms.items():
                term_totals[name] = term_totals.get(name, 0.0) + term.item()
            if (i + 1) % cfg.grad_accum == 0:
                self._average_objective_grads()
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], cfg.grad_clip)
                scale = self.scaler.get_scale()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                if self.scaler.get_scale() >= scale:  # a lowered scale: inf/NaN gradients, the step was skipped
                    self.scheduler.step()
                    for objective in self.objectives.values():
                        objective.after_step(self)
            bar.set_postfix(loss=f"{total / count:.4f}")
        names = list(term_totals)
        if self.world_size > 1:  # the epoch loss over all ranks' clips, as one process would report it
            sums = torch.tensor([total, count, *term_totals.values()], dtype=torch.float64, device=self.device)
            dist.all_reduce(sums)
            total, count, *term_sums = sums.tolist()
            term_totals = dict(zip(names, term_sums, strict=True))
        return total / max(count, 1), {name: value / max(count, 1) for name, value in term_totals.items()}

    def _average_objective_grads(self) -> None:
        """The objectives' modules (the margin head) run outside the DDP-wrapped model, so DDP does
        not average their gradients: do it here, else every rank trains its own head on its shard."""
        if self.world_size == 1:
            return
        for m in self.objective_modules:
            for p in m.parameters():
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad.div_(self.world_size)

    def batch_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The named loss terms of one batch: the objectives' hooks around the forward pass (see
        :mod:`asdlib.train.objectives`), each stage in objective order."""
        step = Step(batch, self.generator, [(1.0, batch.labels)])
        objectives = list(self.objectives.values())
        for objective in objectives:
            objective.before_forward(step)
        emb = self.ddp_model(step.batch.wavs, step.batch.lengths, step.batch.machines)
        for objective in objectives:
            objective.after_forward(step, emb)
        terms: dict[str, torch.Tensor] = {}
        for name, objective in self.objectives.items():
            for term, value in objective.loss(step, emb).items():
                if term in terms:
                    raise ValueError(f"objective {name}: loss term '{term}' is already given by another objective")
                terms[term] = value
        for objective in objectives:
            objective.after_loss(step, emb)
        return terms

    @torch.no_grad()
    def clean_embeddings(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(embeddings, clip indices) of the training clips ``clips`` from a clean pass: eval mode (no
        dropout, layer drop or SpecAugment), no gradients, whole clips in index order (no random
        crop), so an objective that fits something at an epoch end sees the model's embeddings, not
        the epoch's augmented ones taken from weights that moved during it. Under DDP each rank
        embeds a strided share; the gathered result is sorted by clip index, identical on every rank."""
        mine = clips[self.rank :: self.world_size].tolist()
        clean = ClipDataset(
            self.dataset.utts,
            self.dataset.sample_rate,
            self.dataset.labels,
            self.dataset.machines,
            crop_samples=0,
            min_samples=self.dataset.min_samples,
            channel=self.dataset.channel,
            resample=self.dataset.resample,
        )
        loader = DataLoader(
            torch.utils.data.Subset(clean, mine),
            batch_size=self.cfg.optim.batch_size // self.world_size,
            collate_fn=collate,
            num_workers=self.cfg.data.num_workers,
        )
        was_training = self.model.training
        self.model.eval()
        embs, indices = [torch.zeros(0, self.cfg.model.embed_dim)], [torch.zeros(0, dtype=torch.long)]
        for batch in loader:
            batch = batch.to(self.device)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
                embs.append(self.model(batch.wavs, batch.lengths, batch.machines).float().cpu())
            indices.append(batch.indices.cpu())
        self.model.train(was_training)
        emb, index = torch.cat(embs), torch.cat(indices)
        if self.world_size > 1:
            shares: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * self.world_size
            dist.all_gather_object(shares, (emb, index))
            emb, index = torch.cat([s[0] for s in shares]), torch.cat([s[1] for s in shares])  # type: ignore[index]
        order = torch.argsort(index)
        return emb[order], index[order]

    def run(self, resume: bool) -> None:
        if self.rank == 0:
            self.exp_dir.mkdir(parents=True, exist_ok=True)
            dump_config(self.cfg, self.exp_dir / "config.yaml")
        if resume:
            self.resume()
        log.info(
            "training on %d clips, %d classes, %d machines, %d steps/epoch, %d epochs, %d process(es)",
            len(self.dataset),
            len(self.data.classes),
            len(self.data.machines),
            self.steps_per_epoch,
            self.cfg.optim.epochs,
            self.world_size,
        )
        while self.epoch < self.cfg.optim.epochs:
            start = time.time()
            loss, terms = self.train_epoch()
            self.epoch += 1
            for objective in self.objectives.values():
                objective.on_epoch_end(self)
            log.info(
                "epoch %d/%d: loss %.4f (%s), lr %.2e, %.1f s",
                self.epoch,
                self.cfg.optim.epochs,
                loss,
                ", ".join(f"{name} {value:.4f}" for name, value in terms.items()),
                self.scheduler.get_last_lr()[0],
                time.time() - start,
            )
            self.losses.append(
                {"epoch": self.epoch, "loss": loss, "terms": terms, "lr": self.scheduler.get_last_lr()[0]}
            )
            if self.rank == 0:
                atomic_write_text(self.exp_dir / "train_losses.json", json.dumps(self.losses, indent=1) + "\n")
            self.save_checkpoint()
        self.save_model()
        if self.world_size > 1:
            dist.barrier()
            dist.destroy_process_group()
