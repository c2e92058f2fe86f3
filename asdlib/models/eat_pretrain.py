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

Deviations are listed in docs/method.md (EAT pre-training).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asdlib.models.eat import EATModel


@dataclass
class EATPretrainConfig:
    """Settings of the EAT objective; the defaults are the release's AS-2M base pre-training."""

    mask_prob: float = 0.8  #: share of patches the student does not see
    mask_prob_adjust: float = 0.07  #: extra block centres, so the blocks cover enough before the exact cut
    mask_length: int = 5  #: side of a kept block, in patches
    clone_batch: int = 16  #: masked copies of each clip (multi-mask)
    mask_noise_std: float = 0.01  #: the decoder's input at masked positions
    average_top_k_layers: int = 12  #: teacher blocks averaged into the target
    ema_decay: float = 0.9998
    ema_end_decay: float = 0.99999
    ema_anneal_end_step: int = 100000
    cls_loss: float = 1.0  #: weight of the utterance-level loss
    decoder_dim: int = 768
    decoder_groups: int = 16
    decoder_kernel: int = 3
    decoder_layers: int = 6

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_prob < 1.0:
            raise ValueError(f"mask_prob must be in (0, 1), got {self.mask_prob}")
        if self.mask_length < 1 or self.clone_batch < 1 or self.average_top_k_layers < 1:
            raise ValueError("mask_length, clone_batch and average_top_k_layers must be at least 1")
        if not 0.0 <= self.ema_decay <= self.ema_end_decay <= 1.0:
            raise ValueError(f"need 0 <= ema_decay <= ema_end_decay <= 1, got {self.ema_decay}, {self.ema_end_decay}")
        if self.decoder_kernel % 2 == 0:
            raise ValueError(f"decoder_kernel must be odd (same-size convolution), got {self.decoder_kernel}")
        if self.decoder_dim % self.decoder_groups:
            raise ValueError(f"decoder_dim {self.decoder_dim} is not divisible by decoder_groups {self.decoder_groups}")


def inverse_block_mask(
    batch: int, time: int, freq: int, cfg: EATPretrainConfig, generator: torch.Generator | None = None
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


def ema_decay_at(step: int, cfg: EATPretrainConfig) -> float:
    """The teacher's decay at update ``step``: linear from ``ema_decay`` to ``ema_end_decay``, then flat."""
    if step >= cfg.ema_anneal_end_step:
        return cfg.ema_end_decay
    return cfg.ema_end_decay - (cfg.ema_end_decay - cfg.ema_decay) * (1.0 - step / cfg.ema_anneal_end_step)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """``teacher = decay * teacher + (1 - decay) * student`` for every parameter; buffers are copied."""
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(decay).add_(s.detach().to(t.dtype), alpha=1.0 - decay)
    for t, s in zip(teacher.buffers(), student.buffers(), strict=True):
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

    def __init__(self, embed_dim: int, cfg: EATPretrainConfig) -> None:
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
    """Student (an :class:`EATModel`, exported as the upstream), its CNN decoder and the EMA teacher.

    ``forward`` returns the named loss terms of one batch of normalised fbank; call
    :meth:`update_teacher` after each optimiser step. The teacher and the update count are part of
    the state dict, so a resumed run continues the same schedule."""

    def __init__(self, student: EATModel, cfg: EATPretrainConfig) -> None:
        super().__init__()
        if cfg.average_top_k_layers > student.cfg.depth:
            raise ValueError(
                f"average_top_k_layers {cfg.average_top_k_layers} exceeds the model's {student.cfg.depth} blocks"
            )
        if student.cfg.embed_dim % cfg.decoder_groups:
            raise ValueError(
                f"decoder_groups {cfg.decoder_groups} does not divide the model width {student.cfg.embed_dim}"
            )
        self.cfg = cfg
        self.student = student
        self.decoder = CNNDecoder(student.cfg.embed_dim, cfg)
        self.teacher = copy.deepcopy(student).requires_grad_(False)
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

    def forward(self, fbank: Tensor) -> dict[str, Tensor]:
        """(B, frames, mel) normalised fbank, frames a multiple of the patch size -> {"frame", "utterance"}."""
        cfg, model = self.cfg, self.student
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

    def update_teacher(self) -> float:
        """One EMA step of the teacher towards the student; returns the decay used."""
        decay = ema_decay_at(int(self.num_updates), self.cfg)
        ema_update(self.teacher, self.student, decay)
        self.num_updates += 1
        return decay
