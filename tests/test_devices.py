"""Why CUDA cannot run, said precisely: the driver against the build's CUDA runtime, each GPU's
capability against the build's architectures, and the GPUs a local job may be given. All checked
on CPU with the state or torch.cuda patched."""

from __future__ import annotations

import pytest
import torch

from asdlib import devices
from asdlib.devices import CudaState, Gpu, arch_runs_on, problems, resolve_device, unavailable_reason, visible_gpus

CU130 = ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120")
CU126 = ("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90")
H100 = Gpu(0, "NVIDIA H100", (9, 0))
V100 = Gpu(0, "Tesla V100-SXM2-32GB", (7, 0))


def state(cuda: str | None = "13.0", arch: tuple[str, ...] = CU130, driver: str | None = "580.82.07", gpus=(H100,)):
    return CudaState("2.11.0+cu130", cuda, arch, driver, tuple(gpus), len(gpus))


@pytest.mark.parametrize(
    "arch, capability, runs",
    [
        (CU130, (9, 0), True),
        (CU130, (8, 9), True),  # Ada runs sm_86 cubins
        (CU130, (7, 0), False),  # V100
        (CU126, (7, 0), True),
        (CU126, (12, 0), False),  # Blackwell needs cu128/cu130
        (("sm_90", "compute_90"), (12, 0), True),  # PTX JIT-compiles for newer GPUs
    ],
)
def test_arch_runs_on(arch: tuple[str, ...], capability: tuple[int, int], runs: bool) -> None:
    assert arch_runs_on(arch, capability) is runs


def test_a_matching_build_has_no_problems() -> None:
    assert problems(state()) == []
    assert problems(state(cuda="12.6", arch=CU126, driver="535.183.01", gpus=[V100])) == []


def test_driver_too_old_for_the_build() -> None:
    [msg] = problems(state(driver="535.183.01"))
    assert "driver 535.183.01 is older than 580.65.06" in msg and "CUDA 13.0" in msg
    assert "TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126" in msg


def test_gpu_not_in_the_build() -> None:
    [msg] = problems(state(gpus=[V100]))
    assert "GPU 0 (Tesla V100-SXM2-32GB, sm_70) is not among the architectures" in msg and "sm_75" in msg


def test_cpu_build() -> None:
    assert "CPU-only build" in problems(state(cuda=None, arch=()))[0]


def test_unavailable_reason_names_the_hiding_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert "CUDA_VISIBLE_DEVICES=''" in unavailable_reason(state())
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(devices.shutil, "which", lambda name: None)
    assert "nvidia-smi is not on PATH" in unavailable_reason(state(gpus=[]))


def fake_cuda(monkeypatch: pytest.MonkeyPatch, available: bool, count: int, st: CudaState) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(devices, "probe", lambda: st)


@pytest.mark.parametrize(
    "available, st, reason",
    [
        (False, state(driver="535.183.01"), "CUDA is unavailable: NVIDIA driver 535.183.01 is older than"),
        (True, state(gpus=[V100]), "(Tesla V100-SXM2-32GB, sm_70) is not among the architectures"),
    ],
)
def test_resolve_device_says_why(monkeypatch: pytest.MonkeyPatch, available: bool, st: CudaState, reason: str) -> None:
    """A driver too old makes torch see no GPU; a GPU too old is seen but has no kernels."""
    fake_cuda(monkeypatch, available, 1, st)
    with pytest.raises(ValueError, match=r"^--device cuda: ") as err:
        resolve_device("cuda")
    assert reason in str(err.value) and "\n" not in str(err.value)


def test_resolve_device_index_beyond_the_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cuda(monkeypatch, True, 2, state(gpus=[H100, H100]))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    assert resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(ValueError, match=r"--device cuda:2: only 2 GPU\(s\) are visible \(CUDA_VISIBLE_DEVICES=4,5\)"):
        resolve_device("cuda:2")


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({"CUDA_VISIBLE_DEVICES": "2,3"}, ["2", "3"]),
        ({"CUDA_VISIBLE_DEVICES": " 0, 1,"}, ["0", "1"]),
        ({"CUDA_VISIBLE_DEVICES": ""}, []),
        ({"CUDA_VISIBLE_DEVICES": "GPU-1a2b"}, ["GPU-1a2b"]),
    ],
)
def test_visible_gpus_from_the_environment(environ: dict[str, str], expected: list[str]) -> None:
    assert visible_gpus(environ) == expected


def test_visible_gpus_from_nvidia_smi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "nvidia_smi", lambda: ("580.82.07", (H100, Gpu(1, "NVIDIA H100", (9, 0)))))
    assert visible_gpus({}) == ["0", "1"]
    monkeypatch.setattr(devices, "nvidia_smi", lambda: (None, ()))
    assert visible_gpus({}) is None
