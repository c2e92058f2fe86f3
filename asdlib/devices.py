"""Which CUDA GPUs this process can use, and when it cannot, why: the torch build's CUDA version and
architectures against the NVIDIA driver and each GPU's compute capability (docs/gpu.md).

Why: ``torch.cuda.is_available()`` is only a boolean. A driver older than the build's CUDA runtime
makes it False, which looks like "no GPU"; a GPU older than the build's architectures makes it
True, and the first kernel then fails with "no kernel image is available". Both have one fix: a
torch build for the cluster (``make -C tools TORCH_INDEX_URL=...``). torch is imported lazily, so
the launchers stay light.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass

#: the oldest Linux driver that runs a CUDA runtime of each major version (NVIDIA's minor version
#: compatibility: any 12.x runtime on >= 525.60.13, any 13.x on >= 580.65.06)
DRIVER_FLOOR: dict[int, str] = {12: "525.60.13", 13: "580.65.06"}
#: where a user finds a torch build for an older driver or GPU (docs/gpu.md has the table)
FIX = "make -C tools TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 (see docs/gpu.md)"


@dataclass(frozen=True)
class Gpu:
    """One GPU as nvidia-smi or torch reports it."""

    index: int
    name: str
    capability: tuple[int, int]


@dataclass(frozen=True)
class CudaState:
    """What decides whether CUDA works: the build (``cuda`` None for a CPU build), the driver
    (None where unknown), the GPUs present, and how many of them torch can use."""

    torch_version: str
    cuda: str | None
    arch_list: tuple[str, ...]
    driver: str | None
    gpus: tuple[Gpu, ...]
    usable: int


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text))


def sm(capability: tuple[int, int]) -> str:
    """``(7, 0)`` -> ``sm_70``, as the build's arch list names architectures."""
    return f"sm_{capability[0]}{capability[1]}"


def arch_runs_on(arch_list: tuple[str, ...], capability: tuple[int, int]) -> bool:
    """Whether the build has code for a GPU: a cubin of the same major version and a minor one not
    above the GPU's (sm_80 runs on 8.6 and 8.9), or PTX (``compute_XY``) of an older one (JIT)."""
    for arch in arch_list:
        kind, _, digits = arch.partition("_")
        cc = int(re.sub(r"\D", "", digits) or 0)
        major, minor = divmod(cc, 10)
        if kind == "sm" and major == capability[0] and minor <= capability[1]:
            return True
        if kind == "compute" and (major, minor) <= capability:
            return True
    return False


def problems(state: CudaState) -> list[str]:
    """What keeps this build from running on this machine's GPUs, one sentence each with the fix."""
    if state.cuda is None:
        return [f"torch {state.torch_version} is a CPU-only build; install a CUDA build: {FIX}"]
    out = []
    floor = DRIVER_FLOOR.get(_version(state.cuda)[0])
    if state.driver and floor and _version(state.driver) < _version(floor):
        out.append(
            f"NVIDIA driver {state.driver} is older than {floor}, the minimum of this torch "
            f"build (torch {state.torch_version}, CUDA {state.cuda}); update the driver, or install a build "
            f"for it: {FIX}"
        )
    out += [msg for gpu in state.gpus if (msg := arch_problem(state, gpu))]
    return out


def arch_problem(state: CudaState, gpu: Gpu) -> str | None:
    """Why this build has no code for ``gpu`` ("no kernel image is available"), or None."""
    if not state.arch_list or arch_runs_on(state.arch_list, gpu.capability):
        return None
    return (
        f"GPU {gpu.index} ({gpu.name}, {sm(gpu.capability)}) is not among the architectures of this torch "
        f"build ({' '.join(state.arch_list)}); install a build that has it: {FIX}"
    )


def unavailable_reason(state: CudaState) -> str:
    """Why torch cannot use CUDA here, as precisely as the state tells."""
    if found := problems(state):
        return found[0]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    first = (visible or "").split(",")[0].strip()
    known = first.startswith(("GPU-", "MIG-")) or (first.isdigit() and int(first) < len(state.gpus))
    if state.gpus and visible is not None and not known:
        return f"CUDA_VISIBLE_DEVICES='{visible}' hides the {len(state.gpus)} GPU(s) of this machine"
    if state.gpus:
        return f"torch sees none of the {len(state.gpus)} GPU(s) nvidia-smi lists (driver {state.driver})"
    if shutil.which("nvidia-smi") is None:
        return "no NVIDIA GPU or driver found here (nvidia-smi is not on PATH)"
    return "no CUDA GPU is visible here"


def nvidia_smi() -> tuple[str | None, tuple[Gpu, ...]]:
    """The driver version and the GPUs from nvidia-smi, which works where torch's CUDA runtime does
    not start (a driver too old for it); ``(None, ())`` without nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return None, ()
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,name,compute_cap,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, ()
    driver, gpus = None, []
    for line in out.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) == 4 and fields[0].isdigit():
            major, _, minor = fields[2].partition(".")
            if major.isdigit() and minor.isdigit():
                gpus.append(Gpu(int(fields[0]), fields[1], (int(major), int(minor))))
            driver = fields[3]
    return driver, tuple(gpus)


def probe() -> CudaState:
    """The CUDA state of this process: torch's build, nvidia-smi's driver and GPUs (torch's own
    list of GPUs, which follows CUDA_VISIBLE_DEVICES, where it can use them)."""
    import torch

    driver, gpus = nvidia_smi()
    compiled = torch.version.cuda is not None and hasattr(torch._C, "_cuda_getArchFlags")
    # torch.cuda.get_arch_list() is empty when CUDA does not start; the build's flags are known anyway
    arch_list = tuple((torch._C._cuda_getArchFlags() or "").split()) if compiled else ()
    usable = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if usable:
        gpus = tuple(Gpu(i, torch.cuda.get_device_name(i), torch.cuda.get_device_capability(i)) for i in range(usable))
    return CudaState(torch.__version__, torch.version.cuda, arch_list, driver, gpus, usable)


def resolve_device(requested: str) -> str:
    """The torch device for a CLI's ``--device``: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.

    Why: the recipe derives the device from ``--ngpu``, so ``cpu`` must stay CPU even where a GPU
    is visible, and ``cuda`` that cannot run must fail at once, saying why, instead of silently
    running on CPU or failing at the first kernel. Only ``auto`` picks CUDA on its own.
    """
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cpu":
        return "cpu"
    if requested != "cuda" and not (requested.startswith("cuda:") and requested[5:].isdigit()):
        raise ValueError(f"--device {requested}: expected cpu, cuda, cuda:N or auto")
    cpu_fix = "to run on CPU instead: --device cpu (in a recipe, --ngpu 0)"
    if not torch.cuda.is_available():
        raise ValueError(f"--device {requested}: CUDA is unavailable: {unavailable_reason(probe())}; {cpu_fix}")
    index = int(requested[5:]) if requested != "cuda" else 0
    count = torch.cuda.device_count()
    if index >= count:
        raise ValueError(
            f"--device {requested}: only {count} GPU(s) are visible "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); use cuda:0..cuda:{count - 1}"
        )
    state = probe()
    if problem := arch_problem(state, state.gpus[index]):
        raise ValueError(f"--device {requested}: {problem}")
    return requested


def visible_gpus(environ: dict[str, str] | None = None) -> list[str] | None:
    """The GPUs a local job may be given, as CUDA_VISIBLE_DEVICES entries: the caller's
    CUDA_VISIBLE_DEVICES when set (``""``: none), else nvidia-smi's indices; None when unknown."""
    environ = os.environ if environ is None else environ
    if "CUDA_VISIBLE_DEVICES" in environ:
        return [e.strip() for e in environ["CUDA_VISIBLE_DEVICES"].split(",") if e.strip()]
    _, gpus = nvidia_smi()
    return [str(g.index) for g in gpus] if gpus else None
