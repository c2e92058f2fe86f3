"""Training loop: margin loss on machine/section/attribute classes, AdamW, warm-up + cosine,
gradient accumulation, AMP (float16 on CUDA, bfloat16 on CUDA or CPU), a checkpoint per epoch,
exact resume and torchrun DDP.
Rank 0 also keeps ``exp/<tag>/train_losses.json``: per epoch, the loss averaged over all ranks and the lr.

Resume is exact because every random choice of an epoch (sampling order, crops, SpecAugment,
dropout) is re-seeded from (seed, epoch, rank) at the epoch's start: an interrupted run continued
from its last checkpoint produces the same weights as an uninterrupted one.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from asdlib.config import OptimConfig, TrainConfig
from asdlib.data.datadir import Utt, read_data_dir
from asdlib.data.dataset import BalancedSampler, Batch, ClipDataset, collate
from asdlib.data.labels import read_labels
from asdlib.io.atomic import atomic_write, atomic_write_text
from asdlib.io.config import dump_config
from asdlib.losses import DualLevelLoss, VQClusterer, codebook_keys
from asdlib.models.asd_model import (
    CheckpointError,
    build_model,
    load_trainable_state,
    trainable_state,
)
from asdlib.models.heads import build_head
from asdlib.models.mixup import mixed_loss, mixup
from asdlib.models.upstream_files import upstream_record
from asdlib.utils import seed_everything

log = logging.getLogger(__name__)


@dataclass
class TrainData:
    utts: list[Utt]
    labels: list[int]
    classes: list[str]
    machines: list[str]


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
            raise ValueError(f"{set_dir / 'classes.txt'} differs from the other training sets; rerun stage 2 for all sets together")
        classes = set_classes
        utts += set_utts
        labels += set_labels
    machines = sorted({u.machine for u in utts})
    return TrainData(utts, labels, classes or [], machines)


def lr_lambda(step: int, warmup: int, total: int) -> float:
    """Linear warm-up then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def ddp_backend(device_type: str) -> str:
    """NCCL for CUDA; gloo for CPU processes (``--ngpu 0 --nproc N``), where NCCL cannot run."""
    return "nccl" if device_type == "cuda" else "gloo"


def process_device(device: str, world_size: int, local_rank: int) -> str:
    """This process's device: under DDP each CUDA rank takes GPU ``LOCAL_RANK``; CPU stays CPU."""
    if device.startswith("cuda") and world_size > 1:
        return f"cuda:{local_rank}"
    return device


def bf16_native(device: torch.device) -> bool:
    """Whether the hardware computes bfloat16 natively (CPU: AVX512-BF16/AMX via oneDNN; CUDA: Ampere or newer)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast_dtype(optim: OptimConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of training, None for float32: ``amp_dtype: float16`` only on CUDA (old
    configs' ``amp: true`` keeps meaning this), ``bfloat16`` on CUDA and CPU."""
    if not optim.amp or (optim.amp_dtype == "float16" and device.type != "cuda"):
        return None
    if optim.amp_dtype == "float16":
        return torch.float16
    if not bf16_native(device):
        log.warning("optim.amp_dtype bfloat16: %s has no native bfloat16 support; it runs emulated and slowly", device)
    return torch.bfloat16


class Trainer:
    """Owns model, head, optimiser and the experiment directory (only rank 0 writes to it)."""

    def __init__(self, cfg: TrainConfig, exp_dir: Path, data_root: Path, device: str = "cpu") -> None:
        self.cfg, self.exp_dir = cfg, exp_dir
        self.rank = int(os.environ.get("RANK", "0"))
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.device = torch.device(process_device(device, self.world_size, int(os.environ.get("LOCAL_RANK", "0"))))
        if self.device.type == "cuda" and self.device.index is not None:
            torch.cuda.set_device(self.device)  # before NCCL starts, else every rank's context lands on GPU 0
        if self.world_size > 1 and not dist.is_initialized():
            dist.init_process_group(ddp_backend(self.device.type))
        if cfg.optim.batch_size % self.world_size:
            raise ValueError(f"optim.batch_size {cfg.optim.batch_size} must be divisible by the number of processes {self.world_size}")
        seed_everything(cfg.seed, str(self.device))
        self.data = load_train_data(cfg, data_root)
        self.model = build_model(cfg, len(self.data.machines)).to(self.device)
        machine_index = {m: i for i, m in enumerate(self.data.machines)}
        num_classes = len(self.data.classes)
        self.vq: VQClusterer | None = None
        if cfg.vq.enabled:
            # Clips without attributes get codebooks; their pseudo-classes extend the head's class set.
            keys = codebook_keys([u.attr for u in self.data.utts], [machine_index[u.machine] for u in self.data.utts],
                                 self.data.labels, cfg.vq.codebook_per)
            spk = sorted({u.spk for u in self.data.utts})
            self.vq_keys = torch.tensor(keys, device=self.device)
            self.vq_groups = torch.tensor([spk.index(u.spk) for u in self.data.utts], device=self.device)
            self.vq = VQClusterer([k for k in keys if k >= 0], cfg.model.embed_dim, cfg.vq, num_classes).to(self.device)
            self.dual_loss = DualLevelLoss(cfg.vq)
            num_classes = self.vq.num_classes
            log.info("VQ clustering: %d codebooks of %d codes for clips without attributes; %d head classes",
                     len(set(k for k in keys if k >= 0)), cfg.vq.num_codes, num_classes)
        self.num_classes = num_classes
        self.head = build_head(cfg.head, cfg.model.embed_dim, num_classes).to(self.device)
        self.dataset = ClipDataset(self.data.utts, cfg.data.sample_rate, self.data.labels,
                                   [machine_index[u.machine] for u in self.data.utts],
                                   crop_samples=int(cfg.data.crop_seconds * cfg.data.sample_rate), seed=cfg.seed,
                                   min_samples=int(cfg.data.min_seconds * cfg.data.sample_rate), channel=cfg.data.channel,
                                   resample=cfg.data.resample)
        self.sampler = BalancedSampler([(u.machine, u.domain) for u in self.data.utts], cfg.data.balance_power,
                                       seed=cfg.seed, rank=self.rank, world_size=self.world_size)
        per_rank = cfg.optim.batch_size // self.world_size
        self.loader = DataLoader(self.dataset, batch_size=per_rank, sampler=self.sampler, collate_fn=collate,
                                 num_workers=cfg.data.num_workers, drop_last=True)
        self.steps_per_epoch = len(self.loader) // cfg.optim.grad_accum
        if cfg.optim.epochs and self.steps_per_epoch == 0:
            raise ValueError(f"{len(self.dataset)} training clips are fewer than one batch "
                             f"({cfg.optim.batch_size} x grad_accum {cfg.optim.grad_accum}); lower optim.batch_size")
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW([{"params": params, "lr": cfg.optim.lr},
                                            {"params": list(self.head.parameters()), "lr": cfg.optim.lr_head}],
                                           weight_decay=cfg.optim.weight_decay)
        total = self.steps_per_epoch * cfg.optim.epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_lambda(s, cfg.optim.warmup_steps, total))
        self.amp_dtype = autocast_dtype(cfg.optim, self.device)
        self.use_amp = self.amp_dtype is not None
        # Only float16 needs loss scaling (its small exponent range underflows gradients); bfloat16 does not.
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        # Modules that skip whole layers in training (BEATs encoder_layerdrop): they draw from a
        # generator seeded alike on all ranks (see train_epoch), so every rank skips the same layers.
        self.layerdrop_modules = [m for m in self.model.modules()
                                  if hasattr(m, "layerdrop_generator") and getattr(m, "layerdrop", 0) > 0]
        self.ddp_model: nn.Module = self.model
        if self.world_size > 1 and params:
            # Some trainable parameters never get a gradient (full fine-tuning of s3prl models: the
            # CNN runs under no_grad, mask_emb/label_embs are unused), which plain DDP rejects:
            # static_graph allows it when the set is the same every step. Layer drop changes the set
            # from step to step, which needs find_unused_parameters (a globally unused parameter's
            # gradient is left as it is, as in one process).
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            if self.layerdrop_modules:
                self.ddp_model = nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids,
                                                                     find_unused_parameters=True)
            else:
                self.ddp_model = nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids, static_graph=True)
        self.epoch = 0
        self.losses: list[dict[str, float]] = []  # per-epoch record, written to train_losses.json

    # -- checkpoints ---------------------------------------------------------------------
    @property
    def ckpt_dir(self) -> Path:
        return self.exp_dir / "checkpoints"

    def save_checkpoint(self) -> None:
        if self.rank:
            return
        state = {"epoch": self.epoch, "model": trainable_state(self.model), "head": self.head.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "scaler": self.scaler.state_dict(), "classes": self.data.classes, "machines": self.data.machines,
                 "vq": self.vq.state_dict() if self.vq is not None else {}}
        path = self.ckpt_dir / f"epoch_{self.epoch}.pt"
        with atomic_write(path, "wb") as f:
            torch.save(state, f)
        atomic_write_text(self.ckpt_dir / "latest", path.name + "\n")
        for old in sorted(self.ckpt_dir.glob("epoch_*.pt"), key=lambda p: int(p.stem.split("_")[1]))[:-self.cfg.optim.keep_checkpoints]:
            old.unlink()
        log.info("saved %s", path)

    def resume(self) -> None:
        latest = self.ckpt_dir / "latest"
        if not latest.is_file():
            log.info("no checkpoint in %s: starting from scratch", self.ckpt_dir)
            return
        path = self.ckpt_dir / latest.read_text().strip()
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as e:
            raise CheckpointError(f"{path}: unreadable checkpoint ({e}); delete it and point {latest} at the previous epoch") from e
        if state["classes"] != self.data.classes or state["machines"] != self.data.machines:
            raise CheckpointError(f"{path}: the training classes/machines changed since this checkpoint; use a new --tag")
        load_trainable_state(self.model, state["model"], str(path))
        self.head.load_state_dict(state["head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self._load_scaler_state(state["scaler"], path)
        if self.vq is not None:
            self.vq.load_state_dict(state["vq"])
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
        torch.save({"epoch": self.epoch, "model": trainable_state(self.model), "classes": self.data.classes,
                    "machines": self.data.machines, "upstream": upstream_record(self.cfg.upstream.path)}, buf)
        path = self.exp_dir / "model.pt"
        if path.is_file() and path.read_bytes() == buf.getvalue():
            log.info("%s is up to date", path)
            return
        with atomic_write(path, "wb") as f:
            f.write(buf.getvalue())

    # -- training ------------------------------------------------------------------------
    def train_epoch(self) -> float:
        cfg = self.cfg.optim
        # Global RNG per rank (one seed gave every rank's shard the same dropout/SpecAugment masks);
        # the generator (mixup, VQ code restarts) is shared: VQ updates must agree on all ranks.
        torch.manual_seed(self.cfg.seed * 100003 + self.epoch + 7919 * self.rank)
        self.generator = torch.Generator().manual_seed(self.cfg.seed * 100003 + self.epoch)
        layerdrop = torch.Generator().manual_seed(self.cfg.seed * 100003 + self.epoch + 50021)  # shared too
        for m in self.layerdrop_modules:
            m.layerdrop_generator = layerdrop
        self.sampler.set_epoch(self.epoch)
        self.dataset.set_epoch(self.epoch)
        self.model.train()
        self.head.train()
        total, count = 0.0, 0
        # Only whole accumulation groups: a trailing partial group's gradient would leak into the next
        # epoch's first step, and a resumed run (gradients are not checkpointed) would lose it.
        batches = self.steps_per_epoch * cfg.grad_accum
        bar = tqdm(itertools.islice(self.loader, batches), total=batches, desc=f"epoch {self.epoch + 1}",
                   disable=self.rank > 0, file=sys.stderr, mininterval=1.0 if sys.stderr.isatty() else 30.0,
                   ascii=not sys.stderr.isatty())
        for i, batch in enumerate(bar):
            batch = batch.to(self.device)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
                loss = self.batch_loss(batch)
            self.scaler.scale(loss / cfg.grad_accum).backward()
            total += loss.item()
            count += 1
            if (i + 1) % cfg.grad_accum == 0:
                self._average_head_grads()
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], cfg.grad_clip)
                scale = self.scaler.get_scale()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                if self.scaler.get_scale() >= scale:  # a lowered scale: inf/NaN gradients, the step was skipped
                    self.scheduler.step()
            bar.set_postfix(loss=f"{total / count:.4f}")
        if self.world_size > 1:  # the epoch loss over all ranks' clips, as one process would report it
            sums = torch.tensor([total, count], dtype=torch.float64, device=self.device)
            dist.all_reduce(sums)
            total, count = sums.tolist()
        return total / max(count, 1)

    def _average_head_grads(self) -> None:
        """The head is called outside the DDP-wrapped model (twice under mixup), so DDP does not
        average its gradients: do it here, else every rank trains its own head on its shard."""
        if self.world_size == 1:
            return
        for p in self.head.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad.div_(self.world_size)

    def batch_loss(self, batch: Batch) -> torch.Tensor:
        """Margin loss (two-label under mixup) plus, with VQ, the dual-level contrastive loss."""
        if self.cfg.mixup.enabled:
            mixed = mixup(batch.wavs, F.one_hot(batch.labels, self.num_classes).float(), self.cfg.mixup.alpha,
                          self.generator, lengths=batch.lengths, groups=batch.machines)
            emb = self.ddp_model(mixed.wavs, mixed.lengths, batch.machines)
            return mixed_loss(self.head, emb.float(), batch.labels, mixed)
        emb = self.ddp_model(batch.wavs, batch.lengths, batch.machines)
        if self.vq is None:
            return self.head(emb.float(), batch.labels)
        keys, groups = self.vq_keys[batch.indices], self.vq_groups[batch.indices]
        codes, assigned = self.vq.lookup(emb.detach().float(), keys)
        labels = self.vq.pseudo_labels(batch.labels, keys, assigned)
        loss = self.head(emb.float(), labels) + self.dual_loss(emb.float(), groups, codes, assigned).total
        # EMA codebook update on the (all-gathered) batch, identical on every rank.
        emb_all, keys_all = self._gather(emb.detach().float()), self._gather(keys)
        self.vq.update(emb_all, keys_all, generator=self.generator)
        return loss

    def _gather(self, t: torch.Tensor) -> torch.Tensor:
        if self.world_size == 1:
            return t
        out = [torch.empty_like(t) for _ in range(self.world_size)]
        dist.all_gather(out, t.contiguous())
        return torch.cat(out)

    @torch.no_grad()
    def refresh_embeddings(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(embeddings, codebook keys, clip indices) of every training clip with a codebook, from a
        clean pass: eval mode (no dropout, layer drop or SpecAugment), no gradients, whole clips in
        index order (no random crop), so the k-means sees the model's embeddings, not an epoch's
        augmented ones taken from weights that moved during the epoch. Under DDP each rank embeds
        a strided share; the gathered result is sorted by clip index, identical on every rank."""
        mine = torch.nonzero(self.vq_keys.cpu() >= 0).flatten()[self.rank::self.world_size].tolist()
        clean = ClipDataset(self.dataset.utts, self.dataset.sample_rate, self.dataset.labels, self.dataset.machines,
                            crop_samples=0, min_samples=self.dataset.min_samples, channel=self.dataset.channel,
                            resample=self.dataset.resample)
        loader = DataLoader(torch.utils.data.Subset(clean, mine), batch_size=self.cfg.optim.batch_size // self.world_size,
                            collate_fn=collate, num_workers=self.cfg.data.num_workers)
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
        return emb[order], self.vq_keys.cpu()[index[order]], index[order]

    def refresh_codebooks(self) -> None:
        """After the warm-up epoch(s): k-means (re)initialisation of the codebooks on a clean
        eval-mode pass over the clips that have a codebook (:meth:`refresh_embeddings`)."""
        if self.vq is None or not self.vq.keys or self.epoch < self.cfg.vq.warmup_epochs:
            return
        if self.cfg.vq.refresh or not self.vq.initialized:
            emb, keys, _ = self.refresh_embeddings()
            self.vq.init_from(emb, keys, generator=self.generator)
            log.info("VQ codebooks (re)initialised by k-means on %d clean eval-mode embeddings", len(emb))

    def run(self, resume: bool) -> None:
        if self.rank == 0:
            self.exp_dir.mkdir(parents=True, exist_ok=True)
            dump_config(self.cfg, self.exp_dir / "config.yaml")
        if resume:
            self.resume()
        log.info("training on %d clips, %d classes, %d machines, %d steps/epoch, %d epochs, %d process(es)",
                 len(self.dataset), len(self.data.classes), len(self.data.machines), self.steps_per_epoch,
                 self.cfg.optim.epochs, self.world_size)
        while self.epoch < self.cfg.optim.epochs:
            start = time.time()
            loss = self.train_epoch()
            self.epoch += 1
            self.refresh_codebooks()
            log.info("epoch %d/%d: loss %.4f, lr %.2e, %.1f s", self.epoch, self.cfg.optim.epochs, loss,
                     self.scheduler.get_last_lr()[0], time.time() - start)
            self.losses.append({"epoch": self.epoch, "loss": loss, "lr": self.scheduler.get_last_lr()[0]})
            if self.rank == 0:
                atomic_write_text(self.exp_dir / "train_losses.json", json.dumps(self.losses, indent=1) + "\n")
            self.save_checkpoint()
        self.save_model()
        if self.world_size > 1:
            dist.barrier()
            dist.destroy_process_group()
