"""Check that the installed environment can run asdlib: ``python -m asdlib.envcheck``.

pip can resolve a torch/torchaudio pair that installs but does not load together (torchaudio
2.11.1's ``libtorchaudio.so`` against torch 2.11.0: an undefined symbol). Plain ``import
torchaudio`` may still succeed, and the failure then surfaces deep inside a recipe. This check
loads torchaudio's compiled extension, runs the torchaudio functions asdlib uses, and imports
s3prl through asdlib's shim, so that ``make -C tools`` and the test suite fail at once instead.

It also prints the torch build's CUDA runtime and architectures against this machine's NVIDIA
driver and GPUs, with a ``GPU WARNING:`` line for each GPU the build cannot run on (docs/gpu.md):
warnings, not failures, since a login node without GPUs still runs the CPU stages.
"""

from __future__ import annotations

import sys

from asdlib.devices import CudaState, probe, problems, sm

FIX = "rebuild the environment from the lock: make -C tools clean && make -C tools"


class EnvironmentCheckError(RuntimeError):
    """The environment cannot run asdlib; the message names the failing part and the fix."""


def check() -> dict[str, str]:
    """Load every compiled or fragile dependency; return their versions, or raise with the fix."""
    from importlib.metadata import version

    import torch

    try:
        import torchaudio
        import torchaudio._extension as ext  # loads _torchaudio and libtorchaudio
    except (ImportError, OSError) as e:
        cause = e.__cause__ or e  # torch wraps the dlopen error ("undefined symbol: ...")
        raise EnvironmentCheckError(
            f"torchaudio {version('torchaudio')} does not load against torch {torch.__version__} "
            f"({type(cause).__name__}: {str(cause).splitlines()[0]}); {FIX}"
        ) from e
    if not ext._IS_TORCHAUDIO_EXT_AVAILABLE:
        raise EnvironmentCheckError(
            f"torchaudio {torchaudio.__version__} was installed without its compiled extension; {FIX}"
        )

    wave = torch.zeros(1, 16000)
    torchaudio.compliance.kaldi.fbank(wave, num_mel_bins=8, sample_frequency=16000)
    torchaudio.functional.resample(wave, 16000, 8000)

    from asdlib.models import s3prl_compat

    s3prl_compat.install()
    try:
        import kaldiio  # noqa: F401
        import peft
        import s3prl.hub  # noqa: F401
        import s3prl.nn  # noqa: F401
        import soundfile
    except Exception as e:  # any import-time failure of these means a broken install
        raise EnvironmentCheckError(f"{type(e).__name__} while importing the model stack: {e}; {FIX}") from e
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchaudio": torchaudio.__version__,
        "peft": peft.__version__,
        "soundfile": soundfile.__version__,
    }


def gpu_lines(state: CudaState) -> list[str]:
    """The torch build, the driver and each GPU, then a ``GPU WARNING:`` line per reason it will not run."""
    build = (
        f"CUDA runtime {state.cuda}, architectures {' '.join(state.arch_list) or '(none)'}"
        if state.cuda
        else "CPU only"
    )
    lines = [
        f"torch build: {state.torch_version} ({build})",
        f"NVIDIA driver: {state.driver or 'unknown (no nvidia-smi here)'}",
    ]
    lines += [f"GPU {g.index}: {g.name}, compute capability {sm(g.capability)}" for g in state.gpus]
    lines.append(f"GPUs torch can use: {state.usable}")
    if state.gpus or state.driver:  # a machine without NVIDIA hardware has nothing to warn about
        lines += [f"GPU WARNING: {p}" for p in problems(state)]
    return lines


def main() -> None:
    """Print the versions and the GPU report on success; one ``ERROR:`` line and exit code 1 on failure."""
    try:
        versions = check()
    except EnvironmentCheckError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        sys.exit(1)
    print("asdlib environment OK: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print("\n".join(gpu_lines(probe())))


if __name__ == "__main__":
    main()
