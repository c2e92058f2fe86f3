"""The upstream interface every pre-trained backbone implements, and its factory.

An upstream turns a padded 16 kHz waveform batch into all its hidden layers (s3prl style), so that
the layer aggregation, LoRA, the Machine-aware Group Adapter and SpecAugment work the same way for
speech models (s3prl: hubert, wavlm, wav2vec2, data2vec) and audio patch models (beats, eat).

Contract for implementers (s3prl models in ``s3prl_upstream.py``; BEATs/EAT in ``beats.py`` /
``eat.py``): a module registers a builder ``f(UpstreamConfig) -> Upstream`` with
``@UPSTREAMS.register(name, Settings)`` (asdlib.registry; ``Settings`` is the dataclass of
``upstream.conf``, or None) and adds ``name -> module`` to ``UPSTREAMS``' table. The upstream:

* ``forward(wavs, lengths)``: ``wavs`` (B, T) float32 in [-1, 1], zero-padded after ``lengths[b]``
  samples. Returns ``(hidden_states, frame_lengths)``: a list of ``num_layers`` batch-first
  (B, T', ``hidden_size``) tensors -- the input embedding of the first transformer block followed
  by the output of every block, s3prl order -- and the number of valid frames per clip (B,) long.
  Padding must not change a clip's valid frames beyond what the pre-trained model itself does
  (wav2vec2/HuBERT-base CNNs GroupNorm over time and so see the zeros; fbank models should not).
* ``blocks()``: the transformer blocks in order, each an ``nn.Module`` containing its ``nn.Linear``
  layers; LoRA (``asdlib.models.lora``) discovers its targets by leaf name inside these blocks, so
  the attention must *call* its projection modules (never read ``.weight`` into a fused kernel).
* ``feature_augment``: set by the trainer (``None`` = off); when set and ``self.training``, apply
  ``x = feature_augment(x, x_lengths)`` to the input feature sequence before the transformer:
  the CNN feature sequence (B, T', C) for waveform models, the normalised fbank (B, frames, mel)
  for patch models. Never applied in eval mode.
* ``insert_block_adapters(adapters)``: the base class implements it with forward hooks on
  ``blocks()`` that replace block i's hidden-state output ``h`` by ``adapters[i](h)`` (batch-first,
  B, T', D; the adapter does its own residual). Blocks that return a tuple must carry the hidden
  state first; set ``block_time_first = True`` if that state is (T, B, D) (fairseq / WavLM / BEATs
  style). Override ``_adapt_block_output`` if a block's output looks different.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from asdlib.config import UpstreamConfig
from asdlib.registry import UPSTREAMS

logger = logging.getLogger(__name__)

#: upstream families loaded through s3prl's own model code (asdlib.models.s3prl_upstream)
S3PRL_NAMES = ("hubert", "wavlm", "wav2vec2", "data2vec")

FeatureAugment = Callable[[Tensor, Tensor], Tensor]


class Upstream(nn.Module, abc.ABC):
    """Base class of all upstreams; see the module docstring for the contract."""

    hidden_size: int
    num_layers: int
    #: whether a block's hidden-state output is time-first (T, B, D) rather than (B, T, D)
    block_time_first: bool = False
    #: shortest waveform (samples) that gives at least one frame; stage 1 rejects shorter clips so
    #: they fail there, named, instead of inside a training or extraction job
    min_samples: int = 1

    def __init__(self) -> None:
        super().__init__()
        self.feature_augment: FeatureAugment | None = None
        self.block_adapters: nn.ModuleList | None = None

    @abc.abstractmethod
    def blocks(self) -> nn.ModuleList:
        """The transformer blocks in order (targets of LoRA layer selection and adapters)."""

    @abc.abstractmethod
    def forward(self, wavs: Tensor, lengths: Tensor) -> tuple[list[Tensor], Tensor]:
        """(B, T) waveforms + (B,) lengths -> (all hidden states, frame lengths)."""

    def _augment(self, features: Tensor, lengths: Tensor) -> Tensor:
        """Apply ``feature_augment`` in training mode only (helper for implementers)."""
        if self.training and self.feature_augment is not None:
            return self.feature_augment(features, lengths)
        return features

    def insert_block_adapters(self, adapters: Sequence[nn.Module]) -> None:
        """Apply ``adapters[i]`` to the output of block i (after its feed-forward sub-layer).

        The adapters become submodules (``block_adapters.<i>``), so they are saved with the model.
        """
        blocks = self.blocks()
        if len(adapters) != len(blocks):
            raise ValueError(f"got {len(adapters)} adapters for {len(blocks)} transformer blocks")
        if self.block_adapters is not None:
            raise RuntimeError("block adapters were already inserted into this upstream")
        self.block_adapters = nn.ModuleList(adapters)
        for block, adapter in zip(blocks, self.block_adapters):
            # functools.partial of a bound method (not a closure) so that copy.deepcopy of the
            # upstream rebinds the hook to the copied adapter.
            block.register_forward_hook(functools.partial(self._adapt_block_output, adapter))

    def checkpoint_blocks(self) -> None:
        """Activation checkpointing of every block in training (``model.grad_checkpoint``): a block
        keeps only its input for backward and recomputes the rest, trading about a third more compute
        for most of the activation memory. Non-reentrant ``torch.utils.checkpoint`` restores the RNG
        state for the recomputation, so dropout masks and gradients equal those without it. Block
        adapters run in forward hooks outside the checkpoint (their activations are small)."""
        for block in self.blocks():
            block.forward = functools.partial(_checkpointed, block.forward)

    def _adapt_block_output(self, adapter: nn.Module, block: nn.Module, inputs: Any, output: Any) -> Any:
        """Forward hook: replace the hidden state in a block's output by ``adapter(h)``."""
        rest: tuple = ()
        hidden = output
        if isinstance(output, tuple):
            hidden, rest = output[0], output[1:]
        if self.block_time_first:
            hidden = adapter(hidden.transpose(0, 1)).transpose(0, 1)
        else:
            hidden = adapter(hidden)
        return (hidden, *rest) if isinstance(output, tuple) else hidden


def _checkpointed(forward: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``forward`` under non-reentrant checkpointing when a graph is being built, else plainly."""
    if not torch.is_grad_enabled():
        return forward(*args, **kwargs)
    from torch.utils.checkpoint import checkpoint

    return checkpoint(forward, *args, use_reentrant=False, **kwargs)


def lengths_to_padding_mask(lengths: Tensor, max_len: int) -> Tensor:
    """(B,) lengths -> (B, max_len) bool mask, True on padding (fairseq convention)."""
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]


def build_upstream(cfg: UpstreamConfig) -> Upstream:
    """Build the registered upstream ``cfg.name`` (asdlib.registry.UPSTREAMS) from ``cfg.path``; ``cfg.conf``
    is checked again here, since code may have changed ``cfg.name`` after the config was loaded."""
    build = UPSTREAMS.get(cfg.name).obj
    return build(dataclasses.replace(cfg, conf=UPSTREAMS.settings(cfg.name, cfg.conf, "upstream.conf")))


def upstream_min_samples(cfg: UpstreamConfig) -> int:
    """The ``min_samples`` of the upstream ``cfg`` builds: computed by the model code itself from the
    checkpoint's own config (fbank window/hop and patch size, or the CNN's receptive field)."""
    return int(build_upstream(cfg).min_samples)
