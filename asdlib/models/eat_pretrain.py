"""EAT's self-supervised pre-training objective (Chen et al., arXiv 2401.03497) on our EAT model.

Why here: asdlib could only fine-tune released upstreams; this module makes one. It follows the
release's ``pretraining_AS2M.yaml`` (data2vec 2.0 multi-mask with an utterance-level loss):

* the teacher is an EMA copy of the whole student (patch embedding, CLS token, blocks), its decay
  annealed linearly from ``ema_decay`` to ``ema_end_decay`` over ``ema_anneal_end_step`` updates;
* the teacher sees every patch; its targets are the FFN outputs of the top ``average_top_k_layers``
  blocks (CLS dropped), each instance-normalised over the patches, averaged, then layer-normalised;
* the student sees ``clone_batch`` copies of each clip, each with its own inverse block mask
  (:func:`inverse_block_mask`), encodes only the kept patches (plus CLS), and a light 2-D CNN
  decoder fills the masked positions (seeded with small noise) back in;
* frame loss: squared error of the decoder's output against the targets, averaged over the masked
  patches; utterance loss: squared error of the student's CLS output against the mean of the
  targets over patches, *summed* over the batch's masked copies (weight ``cls_loss``), as the
  release's gradient is (fairseq scales the CLS term by the masked-patch count, then divides every
  term by it). Both are summed over channels and scaled by 1/sqrt(D) (data2vec).

Deviations from the release are listed in docs/method.md §1.11.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asdlib.config import PretrainConfig
from asdlib.models.eat import EATUpstream


def inverse_block_mask(
    batch: int, time: int, freq: int, cfg: PretrainConfig, generator: torch.Generator | None = None
) -> Tensor:
    """(batch, time*freq) bool, True = masked, time-major like the patch tokens.

    Inverse block masking (data2vec 2.0): square blocks of ``mask_length`` patches around random
    centres are *kept*, everything else is masked; each row is then cut or filled at random to
    exactly ``int(N * (1 - mask_prob))`` kept patches, so every copy encodes the same number of
    tokens (one dense batch)."""
    n = time * freq
    keep_prob = 1.0 - cfg.mask_prob
    n_keep = max(1, int(n * keep_prob))
    n_centres = max(1, int(n * (keep_prob + cfg.mask_prob_adjust) / cfg.mask_length**2))
    keep = torch.zeros(batch, time, freq)
    centres = torch.randint(0, n, (batch, n_centres), generator=generator)
    keep.view(batch, n).scatter_(1, centres, 1.0)
    b, t, f = keep.nonzero(as_tuple=True)
    offset = cfg.mask_length // 2
    for dt in range(cfg.mask_length):
        for df in range(cfg.mask_length):
            keep[b, (t + dt - offset).clamp(0, time - 1), (f + df - offset).clamp(0, freq - 1)] = 1.0
    # exact count: kept patches first in random order, then the rest in random order
    order = (keep.view(batch, n) * 2 + torch.rand(batch, n, generator=generator)).argsort(dim=1, descending=True)
    mask = torch.ones(batch, n, dtype=torch.bool)
    mask.scatter_(1, order[:, :n_keep], False)
    return mask


def ema_decay_at(step: int, cfg: PretrainConfig) -> float:
    """The teacher's decay at update ``step``: linear from ``ema_decay`` to ``ema_end_decay``, then flat."""
    if step >= cfg.ema_anneal_end_step:
        return cfg.ema_end_decay
    return cfg.ema_end_decay - (cfg.ema_end_decay - cfg.ema_decay) * (1.0 - step / cfg.ema_anneal_end_step)


@torch.no_grad()
def ema_update(teacher: dict[str, Tensor], student: dict[str, Tensor], decay: float) -> None:
    """``teacher = decay * teacher + (1 - decay) * student`` for every floating tensor, by name;
    integer tensors are copied."""
    for name, s in student.items():
        t = teacher[name]
        if t.is_floating_point():
            t.mul_(decay).add_(s.detach().to(t.dtype), alpha=1.0 - decay)
        else:
            t.copy_(s)


def make_targets(layers: list[Tensor]) -> Tensor:
    """Teacher layer outputs, each (B, N, D) -> the regression target (B, N, D): every layer
    instance-normalised over the patches, the layers averaged, the average layer-normalised."""
    y = torch.stack([F.instance_norm(x.float().transpose(1, 2)).transpose(1, 2) for x in layers]).mean(0)
    return F.layer_norm(y, y.shape[-1:])


def regression_loss(pred: Tensor, target: Tensor) -> Tensor:
    """data2vec's loss per row: squared error summed over channels, scaled by 1/sqrt(D); mean over rows."""
    return ((pred.float() - target) ** 2).sum(-1).mean() / math.sqrt(pred.shape[-1])


class CNNDecoder(nn.Module):
    """data2vec 2.0's 2-D decoder: residual blocks of grouped conv -> LayerNorm (no affine) -> GELU
    over the (time, freq) patch grid, then a linear projection back to the model width."""

    def __init__(self, embed_dim: int, cfg: PretrainConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        for i in range(cfg.decoder_layers):
            conv = nn.Conv2d(
                embed_dim if i == 0 else cfg.decoder_dim,
                cfg.decoder_dim,
                cfg.decoder_kernel,
                padding=cfg.decoder_kernel // 2,
                groups=cfg.decoder_groups,
            )
            self.blocks.append(conv)
        self.proj = nn.Linear(cfg.decoder_dim, embed_dim)

    def forward(self, x: Tensor, time: int, freq: int) -> Tensor:
        """(B, time*freq, D) tokens -> (B, time*freq, D) predictions."""
        x = x.transpose(1, 2).reshape(x.shape[0], -1, time, freq)
        for conv in self.blocks:
            y = conv(x)
            y = F.gelu(F.layer_norm(y.permute(0, 2, 3, 1), y.shape[1:2]).permute(0, 3, 1, 2))
            x = y + x if y.shape == x.shape else y
        return self.proj(x.flatten(2).transpose(1, 2))


class EATPretrainer(nn.Module):
    """Student (an :class:`EATUpstream`, exported as the upstream), its CNN decoder and the EMA teacher.

    The trainer's model when ``pretrain.enabled``: ``forward`` takes the waveform batch like the ASD
    model and returns the loss terms :data:`TERMS` as one vector, so the loss is computed inside the
    (DDP-wrapped) forward pass; call :meth:`update_teacher` after each optimiser step. The teacher
    and the update count are buffers, so checkpoints carry them and a resumed run continues the
    same schedule."""

    TERMS = ("frame", "utterance")

    def __init__(self, student: EATUpstream, cfg: PretrainConfig) -> None:
        super().__init__()
        depth, dim = student.model.cfg.depth, student.model.cfg.embed_dim
        if student.target_frames is None:
            raise ValueError(
                "pretrain: upstream.conf.target_frames must be a number (pre-training uses fixed-length clips)"
            )
        if cfg.average_top_k_layers > depth:
            raise ValueError(
                f"pretrain.average_top_k_layers {cfg.average_top_k_layers} exceeds the model's {depth} blocks"
            )
        if dim % cfg.decoder_groups:
            raise ValueError(f"pretrain.decoder_groups {cfg.decoder_groups} does not divide the model width {dim}")
        self.cfg = cfg
        self.student = student
        self.decoder = CNNDecoder(dim, cfg)
        self.teacher = copy.deepcopy(student.model).requires_grad_(False)
        for name, param in list(self.teacher.named_parameters()):  # buffers: saved, never optimised
            module_name, _, leaf = name.rpartition(".")
            module = self.teacher.get_submodule(module_name)
            delattr(module, leaf)
            module.register_buffer(leaf, param.detach().clone())
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def train(self, mode: bool = True) -> EATPretrainer:
        super().train(mode)
        self.teacher.eval()  # the teacher never drops anything
        return self

    @torch.no_grad()
    def targets(self, fbank: Tensor) -> Tensor:
        """The teacher's frame-level targets (B, N, D) from the unmasked input."""
        _, ffn = self.teacher.encode(self.teacher.patch_tokens(fbank))
        return make_targets([x[:, 1:] for x in ffn[-self.cfg.average_top_k_layers :]])

    def losses(self, fbank: Tensor) -> dict[str, Tensor]:
        """(B, frames, mel) normalised fbank, frames a multiple of the patch size -> the named terms."""
        cfg, model = self.cfg, self.student.model
        time, freq = fbank.shape[1] // model.cfg.patch_size, model.cfg.freq_patches
        y = self.targets(fbank).repeat_interleave(cfg.clone_batch, 0)
        tokens = model.patch_tokens(fbank).repeat_interleave(cfg.clone_batch, 0)
        b, n, d = tokens.shape
        mask = inverse_block_mask(b, time, freq, cfg).to(tokens.device)
        kept = (~mask).nonzero()[:, 1].view(b, -1)  # same count per row, in patch order
        index = kept.unsqueeze(-1).expand(-1, -1, d)
        x = model.encode(tokens.gather(1, index))[0][-1]
        filled = (torch.randn(b, n, d, device=x.device) * cfg.mask_noise_std).to(x.dtype)
        pred = self.decoder(filled.scatter(1, index, x[:, 1:]), time, freq)
        return {
            "frame": regression_loss(pred[mask], y[mask]),
            # summed over the copies, not averaged: the release's weighting (see the module docstring)
            "utterance": cfg.cls_loss * b * regression_loss(x[:, 0], y.mean(1)),
        }

    def forward(self, wavs: Tensor, lengths: Tensor, machines: Tensor | None = None) -> Tensor:
        """The trainer's call: waveforms -> the loss terms in :data:`TERMS` order (machines unused)."""
        terms = self.losses(self.student.features(wavs, lengths)[0])
        return torch.stack([terms[name] for name in self.TERMS])

    @torch.no_grad()
    def update_teacher(self) -> float:
        """One EMA step of the teacher towards the student; returns the decay used."""
        decay = ema_decay_at(int(self.num_updates), self.cfg)
        ema_update(dict(self.teacher.named_buffers()), self.student.model.state_dict(), decay)
        self.num_updates += 1
        return decay
