"""The training/experiment config: one YAML per experiment (conf/train.yaml, conf/tuning/*.yaml).

Every section is a dataclass so that unknown keys and wrong types fail at load time, and the
fully resolved config is written to ``exp/<tag>/config.yaml`` for reproducibility.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from asdlib.io.config import ConfigError, load_config
from asdlib.losses.vq import VQConfig
from asdlib.models.logmel import LogMelConfig
from asdlib.models.lora import FinetuneConfig
from asdlib.models.mga import MGAConfig
from asdlib.models.mixup import MixupConfig
from asdlib.models.specaug import SpecAugConfig
from asdlib.models.upstream import UpstreamConfig


@dataclass
class ModelConfig:
    layers: list[int] | None = None  # hidden states aggregated by the weighted sum; None = all
    # attentive_stats: attentive statistics pooling over the frames; cls: the CLS token of the layer
    # sum alone (upstreams with one, i.e. EAT; with layers: [-1] it is EAT's own utterance embedding)
    pooling: Literal["attentive_stats", "cls"] = "attentive_stats"
    pooling_hidden: int = 128  # attentive_stats only
    embed_dim: int = 256
    # recompute each transformer block's activations in backward instead of keeping them (less
    # memory, about a third more compute; BEATs, EAT and the s3prl models)
    grad_checkpoint: bool = False

    def __post_init__(self) -> None:
        if self.pooling not in ("attentive_stats", "cls"):
            raise ValueError(f"model.pooling must be attentive_stats or cls, got {self.pooling!r}")


@dataclass
class HeadConfig:
    kind: Literal["arcface", "adacos", "subcluster_adacos"] = "arcface"
    scale: float = 30.0
    margin: float = 0.2
    sub_centers: int = 4  # sub-cluster AdaCos only


@dataclass
class OptimConfig:
    epochs: int = 10
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1.0e-4  # upstream adapters (LoRA/MGA), featurizer, pooling, projection
    lr_head: float = 1.0e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 5.0
    # Mixed precision (autocast). float16: CUDA only, with a GradScaler (ignored on CPU, as before);
    # bfloat16: CUDA and CPU, no loss scaling needed (float32's exponent range). See docs/gpu.md.
    amp: bool = True
    amp_dtype: Literal["float16", "bfloat16"] = "float16"
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or self.grad_accum < 1 or self.warmup_steps < 0:
            raise ValueError("optim: epochs >= 0, batch_size >= 1, grad_accum >= 1, warmup_steps >= 0 required")
        if self.lr <= 0 or self.lr_head <= 0:
            raise ValueError("optim: learning rates must be positive")


@dataclass
class DataConfig:
    train_sets: list[str] = field(default_factory=lambda: ["dev_train", "eval_train"])
    sample_rate: int = 16000
    crop_seconds: float = 10.0  # random training crop; 0 = whole clip
    balance_power: float = 0.5  # sampler weight count(machine, domain) ** -power
    num_workers: int = 0
    # channel of multi-channel files (DCASE 2026: 0 or 1), "mean" to down-mix; None = mono required
    channel: int | Literal["mean"] | None = None
    min_seconds: float = 0.1
    # Recordings from outside DCASE (docs/design.md §4): resample any rate to sample_rate (torchaudio)
    # instead of rejecting it, and split long recordings into windows (0 = whole files). Windows
    # start every window_hop_seconds (0 = window_seconds); a last, shorter window is kept when it is
    # at least window_min_seconds long. Per-file scores aggregate the window scores (max or mean).
    resample: bool = False
    window_seconds: float = 0.0
    window_hop_seconds: float = 0.0
    window_min_seconds: float = 1.0
    window_aggregate: Literal["max", "mean"] = "max"

    def __post_init__(self) -> None:
        if not self.train_sets:
            raise ValueError("data.train_sets must name at least one set")
        if self.sample_rate <= 0 or self.crop_seconds < 0 or self.num_workers < 0:
            raise ValueError("data: sample_rate > 0, crop_seconds >= 0, num_workers >= 0 required")
        if isinstance(self.channel, int) and self.channel < 0:
            raise ValueError(f"data.channel must be >= 0 or 'mean', got {self.channel}")
        if self.window_seconds < 0 or self.window_hop_seconds < 0 or self.window_min_seconds < 0:
            raise ValueError("data: window_seconds, window_hop_seconds and window_min_seconds must be >= 0")
        if self.window_seconds and self.window_hop_seconds > self.window_seconds:
            raise ValueError("data.window_hop_seconds must not exceed data.window_seconds (gaps would go unscored)")
        if self.window_seconds and self.window_min_seconds < self.min_seconds:
            raise ValueError("data.window_min_seconds must be >= data.min_seconds (a shorter last window could not be read)")

    @property
    def hop_seconds(self) -> float:
        return self.window_hop_seconds or self.window_seconds


@dataclass
class FusionMember:
    """One member of ``backend.kind: fusion``: a back end, on this experiment's embeddings or another's."""

    kind: Literal["knn", "knn_smote", "kmeans", "knn_rescaled", "mahalanobis"] = "knn"
    exp_dir: str = ""  # another experiment (e.g. exp/logmel_knn) whose stage-4 embeddings it scores; "" = this one


@dataclass
class FusionConfig:
    members: list[FusionMember] = field(default_factory=list)
    combine: Literal["mean", "max"] = "mean"  # of the members' standardised scores


@dataclass
class BackendConfig:
    """The back end of stage 5 (asdlib/backends/, docs/method.md §1.9): every kind is fitted on the
    normal training embeddings per machine and section, per domain where it applies."""

    kind: Literal["knn", "knn_smote", "kmeans", "knn_rescaled", "mahalanobis", "fusion"] = "knn"
    k: int = 1
    domain_wise: bool = True  # min over separate source and target banks (docs/method.md §1.9)
    seed: int = 0  # SMOTE and k-means
    smote_k: int = 5  # SMOTE k_neighbors; lowered to (target clips - 1) for smaller target banks
    kmeans_clusters: int = 16  # centroids per source bank (at most the bank's size)
    fusion: FusionConfig = field(default_factory=FusionConfig)

    def __post_init__(self) -> None:
        for name in ("k", "smote_k", "kmeans_clusters"):
            if getattr(self, name) < 1:
                raise ValueError(f"backend.{name} must be >= 1")
        kinds = {self.kind, *(m.kind for m in self.fusion.members)}
        if kinds & {"knn_smote", "kmeans"} and not self.domain_wise:
            raise ValueError("backend kinds knn_smote and kmeans work on separate source and target banks: "
                             "set backend.domain_wise: true")
        if (self.kind == "fusion") != bool(self.fusion.members):
            raise ValueError("backend.fusion.members lists the members of backend.kind: fusion (at least 2), "
                             "and only then")
        if self.kind == "fusion" and len(self.fusion.members) < 2:
            raise ValueError("backend.fusion.members: a fusion needs at least 2 members")


@dataclass
class TrainConfig:
    embedder: Literal["ssl", "logmel"] = "ssl"  # logmel: training-free mean log-mel baseline
    seed: int = 0
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    mga: MGAConfig = field(default_factory=MGAConfig)
    vq: VQConfig = field(default_factory=VQConfig)
    mixup: MixupConfig = field(default_factory=MixupConfig)
    specaug: SpecAugConfig = field(default_factory=SpecAugConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    logmel: LogMelConfig = field(default_factory=LogMelConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)


def load_train_config(path: str | Path, overrides: dict[str, Any] | Sequence[str] | None = None) -> TrainConfig:
    """Load and check a training config (relative paths are relative to the recipe dir).

    ``overrides``: dotted keys to values, or ``KEY=VALUE`` strings as given to ``asd.sh --train_args``."""
    cfg = load_config(path, TrainConfig, overrides)
    if cfg.embedder == "ssl" and not cfg.upstream.path:
        raise ConfigError(f"{path}: upstream.path is empty; point it at a local checkpoint file")
    if cfg.vq.enabled and cfg.mixup.enabled:
        raise ConfigError(f"{path}: vq and mixup cannot be combined (pseudo-labels of mixed clips are undefined)")
    return cfg
