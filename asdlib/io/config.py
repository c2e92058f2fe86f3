"""Typed YAML configs: dataclasses filled from YAML, unknown keys and wrong types rejected.

Configs are read with ``yaml.safe_load`` only and never evaluated. Every error names the file
and the dotted key, so a typo in a 200-line config is found at once instead of being ignored.
A config may be a diff of another (``base: ../train.yaml``, :func:`resolve_yaml`), so one change
to a recipe's default config is made in one place and reaches every variant built on it.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from asdlib.io.atomic import atomic_write_text

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or value that does not match its dataclass."""


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file safely, with a clear error for missing or malformed files."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e


def load_config(path: str | Path, cls: type[T], overrides: dict[str, Any] | Sequence[str] | None = None) -> T:
    """Load ``path`` into dataclass ``cls``: the file merged over its ``base:`` chain
    (:func:`resolve_yaml`), then ``overrides`` (dotted keys to values, or ``KEY=VALUE`` strings,
    :func:`parse_overrides`) merged over the result one by one (so ``backend.kind=kmeans`` drops the
    base's settings of another kind, as a diff would), then every key and type checked."""
    if overrides is not None and not isinstance(overrides, dict):
        overrides = parse_overrides(cls, overrides)
    data = resolve_yaml(path, cls)
    for dotted, value in (overrides or {}).items():  # in order, each merged like a diff (its kind rule too)
        for key in reversed(dotted.split(".")):
            value = {key: value}
        data = merge_over(data, value, cls)
    return from_dict(cls, data, where=str(path))


def resolve_yaml(path: str | Path, cls: Any = Any, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The mapping of ``path``, merged over its base when it names one.

    A top-level ``base: ../train.yaml`` (a path relative to the file that says it) makes the file a
    diff: the base is resolved the same way (a chain; a cycle is an error naming the files) and the
    file is merged over it with :func:`merge_over`, typed by ``cls`` for its kind rule. ``base`` is
    reserved at the top level and never reaches ``cls``.
    """
    path = Path(path)
    if path.resolve() in _chain:
        names = " -> ".join(os.path.relpath(p) for p in (*_chain, path.resolve()))
        raise ConfigError(f"{path}: base cycle {names}; one of these files must not name a base")
    data = load_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}:base: expected the path of a YAML file relative to this one, got {base!r}")
    base_path = Path(os.path.normpath(path.parent / base))
    if not base_path.is_file():
        raise ConfigError(f"{path}:base: {base_path} not found (base is relative to the folder of {path.name})")
    return merge_over(resolve_yaml(base_path, cls, (*_chain, path.resolve())), data, cls)


def merge_over(base: dict[str, Any], child: dict[str, Any], cls: Any = Any) -> dict[str, Any]:
    """``child`` merged over ``base``: mappings merge key by key; lists, scalars and ``null`` replace.

    Kind rule: a section whose dataclass declares ``kind_key`` (the field naming its kind, e.g.
    ``backend.kind``, ``upstream.name``) keeps that kind's own settings in ``conf``. When the child
    names another kind than the base (the base's value or the field's default), the base's ``conf``
    belongs to the old kind and is dropped: the child's ``conf``, or the new kind's defaults, apply.
    """
    out = dict(base)
    kind_key = getattr(cls, "kind_key", None)
    if kind_key and kind_key in child:
        default = next(f.default for f in dataclasses.fields(cls) if f.name == kind_key)
        if child[kind_key] != base.get(kind_key, default):
            out.pop("conf", None)
    hints = typing.get_type_hints(cls) if dataclasses.is_dataclass(cls) else {}
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_over(out[key], value, hints.get(key, Any))
        else:
            out[key] = value
    return out


def parse_overrides(cls: type, items: Sequence[str]) -> dict[str, Any]:
    """``["optim.lr=1e-4", "finetune.rank=16"]`` -> ``{"optim.lr": 1e-4, "finetune.rank": 16}``.

    The command-line form of a config change (``asd.sh --train_args "..."``, ESPnet style). Every
    dotted key must name a field of ``cls`` (else a one-line error naming the key and the valid
    ones); the value is read as YAML (``[a, b]``, ``true``, ``null``), numbers also as Python reads
    them (``1e-4``), and a field that only takes strings keeps the text as it is (``"00"``).
    :func:`load_config` then type-checks it exactly like the YAML file.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override '{item}': expected KEY=VALUE with a dotted key, e.g. optim.lr=1e-4")
        tp: Any = cls
        for i, name in enumerate(key.split(".")):
            if tp is Any:  # a per-kind settings mapping (e.g. backend.conf): its class checks the key at load
                break
            if not dataclasses.is_dataclass(tp):
                raise ConfigError(f"override '{item}': '{'.'.join(key.split('.')[:i])}' is not a config section")
            fields = {f.name for f in dataclasses.fields(tp) if f.init}
            if name not in fields:
                raise ConfigError(
                    f"override '{item}': unknown key '{key}' ('{name}' is not a field of {tp.__name__}; "
                    f"valid keys: {', '.join(sorted(fields))})"
                )
            tp = typing.get_type_hints(tp)[name]
        out[key] = _parse_text(tp, text)
    return out


def _wants_text(tp: Any) -> bool:
    """Whether a field takes only strings (so ``00`` or ``on`` must not be read as YAML)."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if tp is str:
        return True
    if typing.get_origin(tp) is typing.Literal:
        return all(isinstance(a, str) for a in typing.get_args(tp))
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return bool(args) and all(_wants_text(a) for a in args)
    return False


def _parse_text(tp: Any, text: str) -> Any:
    optional = type(None) in typing.get_args(tp)
    if optional and text.lower() in ("null", "none", "~"):
        return None
    if _wants_text(tp):
        return text
    try:
        value = yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        return text  # the type check names the key and what it expected
    if isinstance(value, str):
        try:
            return int(value) if value.lstrip("+-").isdigit() else float(value)
        except ValueError:
            return value
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping, checking every key and type."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    moved = [k for k in unknown if k in getattr(cls, "moved_keys", {})]
    if moved:
        raise ConfigError(f"{where}: key '{moved[0]}' has moved to {cls.moved_keys[moved[0]]}; write it there")  # type: ignore[attr-defined]
    if unknown:
        raise ConfigError(
            f"{where}: unknown key '{unknown[0]}' for {cls.__name__}; valid keys: {', '.join(sorted(fields))}"
        )
    kwargs = {name: _convert(hints[name], value, f"{where}:{name}") for name, value in data.items()}
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from e
    return obj


def to_dict(obj: Any) -> Any:
    """Plain-data view of a (nested) dataclass, for YAML dumps."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def dump_config(obj: Any, path: str | Path) -> None:
    """Write the fully resolved config atomically (reloadable with :func:`load_config`)."""
    atomic_write_text(path, yaml.safe_dump(to_dict(obj), sort_keys=False, allow_unicode=True))


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        item = args[0] if args else Any
        return [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        ktp, vtp = args if args else (Any, Any)
        return {_convert(ktp, k, where): _convert(vtp, v, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported config type {tp}")
