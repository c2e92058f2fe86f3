"""The installed environment: exactly the lock, and a torch/torchaudio pair that loads together."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
STAMP = REPO / "tools" / "venv" / ".installed"
# the lock tools/venv was installed from (another torch build's: tools/requirements-<tag>.lock)
LOCK = REPO / "tools" / ((STAMP.read_text().strip() if STAMP.is_file() else "") or "requirements.lock")


def _norm(name: str) -> str:
    """PEP 503 normalised project name: pip freeze and the metadata spell names differently."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, str]:
    pins = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, ver = line.partition("==")
        assert sep and ver, f"{path}:{n}: not a 'name==version' pin: {line!r}"
        pins[_norm(name)] = ver
    return pins


def installed() -> dict[str, str]:
    """What is installed in the venv's site-packages, as pip freeze sees it; not everything importable
    (setuptools, once some test has imported it, puts its vendored packages' metadata on sys.path)."""
    paths = sorted({sysconfig.get_paths()[k] for k in ("purelib", "platlib")})
    return {
        _norm(d.metadata["Name"]): d.version
        for d in metadata.distributions(path=paths)
        if _norm(d.metadata["Name"]) != "asdlib"
    }


def lock_differences(lock: dict[str, str], env: dict[str, str]) -> list[str]:
    out = [f"{n}: locked {v}, installed {env[n]}" for n, v in sorted(lock.items()) if n in env and env[n] != v]
    out += [f"{n}: locked {v}, not installed" for n, v in sorted(lock.items()) if n not in env]
    out += [f"{n}: installed {v}, not in the lock" for n, v in sorted(env.items()) if n not in lock]
    return out


def test_lock_differences_names_every_kind():
    diffs = lock_differences({"torch": "2.11.0", "a": "1", "b-c": "2"}, {"torch": "2.11.1", "b-c": "2", "extra": "3"})
    assert diffs == [
        "torch: locked 2.11.0, installed 2.11.1",
        "a: locked 1, not installed",
        "extra: installed 3, not in the lock",
    ]


def test_venv_equals_lock():
    """`make -C tools` installs the lock exactly; anything else is drift (fix: make -C tools clean all)."""
    assert Path(sys.prefix).resolve() == (REPO / "tools" / "venv").resolve(), (
        f"tests must run in tools/venv, not {sys.prefix}"
    )
    diffs = lock_differences(read_lock(LOCK), installed())
    assert not diffs, f"tools/venv differs from tools/{LOCK.name}:\n" + "\n".join(diffs)


def test_torch_pair_is_the_locked_one():
    import torch
    import torchaudio

    lock = read_lock(LOCK)
    assert torch.__version__.split("+")[0] == lock["torch"].split("+")[0]
    assert torchaudio.__version__.split("+")[0] == lock["torchaudio"].split("+")[0]


def _envcheck(env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(REPO), **(env_extra or {})}
    if env_extra and "PYTHONPATH" in env_extra:
        env["PYTHONPATH"] = f"{env_extra['PYTHONPATH']}:{REPO}"
    return subprocess.run(
        [sys.executable, "-m", "asdlib.envcheck"], capture_output=True, text=True, env=env, timeout=300
    )


def test_envcheck_loads_compiled_torchaudio_and_s3prl():
    """A fresh interpreter loads libtorchaudio, runs fbank/resample and imports s3prl through the shim."""
    res = _envcheck()
    assert res.returncode == 0, res.stderr
    assert "asdlib environment OK" in res.stdout


def test_envcheck_fails_on_a_torchaudio_that_does_not_load(tmp_path):
    """A torchaudio whose libtorchaudio cannot be loaded (as 2.11.1 against torch 2.11.0) fails the check."""
    import torchaudio

    broken = tmp_path / "site" / "torchaudio"
    shutil.copytree(Path(torchaudio.__file__).parent, broken, ignore=shutil.ignore_patterns("__pycache__"))
    libs = sorted((broken / "lib").glob("libtorchaudio*.so"))
    assert libs, "torchaudio ships no libtorchaudio*.so"
    for lib in libs:
        lib.write_bytes(b"not a shared object")
    res = _envcheck({"PYTHONPATH": str(tmp_path / "site")})
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ERROR: torchaudio "), res.stderr
    assert "does not load against torch" in lines[0] and "make -C tools" in lines[0]


def test_setup_ranges_exclude_the_broken_pair():
    """Library users resolve setup.py's ranges: they must not admit torchaudio 2.11.1 (needs a newer torch)."""
    text = (REPO / "setup.py").read_text(encoding="utf-8")
    assert '"torch>=2.11,<2.12"' in text
    assert '"torchaudio>=2.11.0,!=2.11.1,<2.12"' in text


def test_envcheck_reports_a_driver_too_old_for_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 535 driver under the CUDA 13.0 build: torch sees no GPU, nvidia-smi still lists it."""
    from asdlib import devices, envcheck

    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch._C, "_cuda_getArchFlags", lambda: "sm_75 sm_80 sm_86 sm_90 sm_100 sm_120", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(
        devices, "nvidia_smi", lambda: ("535.183.01", (devices.Gpu(0, "NVIDIA A100-SXM4-80GB", (8, 0)),))
    )
    lines = envcheck.gpu_lines(devices.probe())
    assert "torch build: " in lines[0] and "CUDA runtime 13.0, architectures sm_75 sm_80" in lines[0]
    assert "NVIDIA driver: 535.183.01" in lines
    assert "GPU 0: NVIDIA A100-SXM4-80GB, compute capability sm_80" in lines
    assert "GPUs torch can use: 0" in lines
    [warning] = [line for line in lines if line.startswith("GPU WARNING:")]
    assert "driver 535.183.01 is older than 580.65.06" in warning and "TORCH_INDEX_URL=" in warning


def test_envcheck_reports_a_gpu_outside_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """A V100 under the CUDA 13.0 build: torch sees it, but the build has no sm_70 code."""
    from asdlib import devices, envcheck

    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch._C, "_cuda_getArchFlags", lambda: "sm_75 sm_80 sm_90", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=None: "Tesla V100-SXM2-32GB")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=None: (7, 0))
    monkeypatch.setattr(devices, "nvidia_smi", lambda: ("580.82.07", ()))
    lines = envcheck.gpu_lines(devices.probe())
    assert "GPU 0: Tesla V100-SXM2-32GB, compute capability sm_70" in lines and "GPUs torch can use: 1" in lines
    [warning] = [line for line in lines if line.startswith("GPU WARNING:")]
    assert (
        "(Tesla V100-SXM2-32GB, sm_70) is not among the architectures of this torch build (sm_75 sm_80 sm_90)"
        in warning
    )


def test_envcheck_on_a_machine_without_nvidia_hardware_warns_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from asdlib import devices, envcheck

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "nvidia_smi", lambda: (None, ()))
    lines = envcheck.gpu_lines(devices.probe())
    assert "NVIDIA driver: unknown (no nvidia-smi here)" in lines and not [x for x in lines if "WARNING" in x]


CU126 = "https://download.pytorch.org/whl/cu126"


def make_n(*args: str) -> list[str]:
    """The commands ``make -C tools`` would run (``-n``: nothing runs)."""
    res = subprocess.run(["make", "-n", "-C", str(REPO / "tools"), *args], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


def test_make_lock_for_another_torch_build() -> None:
    """``make lock TORCH_INDEX_URL=.../cu126`` takes the main lock's torch pair from that index alone
    and writes requirements-cu126.lock, recording the index in it."""
    lines = make_n("lock", f"TORCH_INDEX_URL={CU126}")
    pins = read_lock(REPO / "tools" / "requirements.lock")
    assert (
        f"lock-venv/bin/python -m pip install --index-url {CU126} torch=={pins['torch']} torchaudio=={pins['torchaudio']}"
        in lines
    )
    assert any(f'echo "# torch index: {CU126}"' in line for line in lines)
    assert "mv requirements-cu126.lock.tmp requirements-cu126.lock" in lines


def test_make_installs_another_torch_build_and_keeps_it(tmp_path: Path) -> None:
    """The install takes the tagged lock with the build's index; a later plain ``make`` keeps both."""
    lock = tmp_path / "requirements-cu126.lock"
    lock.write_text(f"# torch index: {CU126}\ntorch==2.11.0+cu126\n")
    venv = tmp_path / "venv"
    lines = make_n(f"VENV={venv}", f"TORCH_INDEX_URL={CU126}", f"LOCK={lock}")
    install = f"{venv}/bin/python -m pip install --constraint {lock} --extra-index-url {CU126}"
    assert f'{install} -e "..[dev]"' in lines and f"echo {lock} > {venv}/.installed" in lines
    venv.mkdir()
    (venv / ".installed").write_text(f"{lock}\n")
    assert f'{install} -e "..[dev]"' in make_n(f"VENV={venv}")
