"""SpecAugment-style time and feature masking on an input feature sequence (docs/method.md §1.8).

Applied by the upstream to fbank frames (patch models) or to the CNN feature sequence
(waveform models), in training mode only. Masks are drawn from torch's global RNG, which the
trainer seeds per epoch, so runs are reproducible.
"""

from __future__ import annotations

import torch
from torch import nn

from asdlib.config import SpecAugConfig


class SpecAugment(nn.Module):
    """Zero out random time spans and feature bands of a (B, T, C) sequence."""

    def __init__(self, cfg: SpecAugConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if not self.training or not self.cfg.enabled:
            return x
        b, t, c = x.shape
        keep = torch.ones(b, t, c, dtype=torch.bool, device=x.device)
        steps = torch.arange(t, device=x.device)
        chans = torch.arange(c, device=x.device)
        for _ in range(self.cfg.time_masks):
            width = (torch.rand(b, device=x.device) * self.cfg.time_width * lengths).long()
            start = (torch.rand(b, device=x.device) * (lengths - width).clamp(min=1)).long()
            keep &= ~((steps[None] >= start[:, None]) & (steps[None] < (start + width)[:, None]))[:, :, None]
        for _ in range(self.cfg.freq_masks):
            width = torch.randint(0, self.cfg.freq_width + 1, (b,), device=x.device).clamp(max=c)
            start = (torch.rand(b, device=x.device) * (c - width + 1)).long()
            keep &= ~((chans[None] >= start[:, None]) & (chans[None] < (start + width)[:, None]))[:, None, :]
        return x * keep
