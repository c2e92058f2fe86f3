"""Small process-wide helpers shared by the CLIs."""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import traceback
from collections.abc import Callable

LOG_FORMAT = "%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"


def setup_logging(verbose: int = 1, rank: int = 0, force: bool = True) -> None:
    """Timestamped logging to stderr (the launcher captures it in the job log); ranks > 0 only warn.

    ``force=False`` keeps handlers a caller already installed (e.g. pytest's log capture of a
    CLI's ``main()`` run in-process); ``force=True`` wins over libraries that configure logging.
    """
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose == 1 else logging.WARNING
    if rank > 0:
        level = logging.WARNING
    logging.basicConfig(level=level, format=LOG_FORMAT, force=force)


class UserError(Exception):
    """Base of the project's errors that are neither ValueErrors nor OSErrors (a failed download, an
    unreadable checkpoint): their message alone tells the user what to fix, so :func:`run_main`
    prints it without a traceback."""


#: what :func:`run_main` reports as one line: bad input (the project's own error classes derive from
#: ValueError), missing or unwritable files (OSError) and :class:`UserError`
EXPECTED_ERRORS: tuple[type[Exception], ...] = (ValueError, OSError, UserError)


def run_main(main: Callable[[], int]) -> int:
    """Run a CLI's ``main()``; an expected error becomes one ``ERROR: <message>`` line on stderr and exit code 1.

    Why: those messages name the file or key and the fix, and a traceback would bury them in the job
    log. Ctrl-C is one line too, exit code 130 (as a shell reports SIGINT). Any other exception is a
    bug and keeps its traceback. ``--verbose 2`` (DEBUG logging, see
    :func:`setup_logging`) prints the traceback of expected errors too. ``main()`` itself raises, so
    tests and other Python callers see the exception. Use: ``raise SystemExit(run_main(main))``.
    """
    try:
        return main()
    except KeyboardInterrupt:
        print("ERROR: interrupted (Ctrl-C)", file=sys.stderr, flush=True)
        return 130
    except EXPECTED_ERRORS as e:
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            traceback.print_exc()
        print(f"ERROR: {str(e) or type(e).__name__}", file=sys.stderr, flush=True)
        return 1


def seed_everything(seed: int, device: str = "cpu") -> None:
    """Seed Python, numpy and torch, and ask torch for deterministic kernels (on CUDA also for attention)."""
    import numpy as np
    import torch  # imported here so that light CLIs (evaluate, merge) start fast

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    if str(device).startswith("cuda"):
        # warn_only=True leaves SDPA's fused CUDA backward kernels non-deterministic (the memory-efficient
        # one, which a float attn_mask selects in BEATs/WavLM, splits keys and adds atomically; flash and
        # cuDNN likewise): keep SDPA on its math kernel (matmul + softmax), deterministic like other GEMMs.
        # Only on CUDA: the switches are process-global and also turn off the CPU flash kernel, which is
        # deterministic already and 2-3x faster than the math kernel on CPU.
        torch.backends.cuda.enable_mem_efficient_sdp(False)
        torch.backends.cuda.enable_flash_sdp(False)
        torch.backends.cuda.enable_cudnn_sdp(False)


def str2bool(value: str) -> bool:
    """argparse type for Kaldi-style ``--flag true|false`` options."""
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{value}'")


def channel_arg(value: str) -> int | str:
    """argparse type for ``--channel``: a channel index of multi-channel files, or ``mean`` to down-mix."""
    if value == "mean" or (value.isdigit() and value.isascii()):
        return value if value == "mean" else int(value)
    raise argparse.ArgumentTypeError(f"expected a channel index >= 0 or mean, got '{value}'")
