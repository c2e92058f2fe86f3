"""EAT (Chen et al., arXiv 2401.03497): our implementation, loading the official checkpoints.

EAT is a data2vec 2.0 image-style ViT on the 128-bin Kaldi fbank: a 16x16 patch convolution, fixed
2-D sin-cos positions, one learned CLS token, LayerNorm, then post-LN blocks (fused ``attn.qkv``,
``attn.proj``, ``mlp.fc1``/``mlp.fc2``, ``norm1``/``norm2``). Two release formats load:

* Hugging Face (``worstchan/EAT-base_epoch30_pretrain``, ``…_finetune_AS2M``, large variants): a
  directory with ``config.json`` + ``model.safetensors`` (keys ``model.local_encoder.proj.*``,
  ``model.extra_tokens``, ``model.fixed_positional_encoder.positions``, ``model.pre_norm.*``,
  ``model.blocks.<i>.*``, fine-tuned also ``model.fc_norm.*``/``model.head.*``). Read with
  ``safetensors``; no ``transformers``/remote code. Our :class:`EATUpstream` keeps the core as
  ``.model``, so its parameter names are exactly the file's.
* fairseq (the original Google-Drive ``EAT-*.pt``): ``{"cfg", "model"}`` with keys
  ``modality_encoders.IMAGE.*`` and ``blocks.*`` (fine-tuned: under ``model.`` plus ``fc_norm``,
  ``head``); mapped onto the Hugging Face names. These files pickle omegaconf/enum objects, so they
  need ``allow_unsafe_pickle: true`` (fairseq itself is not needed).

Input (EAT's feature_extract.py): the [-1, 1] waveform (no int16 scaling) minus its mean, Kaldi fbank
with a Hanning window, zero-padded (before normalisation) or cut to ``target_frames`` (1024 in the
release, 10.24 s), normalised ``(x + 4.2677393) / (2 * 4.5689974)``. With ``target_frames=None``
each batch is padded to a multiple of 16 frames and padded patches are masked in attention instead.

Every hidden state is (B, 1 + patches, D) with the CLS token at index 0 (EAT's utterance embedding);
``num_prefix_tokens = 1`` tells pooling to treat it separately if it wants to. The AudioSet head of
fine-tuned files (``fc_norm``, ``head``) is checked on load and then dropped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asdlib.config import UpstreamConfig
from asdlib.io.atomic import atomic_write, atomic_write_text
from asdlib.models.fbank import EAT_FBANK, batch_fbank, num_frames
from asdlib.models.official_ckpt import find_config_value, load_state_strict, torch_load
from asdlib.models.upstream import Upstream, lengths_to_padding_mask
from asdlib.registry import UPSTREAMS

logger = logging.getLogger(__name__)

#: the release pads or cuts every clip to this many frames
DEFAULT_TARGET_FRAMES = 1024
#: keys of a Hugging Face config.json that describe the hub wrapper, not the network
_HF_BOOKKEEPING = {
    "architectures",
    "auto_map",
    "model_type",
    "torch_dtype",
    "dtype",
    "transformers_version",
    "_name_or_path",
}


@dataclass
class EATConfig:
    """Fields of the release's ``configuration_eat.EATConfig`` that shape the network, its defaults."""

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    patch_size: int = 16
    stride: int = 16
    in_chans: int = 1
    mel_bins: int = 128
    max_length: int = 768  #: time patches the positional table covers
    num_classes: int = 527
    model_variant: str = "pretrain"  #: "finetune" files also carry the AudioSet head
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    activation_dropout: float = 0.0
    post_mlp_drop: float = 0.0
    start_drop_path_rate: float = 0.0
    end_drop_path_rate: float = 0.0
    layer_norm_first: bool = False
    norm_eps: float = 1e-6
    norm_affine: bool = True
    fixed_positions: bool = True

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any], source: str) -> EATConfig:
        known = {f.name for f in fields(cls)}
        extra = sorted(set(cfg) - known - _HF_BOOKKEEPING - {"img_size"})
        if extra:
            logger.info("%s: ignoring config fields the network does not use: %s", source, extra)
        config = cls(**{k: v for k, v in cfg.items() if k in known})
        config.validate(source)
        return config

    def validate(self, source: str) -> None:
        problems = []
        if self.layer_norm_first:
            problems.append("layer_norm_first=true (no EAT release uses pre-LN blocks)")
        if self.stride != self.patch_size:
            problems.append(f"stride {self.stride} != patch_size {self.patch_size} (overlapping patches)")
        if self.in_chans != 1:
            problems.append(f"in_chans={self.in_chans} (EAT reads a single fbank channel)")
        if self.embed_dim % self.num_heads:
            problems.append("embed_dim not divisible by num_heads")
        if self.model_variant not in ("pretrain", "finetune"):
            problems.append(f"model_variant {self.model_variant!r} (expected pretrain or finetune)")
        if problems:
            raise ValueError(f"{source}: unsupported EAT config: " + "; ".join(problems))

    @property
    def freq_patches(self) -> int:
        return self.mel_bins // self.patch_size


def sincos_positions(dim: int, time_patches: int, freq_patches: int) -> Tensor:
    """The release's fixed 2-D sin-cos table (1, time*freq, dim), time-major like the patch tokens.

    As in MAE's ``get_2d_sincos_pos_embed_flexible``: the first half of the channels encodes the
    frequency index, the second half the time index, each as [sin | cos] over geometric frequencies.
    """

    def one_axis(d: int, pos: Tensor) -> Tensor:
        omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / (d / 2.0))
        out = pos.reshape(-1, 1).double() * omega[None]
        return torch.cat([out.sin(), out.cos()], dim=1)

    t_idx, f_idx = torch.meshgrid(torch.arange(time_patches), torch.arange(freq_patches), indexing="ij")
    table = torch.cat([one_axis(dim // 2, f_idx), one_axis(dim // 2, t_idx)], dim=1)
    return table.float().unsqueeze(0)


class PatchEmbed(nn.Module):
    """16x16 patch convolution over a (B, 1, frames, mel) image -> (B, patches, D), time-major."""

    def __init__(self, cfg: EATConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(cfg.in_chans, cfg.embed_dim, kernel_size=cfg.patch_size, stride=cfg.stride)
        nn.init.xavier_uniform_(self.proj.weight.view(cfg.embed_dim, -1))

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class FixedPositions(nn.Module):
    """Holds the fixed position table as a buffer (saved under ``positions``, never trained)."""

    def __init__(self, table: Tensor) -> None:
        super().__init__()
        self.register_buffer("positions", table)

    def forward(self, num_patches: int) -> Tensor:
        if num_patches > self.positions.shape[1]:
            raise ValueError(
                f"EAT input has {num_patches} patches but the checkpoint's positional table covers "
                f"{self.positions.shape[1]}: use shorter clips or a smaller upstream.conf.target_frames"
            )
        return self.positions[:, :num_patches]


class DropPath(nn.Module):
    """Stochastic depth: drop the residual branch per sample in training."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand(x.shape[0], *([1] * (x.dim() - 1)), device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1.0 - self.p)


class EATAttention(nn.Module):
    """Self-attention through the fused ``qkv`` and the ``proj`` Linear modules (both called)."""

    def __init__(self, cfg: EATConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_heads
        self.qkv = nn.Linear(cfg.embed_dim, cfg.embed_dim * 3, bias=cfg.qkv_bias)
        self.attn_drop = cfg.attn_drop_rate
        self.proj = nn.Linear(cfg.embed_dim, cfg.embed_dim)
        self.proj_drop = nn.Dropout(cfg.drop_rate)

    def forward(self, x: Tensor, padding_mask: Tensor | None) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        mask = None if padding_mask is None else ~padding_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.attn_drop if self.training else 0.0
        )
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, d)))


class Mlp(nn.Module):
    """timm-style MLP: ``fc1`` -> GELU -> dropout -> ``fc2`` -> dropout."""

    def __init__(self, cfg: EATConfig) -> None:
        super().__init__()
        hidden = int(cfg.embed_dim * cfg.mlp_ratio)
        self.fc1 = nn.Linear(cfg.embed_dim, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(cfg.activation_dropout)
        self.fc2 = nn.Linear(hidden, cfg.embed_dim)
        self.drop2 = nn.Dropout(cfg.activation_dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class EATBlock(nn.Module):
    """data2vec 2.0 ``AltBlock`` in its post-LN form (the only one the EAT releases use)."""

    def __init__(self, cfg: EATConfig, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps, elementwise_affine=cfg.norm_affine)
        self.attn = EATAttention(cfg)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps, elementwise_affine=cfg.norm_affine)
        self.mlp = Mlp(cfg)
        self.post_mlp_dropout = nn.Dropout(cfg.post_mlp_drop)

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = self.norm1(x + self.drop_path(self.attn(x, padding_mask)))
        ffn = self.mlp(x)
        # second output: the release's layer target (the FFN output); the hidden state comes first
        return self.norm2(x + self.drop_path(self.post_mlp_dropout(ffn))), ffn


class EATModel(nn.Module):
    """The release's inner ``EAT`` module tree (Hugging Face names without the ``model.`` prefix)."""

    def __init__(self, cfg: EATConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.embed_dim
        self.local_encoder = PatchEmbed(cfg)
        self.extra_tokens = nn.Parameter(torch.zeros(1, 1, d))
        nn.init.trunc_normal_(self.extra_tokens, std=0.02)
        self.fixed_positional_encoder = (
            FixedPositions(sincos_positions(d, cfg.max_length, cfg.freq_patches)) if cfg.fixed_positions else None
        )
        self.pre_norm = nn.LayerNorm(d, eps=cfg.norm_eps, elementwise_affine=cfg.norm_affine)
        self.pos_drop = nn.Dropout(cfg.drop_rate)
        rates = torch.linspace(cfg.start_drop_path_rate, cfg.end_drop_path_rate, cfg.depth).tolist()
        self.blocks = nn.ModuleList(EATBlock(cfg, rate) for rate in rates)
        if cfg.model_variant == "finetune":
            self.fc_norm: nn.LayerNorm | None = nn.LayerNorm(d, eps=cfg.norm_eps)
            self.head: nn.Linear | None = nn.Linear(d, cfg.num_classes)
        else:
            self.fc_norm = self.head = None

    def drop_head(self) -> None:
        """Remove the AudioSet classification head (not part of the upstream)."""
        self.fc_norm = self.head = None

    def patch_tokens(self, fbank: Tensor) -> Tensor:
        """(B, frames, mel) normalised fbank -> positioned patch tokens (B, patches, D), time-major.

        Separate from :meth:`encode` because pre-training drops the masked patches in between."""
        x = self.local_encoder(fbank.unsqueeze(1))
        if self.fixed_positional_encoder is not None:
            x = x + self.fixed_positional_encoder(x.shape[1])
        return x

    def encode(self, patches: Tensor, padding_mask: Tensor | None = None) -> tuple[list[Tensor], list[Tensor]]:
        """Patch tokens (B, N, D) -> (hidden states: input + every block, each (B, 1 + N, D) with the
        CLS token first; every block's FFN output, the pre-training target layers)."""
        x = torch.cat([self.extra_tokens.expand(patches.shape[0], -1, -1), patches], dim=1)
        x = self.pos_drop(self.pre_norm(x))
        hidden, ffn_out = [x], []
        for block in self.blocks:
            x, ffn = block(x, padding_mask)
            hidden.append(x)
            ffn_out.append(ffn)
        return hidden, ffn_out

    def forward(self, fbank: Tensor, patch_counts: Tensor, mask_padding: bool) -> list[Tensor]:
        """(B, frames, mel) normalised fbank -> hidden states (B, 1 + patches, D): input + every block."""
        x = self.patch_tokens(fbank)
        padding_mask = lengths_to_padding_mask(patch_counts + 1, x.shape[1] + 1) if mask_padding else None
        if padding_mask is not None and not bool(padding_mask.any()):
            padding_mask = None
        return self.encode(x, padding_mask)[0]


class EATUpstream(Upstream):
    """EAT as an asdlib upstream: waveform -> fbank -> CLS + patch tokens of every layer.

    ``target_frames``: pad/cut every clip to this many fbank frames, padding visible to the model
    (the release's behaviour; 1024 = 10.24 s), or ``None``: pad each batch to a multiple of 16
    frames and mask padded patches. ``frame_lengths`` = 1 + the patches that hold real audio.
    """

    num_prefix_tokens = 1

    def __init__(self, cfg: EATConfig, target_frames: int | None = DEFAULT_TARGET_FRAMES) -> None:
        super().__init__()
        if target_frames is not None and (target_frames <= 0 or target_frames % cfg.patch_size):
            raise ValueError(
                f"upstream.conf.target_frames must be a positive multiple of {cfg.patch_size} or null, got {target_frames}"
            )
        self.model = EATModel(cfg)
        self.hidden_size = cfg.embed_dim
        self.num_layers = cfg.depth + 1
        self.target_frames = target_frames
        self.fbank = EAT_FBANK
        self.min_samples = self.fbank.window_samples  # one fbank frame; shorter clips are padded anyway
        #: clips seen, cut and padded to ``target_frames`` so far, and the frames cut/padded in all
        self.fit_counts = {"clips": 0, "cut": 0, "cut_frames": 0, "padded": 0, "padded_frames": 0}
        self._cut_reported = False  # the first batch that cuts audio is a warning, later ones debug lines

    def blocks(self) -> nn.ModuleList:
        return self.model.blocks

    def features(self, wavs: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """(normalised fbank (B, frames, mel), valid frames (B,)): padded or cut to ``target_frames``,
        else to the batch's longest clip rounded up to whole patches."""
        p = self.model.cfg.patch_size
        total = self.target_frames
        if total is None:
            total = int(num_frames(lengths.max(), self.fbank).clamp(min=1))
            total = -(-total // p) * p
        if self.target_frames is not None:
            self._count_fit(num_frames(lengths.long(), self.fbank), total)
        return batch_fbank(wavs, lengths, self.fbank, total_frames=total)

    def forward(self, wavs: Tensor, lengths: Tensor) -> tuple[list[Tensor], Tensor]:
        fbank, frames = self.features(wavs, lengths)
        fbank = self._augment(fbank, frames)
        p = self.model.cfg.patch_size
        patches = torch.div(frames + p - 1, p, rounding_mode="floor") * self.model.cfg.freq_patches
        return self.model(fbank, patches, mask_padding=self.target_frames is None), patches + 1

    def _count_fit(self, frames: Tensor, total: int) -> None:
        """Count the clips this batch cuts or pads to ``total`` frames and log them in one line (why:
        EAT's fixed length silently drops audio past 10.24 s; the user should see how much)."""
        cut, pad = (frames - total).clamp(min=0), (total - frames).clamp(min=0)
        n_cut, n_pad = int((cut > 0).sum()), int((pad > 0).sum())
        c = self.fit_counts
        c["clips"] += len(frames)
        c["cut"] += n_cut
        c["cut_frames"] += int(cut.sum())
        c["padded"] += n_pad
        c["padded_frames"] += int(pad.sum())
        if n_cut or n_pad:
            first_cut = n_cut > 0 and not self._cut_reported
            self._cut_reported = self._cut_reported or first_cut
            shift_s = self.fbank.frame_shift_ms / 1000
            logger.log(
                logging.WARNING if first_cut else logging.DEBUG,
                "EAT batch of %d clips: %d cut to %d frames (by up to %.2f s), %d zero-padded (by up to %.2f s)%s",
                len(frames),
                n_cut,
                total,
                float(cut.max()) * shift_s,
                n_pad,
                float(pad.max()) * shift_s,
                "; later batches are counted in fit_summary()" if first_cut else "",
            )

    def fit_summary(self) -> str:
        """One line over every clip so far: how many were cut or padded to ``target_frames``, by how much."""
        c, shift_s = self.fit_counts, self.fbank.frame_shift_ms / 1000
        if self.target_frames is None:
            return (
                "EAT: upstream.conf.target_frames null: every batch padded to its longest clip and masked, nothing cut"
            )
        return (
            f"EAT: of {c['clips']} clips, {c['cut']} were cut to {self.target_frames} frames "
            f"({c['cut_frames'] * shift_s:.2f} s of audio dropped in all) and {c['padded']} zero-padded "
            f"({c['padded_frames'] * shift_s:.2f} s of padding in all)"
        )


def _hf_files(path: Path) -> tuple[Path, Path]:
    directory = path.parent if path.suffix == ".safetensors" else path
    config, weights = (
        directory / "config.json",
        (path if path.suffix == ".safetensors" else directory / "model.safetensors"),
    )
    for needed in (config, weights):
        if not needed.is_file():
            raise FileNotFoundError(
                f"{needed} does not exist: an EAT Hugging Face checkpoint is a directory with "
                "config.json and model.safetensors (see docs/upstreams.md)"
            )
    return config, weights


def load_eat_hf(path: str | Path) -> tuple[EATConfig, dict[str, Tensor]]:
    """Hugging Face release directory (or its model.safetensors) -> (config, state dict without ``model.``)."""
    from safetensors.torch import load_file

    config_file, weights = _hf_files(Path(path))
    with open(config_file, encoding="utf-8") as f:
        config = EATConfig.from_dict(json.load(f), str(config_file))
    state = load_file(str(weights), device="cpu")
    outside = sorted(k for k in state if not k.startswith("model."))
    if outside:
        raise ValueError(f"{weights}: keys outside the 'model.' namespace of the EAT release: {outside[:8]}")
    return config, {k[len("model.") :]: v for k, v in state.items()}


def save_eat_hf(model: EATModel, path: str | Path) -> None:
    """Write ``model`` as the Hugging Face release directory (config.json + model.safetensors, keys
    ``model.*``), the format :func:`build_eat` reads, so a pre-trained student is an upstream as is."""
    from safetensors.torch import save

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = {f.name: getattr(model.cfg, f.name) for f in fields(EATConfig)}
    state = {"model." + k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_text(path / "config.json", json.dumps({**config, "model_type": "eat"}, indent=2) + "\n")
    with atomic_write(path / "model.safetensors", "wb") as f:
        f.write(save(state))


def fairseq_checkpoint(model: EATModel) -> dict[str, Any]:
    """``model`` as the original fairseq release file, ``{"cfg", "model"}`` with fairseq names (the
    inverse of :func:`fairseq_to_hf_state`); plain dicts, so it loads without unsafe unpickling."""
    prefix = "model." if model.cfg.model_variant == "finetune" else ""
    mapped = {}
    for key, value in model.state_dict().items():
        if key.startswith("pre_norm."):
            key = "modality_encoders.IMAGE.context_encoder.norm." + key[len("pre_norm.") :]
        elif key.startswith(("local_encoder.", "extra_tokens", "fixed_positional_encoder.")):
            key = "modality_encoders.IMAGE." + key
        mapped[key if key.startswith(("fc_norm.", "head.")) else prefix + key] = value.detach().cpu().contiguous()
    c = model.cfg
    cfg = {
        "model": {
            "_name": "data2vec_multi",
            "depth": c.depth,
            "num_heads": c.num_heads,
            "embed_dim": c.embed_dim,
            "norm_eps": c.norm_eps,
        }
    }
    return {"cfg": cfg, "model": mapped}


def save_eat_fairseq(model: EATModel, path: str | Path) -> None:
    """Write ``model`` as a fairseq release ``.pt`` (:func:`fairseq_checkpoint`), one file that
    ``upstream.name: eat`` loads as it loads the downloaded ``EAT-*.pt``."""
    with atomic_write(path, "wb") as f:
        torch.save(fairseq_checkpoint(model), f)


#: fairseq pre-training modules that are not part of the encoder (EMA teacher, decoders, losses)
_FAIRSEQ_TRAINING_ONLY = (
    "_ema",
    "modality_encoders.IMAGE.decoder.",
    "modality_encoders.IMAGE.encoder_mask",
    "shared_decoder.",
    "recon_proj.",
    "cls_proj.",
    "center",
)


def fairseq_to_hf_state(state: Mapping[str, Any]) -> dict[str, Tensor]:
    """fairseq EAT state dict (pre-trained or fine-tuned) -> Hugging Face names (without ``model.``)."""
    finetuned = any(k.startswith("model.") for k in state)
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if finetuned and key.startswith("model."):
            key = key[len("model.") :]
        if key.startswith(_FAIRSEQ_TRAINING_ONLY):
            continue
        if key.startswith("modality_encoders.IMAGE."):
            key = key[len("modality_encoders.IMAGE.") :]
            if key.startswith("context_encoder.norm."):
                key = "pre_norm." + key[len("context_encoder.norm.") :]
        out[key] = value
    return out


def _fairseq_config(ckpt: Mapping[str, Any], state: Mapping[str, Tensor], source: str) -> EATConfig:
    """Architecture of a fairseq EAT file: shapes from the tensors, heads/eps from its cfg."""
    for needed in ("extra_tokens", "local_encoder.proj.weight", "blocks.0.mlp.fc1.weight"):
        if needed not in state:
            raise ValueError(
                f"{source}: not an EAT checkpoint (no tensor for {needed!r} after mapping the fairseq names)"
            )
    if "pre_norm.weight" not in state and "pre_norm.bias" not in state:
        raise ValueError(
            f"{source}: no context_encoder.norm: a pre-LN (layer_norm_first) model, which no EAT release is"
        )
    dim = state["extra_tokens"].shape[-1]
    patch = state["local_encoder.proj.weight"].shape[-1]
    heads = find_config_value(ckpt.get("cfg"), "num_heads")
    if not isinstance(heads, int):
        heads = dim // 64
        logger.warning(
            "%s: num_heads not readable from the checkpoint cfg; assuming %d (dim / 64, as in EAT base/large)",
            source,
            heads,
        )
    eps = find_config_value(ckpt.get("cfg"), "norm_eps")
    positions = state.get("fixed_positional_encoder.positions")
    freq = 128 // patch
    cfg = {
        "embed_dim": dim,
        "depth": 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks.")),
        "num_heads": heads,
        "patch_size": patch,
        "stride": patch,
        "mlp_ratio": state["blocks.0.mlp.fc1.weight"].shape[0] / dim,
        "qkv_bias": "blocks.0.attn.qkv.bias" in state,
        "norm_eps": float(eps) if isinstance(eps, (int, float)) else 1e-6,
        "norm_affine": "pre_norm.weight" in state,
        "fixed_positions": positions is not None,
        "max_length": positions.shape[1] // freq if positions is not None else 64,
        "model_variant": "finetune" if "head.weight" in state else "pretrain",
        "num_classes": state["head.weight"].shape[0] if "head.weight" in state else 527,
    }
    return EATConfig.from_dict(cfg, source)


def load_eat_fairseq(path: str | Path, allow_unsafe_pickle: bool = False) -> tuple[EATConfig, dict[str, Tensor]]:
    """Original fairseq EAT file -> (config, state dict in Hugging Face names without ``model.``)."""
    ckpt = torch_load(path, allow_unsafe_pickle)
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("model"), Mapping):
        raise ValueError(
            f"{path}: not a fairseq EAT checkpoint (expected a dict with 'cfg' and 'model'); "
            "for the Hugging Face release give the directory holding config.json and model.safetensors"
        )
    state = fairseq_to_hf_state(ckpt["model"])
    return _fairseq_config(ckpt, state, str(path)), state


@dataclass
class EatSettings:
    """``upstream.conf`` of ``eat``: the fbank length every clip is padded or cut to (the release's
    1024 frames, 10.24 s); null pads each batch to its longest clip and masks the padding."""

    target_frames: int | None = DEFAULT_TARGET_FRAMES


@UPSTREAMS.register("eat", EatSettings)
def build_eat(cfg: UpstreamConfig) -> EATUpstream:
    """Build the EAT upstream from ``cfg.path``: a Hugging Face release directory or a fairseq file."""
    path = Path(cfg.path)
    hf = path.is_dir() or path.suffix == ".safetensors"
    config, state = load_eat_hf(path) if hf else load_eat_fairseq(path, cfg.allow_unsafe_pickle)
    positions = state.get("fixed_positional_encoder.positions")
    if positions is not None and positions.dim() == 3 and positions.shape[1] % config.freq_patches == 0:
        config.max_length = positions.shape[1] // config.freq_patches  # the table's capacity is the file's
    upstream = EATUpstream(config, cfg.conf.target_frames)
    if config.fixed_positions and positions is None:
        # a fixed (never trained) sin-cos table: identical when rebuilt, so a file may omit it
        logger.info("%s: no positional table in the file; using the fixed sin-cos table", path)
        state["fixed_positional_encoder.positions"] = upstream.model.fixed_positional_encoder.positions
    source = str(path) if hf else f"{path} (fairseq names shown as their Hugging Face equivalents)"
    load_state_strict(upstream.model, state, source, key_prefix="model." if hf else "")
    if config.model_variant == "finetune":
        logger.info("%s: dropping the AudioSet head (fc_norm, head) of the fine-tuned checkpoint", path)
        upstream.model.drop_head()
    logger.info(
        "EAT: %d blocks, dim %d, target frames %s, from %s",
        config.depth,
        config.embed_dim,
        upstream.target_frames,
        path,
    )
    return upstream
