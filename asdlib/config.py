"""Every config dataclass of an experiment, in one module at the bottom of the package graph.

One YAML per experiment (conf/train.yaml, conf/tuning/*.yaml) maps onto :class:`TrainConfig`; every
section is a dataclass, so unknown keys and wrong types fail at load time, and the fully resolved
config is written to ``exp/<tag>/config.yaml`` for reproducibility. The sections live here rather
than next to the code they configure so that models, losses, back ends and the trainer can all
import them without importing each other (docs/design.md §2).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from asdlib.io.config import ConfigError, load_config, parse_overrides, resolve_yaml
from asdlib.registry import BACKENDS, HEADS, UPSTREAMS


@dataclass
class UpstreamConfig:
    """The ``upstream:`` section of a training config.

    ``name`` is a registered upstream (asdlib.registry.UPSTREAMS) and ``conf`` its own settings (e.g.
    eat: ``{target_frames: 1024}``). ``path`` is a local checkpoint in the model's official (for s3prl
    models: s3prl's) format (asdlib.models.upstream_files names where to download each).
    ``allow_unsafe_pickle`` lets torch.load unpickle arbitrary Python objects: needed only for
    checkpoint files that hold more than tensors and plain containers; enable it for trusted files only.
    """

    name: str = "hubert"
    path: str = ""
    allow_unsafe_pickle: bool = False
    conf: Any = None  # the settings of ``name``; written out resolved

    moved_keys: ClassVar[dict[str, str]] = {"eat_target_frames": "upstream.conf.target_frames (name eat)"}
    kind_key: ClassVar[str] = "name"  # a base's conf is not merged under another name (io.config.merge_over)

    def __post_init__(self) -> None:
        self.conf = UPSTREAMS.settings(self.name, self.conf, "conf")


@dataclass
class FinetuneConfig:
    """The ``finetune:`` section of a training config.

    ``alpha`` None means alpha = rank (scaling 1). ``target_modules`` None means every ``nn.Linear``
    leaf name found in the selected blocks. ``layers`` None means all blocks (0-based indices).
    """

    mode: Literal["lora", "full", "frozen"] = "lora"
    rank: int = 64
    alpha: float | None = None
    dropout: float = 0.05
    target_modules: list[str] | None = None
    layers: list[int] | None = None
    split_qkv: bool = False  # fused qkv Linear (EAT): separate q/k/v adapters (SplitQKVLoRA)

    def __post_init__(self) -> None:
        if self.mode not in ("lora", "full", "frozen"):
            raise ValueError(f"finetune.mode must be lora, full or frozen, got {self.mode!r}")
        if self.rank < 1:
            raise ValueError(f"finetune.rank must be >= 1, got {self.rank}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"finetune.dropout must be in [0, 1), got {self.dropout}")


@dataclass
class MGAConfig:
    """The ``mga:`` section of a training config.

    ``shared`` adds one adapter common to all machines (the fallback for unseen machines);
    ``layers`` are 0-based block indices (None = every block); ``dropout`` acts on the bottleneck.
    """

    enabled: bool = False
    bottleneck: int = 64
    shared: bool = False
    layers: list[int] | None = None
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.bottleneck < 1:
            raise ValueError(f"mga.bottleneck must be >= 1, got {self.bottleneck}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"mga.dropout must be in [0, 1), got {self.dropout}")


@dataclass
class MixupConfig:
    """The ``mixup:`` section of a training config; lam ~ Beta(alpha, alpha) (alpha 1 = uniform)."""

    enabled: bool = False
    alpha: float = 1.0

    def __post_init__(self) -> None:
        if self.alpha <= 0:
            raise ValueError(f"mixup.alpha must be > 0, got {self.alpha}")


@dataclass
class SpecAugConfig:
    enabled: bool = True
    time_masks: int = 2
    time_width: float = 0.05  # max width as a fraction of the clip's valid frames
    freq_masks: int = 2
    freq_width: int = 8  # max width in feature channels

    def __post_init__(self) -> None:
        if self.time_masks < 0 or self.freq_masks < 0 or self.freq_width < 0 or not 0 <= self.time_width <= 1:
            raise ValueError("specaug: mask counts/widths must be >= 0 and time_width in [0, 1]")


LOGMEL_STATS = ("mean", "std", "delta")


@dataclass
class LogMelConfig:
    """The log-mel embedding: ``stats`` over the clip's frames, each ``n_mels`` wide, side by side:
    ``mean``, ``std`` (its spread over time) and ``delta`` (the mean absolute change from one frame to
    the next). ``std`` and ``delta`` do not move with a fixed microphone or room response, which only
    adds a constant to every frame of a log spectrum."""

    n_mels: int = 64
    n_fft: int = 1024
    hop_length: int = 512
    stats: list[str] = field(default_factory=lambda: ["mean"])

    def __post_init__(self) -> None:
        bad = [s for s in self.stats if s not in LOGMEL_STATS]
        if not self.stats or bad or len(set(self.stats)) != len(self.stats):
            raise ValueError(f"logmel.stats: a non-empty list of distinct {', '.join(LOGMEL_STATS)}; got {self.stats}")

    @property
    def width(self) -> int:
        """The embedding's width."""
        return self.n_mels * len(self.stats)


@dataclass
class VQConfig:
    """The ``vq:`` section of a training config.

    Loss: ``L = L_margin + weight_level1·L_level1 + weight_level2·L_level2 + weight_commit·L_commit``.
    ``dead_code_threshold``: a code is restarted when its EMA usage falls below this fraction of
    its codebook's mean usage. ``refresh``: re-run (warm-started) k-means at every epoch end.
    """

    enabled: bool = False
    num_codes: int = 16
    decay: float = 0.99
    tau: float = 0.1
    weight_level1: float = 0.5
    weight_level2: float = 0.5
    weight_commit: float = 0.25
    warmup_epochs: int = 1
    dead_code_threshold: float = 0.1
    codebook_per: Literal["class", "machine"] = "machine"  # one codebook per machine type (the method)
    kmeans_iters: int = 20
    refresh: bool = True

    def __post_init__(self) -> None:
        if self.num_codes < 1 or self.kmeans_iters < 1:
            raise ValueError("vq: num_codes and kmeans_iters must be >= 1")
        if not 0.0 < self.decay < 1.0:
            raise ValueError(f"vq.decay must be in (0, 1), got {self.decay}")
        if self.tau <= 0:
            raise ValueError(f"vq.tau must be > 0, got {self.tau}")
        if min(self.weight_level1, self.weight_level2, self.weight_commit) < 0:
            raise ValueError("vq: loss weights must be >= 0")
        if self.warmup_epochs < 1:
            raise ValueError("vq.warmup_epochs must be >= 1: k-means needs one epoch of embeddings")
        if not 0.0 <= self.dead_code_threshold < 1.0:
            raise ValueError(f"vq.dead_code_threshold must be in [0, 1), got {self.dead_code_threshold}")
        if self.codebook_per not in ("class", "machine"):
            raise ValueError(f"vq.codebook_per must be class or machine, got {self.codebook_per!r}")


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
    """The ``head:`` section: the margin head of training; ``kind`` is a registered head
    (asdlib.registry.HEADS: arcface, adacos, subcluster_adacos) and ``conf`` its own settings."""

    kind: str = "arcface"
    conf: Any = None  # the settings of ``kind`` (arcface: {scale, margin}); written out resolved

    kind_key: ClassVar[str] = "kind"  # a base's conf is not merged under another kind (io.config.merge_over)
    moved_keys: ClassVar[dict[str, str]] = {
        "scale": "head.conf.scale (kind arcface)",
        "margin": "head.conf.margin (kind arcface)",
        "sub_centers": "head.conf.sub_centers (kind subcluster_adacos)",
    }

    def __post_init__(self) -> None:
        self.conf = HEADS.settings(self.kind, self.conf, "conf")


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
    # at least window_min_seconds long (a shorter tail gets a full window aligned to the end).
    # Per-file scores aggregate the window scores (max or mean).
    resample: bool = False
    window_seconds: float = 0.0
    window_hop_seconds: float = 0.0
    window_min_seconds: float = 1.0
    window_aggregate: Literal["max", "mean"] = "max"
    # Noise augmentation of training crops (docs/method.md §1.8; asdlib.data.noise): with probability
    # noise_apply_prob a crop gets a noise-only clip of noise_sets added at an SNR drawn uniformly from
    # noise_db_range [lo, hi] dB (lo == hi: one fixed SNR). The noise comes from the clip's machine and
    # section; without such clips from its machine type (noise_fallback machine or any), then from any
    # machine (any); none: an error. Off while noise_sets is empty; never applied outside training.
    noise_sets: list[str] = field(default_factory=list)
    noise_apply_prob: float = 1.0
    noise_db_range: list[float] = field(default_factory=lambda: [0.0, 10.0])
    noise_fallback: Literal["none", "machine", "any"] = "any"

    def __post_init__(self) -> None:
        if not self.train_sets:
            raise ValueError("data.train_sets must name at least one set")
        if not 0.0 <= self.noise_apply_prob <= 1.0:
            raise ValueError(f"data.noise_apply_prob must be in [0, 1], got {self.noise_apply_prob}")
        if len(self.noise_db_range) != 2 or self.noise_db_range[0] > self.noise_db_range[1]:
            raise ValueError(f"data.noise_db_range must be [lo, hi] dB with lo <= hi, got {self.noise_db_range}")
        if self.noise_fallback not in ("none", "machine", "any"):
            raise ValueError(f"data.noise_fallback must be none, machine or any, got {self.noise_fallback!r}")
        both = sorted(set(self.noise_sets) & set(self.train_sets))
        if both:
            raise ValueError(
                f"data: {both[0]} is in both noise_sets and train_sets; noise-only clips are no machine's sound, "
                "list it in noise_sets only"
            )
        if self.sample_rate <= 0 or self.crop_seconds < 0 or self.num_workers < 0:
            raise ValueError("data: sample_rate > 0, crop_seconds >= 0, num_workers >= 0 required")
        if isinstance(self.channel, int) and self.channel < 0:
            raise ValueError(f"data.channel must be >= 0 or 'mean', got {self.channel}")
        if self.window_seconds < 0 or self.window_hop_seconds < 0 or self.window_min_seconds < 0:
            raise ValueError("data: window_seconds, window_hop_seconds and window_min_seconds must be >= 0")
        if self.window_seconds and self.window_hop_seconds > self.window_seconds:
            raise ValueError("data.window_hop_seconds must not exceed data.window_seconds (gaps would go unscored)")
        if self.window_seconds and self.window_min_seconds < self.min_seconds:
            raise ValueError(
                "data.window_min_seconds must be >= data.min_seconds (a shorter last window could not be read)"
            )

    @property
    def hop_seconds(self) -> float:
        return self.window_hop_seconds or self.window_seconds


@dataclass
class NoiseConfig:
    """``backend.noise``: nuisance attribute projection on noise-only recordings (docs/method.md §1.9).

    ``sets``: data sets whose clips hold background only (DCASE 2025's supplemental noise; for DCASE
    2026 the training sets themselves, read with ``channel: 1``, the far microphone); empty = off.
    ``channel``: the channel stage 4 reads them with (None = ``data.channel``). ``rank``: noise
    directions removed per column group of the embeddings (asdlib.backends.noise).
    """

    sets: list[str] = field(default_factory=list)
    channel: int | Literal["mean"] | None = None
    rank: int = 4

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"backend.noise.rank must be >= 1, got {self.rank}")
        if isinstance(self.channel, int) and self.channel < 0:
            raise ValueError(f"backend.noise.channel must be >= 0, 'mean' or null, got {self.channel}")
        if len(set(self.sets)) != len(self.sets):
            raise ValueError(f"backend.noise.sets names a set twice: {self.sets}; list each once")


@dataclass
class BackendConfig:
    """The back end of stage 5 (asdlib/backends/, docs/method.md §1.9): ``kind`` is a registered back
    end (asdlib.registry.BACKENDS) and ``conf`` its own settings dataclass, filled with its defaults
    where omitted; every kind is fitted on the normal training embeddings per machine and section,
    after the noise projection of ``noise`` when that names sets."""

    kind: str = "knn"
    conf: Any = None  # the settings of ``kind`` (e.g. knn: {k, domain_wise}); written out resolved
    noise: NoiseConfig = field(default_factory=NoiseConfig)  # off unless noise.sets names sets
    # the training sets whose clips form the bank ([] = all of data.train_sets): a set the model
    # trains on but that no test clip resembles (DCASE 2025's clean machine recordings) stays out
    bank_sets: list[str] = field(default_factory=list)
    kind_key: ClassVar[str] = "kind"  # a base's conf is not merged under another kind (io.config.merge_over)

    #: keys of the flat section before per-kind settings, and where they went
    moved_keys: ClassVar[dict[str, str]] = {
        "k": "backend.conf.k",
        "domain_wise": "backend.conf.domain_wise",
        "seed": "backend.conf.seed",
        "smote_k": "backend.conf.smote_k (kind knn_smote)",
        "kmeans_clusters": "backend.conf.clusters (kind kmeans)",
        "fusion": "backend.conf (kind fusion: conf: {members: [...], combine: mean})",
    }

    def __post_init__(self) -> None:
        self.conf = BACKENDS.settings(self.kind, self.conf, "conf")
        if len(set(self.bank_sets)) != len(self.bank_sets):
            raise ValueError(f"backend.bank_sets names a set twice: {self.bank_sets}; list each once")

    @property
    def uses_logmel(self) -> bool:
        """Whether stage 4 appends the mean log-mel to this experiment's embeddings (a back end reads it)."""
        return bool(getattr(self.conf, "uses_logmel", False))

    @property
    def exp_dirs(self) -> list[str]:
        """Other experiments whose embeddings the back end reads (fusion members' ``exp_dir``)."""
        return list(getattr(self.conf, "exp_dirs", []))


@dataclass
class PretrainConfig:
    """``pretrain``: self-supervised pre-training of the upstream with EAT's objective
    (asdlib.models.eat_pretrain, docs/method.md §1.11) instead of ASD fine-tuning; needs
    ``upstream.name: eat``. The defaults are the release's AS-2M base pre-training."""

    enabled: bool = False
    mask_prob: float = 0.8  # share of patches the student does not see
    mask_prob_adjust: float = 0.07  # extra block centres, so the blocks cover enough before the exact cut
    mask_length: int = 5  # side of a kept block, in patches
    clone_batch: int = 16  # masked copies of each clip (multi-mask)
    mask_noise_std: float = 0.01  # the decoder's input at masked positions
    average_top_k_layers: int = 12  # teacher blocks averaged into the target
    ema_decay: float = 0.9998
    ema_end_decay: float = 0.99999
    ema_anneal_end_step: int = 100000
    cls_loss: float = 1.0  # weight of the utterance-level loss
    decoder_dim: int = 768
    decoder_groups: int = 16
    decoder_kernel: int = 3
    decoder_layers: int = 6

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_prob < 1.0:
            raise ValueError(f"pretrain.mask_prob must be in (0, 1), got {self.mask_prob}")
        if min(self.mask_length, self.clone_batch, self.average_top_k_layers, self.ema_anneal_end_step) < 1:
            raise ValueError(
                "pretrain.mask_length, clone_batch, average_top_k_layers and ema_anneal_end_step must be at least 1"
            )
        if not 0.0 <= self.ema_decay <= self.ema_end_decay <= 1.0:
            raise ValueError(
                f"pretrain: need 0 <= ema_decay <= ema_end_decay <= 1, got {self.ema_decay}, {self.ema_end_decay}"
            )
        if self.decoder_kernel % 2 == 0:
            raise ValueError(f"pretrain.decoder_kernel must be odd (same-size convolution), got {self.decoder_kernel}")
        if self.decoder_dim % self.decoder_groups:
            raise ValueError(
                f"pretrain.decoder_dim {self.decoder_dim} is not divisible by pretrain.decoder_groups {self.decoder_groups}"
            )


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
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)


def add_config_options(p: argparse.ArgumentParser, override_help: str = "") -> None:
    """The two command-line sources of a training config besides its YAML, the same in every CLI that
    loads one (asd.sh passes both): ``--override`` (``asd.sh --train_args``) and ``--train_sets``, the
    arguments of :func:`load_train_config`."""
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override as in asd.sh --train_args, e.g. optim.lr=1e-4 (repeatable)" + override_help,
    )
    p.add_argument(
        "--train_sets",
        type=str.split,
        metavar='"SET ..."',
        help="asd.sh --train_sets (space-separated): data.train_sets, which the YAML must not set",
    )


def load_train_config(
    path: str | Path, overrides: dict[str, Any] | Sequence[str] | None = None, train_sets: Sequence[str] | None = None
) -> TrainConfig:
    """Load and check a training config (relative paths are relative to the recipe dir).

    ``overrides``: dotted keys to values, or ``KEY=VALUE`` strings as given to ``asd.sh --train_args``.
    ``train_sets``: ``asd.sh --train_sets``, the only source of ``data.train_sets`` in a recipe: then
    neither the YAML (nor its base) nor ``overrides`` may set it, so no value is silently replaced.
    """
    if train_sets is not None:
        overrides = (
            parse_overrides(TrainConfig, overrides or []) if not isinstance(overrides, dict) else dict(overrides)
        )
        if "data.train_sets" in overrides:
            raise ConfigError(
                "override data.train_sets: set the training sets with asd.sh --train_sets, not --train_args"
            )
        data = resolve_yaml(path, TrainConfig).get("data")
        if isinstance(data, dict) and "train_sets" in data:
            raise ConfigError(
                f"{path}: data.train_sets is given by asd.sh --train_sets (its only source); "
                "delete it from the YAML (or its base)"
            )
        overrides["data.train_sets"] = list(train_sets)
    cfg = load_config(path, TrainConfig, overrides)
    if cfg.embedder == "ssl" and not cfg.upstream.path:
        raise ConfigError(f"{path}: upstream.path is empty; point it at a local checkpoint file")
    if cfg.vq.enabled and cfg.mixup.enabled:
        raise ConfigError(f"{path}: vq and mixup cannot be combined (pseudo-labels of mixed clips are undefined)")
    return cfg
