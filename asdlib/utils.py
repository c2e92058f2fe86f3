"""Small process-wide helpers shared by the CLIs."""

from __future__ import annotations

import argparse
import logging
import os
import random

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


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch, and ask torch for deterministic kernels."""
    import numpy as np
    import torch  # imported here so that light CLIs (evaluate, merge) start fast

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


def str2bool(value: str) -> bool:
    """argparse type for Kaldi-style ``--flag true|false`` options."""
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{value}'")
