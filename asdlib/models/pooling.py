"""Layer aggregation and utterance pooling (docs/method.md §1.5)."""

from __future__ import annotations

import torch
from torch import nn


def frame_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, T) boolean mask, True on valid frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class WeightedLayerSum(nn.Module):
    """s3prl-featurizer style learnable softmax-weighted sum of hidden layers.

    Initialised uniform so no layer is preferred before training; each layer is layer-normed
    first because hidden-state scales differ a lot between layers of pre-trained models.
    """

    def __init__(self, num_layers: int, layers: list[int] | None = None) -> None:
        super().__init__()
        self.layers = list(range(num_layers)) if not layers else list(layers)
        bad = [i for i in self.layers if not -num_layers <= i < num_layers]
        if bad:
            raise ValueError(f"layer indices {bad} out of range for an upstream with {num_layers} hidden states")
        self.weights = nn.Parameter(torch.zeros(len(self.layers)))

    def forward(self, hidden_states: list[torch.Tensor]) -> torch.Tensor:
        # int(): the width is a constant of the model, which an ONNX export needs it to be
        stacked = torch.stack(
            [nn.functional.layer_norm(hidden_states[i], (int(hidden_states[i].shape[-1]),)) for i in self.layers]
        )
        w = torch.softmax(self.weights, dim=0).view(-1, *([1] * (stacked.dim() - 1)))
        return (w * stacked).sum(0)


class AttentiveStatsPooling(nn.Module):
    """Attentive statistics pooling (Okabe et al. 2018): attention-weighted mean and std over valid frames."""

    def __init__(self, dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.attention = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        self.out_dim = 2 * dim

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = frame_mask(lengths, x.shape[1])
        logits = self.attention(x).squeeze(-1).masked_fill(~mask, float("-inf"))
        w = torch.softmax(logits, dim=1).unsqueeze(-1)
        mean = (w * x).sum(1)
        var = (w * x.pow(2)).sum(1) - mean.pow(2)
        return torch.cat([mean, var.clamp(min=1e-6).sqrt()], dim=-1)


class ClsPooling(nn.Module):
    """The first (CLS) token as the utterance representation, as EAT's paper uses it; for upstreams
    with a prefix token only (``num_prefix_tokens`` >= 1)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.out_dim = dim

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return x[:, 0]
