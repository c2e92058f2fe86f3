"""HuBERT, WavLM, wav2vec 2.0 and data2vec through s3prl's own model code, from local checkpoints.

Checkpoint formats (what s3prl 0.4.18's experts read; no fairseq needed):

* ``hubert``: s3prl's converted dict ``{task_cfg, model_cfg, model_weight, dictionaries_symbols}``
  (``s3prl/upstream/hubert/convert.py``; the files s3prl's hub downloads for ``hubert_base`` etc.).
* ``wav2vec2``: converted dict ``{task_cfg, model_cfg, model_weight}`` (``wav2vec2/convert.py``).
* ``data2vec``: converted dict ``{task_cfg, model_cfg, model_weight}``; ``model_weight`` carries the
  EMA teacher under ``_ema``, dropped as s3prl does (``data2vec/convert.py``).
* ``wavlm``: Microsoft's official release ``{cfg, model}`` (WavLM-Base+.pt, WavLM-Large.pt).

Original fairseq checkpoints (hubert/wav2vec2/data2vec) pickle fairseq classes, so reading them
needs fairseq; convert them once with ``python -m s3prl.upstream.<name>.convert <ckpt>`` on a
machine with fairseq, or use the converted files of s3prl's hub.

Two departures from s3prl's experts, both needed for fine-tuning:
* the attention is forced through its projection modules so that LoRA on q/k/v/out_proj acts
  (docs/method.md §4): s3prl's fused ``F.multi_head_attention_forward`` path reads the raw weights;
* hidden states are captured per call by temporary hooks and the CNN feature sequence can be
  augmented (``feature_augment``); everything else (normalisation, padding masks, frozen CNN,
  layerdrop 0, hidden-state order) is as in s3prl's experts.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import pickle
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asdlib.config import UpstreamConfig
from asdlib.models import s3prl_compat
from asdlib.models.upstream import S3PRL_NAMES, Upstream, lengths_to_padding_mask
from asdlib.registry import UPSTREAMS

s3prl_compat.install()

from s3prl.upstream.data2vec.data2vec_model import (  # noqa: E402
    Data2VecAudioConfig,
    Data2VecAudioModel,
)
from s3prl.upstream.hubert.hubert_model import (  # noqa: E402
    HubertConfig,
    HubertModel,
    HubertPretrainingConfig,
)
from s3prl.upstream.utils import merge_with_parent  # noqa: E402
from s3prl.upstream.wav2vec2 import wav2vec2_model  # noqa: E402
from s3prl.upstream.wav2vec2.wav2vec2_model import (  # noqa: E402
    AudioPretrainingConfig,
    Wav2Vec2Config,
    Wav2Vec2Model,
)
from s3prl.upstream.wavlm import modules as wavlm_modules  # noqa: E402
from s3prl.upstream.wavlm.WavLM import WavLM, WavLMConfig  # noqa: E402

logger = logging.getLogger(__name__)

#: top-level keys of each checkpoint format
CHECKPOINT_KEYS = {
    "hubert": ("task_cfg", "model_cfg", "model_weight", "dictionaries_symbols"),
    "wav2vec2": ("task_cfg", "model_cfg", "model_weight"),
    "data2vec": ("task_cfg", "model_cfg", "model_weight"),
    "wavlm": ("cfg", "model"),
}
_SHOW_KEYS = 5


class ProjectedWavLMAttention(wavlm_modules.MultiheadAttention):
    """WavLM self-attention that calls q/k/v/out_proj (LoRA-visible), same function as s3prl's.

    s3prl's fast path feeds the raw projection weights to ``F.multi_head_attention_forward``.
    Its slow path is *not* a substitute: it computes the gated relative position bias from the
    projected query instead of the input and passes the gated bias on to the next layer, so
    pre-trained WavLM would compute a different function. This reproduces the fast path exactly.
    """

    def forward(
        self,
        query: Tensor,
        key: Tensor | None,
        value: Tensor | None,
        key_padding_mask: Tensor | None = None,
        incremental_state: Any = None,
        need_weights: bool = True,
        static_kv: bool = False,
        attn_mask: Tensor | None = None,
        before_softmax: bool = False,
        need_head_weights: bool = False,
        position_bias: Tensor | None = None,
    ) -> tuple[Tensor, None, Tensor | None]:
        if incremental_state is not None or static_kv or attn_mask is not None or before_softmax:
            raise NotImplementedError("asdlib's WavLM attention supports encoder self-attention only")
        if need_head_weights:
            raise NotImplementedError("asdlib's WavLM attention does not return attention weights")
        tgt_len, bsz, embed_dim = query.shape
        src_len = key.size(0)
        heads = self.num_heads
        if self.has_relative_attention_bias and position_bias is None:
            position_bias = (
                self.compute_bias(tgt_len, src_len)
                .unsqueeze(0)
                .repeat(bsz, 1, 1, 1)
                .view(bsz * heads, tgt_len, src_len)
            )
        bias = position_bias
        if position_bias is not None and self.gru_rel_pos:
            # the gate reads the un-projected input, as in the official fast path
            query_layer = query.transpose(0, 1).reshape(bsz, tgt_len, heads, -1).permute(0, 2, 1, 3)
            gate_a, gate_b = torch.sigmoid(self.grep_linear(query_layer).view(bsz, heads, tgt_len, 2, 4).sum(-1)).chunk(
                2, dim=-1
            )
            gate_a_1 = gate_a * (gate_b * self.grep_a - 1.0) + 2.0
            bias = gate_a_1.view(bsz * heads, -1, 1) * position_bias

        q = self.q_proj(query).view(tgt_len, bsz, heads, -1).permute(1, 2, 0, 3)
        k = self.k_proj(key).view(src_len, bsz, heads, -1).permute(1, 2, 0, 3)
        v = self.v_proj(value).view(src_len, bsz, heads, -1).permute(1, 2, 0, 3)
        mask = None
        if bias is not None:
            mask = bias.view(bsz, heads, tgt_len, src_len).to(q.dtype)
        if key_padding_mask is not None:
            pad = torch.zeros(bsz, 1, 1, src_len, dtype=q.dtype, device=q.device)
            pad = pad.masked_fill(key_padding_mask.view(bsz, 1, 1, src_len).bool(), float("-inf"))
            mask = pad if mask is None else mask + pad
        dropout = self.dropout_module.p if self.training else 0.0
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        attn = attn.permute(2, 0, 1, 3).reshape(tgt_len, bsz, embed_dim)
        return self.out_proj(attn), None, position_bias


def route_attention_through_projections(family: str, model: nn.Module) -> None:
    """Make every block's attention call its q/k/v/out_proj modules (docs/method.md §4)."""
    for layer in model.encoder.layers:
        attn = layer.self_attn
        if family == "wavlm":
            if type(attn) is not wavlm_modules.MultiheadAttention:
                raise TypeError(f"unexpected WavLM attention class {type(attn).__name__}")
            attn.__class__ = ProjectedWavLMAttention
        else:
            if type(attn) is not wav2vec2_model.MultiheadAttention:
                raise TypeError(
                    f"{family}: attention class {type(attn).__name__} is not supported "
                    "(conformer layers are not); only fairseq-style transformer layers are"
                )
            # s3prl's fairseq attention takes the fused fast path unless this flag is set; the
            # other path (fairseq's own general path) calls the projection modules.
            attn.skip_embed_dim_check = True


def load_checkpoint(path: str | Path, allow_unsafe_pickle: bool = False) -> dict[str, Any]:
    """torch.load a checkpoint on CPU, tensors and plain containers only unless allowed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"upstream checkpoint not found: {path}; download the official file (see the recipe's "
            "README) or make a random one with python -m asdlib.bin.make_random_upstream"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=not allow_unsafe_pickle)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"{path}: torch.load(weights_only=True) refused it because it holds Python objects "
            f"beyond tensors and plain containers ({e}). If you trust the file, set "
            "upstream.allow_unsafe_pickle: true"
        ) from e
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a checkpoint dict, got {type(state).__name__}")
    return state


def _first(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOW_KEYS])
    return shown + (", ..." if len(keys) > _SHOW_KEYS else "")


def load_weights_strict(model: nn.Module, weights: dict[str, Tensor], where: str) -> None:
    """Load a state dict whose names must match the model exactly; name the first mismatches."""
    expected = set(model.state_dict())
    missing = sorted(expected - set(weights))
    unexpected = sorted(set(weights) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{where}: parameter names do not match the model built from its config: "
            f"{len(missing)} missing ({_first(missing)}), {len(unexpected)} unexpected "
            f"({_first(unexpected)}). Is it the right upstream name and checkpoint format?"
        )
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{where}: parameter shapes do not match the model config: {e}") from e


def _build_hubert(state: dict[str, Any]) -> tuple[nn.Module, dict[str, Tensor], bool]:
    task_cfg = merge_with_parent(HubertPretrainingConfig, state["task_cfg"])
    model_cfg = merge_with_parent(HubertConfig, state["model_cfg"])
    model = HubertModel(model_cfg, task_cfg, state["dictionaries_symbols"])
    return model, dict(state["model_weight"]), task_cfg.normalize


def _build_wav2vec2(state: dict[str, Any]) -> tuple[nn.Module, dict[str, Tensor], bool]:
    task_cfg = merge_with_parent(AudioPretrainingConfig, state["task_cfg"])
    model_cfg = merge_with_parent(Wav2Vec2Config, state["model_cfg"])
    return Wav2Vec2Model(model_cfg), dict(state["model_weight"]), task_cfg.normalize


def _build_data2vec(state: dict[str, Any]) -> tuple[nn.Module, dict[str, Tensor], bool]:
    task_cfg = merge_with_parent(AudioPretrainingConfig, state["task_cfg"])
    model_cfg = merge_with_parent(Data2VecAudioConfig, state["model_cfg"])
    model = Data2VecAudioModel(model_cfg)
    model.remove_pretraining_modules()
    weights = dict(state["model_weight"])
    # pre-training only: the EMA teacher (dropped by s3prl too) and the regression head that
    # remove_pretraining_modules() removes from the model
    weights.pop("_ema", None)
    for name in [n for n in weights if n.startswith("final_proj.")]:
        del weights[name]
    return model, weights, task_cfg.normalize


def _build_wavlm(state: dict[str, Any]) -> tuple[nn.Module, dict[str, Tensor], bool]:
    cfg = WavLMConfig(state["cfg"])
    return WavLM(cfg), dict(state["model"]), cfg.normalize


_BUILDERS = {
    "hubert": _build_hubert,
    "wav2vec2": _build_wav2vec2,
    "data2vec": _build_data2vec,
    "wavlm": _build_wavlm,
}


def build_s3prl_model(family: str, state: dict[str, Any], where: str) -> tuple[nn.Module, bool]:
    """Build s3prl's model of ``family`` from a loaded checkpoint dict; returns (model, normalize)."""
    missing = [k for k in CHECKPOINT_KEYS[family] if k not in state]
    if missing:
        raise ValueError(
            f"{where}: not a {family} checkpoint in s3prl's format: missing top-level keys "
            f"{missing} (found {sorted(map(str, state))[:8]}); expected {list(CHECKPOINT_KEYS[family])}"
        )
    model, weights, normalize = _BUILDERS[family](state)
    load_weights_strict(model, weights, where)
    return model, bool(normalize)


def _conv_output_lengths(lengths: Tensor, convs: list[tuple[int, int]]) -> Tensor:
    for kernel, stride in convs:
        lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
    return lengths.clamp(min=0)


def receptive_field(convs: list[tuple[int, int]]) -> int:
    """Samples one output frame of the (kernel, stride) stack sees: the shortest clip with a frame."""
    samples = 1
    for kernel, stride in reversed(convs):
        samples = (samples - 1) * stride + kernel
    return samples


def _masked_layer_norm(wavs: Tensor, padding_mask: Tensor) -> Tensor:
    """Per-clip ``F.layer_norm(wav[:len], wav[:len].shape)`` on a padded batch, padding kept 0."""
    valid = (~padding_mask).to(wavs.dtype)
    count = valid.sum(1, keepdim=True).clamp(min=1)
    mean = (wavs * valid).sum(1, keepdim=True) / count
    var = (((wavs - mean) * valid) ** 2).sum(1, keepdim=True) / count
    return (wavs - mean) / torch.sqrt(var + 1e-5) * valid


def _capture_layer_input(store: list[Tensor], module: nn.Module, args: tuple) -> None:
    store.append(args[0].transpose(0, 1))


def _capture_encoder_output(store: list[Tensor], module: nn.Module, args: tuple, output: Any) -> None:
    store.append(output[0])


class S3prlUpstream(Upstream):
    """An s3prl speech model (``family`` in hubert/wavlm/wav2vec2/data2vec) as an :class:`Upstream`.

    Hidden states (s3prl order): the input of every transformer block, then the encoder output
    (after the final LayerNorm for pre-LN models), all batch-first; ``num_layers`` = blocks + 1.
    Frame lengths follow the CNN's convolution arithmetic (400-sample receptive field, stride 320
    for the standard CNN). The CNN runs without gradient, as in s3prl's experts.
    """

    block_time_first = True

    def __init__(self, family: str, model: nn.Module, normalize: bool) -> None:
        super().__init__()
        if family not in S3PRL_NAMES:
            raise ValueError(f"unknown s3prl upstream family {family!r}; use one of {S3PRL_NAMES}")
        self.family = family
        self.model = model
        self.normalize = normalize
        model.feature_grad_mult = 0.0
        model.encoder.layerdrop = 0.0
        if hasattr(model, "remove_pretraining_modules"):
            model.remove_pretraining_modules()
        route_attention_through_projections(family, model)
        self.hidden_size = int(model.encoder.embedding_dim)
        self.num_layers = len(model.encoder.layers) + 1
        self._convs = [
            (int(block[0].kernel_size[0]), int(block[0].stride[0])) for block in model.feature_extractor.conv_layers
        ]
        self.min_samples = receptive_field(self._convs)

    def blocks(self) -> nn.ModuleList:
        return self.model.encoder.layers

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        """Number of CNN frames whose receptive field lies inside each clip."""
        return _conv_output_lengths(lengths.long(), self._convs)

    def _augment_cnn_features(self, lengths: Tensor, module: nn.Module, args: tuple, output: Tensor) -> Tensor:
        return self._augment(output.transpose(1, 2), lengths).transpose(1, 2)

    def forward(self, wavs: Tensor, lengths: Tensor) -> tuple[list[Tensor], Tensor]:
        if wavs.dim() != 2:
            raise ValueError(f"expected waveforms of shape (batch, samples), got {tuple(wavs.shape)}")
        lengths = lengths.to(device=wavs.device, dtype=torch.long)
        padding_mask = lengths_to_padding_mask(lengths, wavs.size(1))
        if self.normalize:
            wavs = _masked_layer_norm(wavs, padding_mask)
        frames = self.frame_lengths(lengths)
        captured: list[Tensor] = []
        with contextlib.ExitStack() as hooks:
            for layer in self.model.encoder.layers:
                handle = layer.register_forward_pre_hook(functools.partial(_capture_layer_input, captured))
                hooks.callback(handle.remove)
            handle = self.model.encoder.register_forward_hook(functools.partial(_capture_encoder_output, captured))
            hooks.callback(handle.remove)
            if self.training and self.feature_augment is not None:
                handle = self.model.feature_extractor.register_forward_hook(
                    functools.partial(self._augment_cnn_features, frames)
                )
                hooks.callback(handle.remove)
            self.model.extract_features(wavs, padding_mask=padding_mask, mask=False)
        if len(captured) != self.num_layers:
            raise RuntimeError(f"captured {len(captured)} hidden states, expected {self.num_layers}")
        num_frames = min(h.size(1) for h in captured)
        hidden_states = [h[:, :num_frames] for h in captured]
        return hidden_states, frames.clamp(max=num_frames)


def from_s3prl_expert(expert: nn.Module) -> S3prlUpstream:
    """Wrap the model of an s3prl ``UpstreamExpert`` (e.g. from ``s3prl.hub``) as an upstream."""
    family = type(expert).__module__.split(".")[-2]
    if family not in S3PRL_NAMES:
        raise ValueError(f"s3prl expert {type(expert).__module__} is not one of {S3PRL_NAMES}")
    # s3prl's experts collect hidden states through their own hooks on every forward; we never
    # call the expert, so they would only accumulate tensors.
    expert.remove_all_hooks()
    if family == "hubert":
        normalize = expert.task_cfg.normalize
    elif family == "wavlm":
        normalize = expert.cfg.normalize
    else:
        normalize = expert.wav_normalize
    return S3prlUpstream(family, expert.model, bool(normalize))


def build_s3prl_upstream(cfg: UpstreamConfig) -> S3prlUpstream:
    """Load ``cfg.path``, an s3prl-format checkpoint of the family ``cfg.name``."""
    state = load_checkpoint(cfg.path, cfg.allow_unsafe_pickle)
    model, normalize = build_s3prl_model(cfg.name, state, f"{cfg.path} ({cfg.name})")
    upstream = S3prlUpstream(cfg.name, model, normalize)
    logger.info(
        "loaded %s from %s: %d blocks, hidden size %d, input normalisation %s",
        cfg.name,
        cfg.path,
        len(upstream.blocks()),
        upstream.hidden_size,
        normalize,
    )
    return upstream


for _name in S3PRL_NAMES:
    UPSTREAMS.register(_name)(build_s3prl_upstream)
