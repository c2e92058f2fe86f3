"""Machine-aware Group Adapter (MGA, docs/method.md §1.4): one bottleneck adapter per machine type.

After the feed-forward sub-layer of each selected transformer block,
``h <- h + W_up[m] · GELU(W_down[m] · LN(h))`` (+ a shared adapter's output when ``shared``), where
``m`` is the clip's machine index. The G groups are single (G, ...) parameter tensors gathered by
machine index and applied with one batched matrix product (``torch.baddbmm``), so cost and code
path do not depend on G or on how many machines a batch holds. ``W_up`` starts at zero, so
training starts from the backbone.

Machine indices reach the adapters through a :class:`MachineContext` shared by all adapters of a
model: the ASD model binds the batch's indices around the upstream forward
(``with context.bind(machines): upstream(wavs, lengths)``), because the upstream's block hooks
call ``adapter(h)`` with the hidden state only. Index -1 marks a machine type not seen in training:
it gets the shared adapter alone (or passes through unchanged without one); this fallback is
logged once per model and counted in ``MachineContext.fallback_clips``.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from asdlib.config import MGAConfig
from asdlib.models.upstream import Upstream

log = logging.getLogger(__name__)


class MachineContext:
    """Carries the current batch's machine indices (B,) to every adapter of one model.

    A plain object (not a module): it holds no weights and is shared by reference, so
    ``copy.deepcopy`` of the model keeps one context for all copied adapters. Indices are checked
    and unseen clips counted once per forward pass here, not in every block (no per-block sync).
    """

    def __init__(self, num_groups: int) -> None:
        if num_groups < 1:
            raise ValueError(f"the Machine-aware Group Adapter needs at least one machine group, got {num_groups}")
        self.num_groups = num_groups
        #: clips of machine types not seen in training (index -1) seen so far (a run-time statistic)
        self.fallback_clips = 0
        self.has_shared = False  # set by build_group_adapters: what the fallback is, for the warning
        self._machines: Tensor | None = None
        self._warned = False

    @contextlib.contextmanager
    def bind(self, machines: Tensor) -> Iterator[None]:
        """Make ``machines`` (B,) long, -1 = unseen machine type, current for one forward pass."""
        if machines.dim() != 1:
            raise ValueError(f"machine indices must have shape (batch,), got {tuple(machines.shape)}")
        if self._machines is not None:
            raise RuntimeError("MachineContext.bind is already active: nested forward passes are not supported")
        values = machines.detach().cpu()
        if bool(((values < -1) | (values >= self.num_groups)).any()):
            raise ValueError(
                f"machine indices must be in [-1, {self.num_groups - 1}] (-1 = machine type not seen "
                f"in training), got {values.tolist()}; was the model built with the training machine list?"
            )
        unseen = int((values < 0).sum())
        if unseen:
            self.fallback_clips += unseen
            if not self._warned:
                self._warned = True
                log.warning(
                    "MGA: %d clip(s) of a machine type not seen in training (index -1) use %s; further "
                    "occurrences are only counted (MachineContext.fallback_clips)",
                    unseen,
                    "the shared adapter only" if self.has_shared else "no adapter (identity)",
                )
        self._machines = machines.long()
        try:
            yield
        finally:
            self._machines = None

    def current(self) -> Tensor:
        """The bound machine indices; a clear error when the caller forgot to bind them."""
        if self._machines is None:
            raise RuntimeError(
                "the Machine-aware Group Adapter needs the clips' machine indices: run the upstream "
                "inside `with machine_context.bind(machines):` (ASDModel.forward does this)"
            )
        return self._machines


class BottleneckAdapter(nn.Module):
    """The shared adapter: ``W_up · dropout(GELU(W_down · x))`` with ``W_up`` zero-initialised."""

    def __init__(self, dim: int, bottleneck: int, dropout: float) -> None:
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        self.dropout = nn.Dropout(dropout)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.up(self.dropout(F.gelu(self.down(x))))


class MachineGroupAdapter(nn.Module):
    """Residual bottleneck adapter with one weight group per machine type (see module docstring).

    Parameters: ``down_weight`` (G, D, r), ``down_bias`` (G, r), ``up_weight`` (G, r, D),
    ``up_bias`` (G, D), one LayerNorm shared by the groups and the shared adapter, and
    ``shared`` (a :class:`BottleneckAdapter`) when enabled. Machine indices come from ``context``.
    """

    def __init__(
        self, dim: int, context: MachineContext, bottleneck: int = 64, shared: bool = False, dropout: float = 0.0
    ) -> None:
        super().__init__()
        num_groups = context.num_groups
        self.context = context
        self.norm = nn.LayerNorm(dim)
        self.down_weight = nn.Parameter(torch.empty(num_groups, dim, bottleneck))
        self.down_bias = nn.Parameter(torch.zeros(num_groups, bottleneck))
        self.up_weight = nn.Parameter(torch.zeros(num_groups, bottleneck, dim))
        self.up_bias = nn.Parameter(torch.zeros(num_groups, dim))
        # each group initialised like nn.Linear(dim, bottleneck)'s weight: U(-1/sqrt(dim), 1/sqrt(dim))
        bound = 1.0 / math.sqrt(dim)
        nn.init.uniform_(self.down_weight, -bound, bound)
        self.dropout = nn.Dropout(dropout)
        self.shared = BottleneckAdapter(dim, bottleneck, dropout) if shared else None

    def forward(self, h: Tensor) -> Tensor:
        """``h`` (B, T, D) batch-first -> same shape, for the machines bound in the context."""
        machines = self.context.current().to(h.device)
        if machines.shape != h.shape[:1]:
            raise ValueError(f"{machines.numel()} machine indices bound for a batch of {h.size(0)} clips")
        seen = (machines >= 0).to(h.dtype)[:, None, None]
        index = machines.clamp(min=0)
        x = self.norm(h)
        z = torch.baddbmm(self.down_bias[index].unsqueeze(1), x, self.down_weight[index])
        z = self.dropout(F.gelu(z))
        # unseen clips (index -1): zero group contribution, and exactly zero gradient into group 0
        delta = torch.baddbmm(self.up_bias[index].unsqueeze(1), z, self.up_weight[index]) * seen
        if self.shared is not None:
            delta = delta + self.shared(x)
        return h + delta


def selected_blocks(num_blocks: int, layers: list[int] | None) -> list[int]:
    """Block indices that get an adapter; clear error for out-of-range ``mga.layers``."""
    if layers is None:
        return list(range(num_blocks))
    bad = [i for i in layers if not 0 <= i < num_blocks]
    if bad:
        raise ValueError(f"mga.layers {bad} out of range: the upstream has blocks 0..{num_blocks - 1}")
    return sorted(set(layers))


def build_group_adapters(
    upstream: Upstream, cfg: MGAConfig, num_machines: int, context: MachineContext
) -> list[nn.Module]:
    """One module per transformer block for ``upstream.insert_block_adapters``: a
    :class:`MachineGroupAdapter` on the blocks in ``cfg.layers``, ``nn.Identity`` elsewhere.

    All adapters read the machine indices from ``context`` (``MachineContext(num_machines)``).
    """
    if context.num_groups != num_machines:
        raise ValueError(f"MachineContext has {context.num_groups} groups but the model has {num_machines} machines")
    context.has_shared = cfg.shared
    num_blocks = len(upstream.blocks())
    chosen = set(selected_blocks(num_blocks, cfg.layers))
    adapters: list[nn.Module] = [
        MachineGroupAdapter(upstream.hidden_size, context, cfg.bottleneck, cfg.shared, cfg.dropout)
        if i in chosen
        else nn.Identity()
        for i in range(num_blocks)
    ]
    log.info(
        "MGA: %d machine groups, bottleneck %d, shared adapter %s, on blocks %s",
        num_machines,
        cfg.bottleneck,
        cfg.shared,
        sorted(chosen),
    )
    return adapters
