"""The s3prl shim: s3prl imports and runs with it, fails without it, and shadows nothing real."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest
import torch
import torchaudio

from asdlib.config import UpstreamConfig
from asdlib.models import s3prl_compat
from asdlib.models.s3prl_upstream import from_s3prl_expert
from asdlib.models.upstream import build_upstream
from asdlib.synth.checkpoints import random_checkpoint


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_s3prl_hub_import_fails_without_shim():
    proc = _run("import s3prl.hub")
    assert proc.returncode != 0
    assert "set_audio_backend" in proc.stderr or "sox_effects" in proc.stderr


def test_s3prl_hub_imports_with_shim():
    s3prl_compat.install()
    import s3prl.hub
    from s3prl.nn import S3PRLUpstream

    assert callable(s3prl.hub.hubert_local) and callable(S3PRLUpstream)


def test_install_shadows_no_real_api(monkeypatch):
    real_backend = object()
    real_sox = types.ModuleType("torchaudio.sox_effects")
    monkeypatch.setattr(torchaudio, "set_audio_backend", real_backend, raising=False)
    monkeypatch.setattr(torchaudio, "sox_effects", real_sox, raising=False)
    monkeypatch.setitem(sys.modules, "torchaudio.sox_effects", real_sox)
    public = {name: getattr(torchaudio, name) for name in dir(torchaudio) if not name.startswith("_")}
    s3prl_compat.install()
    s3prl_compat.install()
    assert torchaudio.set_audio_backend is real_backend
    assert sys.modules["torchaudio.sox_effects"] is real_sox
    assert all(getattr(torchaudio, name) is value for name, value in public.items())


def test_stand_ins_are_inert_or_fail_loudly():
    s3prl_compat.install()
    assert torchaudio.set_audio_backend("sox_io") is None
    with pytest.raises(RuntimeError, match="removed in torchaudio 2.9"):
        torchaudio.sox_effects.apply_effects_tensor(torch.zeros(1, 10), 16000, [])


@pytest.mark.parametrize("family", ["hubert", "wavlm"])
def test_s3prl_nn_upstream_runs_on_local_checkpoint_and_matches_ours(tmp_path, family):
    s3prl_compat.install()
    from s3prl.nn import S3PRLUpstream

    path = tmp_path / f"{family}.pt"
    torch.save(random_checkpoint(family, seed=1), path)
    theirs = S3PRLUpstream(f"{family}_local", path_or_url=str(path)).eval()
    ours = build_upstream(UpstreamConfig(name=family, path=str(path))).eval()
    wavs = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0)) * 0.1
    lengths = torch.tensor([16000, 16000])
    with torch.no_grad():
        their_hs, _ = theirs(wavs, lengths)
        our_hs, our_lens = ours(wavs, lengths)
    assert len(their_hs) == len(our_hs) == ours.num_layers
    frames = int(our_lens.max())
    for t, o in zip(their_hs, our_hs):
        torch.testing.assert_close(o[:, :frames], t[:, :frames], atol=1e-4, rtol=1e-4)


def test_hub_route_wraps_an_expert_without_its_hooks(tmp_path):
    s3prl_compat.install()
    from s3prl.upstream.hubert.hubconf import hubert_local

    path = tmp_path / "hubert.pt"
    torch.save(random_checkpoint("hubert", seed=2), path)
    expert = hubert_local(str(path))
    wrapped = from_s3prl_expert(expert).eval()
    direct = build_upstream(UpstreamConfig(name="hubert", path=str(path))).eval()
    wavs = torch.randn(1, 8000) * 0.1
    with torch.no_grad():
        a, _ = wrapped(wavs, torch.tensor([8000]))
        b, _ = direct(wavs, torch.tensor([8000]))
    assert expert.hooks == [] and expert._hook_hiddens == []
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)
