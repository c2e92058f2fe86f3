"""Framing and power spectra from gathers and matrix products, for the front ends while they are
exported to ONNX (asdlib-export): the TorchScript exporter maps neither ``torch.fft.rfft`` nor an
``stft`` with complex output, so :func:`asdlib.models.fbank.batch_fbank` and
:class:`asdlib.models.logmel.LogMelMean` switch to these under ``torch.onnx.is_in_onnx_export()``.
The DFT and the mel products run in float64: a float32 product loses the quiet bins next to loud
ones, which the log then magnifies, and onnxruntime's int8 quantisation (asdlib-export --int8) leaves
float64 products alone, so the front end stays exact in an int8 model. The tables are built from the
(constant) frame length, so the exporter folds them into the graph. tests/bin/test_export.py
checks both front ends against their torch originals."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def frame(x: Tensor, window: int, hop: int) -> Tensor:
    """(B, T) -> (B, frames, window): every full window at ``hop`` steps (``(T - window) // hop + 1``)."""
    count = (x.shape[1] - window) // hop + 1
    starts = torch.arange(count, device=x.device) * hop
    return x[:, starts[:, None] + torch.arange(window, device=x.device)[None, :]]


def power_spectrum(frames: Tensor, n_fft: int) -> Tensor:
    """``|rfft(frames, n_fft)|^2`` over the last axis (zero-padded to ``n_fft``) in float64: two
    products with the cosine and sine tables, ``n_fft // 2 + 1`` bins."""
    n, bins = int(frames.shape[-1]), n_fft // 2 + 1
    angle = 2 * math.pi * torch.outer(torch.arange(n, dtype=torch.float64), torch.arange(bins, dtype=torch.float64))
    angle = angle / n_fft
    x = frames.double()
    re, im = x @ torch.cos(angle), x @ torch.sin(angle)
    return re * re + im * im
