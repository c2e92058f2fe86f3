"""SpecAugment-style time and feature masking on an input feature sequence (docs/method.md §1.8).

Applied by the upstream to fbank frames (patch models) or to the CNN feature sequence
(waveform models), in training mode only. Masks are drawn from torch's global RNG, which the
trainer seeds per epoch, so runs are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


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
