"""VQ dynamic clustering and the dual-level contrastive loss."""

from __future__ import annotations

import io

import pytest
import torch
from sklearn.metrics import adjusted_rand_score, homogeneity_score
from torch.nn import functional as F

from asdlib.config import VQConfig
from asdlib.losses import (
    DualLevelLoss,
    VQClusterer,
    VQCodebook,
    code_infonce_loss,
    codebook_keys,
    commitment_loss,
    supcon_loss,
)

DIM = 32


def _clusters(n_per: int, centres: torch.Tensor, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(centres.size(0)).repeat_interleave(n_per)
    emb = centres[labels] + noise * torch.randn(labels.numel(), centres.size(1), generator=g)
    perm = torch.randperm(labels.numel(), generator=g)
    return emb[perm], labels[perm]


def _centres(k: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(k, DIM, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_ema_moves_codes_towards_their_embeddings():
    book = VQCodebook(2, DIM, decay=0.9, dead_threshold=0.0)  # B starves: no restart here
    centres = _centres(2, 0)
    emb, _ = _clusters(50, centres, 0.02, 1)
    book.init_kmeans(emb, generator=torch.Generator().manual_seed(0))
    code_a = int(book.assign(centres[:1]))
    code_b = 1 - code_a
    target = F.normalize(centres[0] + 0.4 * _centres(1, 7)[0], dim=-1)  # cluster A drifts, B gets nothing
    before_b = book.normalized_codes()[code_b].clone()
    sims = []
    for step in range(30):
        batch, _ = _clusters(8, target[None], 0.02, 100 + step)
        assert (book.update(batch) == code_a).all()
        sims.append(float(book.normalized_codes()[code_a] @ target))
    assert sims[-1] > 0.99 > float(centres[0] @ target)
    assert sims[0] < sims[4] < sims[-1]  # the code moves towards its batches (up to batch noise)
    torch.testing.assert_close(book.normalized_codes()[code_b], before_b)
    assert int(book.restarts) == 0


def test_losses_lower_for_clustered_than_random_data():
    centres = _centres(4, 0)
    clustered, labels = _clusters(8, centres, 0.05, 1)
    scattered = torch.randn(clustered.shape, generator=torch.Generator().manual_seed(2))
    assert supcon_loss(clustered, labels) < supcon_loss(scattered, labels) - 1.0
    codes = centres[None].expand(labels.numel(), -1, -1)
    # level 2 with the nearest code as positive, as VQClusterer.lookup assigns it
    near_good = (F.normalize(clustered, dim=-1) @ centres.T).argmax(1)
    near_bad = (F.normalize(scattered, dim=-1) @ centres.T).argmax(1)
    assert torch.equal(near_good, labels)
    assert code_infonce_loss(clustered, codes, near_good) < 0.1 * code_infonce_loss(scattered, codes, near_bad)
    assert commitment_loss(clustered, centres[near_good]) < 0.2 * commitment_loss(scattered, centres[near_bad])


def test_supcon_without_positives_is_zero_with_a_graph():
    emb = torch.randn(3, DIM, requires_grad=True)
    loss = supcon_loss(emb, torch.tensor([0, 1, 2]))
    assert loss.item() == 0.0 and loss.requires_grad
    # one anchor pair with positives: finite and differentiable
    supcon_loss(emb, torch.tensor([0, 0, 2])).backward()
    assert torch.isfinite(emb.grad).all() and emb.grad.abs().sum() > 0


def test_dual_level_loss_weights_and_clips_without_codebook():
    cfg = VQConfig(enabled=True, weight_level1=0.3, weight_level2=0.7, weight_commit=0.1)
    centres = _centres(3, 0)
    emb, hidden = _clusters(4, centres, 0.1, 1)
    emb.requires_grad_(True)
    codes = centres[None].expand(emb.size(0), -1, -1)
    assigned = hidden.clone()
    assigned[:4] = -1
    parts = DualLevelLoss(cfg)(emb, torch.zeros_like(hidden), codes, assigned)
    expected = 0.3 * parts.level1 + 0.7 * parts.level2 + 0.1 * parts.commit
    torch.testing.assert_close(parts.total, expected)
    torch.testing.assert_close(parts.level2, code_infonce_loss(emb[4:], codes[4:], assigned[4:], cfg.tau))
    parts.total.backward()
    assert emb.grad[4:].abs().sum() > 0
    none = DualLevelLoss(cfg)(emb, torch.arange(emb.size(0)), codes, torch.full_like(hidden, -1))
    assert none.level2.item() == 0.0 and none.commit.item() == 0.0 and none.level1.item() == 0.0


def _gearbox_set(seed: int) -> dict[str, torch.Tensor | list]:
    """DCASE2024-style: fan has attributes A/B, gearbox is noAttribute with 3 hidden clusters."""
    classes = ["fan-00-A", "fan-00-B", "gearbox-00-noAttribute"]
    centres = _centres(5, seed)
    fan, fan_attr = _clusters(30, centres[:2], 0.15, seed + 1)
    gear, hidden = _clusters(60, centres[2:], 0.15, seed + 2)
    emb = torch.cat([fan, gear])
    attrs = ["A" if int(a) == 0 else "B" for a in fan_attr] + ["noAttribute"] * gear.size(0)
    machines = [0] * fan.size(0) + [1] * gear.size(0)
    labels = [classes.index(f"fan-00-{a}") for a in attrs[: fan.size(0)]] + [2] * gear.size(0)
    return {
        "emb": emb,
        "attrs": attrs,
        "machines": machines,
        "labels": torch.tensor(labels),
        "hidden": hidden,
        "classes": classes,
    }


def _train(clusterer: VQClusterer, data: dict, keys: torch.Tensor, seed: int, steps: int = 40) -> None:
    g = torch.Generator().manual_seed(seed)
    clusterer.init_from(data["emb"], keys, generator=g)
    for _ in range(steps):
        rows = torch.randint(0, keys.numel(), (16,), generator=g)
        clusterer.update(data["emb"][rows], keys[rows], generator=g)


@pytest.mark.parametrize("per", ["class", "machine"])
def test_noattribute_machine_gets_pseudo_classes(per):
    data = _gearbox_set(0)
    keys = torch.tensor(codebook_keys(data["attrs"], data["machines"], data["labels"].tolist(), per))
    gear = keys >= 0
    assert gear.sum() == 180 and set(keys[gear].tolist()) == {2 if per == "class" else 1}
    cfg = VQConfig(enabled=True, num_codes=3)
    vq = VQClusterer(keys[gear].tolist(), DIM, cfg, num_static_classes=len(data["classes"]))
    assert vq.num_classes == 3 + 3
    assert (vq.assign(data["emb"], keys) == -1).all()  # nothing before init (warm-up)
    _train(vq, data, keys, seed=0)
    codes = vq.assign(data["emb"], keys)
    assert (codes[~gear] == -1).all() and (codes[gear] >= 0).all()
    assert adjusted_rand_score(data["hidden"].numpy(), codes[gear].numpy()) > 0.95
    labels = vq.pseudo_labels(data["labels"], keys, codes)
    assert torch.equal(labels[~gear], data["labels"][~gear])
    assert set(labels[gear].tolist()) == {3, 4, 5}


def test_sixteen_codes_split_but_do_not_mix_hidden_clusters():
    data = _gearbox_set(3)
    keys = torch.tensor(codebook_keys(data["attrs"], data["machines"], data["labels"].tolist(), "class"))
    vq = VQClusterer([2], DIM, VQConfig(enabled=True), num_static_classes=3)
    _train(vq, data, keys, seed=1)
    codes = vq.assign(data["emb"], keys)[keys >= 0]
    assert homogeneity_score(data["hidden"].numpy(), codes.numpy()) > 0.95
    assert codes.unique().numel() > 3
    dynamic = vq.dynamic_class(keys[keys >= 0], codes)
    assert (dynamic >= 3).all() and (dynamic < vq.num_classes).all()


def test_dead_codes_are_restarted_on_batch_embeddings():
    centres = _centres(4, 0)
    emb, hidden = _clusters(40, centres, 0.05, 1)
    book = VQCodebook(4, DIM, decay=0.9, dead_threshold=0.1)
    book.init_kmeans(emb, generator=torch.Generator().manual_seed(0))
    starved = int(book.assign(centres[3:]))
    live = emb[hidden != 3]  # cluster 3 disappears: its code starves and dies
    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        book.update(live[torch.randint(0, live.size(0), (8,), generator=g)], generator=g)
        if int(book.restarts):
            break
    assert int(book.restarts) == 1
    code = book.normalized_codes()[starved]
    assert float((F.normalize(live, dim=-1) @ code).max()) > 0.999  # restarted on a batch embedding
    assert book.cluster_size[starved] > book.dead_threshold * book.cluster_size.mean()  # alive again


def test_state_dict_round_trip_and_refresh_keeps_code_identity():
    data = _gearbox_set(1)
    keys = torch.tensor(codebook_keys(data["attrs"], data["machines"], data["labels"].tolist(), "class"))
    cfg = VQConfig(enabled=True, num_codes=8)
    vq = VQClusterer([2], DIM, cfg, 3)
    _train(vq, data, keys, seed=0)
    buffer = io.BytesIO()
    torch.save(vq.state_dict(), buffer)
    buffer.seek(0)
    copy = VQClusterer([2], DIM, cfg, 3)
    assert not copy.initialized
    copy.load_state_dict(torch.load(buffer, weights_only=True))
    assert copy.initialized
    for a, b in zip(vq.lookup(data["emb"], keys), copy.lookup(data["emb"], keys)):
        assert torch.equal(a, b)
    before = vq.assign(data["emb"], keys)
    vq.init_from(data["emb"], keys, generator=torch.Generator().manual_seed(99))  # epoch-end refresh
    assert (vq.assign(data["emb"], keys) == before).float().mean() > 0.95


def test_seeded_runs_are_identical():
    data = _gearbox_set(2)
    keys = torch.tensor(codebook_keys(data["attrs"], data["machines"], data["labels"].tolist(), "class"))
    runs = []
    for seed in (5, 5, 6):
        vq = VQClusterer([2], DIM, VQConfig(enabled=True, dead_code_threshold=0.5), 3)
        _train(vq, data, keys, seed=seed)
        runs.append(vq.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert int(runs[0]["codebooks.2.restarts"]) > 0  # the restart path is covered by the check
    assert not torch.equal(runs[0]["codebooks.2.codes"], runs[2]["codebooks.2.codes"])


def test_config_and_key_errors():
    with pytest.raises(ValueError, match="decay"):
        VQConfig(decay=1.0)
    with pytest.raises(ValueError, match="warmup_epochs"):
        VQConfig(warmup_epochs=0)
    with pytest.raises(ValueError, match="codebook_per"):
        VQConfig(codebook_per="section")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="init_kmeans"):
        VQCodebook(4, DIM).update(torch.randn(2, DIM))
    vq = VQClusterer([], DIM, VQConfig(), 5)
    codes, assigned = vq.lookup(torch.randn(2, DIM), torch.tensor([0, -1]))
    assert codes.shape == (2, 16, DIM) and (assigned == -1).all() and vq.num_classes == 5


def test_default_config_keys_codebooks_by_machine():
    """The method's reading is the default: one codebook per machine type, in the dataclass and the recipes."""
    from pathlib import Path

    from asdlib.config import load_train_config

    assert VQConfig().codebook_per == "machine"
    # two sections of one machine type without attributes (static classes 3 and 4, machine 1): one codebook
    keys = codebook_keys(
        ["noAttribute", "noAttribute", "a", "noAttribute"], [1, 1, 0, 2], [3, 4, 0, 5], VQConfig().codebook_per
    )
    assert keys == [1, 1, -1, 2]
    repo = Path(__file__).resolve().parents[2]
    for config in sorted(repo.glob("egs/*/conf/train.yaml")):
        cfg = load_train_config(config, {"upstream.path": "x.pt"})
        assert cfg.vq.codebook_per == "machine", config
