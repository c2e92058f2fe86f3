"""Machine-aware Group Adapter: group isolation, zero-init identity, batched groups, unseen fallback."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from asdlib.config import MGAConfig, UpstreamConfig
from asdlib.models.mga import MachineContext, MachineGroupAdapter, build_group_adapters
from asdlib.models.upstream import build_upstream
from asdlib.synth.checkpoints import random_checkpoint

DIM, RANK = 16, 4


def _adapter(groups: int, shared: bool = False, seed: int = 0) -> tuple[MachineGroupAdapter, MachineContext]:
    torch.manual_seed(seed)
    ctx = MachineContext(groups)
    ctx.has_shared = shared
    return MachineGroupAdapter(DIM, ctx, RANK, shared=shared), ctx


def _randomise_up(adapter: MachineGroupAdapter, seed: int = 1) -> None:
    """Make W_up non-zero (it starts at zero) so that every path carries signal."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (adapter.up_weight, adapter.up_bias):
            p.copy_(torch.randn(p.shape, generator=g))
        if adapter.shared is not None:
            for p in adapter.shared.up.parameters():
                p.copy_(torch.randn(p.shape, generator=g))


def _h(batch: int, frames: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, frames, DIM, generator=torch.Generator().manual_seed(seed))


def test_gradient_reaches_only_own_group():
    adapter, ctx = _adapter(4)
    machines = torch.tensor([0, 2, 1, 2])
    h = _h(4)
    # at zero init W_up already gets a gradient, W_down of group 2 not yet (W_up blocks it)
    with ctx.bind(machines):
        adapter(h)[1].pow(2).sum().backward()
    assert adapter.up_weight.grad[2].abs().sum() > 0
    assert adapter.down_weight.grad.abs().sum() == 0
    adapter.zero_grad(set_to_none=True)
    _randomise_up(adapter)
    with ctx.bind(machines):
        adapter(h)[1].pow(2).sum().backward()  # loss on clip 1 only (machine 2)
    for name in ("down_weight", "down_bias", "up_weight", "up_bias"):
        grad = getattr(adapter, name).grad
        assert grad[2].abs().sum() > 0, name
        for other in (0, 1, 3):
            assert torch.equal(grad[other], torch.zeros_like(grad[other])), (name, other)


def test_zero_init_is_identity_and_trained_groups_differ():
    adapter, ctx = _adapter(3, shared=True)
    h = _h(3)
    with ctx.bind(torch.tensor([0, 1, -1])):
        assert torch.equal(adapter(h), h)
    _randomise_up(adapter)
    with ctx.bind(torch.tensor([0, 1, 2])):
        out = adapter(h[[0, 0, 0]])
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[1], out[2])


def _aten_ops(adapter: MachineGroupAdapter, ctx: MachineContext, machines: torch.Tensor) -> list[str]:
    class Record(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    h = _h(len(machines))
    with ctx.bind(machines), Record() as rec:
        adapter(h)
    return rec.ops


def test_groups_are_one_batched_tensor_not_a_python_loop():
    """Same parameter layout and the same aten op sequence for 3 or 50 groups and 1 or 8 distinct
    machines per batch: the groups are gathered from one (G, ...) tensor, never looped over."""
    small, small_ctx = _adapter(3)
    large, large_ctx = _adapter(50)
    assert [n for n, _ in small.named_parameters()] == [n for n, _ in large.named_parameters()]
    assert len(list(small.modules())) == len(list(large.modules()))
    assert large.down_weight.shape == (50, DIM, RANK) and large.up_weight.shape == (50, RANK, DIM)
    ops_small = _aten_ops(small, small_ctx, torch.tensor([1] * 8))
    ops_large = _aten_ops(large, large_ctx, torch.arange(0, 48, 6))
    assert ops_small == ops_large
    assert sum("index" in op for op in ops_large) == 4  # one gather per group tensor
    assert sum("bmm" in op for op in ops_large) == 2


@pytest.mark.parametrize("shared", [True, False])
def test_unseen_machine_fallback_is_reported(shared, caplog):
    adapter, ctx = _adapter(3, shared=shared)
    _randomise_up(adapter)
    h = _h(3)
    with caplog.at_level(logging.WARNING, logger="asdlib.models.mga"):
        for _ in range(2):
            with ctx.bind(torch.tensor([-1, 0, -1])):
                out = adapter(h)
    warnings = [r for r in caplog.records if "not seen in training" in r.getMessage()]
    assert len(warnings) == 1
    assert ("shared adapter only" if shared else "identity") in warnings[0].getMessage()
    assert ctx.fallback_clips == 4
    expected_unseen = h[[0, 2]] + adapter.shared(adapter.norm(h[[0, 2]])) if shared else h[[0, 2]]
    torch.testing.assert_close(out[[0, 2]], expected_unseen, rtol=0, atol=0)
    assert not torch.allclose(out[1], h[1])
    # unseen clips send no gradient into any group
    adapter.zero_grad(set_to_none=True)
    with ctx.bind(torch.tensor([-1, 0, -1])):
        adapter(h)[[0, 2]].sum().backward()
    assert adapter.up_weight.grad is None or adapter.up_weight.grad.abs().sum() == 0


def test_bad_indices_and_unbound_context():
    adapter, ctx = _adapter(3)
    with pytest.raises(RuntimeError, match="bind"):
        adapter(_h(2))
    with pytest.raises(ValueError, match=r"\[-1, 2\]"):
        with ctx.bind(torch.tensor([0, 3])):
            pass
    with ctx.bind(torch.tensor([0, 1, 2])), pytest.raises(ValueError, match="3 machine indices"):
        adapter(_h(2))


def test_parameter_counts():
    g, d, r = 7, DIM, RANK
    adapter, _ = _adapter(g)
    group = g * (d * r + r + r * d + d)
    assert sum(p.numel() for p in adapter.parameters()) == group + 2 * d
    shared, _ = _adapter(g, shared=True)
    assert sum(p.numel() for p in shared.parameters()) == group + 2 * d + (d * r + r + r * d + d)


@pytest.fixture(scope="module")
def hubert(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("mga") / "hubert.pt"
    torch.save(random_checkpoint("hubert", seed=0), path)
    return str(path)


def test_upstream_with_zero_init_adapters_equals_backbone(hubert):
    upstream = build_upstream(UpstreamConfig(name="hubert", path=hubert)).eval()
    wavs = torch.randn(3, 8000, generator=torch.Generator().manual_seed(0)) * 0.1
    lengths = torch.tensor([8000, 8000, 6000])
    with torch.no_grad():
        reference, _ = upstream(wavs, lengths)
    ctx = MachineContext(4)
    adapters = build_group_adapters(upstream, MGAConfig(enabled=True, bottleneck=8, shared=True, layers=[1]), 4, ctx)
    assert isinstance(adapters[0], nn.Identity) and isinstance(adapters[1], MachineGroupAdapter)
    upstream.insert_block_adapters(adapters)
    machines = torch.tensor([3, 0, -1])
    with torch.no_grad(), ctx.bind(machines):
        adapted, _ = upstream(wavs, lengths)
    assert all(torch.equal(a, b) for a, b in zip(adapted, reference))
    _randomise_up(adapters[1])
    with torch.no_grad(), ctx.bind(machines):
        changed, _ = upstream(wavs, lengths)
    # the adapter acts on block 1's output = the last hidden state; earlier ones are untouched
    assert all(torch.equal(a, b) for a, b in zip(changed[:-1], reference[:-1]))
    assert not torch.allclose(changed[-1], reference[-1])
    assert not any(n.startswith("block_adapters.0.") for n, _ in upstream.named_parameters())


def test_builder_rejects_bad_layers(hubert):
    upstream = build_upstream(UpstreamConfig(name="hubert", path=hubert))
    with pytest.raises(ValueError, match="out of range"):
        build_group_adapters(upstream, MGAConfig(layers=[5]), 2, MachineContext(2))
    with pytest.raises(ValueError, match="groups"):
        build_group_adapters(upstream, MGAConfig(), 3, MachineContext(2))
