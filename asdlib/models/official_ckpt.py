"""Reading official release checkpoints: safe torch.load and strict, readable key matching.

Release files are loaded into our own module implementations by their original parameter names, so
a renamed, missing or reshaped tensor must stop the load with a message that names the file and the
first offending keys (``load_state_dict`` lists hundreds of keys in one line). Files are unpickled
with ``weights_only=True``; files that pickle more than tensors and plain containers (fairseq
checkpoints carry argparse/omegaconf/enum objects) need an explicit opt-in, and then classes whose
module is not installed (fairseq, the model's own repository) load as inert stubs, so neither
fairseq nor the release code is needed to read the tensors.
"""

from __future__ import annotations

import logging
import pickle
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)

#: how many keys an error message lists per category
SHOW_KEYS = 8


class PickledStub:
    """Stand-in for an unpickled object whose class cannot be imported; it keeps what it was given."""

    def __new__(cls, *args: Any, **kwargs: Any) -> PickledStub:
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.stub_args = args
        self.stub_kwargs = kwargs

    def __setstate__(self, state: Any) -> None:
        self.stub_state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__.setdefault("stub_items", {})[key] = value

    def append(self, value: Any) -> None:
        self.__dict__.setdefault("stub_list", []).append(value)

    def extend(self, values: Any) -> None:
        self.__dict__.setdefault("stub_list", []).extend(values)


class _StubbingUnpickler(pickle.Unpickler):
    """Unpickler that replaces classes from modules that are not installed by :class:`PickledStub`."""

    _stubs: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            key = (module, name)
            if key not in self._stubs:
                logger.debug("unpickling %s.%s as an inert stub (module not importable)", module, name)
                self._stubs[key] = type(name, (PickledStub,), {"__module__": module})
            return self._stubs[key]


_STUBBING_PICKLE = types.SimpleNamespace(
    __name__="asdlib_stubbing_pickle",
    Unpickler=_StubbingUnpickler,
    load=lambda f, **kw: _StubbingUnpickler(f, **kw).load(),
)


def torch_load(path: str | Path, allow_unsafe_pickle: bool = False) -> Any:
    """``torch.load`` to CPU with ``weights_only=True``; arbitrary objects only when explicitly allowed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist: download it (see docs/upstreams.md) "
            "and set upstream.path to the local file"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()[0]
        if "weights only" not in str(err).lower():
            raise ValueError(f"{path}: not a torch checkpoint file ({reason})") from err
        if not allow_unsafe_pickle:
            raise ValueError(
                f"{path}: the file pickles Python objects beyond tensors and plain containers, which "
                f"torch.load(weights_only=True) refuses ({reason}). Official fairseq checkpoints do "
                "this (argparse/omegaconf/enum objects in their config). Unpickling can run arbitrary "
                "code: only if you trust this file, set 'allow_unsafe_pickle: true' in the upstream "
                "config."
            ) from err
    logger.warning("%s: unpickling with weights_only=False (allow_unsafe_pickle is set)", path)
    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_STUBBING_PICKLE)


def find_config_value(obj: Any, key: str) -> Any:
    """First non-None value stored under ``key`` in a nested mapping (dict or omegaconf), else None."""
    if isinstance(obj, Mapping):
        if obj.get(key) is not None:
            return obj[key]
        children = list(obj.values())
    elif isinstance(obj, (list, tuple)):
        children = list(obj)
    else:
        return None
    for child in children:
        found = find_config_value(child, key)
        if found is not None:
            return found
    return None


def load_state_strict(module: nn.Module, state: Mapping[str, Tensor], source: str, key_prefix: str = "") -> None:
    """Load ``state`` into ``module`` requiring exactly its keys and shapes.

    ``key_prefix`` is prepended to key names in the error message, so that they read as in the file.
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    reshaped = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or reshaped:
        lines = [f"{source}: the checkpoint's tensors do not match the architecture its config describes"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): " + ", ".join(key_prefix + k for k in missing[:SHOW_KEYS]))
        if unexpected:
            lines.append(
                f"  unexpected keys ({len(unexpected)}): " + ", ".join(key_prefix + k for k in unexpected[:SHOW_KEYS])
            )
        if reshaped:
            lines.append(
                f"  shape mismatches ({len(reshaped)}): "
                + ", ".join(
                    f"{key_prefix}{k} file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                    for k in reshaped[:SHOW_KEYS]
                )
            )
        lines.append("  Is it an official release file of this model, unmodified?")
        raise ValueError("\n".join(lines))
    module.load_state_dict(dict(state), strict=True)
