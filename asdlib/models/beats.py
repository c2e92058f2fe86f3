"""BEATs (Chen et al., arXiv 2212.09058): our implementation, loading the official checkpoints.

Official files (``BEATs_iter3.pt``, ``BEATs_iter3_plus_AS2M.pt``, ``…_finetuned_on_AS2M_cpt*.pt``)
hold ``{"cfg": dict of BEATsConfig fields, "model": state dict}``. The modules below reproduce the
release's parameter names exactly (``patch_embedding``, ``layer_norm``, ``post_extract_proj``,
``encoder.pos_conv.0.weight_g/weight_v``, ``encoder.layers.<i>.self_attn.{q,k,v,out}_proj``,
``grep_linear``, ``grep_a``, ``relative_attention_bias`` shared by all layers, ``fc1``, ``fc2``,
``self_attn_layer_norm``, ``final_layer_norm``, optional ``predictor``) and its computation:
fbank patches 16x16 -> LayerNorm -> projection -> weight-normalised convolutional positions ->
post-LN (deep-norm) transformer with gated relative position bias.

Differences that do not change the function: activations are batch-first, attention runs through
``scaled_dot_product_attention`` after calling the q/k/v/out ``nn.Linear`` modules (so LoRA on them
acts), and padding is handled per clip: a patch is valid only if all its 16 frames are real audio,
so a clip in a padded batch gives the same tokens as the clip alone (the release's own mask keeps
partly padded patches). The fine-tuned checkpoints' AudioSet ``predictor`` head is checked on load
and then dropped: it is not part of the upstream and would sit unused in training.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asdlib.config import UpstreamConfig
from asdlib.models.fbank import BEATS_FBANK, batch_fbank
from asdlib.models.official_ckpt import load_state_strict, torch_load
from asdlib.models.upstream import Upstream, lengths_to_padding_mask
from asdlib.registry import UPSTREAMS

logger = logging.getLogger(__name__)


@dataclass
class BEATsConfig:
    """The release's ``BEATsConfig`` fields with its defaults; a checkpoint's ``cfg`` overrides them."""

    input_patch_size: int = -1
    embed_dim: int = 512
    conv_bias: bool = False
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    activation_fn: str = "gelu"
    layer_wise_gradient_decay_ratio: float = 1.0
    layer_norm_first: bool = False
    deep_norm: bool = False
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    encoder_layerdrop: float = 0.0
    dropout_input: float = 0.0
    conv_pos: int = 128
    conv_pos_groups: int = 16
    relative_position_embedding: bool = False
    num_buckets: int = 320
    max_distance: int = 1280
    gru_rel_pos: bool = False
    finetuned_model: bool = False
    predictor_dropout: float = 0.1
    predictor_class: int = 527

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any], source: str) -> BEATsConfig:
        known = {f.name for f in fields(cls)}
        extra = sorted(set(cfg) - known)
        if extra:
            logger.info("%s: ignoring cfg fields the model does not use: %s", source, extra)
        config = cls(**{k: v for k, v in cfg.items() if k in known})
        config.validate(source)
        return config

    def validate(self, source: str) -> None:
        if self.input_patch_size <= 0:
            raise ValueError(f"{source}: cfg.input_patch_size must be set (16 in every official BEATs checkpoint)")
        if self.activation_fn not in _ACTIVATIONS:
            raise ValueError(
                f"{source}: activation_fn {self.activation_fn!r} is not supported (supported: {sorted(_ACTIVATIONS)})"
            )
        if self.deep_norm and self.layer_norm_first:
            raise ValueError(f"{source}: deep_norm and layer_norm_first are mutually exclusive in BEATs")
        if self.encoder_embed_dim % self.encoder_attention_heads:
            raise ValueError(f"{source}: encoder_embed_dim must be divisible by encoder_attention_heads")


def _gelu_fp32(x: Tensor) -> Tensor:
    """fairseq's ``gelu``: the exact erf GELU evaluated in float32."""
    return F.gelu(x.float()).type_as(x)


def _gelu_tanh(x: Tensor) -> Tensor:
    return F.gelu(x.float(), approximate="tanh").type_as(x)


_ACTIVATIONS = {
    "relu": F.relu,
    "gelu": _gelu_fp32,
    "gelu_fast": _gelu_tanh,
    "gelu_accurate": _gelu_tanh,
    "tanh": torch.tanh,
    "linear": lambda x: x,
}


class GradMultiply(torch.autograd.Function):
    """Identity forward, gradient scaled by ``scale`` (BEATs' layer-wise gradient decay)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.scale, None


class WeightNormConv1d(nn.Module):
    """Conv1d with the legacy ``weight_norm`` parametrisation stored as ``weight_g`` / ``weight_v``.

    ``weight = weight_v * weight_g / ||weight_v||`` with the norm over every axis except ``dim``
    (BEATs uses ``dim=2``, the kernel axis). The old ``torch.nn.utils.weight_norm`` saved exactly these
    two tensors; the new parametrisation API names them differently, so we keep the legacy names.
    """

    def __init__(self, channels: int, kernel_size: int, groups: int, dim: int = 2) -> None:
        super().__init__()
        self.dim, self.groups, self.padding = dim, groups, kernel_size // 2
        v = torch.empty(channels, channels // groups, kernel_size)
        nn.init.normal_(v, mean=0.0, std=math.sqrt(4.0 / (kernel_size * channels)))
        self.weight_v = nn.Parameter(v)
        self.weight_g = nn.Parameter(_norm_except(v, dim))
        self.bias = nn.Parameter(torch.zeros(channels))

    @property
    def weight(self) -> Tensor:
        return self.weight_v * (self.weight_g / _norm_except(self.weight_v, self.dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.conv1d(x, self.weight, self.bias, padding=self.padding, groups=self.groups)


def _norm_except(v: Tensor, dim: int) -> Tensor:
    """L2 norm over every axis but ``dim``, keeping dims (``torch.norm_except_dim``)."""
    axes = [a for a in range(v.dim()) if a != dim]
    return v.norm(dim=axes, keepdim=True)


def split_weight_norm(weight: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """A plain weight -> its (``weight_g``, ``weight_v``) pair with ``weight_v = weight``."""
    return _norm_except(weight, dim), weight.clone()


class SamePad(nn.Module):
    """Drop the extra output step an even-sized 'same' convolution produces."""

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.remove = 1 if kernel_size % 2 == 0 else 0

    def forward(self, x: Tensor) -> Tensor:
        return x[..., : -self.remove] if self.remove else x


class BEATsAttention(nn.Module):
    """Multi-head self-attention with (gated) bucketed relative position bias, BEATs/WavLM style."""

    def __init__(self, cfg: BEATsConfig, relative_attention_bias: nn.Embedding | None) -> None:
        super().__init__()
        dim, heads = cfg.encoder_embed_dim, cfg.encoder_attention_heads
        self.num_heads, self.head_dim = heads, dim // heads
        self.dropout = cfg.attention_dropout
        self.num_buckets, self.max_distance = cfg.num_buckets, cfg.max_distance
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        for proj in (self.k_proj, self.v_proj, self.q_proj):
            nn.init.xavier_uniform_(proj.weight, gain=1 / math.sqrt(2))
        nn.init.xavier_uniform_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)
        self.relative_attention_bias = relative_attention_bias
        self.gru_rel_pos = cfg.gru_rel_pos
        if self.gru_rel_pos:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, heads, 1, 1))

    def _bucket(self, relative: Tensor) -> Tensor:
        """T5-style bidirectional buckets: exact for small distances, log-spaced up to max_distance."""
        half = self.num_buckets // 2
        buckets = (relative > 0).long() * half
        distance = relative.abs()
        max_exact = half // 2
        log_ratio = torch.log(distance.float().clamp(min=1) / max_exact) / math.log(self.max_distance / max_exact)
        large = (max_exact + (log_ratio * (half - max_exact)).long()).clamp(max=half - 1)
        return buckets + torch.where(distance < max_exact, distance, large)

    def compute_bias(self, length: int) -> Tensor:
        """(1, H, T, T) relative position bias for a length-T sequence."""
        assert self.relative_attention_bias is not None
        pos = torch.arange(length, device=self.relative_attention_bias.weight.device)
        values = self.relative_attention_bias(self._bucket(pos[None, :] - pos[:, None]))  # (T, T, H)
        return values.permute(2, 0, 1).unsqueeze(0)

    def forward(
        self, x: Tensor, padding_mask: Tensor | None, position_bias: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        b, t, d = x.shape
        if self.relative_attention_bias is not None and position_bias is None:
            position_bias = self.compute_bias(t)
        q = self.q_proj(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        mask: Tensor | None = None
        if position_bias is not None:
            mask = position_bias
            if self.gru_rel_pos:
                # the gate reads the unscaled query of each head: (B, H, T, 8) -> two (B, H, T, 1) gates
                gate_a, gate_b = torch.sigmoid(self.grep_linear(q).view(b, self.num_heads, t, 2, 4).sum(-1)).chunk(
                    2, dim=-1
                )
                mask = (gate_a * (gate_b * self.grep_a - 1.0) + 2.0) * position_bias
        if padding_mask is not None:
            pad = torch.zeros(b, 1, 1, t, dtype=q.dtype, device=q.device).masked_fill(
                padding_mask[:, None, None, :], float("-inf")
            )
            mask = pad if mask is None else mask + pad
        # A float mask would pick CUDA's non-deterministic memory-efficient kernel; seed_everything keeps
        # SDPA on the math kernel instead (docs/reliability.md, "What differs on GPU").
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=None if mask is None else mask.to(q.dtype),
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d)), position_bias


class BEATsLayer(nn.Module):
    """One transformer block (post-LN with deep-norm residual scaling, or pre-LN)."""

    def __init__(self, cfg: BEATsConfig, relative_attention_bias: nn.Embedding | None) -> None:
        super().__init__()
        dim = cfg.encoder_embed_dim
        self.activation = _ACTIVATIONS[cfg.activation_fn]
        self.self_attn = BEATsAttention(cfg, relative_attention_bias)
        self.dropout1 = nn.Dropout(cfg.dropout)
        self.dropout2 = nn.Dropout(cfg.activation_dropout)
        self.dropout3 = nn.Dropout(cfg.dropout)
        self.layer_norm_first = cfg.layer_norm_first
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, cfg.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(cfg.encoder_ffn_embed_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.alpha = math.pow(2 * cfg.encoder_layers, 1 / 4) if cfg.deep_norm else 1.0

    def _ffn(self, x: Tensor) -> Tensor:
        return self.dropout3(self.fc2(self.dropout2(self.activation(self.fc1(x)))))

    def forward(
        self, x: Tensor, padding_mask: Tensor | None, position_bias: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        if self.layer_norm_first:
            h, position_bias = self.self_attn(self.self_attn_layer_norm(x), padding_mask, position_bias)
            x = x + self.dropout1(h)
            return x + self._ffn(self.final_layer_norm(x)), position_bias
        h, position_bias = self.self_attn(x, padding_mask, position_bias)
        x = self.self_attn_layer_norm(x * self.alpha + self.dropout1(h))
        return self.final_layer_norm(x * self.alpha + self._ffn(x)), position_bias


class BEATsEncoder(nn.Module):
    """Convolutional positions + transformer layers; returns every layer's hidden state."""

    def __init__(self, cfg: BEATsConfig) -> None:
        super().__init__()
        dim = cfg.encoder_embed_dim
        self.dropout = cfg.dropout
        self.pos_conv = nn.Sequential(
            WeightNormConv1d(dim, cfg.conv_pos, cfg.conv_pos_groups), SamePad(cfg.conv_pos), nn.GELU()
        )
        shared = nn.Embedding(cfg.num_buckets, cfg.encoder_attention_heads) if cfg.relative_position_embedding else None
        if shared is not None:
            nn.init.xavier_normal_(shared.weight)
        # one relative-bias table, registered in every layer as in the release (keys exist per layer)
        self.layers = nn.ModuleList(BEATsLayer(cfg, shared) for _ in range(cfg.encoder_layers))
        self.layer_norm_first = cfg.layer_norm_first
        self.layer_norm = nn.LayerNorm(dim)
        self.layerdrop = cfg.encoder_layerdrop
        #: source of the layer-drop draws; the trainer sets one seeded alike on every DDP rank, so
        #: that all ranks skip the same layers (None: the global RNG)
        self.layerdrop_generator: torch.Generator | None = None
        self.grad_decay = cfg.layer_wise_gradient_decay_ratio

    def forward(self, x: Tensor, padding_mask: Tensor | None) -> list[Tensor]:
        if padding_mask is not None:
            x = x.masked_fill(padding_mask[..., None], 0.0)
        x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = F.dropout(x, p=self.dropout, training=self.training)
        hidden = [x]
        position_bias: Tensor | None = None
        for layer in self.layers:
            if self.grad_decay != 1.0:
                x = GradMultiply.apply(x, self.grad_decay)
            if (
                not self.training
                or self.layerdrop == 0
                or float(torch.rand((), generator=self.layerdrop_generator)) > self.layerdrop
            ):
                x, position_bias = layer(x, padding_mask, position_bias)
            hidden.append(x)
        if self.layer_norm_first:
            hidden[-1] = self.layer_norm(x)
        return hidden


class BEATsModel(nn.Module):
    """The release's ``BEATs`` module tree (same parameter names), without its fbank front end."""

    def __init__(self, cfg: BEATsConfig) -> None:
        super().__init__()
        self.cfg = cfg
        p = cfg.input_patch_size
        self.post_extract_proj = (
            nn.Linear(cfg.embed_dim, cfg.encoder_embed_dim) if cfg.embed_dim != cfg.encoder_embed_dim else None
        )
        self.patch_embedding = nn.Conv2d(1, cfg.embed_dim, kernel_size=p, stride=p, bias=cfg.conv_bias)
        self.dropout_input = nn.Dropout(cfg.dropout_input)
        self.encoder = BEATsEncoder(cfg)
        self.layer_norm = nn.LayerNorm(cfg.embed_dim)
        if cfg.finetuned_model:
            self.predictor_dropout = nn.Dropout(cfg.predictor_dropout)
            self.predictor: nn.Linear | None = nn.Linear(cfg.encoder_embed_dim, cfg.predictor_class)
        else:
            self.predictor = None

    def drop_predictor(self) -> None:
        """Remove the AudioSet classification head (not part of the upstream)."""
        if self.predictor is not None:
            del self.predictor_dropout
            self.predictor = None

    def forward(self, fbank: Tensor, frames: Tensor) -> tuple[list[Tensor], Tensor]:
        """Normalised (B, frames, mel) fbank + valid frame counts -> hidden states, valid token counts."""
        p = self.cfg.input_patch_size
        x = self.patch_embedding(fbank.unsqueeze(1))  # (B, C, time patches, freq patches)
        freq_patches = x.shape[-1]
        x = self.layer_norm(x.flatten(2).transpose(1, 2))  # time-major tokens: t * freq_patches + f
        tokens = torch.div(frames, p, rounding_mode="floor") * freq_patches
        padding_mask = lengths_to_padding_mask(tokens, x.shape[1])
        if self.post_extract_proj is not None:
            x = self.post_extract_proj(x)
        # an exported graph serves every batch, so it always masks (a mask of no padding changes nothing)
        masked = torch.onnx.is_in_onnx_export() or bool(padding_mask.any())
        hidden = self.encoder(self.dropout_input(x), padding_mask if masked else None)
        return hidden, tokens


class BEATsUpstream(Upstream):
    """BEATs as an asdlib upstream: waveform -> fbank -> all hidden states (input + every layer).

    Tokens are time-major, ``freq_patches`` (8 for 128 mel bins) per 16-frame step: 2 s of audio
    gives 12 x 8 = 96 tokens. ``frame_lengths`` counts each clip's valid tokens.
    """

    def __init__(self, cfg: BEATsConfig) -> None:
        super().__init__()
        self.model = BEATsModel(cfg)
        self.hidden_size = cfg.encoder_embed_dim
        self.num_layers = cfg.encoder_layers + 1
        self.fbank = BEATS_FBANK
        self.min_samples = self.fbank.window_samples + (cfg.input_patch_size - 1) * self.fbank.shift_samples

    def blocks(self) -> nn.ModuleList:
        return self.model.encoder.layers

    def forward(self, wavs: Tensor, lengths: Tensor) -> tuple[list[Tensor], Tensor]:
        short = [] if torch.onnx.is_in_onnx_export() else (lengths < self.min_samples).nonzero().flatten().tolist()
        if short:
            raise ValueError(f"clips {short} are shorter than one BEATs patch ({self.min_samples} samples)")
        fbank, frames = batch_fbank(wavs, lengths, self.fbank)
        return self.model(self._augment(fbank, frames), frames)


def load_beats_checkpoint(path: str | Path, allow_unsafe_pickle: bool = False) -> tuple[BEATsConfig, dict[str, Tensor]]:
    """Read an official BEATs file: ``{"cfg": dict, "model": state dict}`` -> (config, state dict)."""
    ckpt = torch_load(path, allow_unsafe_pickle)
    if (
        not isinstance(ckpt, Mapping)
        or not isinstance(ckpt.get("cfg"), Mapping)
        or not isinstance(ckpt.get("model"), Mapping)
    ):
        raise ValueError(
            f"{path}: not an official BEATs checkpoint; expected a dict with 'cfg' (a dict of "
            "BEATsConfig fields) and 'model' (a state dict), as in BEATs_iter3*.pt"
        )
    return BEATsConfig.from_dict(ckpt["cfg"], str(path)), dict(ckpt["model"])


@UPSTREAMS.register("beats")
def build_beats(cfg: UpstreamConfig) -> BEATsUpstream:
    """Build the BEATs upstream from ``cfg.path`` (an official ``BEATs_*.pt`` file), strict keys."""
    config, state = load_beats_checkpoint(cfg.path, cfg.allow_unsafe_pickle)
    upstream = BEATsUpstream(config)
    load_state_strict(upstream.model, state, cfg.path)
    if config.finetuned_model:
        logger.info("%s: dropping the AudioSet predictor head of the fine-tuned checkpoint", cfg.path)
        upstream.model.drop_predictor()
    logger.info("BEATs: %d layers, dim %d, from %s", config.encoder_layers, config.encoder_embed_dim, cfg.path)
    return upstream
