"""The VQ k-means refresh runs on a clean eval-mode pass over the training clips (docs/method.md §1.7)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from asdlib.config import load_train_config
from asdlib.data.dataset import ClipDataset, collate
from asdlib.train.objectives import VQObjective
from asdlib.train.trainer import Trainer

CONFIG = """\
embedder: ssl
seed: 1
upstream: {name: hubert, path: UPSTREAM}
finetune: {mode: lora, rank: 2, dropout: 0.2}
mga: {enabled: true, bottleneck: 4}
vq: {enabled: true, num_codes: 2, kmeans_iters: 3}
model: {pooling_hidden: 8, embed_dim: 16}
specaug: {enabled: true}
optim: {epochs: 1, batch_size: 4, warmup_steps: 1, amp: false}
data: {crop_seconds: 0.5, train_sets: [dev_train]}
"""


@pytest.fixture(scope="module")
def trainer(tiny_work: Path) -> Trainer:
    (tiny_work / "vq_refresh.yaml").write_text(CONFIG.replace("UPSTREAM", str(tiny_work / "hubert.pt")))
    return Trainer(
        load_train_config(tiny_work / "vq_refresh.yaml"), tiny_work / "exp" / "vq_refresh", tiny_work / "data"
    )


def test_refresh_uses_a_clean_eval_mode_pass(trainer: Trainer, monkeypatch: pytest.MonkeyPatch) -> None:
    vq = trainer.objectives["vq"]
    assert isinstance(vq, VQObjective)
    trainer.train_epoch()
    trainer.epoch = 1
    trainer.model.train()  # as after an epoch: dropout and SpecAugment would act in this mode
    seen: dict[str, torch.Tensor] = {}
    init_from = vq.clusterer.init_from

    def spy(emb: torch.Tensor, keys: torch.Tensor, generator: torch.Generator | None = None) -> None:
        seen["emb"], seen["keys"] = emb.clone(), keys.clone()
        init_from(emb, keys, generator=generator)

    monkeypatch.setattr(vq.clusterer, "init_from", spy)
    vq.on_epoch_end(trainer)
    assert trainer.model.training  # the pass restores the mode
    assert vq.clusterer.initialized

    # every clip with a codebook exactly once, in index order, whole (1 s, not the 0.5 s crop)
    clips = torch.nonzero(vq.keys.cpu() >= 0).flatten()
    assert len(clips) > 0 and torch.equal(seen["keys"], vq.keys.cpu()[clips])
    data = trainer.dataset
    clean = ClipDataset(data.utts, data.sample_rate, data.labels, data.machines, min_samples=data.min_samples)
    batch = collate([clean[int(i)] for i in clips])
    assert int(batch.lengths.min()) == 16000
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.model(batch.wavs, batch.lengths, batch.machines)
    trainer.model.train()
    with torch.no_grad():
        noisy = trainer.model(batch.wavs, batch.lengths, batch.machines)
    torch.testing.assert_close(seen["emb"], expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(noisy, expected, atol=1e-4)  # train mode would have given other embeddings


def test_resume_with_refreshed_codebooks_is_exact(trainer: Trainer, tmp_path: Path) -> None:
    """Refresh happens before the epoch's checkpoint, so a run cut after epoch 1 and resumed ends
    with the same weights, head and codebooks as an uninterrupted one."""
    import shutil

    cfg = trainer.cfg
    cfg.optim.epochs = 2
    data_root = trainer.exp_dir.parent.parent / "data"
    Trainer(cfg, tmp_path / "full", data_root).run(resume=False)
    shutil.copytree(tmp_path / "full", tmp_path / "cut")
    (tmp_path / "cut" / "checkpoints" / "epoch_2.pt").unlink()
    (tmp_path / "cut" / "model.pt").unlink()
    (tmp_path / "cut" / "checkpoints" / "latest").write_text("epoch_1.pt\n")
    Trainer(cfg, tmp_path / "cut", data_root).run(resume=True)
    a = torch.load(tmp_path / "full" / "checkpoints" / "epoch_2.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "checkpoints" / "epoch_2.pt", weights_only=True)
    assert any("codes" in k for k in a["vq"]) and bool(a["vq"][next(k for k in a["vq"] if k.endswith("initialized"))])
    for part in ("model", "head", "vq"):
        assert a[part].keys() == b[part].keys() and all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
