"""A fitted back end as named arrays and a JSON tree, for the numpy scorer of an exported model
(asdlib-export; asdlib/export/reference.py scores the tree without torch or asdlib).

Each back-end class that can be exported registers a hook next to its own code::

    @exports(KnnBackend)
    def export_knn(backend: KnnBackend, arrays: Arrays) -> dict: ...

The hook returns a node ``{"scorer": <name>, ...}`` whose ``scorer`` names a function of
``reference.SCORERS`` that scores it, with arrays stored through ``arrays.add`` (by key, into
``backend.npz``); a wrapper (fusion, the noise projection) exports its members with
:func:`export_backend`. Hooks are looked up by the exact class, so a subclass that scores
differently is not exported by its parent's hook by accident. Adding a kind: a hook next to it and a
scorer in reference.py, tested by tests/bin/test_export.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from asdlib.backends.base import BackendError
from asdlib.config import BackendConfig
from asdlib.registry import BACKENDS

Hook = Callable[[Any, "Arrays"], dict]
HOOKS: dict[type, Hook] = {}


class Arrays:
    """The arrays of an exported back end, under generated keys (``a0``, ``a1``, ...)."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def add(self, array: Any) -> str:
        key = f"a{len(self.arrays)}"
        self.arrays[key] = np.ascontiguousarray(np.asarray(array))
        return key


def exports(*classes: type) -> Callable[[Hook], Hook]:
    """Register ``hook`` as the export of fitted back ends of exactly these classes."""

    def add(hook: Hook) -> Hook:
        for cls in classes:
            HOOKS[cls] = hook
        return hook

    return add


def export_backend(backend: Any, arrays: Arrays) -> dict:
    """The node of a fitted back end (its hook's), arrays added to ``arrays``."""
    hook = HOOKS.get(type(backend))
    if hook is None:
        raise BackendError(f"{type(backend).__name__} has no export hook; exportable kinds: {', '.join(supported())}")
    return hook(backend, arrays)


def supported() -> list[str]:
    """The registered ``backend.kind`` names whose class has an export hook."""
    return [name for name in BACKENDS.names() if BACKENDS.get(name).obj in HOOKS]


def check_exportable(cfg: BackendConfig, where: str) -> None:
    """Every kind ``cfg`` builds (a fusion's members too) has an export hook; else a one-line error."""
    kinds = [cfg.kind, *(m.kind for m in getattr(cfg.conf, "members", []))]
    missing = [k for k in kinds if BACKENDS.get(k).obj not in HOOKS]
    if missing:
        raise BackendError(
            f"{where}: backend kind {missing[0]} has no numpy scorer for export; exportable kinds: "
            f"{', '.join(supported())} (repack with one of them, or score with asdlib-infer)"
        )
