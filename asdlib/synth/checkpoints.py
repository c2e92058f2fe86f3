"""Random-init upstream checkpoints in the official file formats, for tests, benchmarks and egs/mini.

Each writer produces exactly what the real release looks like to the loaders (BEATs ``{cfg, model}``,
EAT as a Hugging Face directory or a fairseq ``.pt``, s3prl's HuBERT/wav2vec 2.0/data2vec and
Microsoft's WavLM layouts), so the loading, LoRA and adapter code runs as it would on downloaded
weights. The weights depend only on the seed and the sizes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import torch

from asdlib.io.atomic import atomic_write
from asdlib.models.beats import BEATsConfig, BEATsModel
from asdlib.models.eat import EATConfig, EATModel, fairseq_checkpoint, save_eat_hf
from asdlib.models.s3prl_upstream import (
    AudioPretrainingConfig,
    Data2VecAudioConfig,
    Data2VecAudioModel,
    HubertConfig,
    HubertModel,
    HubertPretrainingConfig,
    Wav2Vec2Config,
    Wav2Vec2Model,
    WavLM,
    WavLMConfig,
)
from asdlib.models.upstream import S3PRL_NAMES
from asdlib.registry import RANDOM_UPSTREAMS


def save_random_beats(path: str | Path, seed: int = 0, **cfg: Any) -> dict[str, Any]:
    """Write a random-init BEATs in the official format (``torch.save({"cfg", "model"})``); returns cfg.

    ``cfg`` overrides :class:`BEATsConfig` fields; ``input_patch_size`` defaults to 16. For tests and
    benchmarks of the loading path without the real weights.
    """
    cfg = {"input_patch_size": 16, **cfg}
    config = BEATsConfig.from_dict(cfg, "save_random_beats")
    torch.manual_seed(seed)
    model = BEATsModel(config)
    with torch.no_grad():  # give the gate and bias tables non-trivial values, as trained ones have
        for name, param in model.named_parameters():
            if name.endswith(("grep_a", "relative_attention_bias.weight")):
                param.normal_(1.0 if name.endswith("grep_a") else 0.0, 0.5)
    with atomic_write(path, "wb") as f:
        torch.save({"cfg": cfg, "model": model.state_dict()}, f)
    return cfg


def save_random_eat(path: str | Path, fmt: str = "hf", seed: int = 0, **cfg: Any) -> dict[str, Any]:
    """Write a random-init EAT in an official format; returns its config dict.

    ``fmt="hf"``: ``path`` is a directory receiving config.json + model.safetensors (keys ``model.*``);
    ``fmt="fairseq"``: ``path`` is a ``.pt`` file ``{"cfg", "model"}`` with fairseq key names (plus an
    EMA entry and a decoder tensor, which loading must skip). ``cfg`` overrides :class:`EATConfig`.
    """
    config = EATConfig.from_dict(cfg, "save_random_eat")
    torch.manual_seed(seed)
    model = EATModel(config)
    full_cfg = {f.name: getattr(config, f.name) for f in fields(EATConfig)}
    path = Path(path)
    if fmt == "hf":
        save_eat_hf(model, path)
    elif fmt == "fairseq":
        ckpt = fairseq_checkpoint(model)
        prefix = "model." if config.model_variant == "finetune" else ""
        ckpt["model"][prefix + "modality_encoders.IMAGE.decoder.proj.weight"] = torch.zeros(
            config.embed_dim, config.embed_dim
        )
        ckpt["model"][prefix + "_ema"] = {"blocks.0.norm1.weight": torch.ones(config.embed_dim)}
        with atomic_write(path, "wb") as f:
            torch.save(ckpt, f)
    else:
        raise ValueError(f"unknown EAT checkpoint format {fmt!r} (hf or fairseq)")
    return full_cfg


@dataclass
class RandomModelSize:
    """Size of a random-init model for tests and the mini recipe (CNN keeps the 320-sample stride)."""

    layers: int = 2
    dim: int = 64
    ffn_dim: int = 128
    heads: int = 4
    conv_dim: int = 32
    conv_pos: int = 16
    conv_pos_groups: int = 4

    def model_overrides(self) -> dict[str, Any]:
        return {
            "encoder_layers": self.layers,
            "encoder_embed_dim": self.dim,
            "encoder_ffn_embed_dim": self.ffn_dim,
            "encoder_attention_heads": self.heads,
            # the standard wav2vec 2.0 / HuBERT CNN (kernels 10,3,3,3,3,2,2; strides 5,2,2,2,2,2,2)
            "conv_feature_layers": f"[({self.conv_dim},10,5)] + [({self.conv_dim},3,2)] * 4 + [({self.conv_dim},2,2)] * 2",
            "conv_pos": self.conv_pos,
            "conv_pos_groups": self.conv_pos_groups,
        }


def _random_hubert(size: RandomModelSize) -> dict[str, Any]:
    task_cfg = asdict(HubertPretrainingConfig(label_rate=50.0))
    model_cfg = asdict(HubertConfig(label_rate=50.0, final_dim=size.dim // 2, **size.model_overrides()))
    symbols = [["<s>", "<pad>", "</s>", "<unk>"] + [str(i) for i in range(16)]]
    model = HubertModel(HubertConfig(**model_cfg), HubertPretrainingConfig(**task_cfg), symbols)
    return {
        "task_cfg": task_cfg,
        "model_cfg": model_cfg,
        "model_weight": model.state_dict(),
        "dictionaries_symbols": symbols,
    }


def _random_wav2vec2(size: RandomModelSize) -> dict[str, Any]:
    task_cfg = asdict(AudioPretrainingConfig())
    model_cfg = asdict(
        Wav2Vec2Config(quantize_targets=True, final_dim=size.dim // 2, latent_vars=16, **size.model_overrides())
    )
    model = Wav2Vec2Model(Wav2Vec2Config(**model_cfg))
    return {"task_cfg": task_cfg, "model_cfg": model_cfg, "model_weight": model.state_dict()}


def _random_data2vec(size: RandomModelSize) -> dict[str, Any]:
    task_cfg = asdict(AudioPretrainingConfig())
    model_cfg = asdict(Data2VecAudioConfig(**size.model_overrides()))
    model = Data2VecAudioModel(Data2VecAudioConfig(**model_cfg))
    model.remove_pretraining_modules()
    weights = model.state_dict()
    # the EMA teacher of the transformer layers, as fairseq stores it (pos_conv excluded)
    weights["_ema"] = {k: v.clone() for k, v in model.encoder.state_dict().items() if not k.startswith("pos_conv")}
    return {"task_cfg": task_cfg, "model_cfg": model_cfg, "model_weight": weights}


def _random_wavlm(size: RandomModelSize) -> dict[str, Any]:
    cfg = WavLMConfig().__dict__
    cfg.update(size.model_overrides())
    cfg.update(relative_position_embedding=True, num_buckets=32, max_distance=128, gru_rel_pos=True)
    model = WavLM(WavLMConfig(cfg))
    return {"cfg": cfg, "model": model.state_dict()}


_RANDOM_BUILDERS = {
    "hubert": _random_hubert,
    "wav2vec2": _random_wav2vec2,
    "data2vec": _random_data2vec,
    "wavlm": _random_wavlm,
}


def random_checkpoint(family: str, seed: int = 0, size: RandomModelSize | None = None) -> dict[str, Any]:
    """A random-init checkpoint dict of ``family`` in exactly the format :func:`load_checkpoint` reads.

    Weights depend only on ``seed`` and ``size``; the global torch RNG is left untouched.
    """
    if family not in _RANDOM_BUILDERS:
        raise ValueError(f"unknown s3prl upstream family {family!r}; use one of {S3PRL_NAMES}")
    size = size or RandomModelSize()
    if size.dim % size.heads or size.dim % size.conv_pos_groups:
        raise ValueError(
            f"dim {size.dim} must be divisible by heads {size.heads} and conv_pos_groups {size.conv_pos_groups}"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        state = _RANDOM_BUILDERS[family](size)
    return state


# ---------------------------------------------------------------------------------------------
# Writers by upstream name (asdlib.registry.RANDOM_UPSTREAMS): what python -m asdlib.bin.make_random_upstream
# runs. Each takes (path, seed, size) with its own size dataclass; the defaults are the mini's sizes.


@dataclass
class BeatsRandomSize:
    """A random-init BEATs: the release's 16x16 patches and 128 mel bins, smaller widths and depth."""

    layers: int = 2
    dim: int = 64
    ffn_dim: int = 128
    heads: int = 4
    patch_dim: int = 32  # patch-embedding channels (512 in the release)
    conv_pos: int = 16  # positional convolution kernel (128 in the release)
    conv_pos_groups: int = 4


@RANDOM_UPSTREAMS.register("beats", BeatsRandomSize)
def write_random_beats(path: Path, seed: int, size: BeatsRandomSize) -> dict[str, Any]:
    return save_random_beats(
        path,
        seed=seed,
        encoder_layers=size.layers,
        encoder_embed_dim=size.dim,
        encoder_ffn_embed_dim=size.ffn_dim,
        encoder_attention_heads=size.heads,
        embed_dim=size.patch_dim,
        conv_pos=size.conv_pos,
        conv_pos_groups=size.conv_pos_groups,
        relative_position_embedding=True,
        gru_rel_pos=True,
        deep_norm=True,
        num_buckets=320,
        max_distance=800,
        dropout=0.0,
        attention_dropout=0.0,
        layer_wise_gradient_decay_ratio=0.6,
    )


@dataclass
class EatRandomSize:
    """A random-init EAT in the Hugging Face (a directory) or fairseq (a ``.pt`` file) release format."""

    layers: int = 2
    dim: int = 64
    ffn_dim: int = 128
    heads: int = 4
    max_time_patches: int = 128  # positional table length in 16-frame steps
    format: Literal["hf", "fairseq"] = "hf"


@RANDOM_UPSTREAMS.register("eat", EatRandomSize)
def write_random_eat(path: Path, seed: int, size: EatRandomSize) -> dict[str, Any]:
    return save_random_eat(
        path,
        size.format,
        seed=seed,
        embed_dim=size.dim,
        depth=size.layers,
        num_heads=size.heads,
        mlp_ratio=size.ffn_dim / size.dim,
        max_length=size.max_time_patches,
    )


def _s3prl_writer(family: str) -> Any:
    def write(path: Path, seed: int, size: RandomModelSize) -> dict[str, Any]:
        state = random_checkpoint(family, seed=seed, size=size)
        with atomic_write(path, "wb") as f:
            torch.save(state, f)
        return asdict(size)

    write.__qualname__ = f"write_random_{family}"
    return write


for _family in S3PRL_NAMES:
    RANDOM_UPSTREAMS.register(_family, RandomModelSize)(_s3prl_writer(_family))
