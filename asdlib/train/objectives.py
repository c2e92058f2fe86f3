"""Training objectives: the plug-ins that turn a batch into named loss terms (docs/design.md §2).

Why: the trainer stays generic (forward, sum, backward, step, checkpoint) and every method part (the
margin head, VQ dual-level contrastive clustering, mixup) lives in one class here, with its hooks,
loss terms and checkpoint entries. An objective is registered in :data:`OBJECTIVES`; the trainer
builds, in registration order, every one whose :meth:`Objective.select` accepts the config (so the
config sections ``head``, ``vq`` and ``mixup`` keep choosing them), and per batch runs

    before_forward (all) -> model forward -> after_forward (all) -> loss (all) -> after_loss (all)

on one :class:`Step` (the hooks after the forward pass also get the embeddings), then backpropagates the sum of the loss terms in registration order.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from asdlib.config import HeadConfig, MixupConfig, PretrainConfig, TrainConfig, VQConfig
from asdlib.data.dataset import Batch
from asdlib.io.config import ConfigError
from asdlib.losses import DualLevelLoss, VQClusterer, codebook_keys
from asdlib.models.eat_pretrain import EATPretrainer
from asdlib.models.heads import HEADS, build_head, gather_ranks, weighted_labels_loss
from asdlib.models.mixup import mixup
from asdlib.registry import OBJECTIVES

if TYPE_CHECKING:
    from asdlib.train.trainer import TrainData

log = logging.getLogger(__name__)


@dataclass
class TrainSetup:
    """What an objective is built from."""

    cfg: TrainConfig
    data: TrainData
    device: torch.device
    num_classes: int  # of the margin loss: the label classes plus every selected objective's extra_classes


@dataclass
class Step:
    """One training batch on its way through the objectives' hooks, which may replace its fields."""

    batch: Batch  # what the model embeds (mixup replaces wavs and lengths)
    generator: torch.Generator  # the epoch's generator, seeded alike on every rank
    targets: list[tuple[float, Tensor]]  # weighted hard-label sets of the margin loss: sum of w·L(emb, y)


class Run(Protocol):
    """What the epoch hooks see of the trainer."""

    epoch: int  # epochs completed (in on_epoch_end: including the one just ended)
    generator: torch.Generator  # the epoch's shared generator
    model: nn.Module  # the trained network (not the DDP wrapper)

    def clean_embeddings(self, clips: Tensor) -> tuple[Tensor, Tensor]:
        """(embeddings, clip indices sorted) of training clips ``clips`` from a clean eval-mode pass."""
        ...


class Objective:
    """Base of the training objectives: every hook does nothing until a subclass overrides it."""

    @classmethod
    def select(cls, cfg: TrainConfig) -> bool:
        """Whether ``cfg`` uses this objective; a bad setting raises ConfigError (before any building)."""
        return True

    @classmethod
    def extra_classes(cls, cfg: TrainConfig, data: TrainData) -> int:
        """Margin-loss classes this objective adds after the label classes (VQ's pseudo-classes)."""
        return 0

    def __init__(self, setup: TrainSetup) -> None:
        """Build on ``setup.device``; drawing from the global RNG here shifts every later draw."""

    def modules(self) -> list[nn.Module]:
        """Modules trained with ``optim.lr_head``, run outside the DDP model (the trainer averages
        their gradients over ranks) and switched to train mode each epoch."""
        return []

    def before_forward(self, step: Step) -> None:
        """Change the batch or the targets before the model sees it."""

    def after_forward(self, step: Step, emb: Tensor) -> None:
        """React to the embeddings before any loss is computed (e.g. relabel the targets)."""

    def loss(self, step: Step, emb: Tensor) -> dict[str, Tensor]:
        """Named, weighted loss terms of the batch; the trainer sums and logs them."""
        return {}

    def after_loss(self, step: Step, emb: Tensor) -> None:
        """Update own state from the batch (before the backward pass)."""

    def after_step(self, run: Run) -> None:
        """Called after each optimiser step that was taken (not one skipped for inf/NaN gradients)."""

    def on_epoch_start(self, run: Run) -> None:
        """Called after the epoch's generators are seeded, before its first batch."""

    def on_epoch_end(self, run: Run) -> None:
        """Called after ``run.epoch`` was advanced, before the epoch's checkpoint."""

    def state_dict(self) -> dict[str, Any]:
        """Own top-level checkpoint entries."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from a whole checkpoint (its own entries in it)."""


@OBJECTIVES.register("margin", HeadConfig)
class MarginObjective(Objective):
    """The margin loss of the ``head.kind`` head (:data:`asdlib.models.heads.HEADS`) on the step's
    weighted label sets; term ``margin``, checkpoint entry ``head``."""

    @classmethod
    def select(cls, cfg: TrainConfig) -> bool:
        try:
            HEADS.get(cfg.head.kind)
        except ValueError as e:
            raise ConfigError(f"head.kind: {e}") from e
        return not cfg.pretrain.enabled  # self-supervised pre-training reads no labels

    def __init__(self, setup: TrainSetup) -> None:
        self.head = build_head(setup.cfg.head, setup.cfg.model.embed_dim, setup.num_classes).to(setup.device)

    def modules(self) -> list[nn.Module]:
        return [self.head]

    def loss(self, step: Step, emb: Tensor) -> dict[str, Tensor]:
        return {"margin": weighted_labels_loss(self.head, emb.float(), step.targets)}

    def state_dict(self) -> dict[str, Any]:
        return {"head": self.head.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.head.load_state_dict(state["head"])


@OBJECTIVES.register("vq", VQConfig)
class VQObjective(Objective):
    """VQ dynamic clustering of clips without attributes (docs/method.md §1.7): their nearest code
    becomes their margin-loss class, the dual-level contrastive loss is term ``vq``, the codebooks
    follow the batches by EMA and are (re)fitted by k-means at epoch ends from the warm-up on;
    checkpoint entry ``vq``."""

    @classmethod
    def select(cls, cfg: TrainConfig) -> bool:
        return cfg.vq.enabled

    @staticmethod
    def codebook_keys(cfg: TrainConfig, data: TrainData) -> list[int]:
        return codebook_keys([u.attr for u in data.utts], data.machine_ids(), data.labels, cfg.vq.codebook_per)

    @classmethod
    def extra_classes(cls, cfg: TrainConfig, data: TrainData) -> int:
        return len({k for k in cls.codebook_keys(cfg, data) if k >= 0}) * cfg.vq.num_codes

    def __init__(self, setup: TrainSetup) -> None:
        cfg, data = setup.cfg, setup.data
        self.cfg = cfg.vq
        keys = self.codebook_keys(cfg, data)
        spk = sorted({u.spk for u in data.utts})
        self.keys = torch.tensor(keys, device=setup.device)  # per training clip, -1 = no codebook
        self.groups = torch.tensor([spk.index(u.spk) for u in data.utts], device=setup.device)  # machine × section
        self.clusterer = VQClusterer([k for k in keys if k >= 0], cfg.model.embed_dim, cfg.vq, len(data.classes)).to(
            setup.device
        )
        self.dual_loss = DualLevelLoss(cfg.vq)
        self.lookup: tuple[Tensor, Tensor, Tensor]  # (keys, codes, assigned) of the batch in flight, from after_forward
        log.info(
            "VQ clustering: %d codebooks of %d codes for clips without attributes; %d head classes",
            len(self.clusterer.keys),
            cfg.vq.num_codes,
            setup.num_classes,
        )

    def modules(self) -> list[nn.Module]:
        return [self.clusterer]

    def after_forward(self, step: Step, emb: Tensor) -> None:
        keys = self.keys[step.batch.indices]
        codes, assigned = self.clusterer.lookup(emb.detach().float(), keys)
        step.targets = [(w, self.clusterer.pseudo_labels(y, keys, assigned)) for w, y in step.targets]
        self.lookup = keys, codes, assigned

    def loss(self, step: Step, emb: Tensor) -> dict[str, Tensor]:
        _, codes, assigned = self.lookup
        return {"vq": self.dual_loss(emb.float(), self.groups[step.batch.indices], codes, assigned).total}

    def after_loss(self, step: Step, emb: Tensor) -> None:
        """EMA codebook update on the (all-gathered) batch, identical on every rank."""
        self.clusterer.update(
            gather_ranks(emb.detach().float()), gather_ranks(self.lookup[0]), generator=step.generator
        )

    def on_epoch_end(self, run: Run) -> None:
        """After the warm-up epoch(s): k-means (re)initialisation of the codebooks on a clean
        eval-mode pass over the clips that have one, not on an epoch's augmented embeddings."""
        if not self.clusterer.keys or run.epoch < self.cfg.warmup_epochs:
            return
        if self.cfg.refresh or not self.clusterer.initialized:
            emb, clips = run.clean_embeddings(torch.nonzero(self.keys.cpu() >= 0).flatten())
            self.clusterer.init_from(emb, self.keys.cpu()[clips], generator=run.generator)
            log.info("VQ codebooks (re)initialised by k-means on %d clean eval-mode embeddings", len(emb))

    def state_dict(self) -> dict[str, Any]:
        return {"vq": self.clusterer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.clusterer.load_state_dict(state["vq"])


@OBJECTIVES.register("mixup", MixupConfig)
class MixupObjective(Objective):
    """Waveform mixup (docs/method.md §1.8): mixes each batch within machine types before the
    forward pass; the margin loss then takes each label set twice, weighted lam and 1-lam."""

    @classmethod
    def select(cls, cfg: TrainConfig) -> bool:
        return cfg.mixup.enabled

    def __init__(self, setup: TrainSetup) -> None:
        self.alpha, self.num_classes = setup.cfg.mixup.alpha, setup.num_classes

    def before_forward(self, step: Step) -> None:
        batch = step.batch
        mixed = mixup(
            batch.wavs,
            F.one_hot(batch.labels, self.num_classes).float(),
            self.alpha,
            step.generator,
            lengths=batch.lengths,
            groups=batch.machines,
        )
        step.batch = dataclasses.replace(batch, wavs=mixed.wavs, lengths=mixed.lengths)
        step.targets = [(w * v, mixed_y) for w, y in step.targets for v, mixed_y in mixed.label_sets(y)]


@OBJECTIVES.register("eat_pretrain", PretrainConfig)
class EATPretrainObjective(Objective):
    """EAT's self-supervised objective (asdlib.models.eat_pretrain, docs/method.md §1.11): the model
    is then an :class:`EATPretrainer`, whose forward already returns the loss terms ``frame`` and
    ``utterance``; this objective names them and moves the EMA teacher after every optimiser step."""

    @classmethod
    def select(cls, cfg: TrainConfig) -> bool:
        if not cfg.pretrain.enabled:
            return False
        if cfg.upstream.name != "eat":
            raise ConfigError(f"pretrain.enabled: needs upstream.name eat, got {cfg.upstream.name!r}")
        if cfg.embedder != "ssl" or cfg.vq.enabled or cfg.mixup.enabled or cfg.mga.enabled:
            raise ConfigError("pretrain.enabled: set embedder ssl and vq, mixup and mga off (they need labels)")
        return True

    def loss(self, step: Step, emb: Tensor) -> dict[str, Tensor]:
        return dict(zip(EATPretrainer.TERMS, emb, strict=True))

    def after_step(self, run: Run) -> None:
        if not isinstance(run.model, EATPretrainer):
            raise TypeError(f"objective eat_pretrain trains an EATPretrainer, got {type(run.model).__name__}")
        run.model.update_teacher()
