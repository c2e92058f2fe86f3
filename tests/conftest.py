"""Shared test fixtures: tiny wav files and Utt records."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asdlib.data.datadir import Utt, make_utt_id


@pytest.fixture
def write_wav(tmp_path: Path) -> Callable[..., Path]:
    """``write_wav(name, samples=None, sr=16000, subtype="PCM_16", n=8000, seed=0)`` -> path under tmp_path.

    Without ``samples`` a seeded noise clip of ``n`` samples is written (never all-zero).
    """

    def make(name: str, samples: np.ndarray | None = None, sr: int = 16000, subtype: str = "PCM_16",
             n: int = 8000, seed: int = 0) -> Path:
        if samples is None:
            samples = np.random.default_rng(seed).uniform(-0.5, 0.5, n).astype(np.float32)
        path = tmp_path / "wav" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), samples, sr, subtype=subtype)
        return path

    return make


def make_utt(machine: str, section: str, stem: str, domain: str = "source", label: str = "normal",
             attr: str = "noAttribute", path: str | Path | None = None) -> Utt:
    """An Utt with the contract's id scheme; ``path`` defaults to a fake absolute path."""
    return Utt(make_utt_id(machine, section, stem), str(path or f"/corpus/{machine}/{stem}.wav"),
               machine, section, domain, label, attr)


@pytest.fixture(name="make_utt")
def make_utt_fixture() -> Callable[..., Utt]:
    return make_utt


@pytest.fixture(scope="session")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Tiny random-init s3prl checkpoints (default RandomModelSize), one per upstream family."""
    import torch

    from asdlib.models.s3prl_upstream import RandomModelSize, random_checkpoint

    root = tmp_path_factory.mktemp("upstreams")
    paths = {}
    for family in ("hubert", "wav2vec2", "data2vec", "wavlm"):
        paths[family] = str(root / f"{family}.pt")
        torch.save(random_checkpoint(family, seed=0, size=RandomModelSize()), paths[family])
    return paths
