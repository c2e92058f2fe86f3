"""Name -> component registries: the one place where an upstream, a back end, a head or a training
objective is made known to configs, CLIs, tests and docs.

A component module registers itself with a decorator::

    @BACKENDS.register("knn", KnnSettings)
    class KnnBackend(Backend): ...

and ``KnnSettings`` (a dataclass) is the type of ``backend.conf`` when ``backend.kind: knn``. The
allowed names of a config field, ``select_backend``'s candidates, the test parametrisations and the
docs tables are all read from here, so adding a component is one new file plus its registration.

Registries sit at the bottom of the package graph, so configs can check names without importing the
model stack: each registry knows which in-tree module registers each built-in name (``modules``, the
one line a new component adds) and imports only that module when the name is looked up, the way entry
points are loaded. Third-party components register the same way from their own modules, named in
``ASDLIB_PLUGINS`` (comma-separated module names) or installed under the ``asdlib.plugins`` entry-point
group (:func:`load_plugins`); they are imported when a name is not a built-in one.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Generic, TypeVar

T = TypeVar("T")

PLUGINS_ENV = "ASDLIB_PLUGINS"
ENTRY_POINT_GROUP = "asdlib.plugins"


class RegistryError(ValueError):
    """An unknown or twice-registered component name."""


@dataclass(frozen=True)
class Entry:
    """One registered component: its name, the object (class or builder) and its settings dataclass."""

    name: str
    obj: Any
    settings: type | None


class Registry(Generic[T]):
    """Components of one kind (``what``: "upstream", "backend", ...) by name, in registration order."""

    def __init__(self, what: str, modules: dict[str, str] | None = None) -> None:
        self.what = what
        self.modules = modules or {}  # built-in name -> the module that registers it
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, settings: type | None = None) -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name``; ``settings``: its settings dataclass."""
        if settings is not None and not dataclasses.is_dataclass(settings):
            raise RegistryError(f"{self.what} {name!r}: settings must be a dataclass, got {settings!r}")

        def add(obj: T) -> T:
            old = self._entries.get(name)
            if old is not None and old.obj is not obj:
                raise RegistryError(
                    f"{self.what} {name!r} is registered twice ({_where(old.obj)} and {_where(obj)}); "
                    "rename one of them"
                )
            self._entries[name] = Entry(name, obj, settings)
            return obj

        return add

    def get(self, name: str) -> Entry:
        """The entry of ``name``; an unknown name is a one-line error listing the known ones."""
        if name in self.modules:
            importlib.import_module(self.modules[name])
        if name not in self._entries:
            load_plugins()
        if name not in self._entries:
            raise RegistryError(
                f"unknown {self.what} {name!r}; known: {', '.join(self.names())} "
                f"(a plug-in registers more: set {PLUGINS_ENV}=your.module)"
            )
        return self._entries[name]

    def names(self) -> tuple[str, ...]:
        """Every name: the built-in ones in table order, then those of plug-ins in registration order."""
        for module in dict.fromkeys(self.modules.values()):
            importlib.import_module(module)
        load_plugins()
        return (*self.modules, *(n for n in self._entries if n not in self.modules))

    def __contains__(self, name: object) -> bool:
        """Whether ``name`` is registered, importing only its own module (or the plug-ins) to tell."""
        try:
            self.get(str(name))
        except RegistryError:
            return False
        return True

    def settings(self, name: str, conf: Any, where: str) -> Any:
        """``conf`` (a mapping, None or already the settings object) as ``name``'s settings dataclass."""
        from asdlib.io.config import from_dict

        cls = self.get(name).settings
        if cls is None:
            if conf:
                raise RegistryError(f"{where}: {self.what} {name!r} takes no settings; remove them")
            return None
        if isinstance(conf, cls):
            return conf
        return from_dict(cls, dict(conf or {}), where)


_plugins_loaded: set[str] = set()


def load_plugins() -> None:
    """Import the plug-in modules of ``ASDLIB_PLUGINS`` and of the ``asdlib.plugins`` entry points, once."""
    names = [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
    points = {ep.value: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    for name in [*names, *points]:
        if name in _plugins_loaded:
            continue
        _plugins_loaded.add(name)
        try:
            if name in points:
                points[name].load()
            else:
                importlib.import_module(name)
        except ImportError as e:
            raise RegistryError(
                f"asdlib plug-in {name!r} (from {PLUGINS_ENV} or the {ENTRY_POINT_GROUP} entry "
                f"points) does not import: {e}"
            ) from e


def _where(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"


#: upstream name -> builder ``f(UpstreamConfig) -> Upstream`` (asdlib.models.upstream); settings: ``upstream.conf``
UPSTREAMS: Registry[Any] = Registry(
    "upstream",
    {
        "beats": "asdlib.models.beats",
        "eat": "asdlib.models.eat",
        **dict.fromkeys(("hubert", "wavlm", "wav2vec2", "data2vec"), "asdlib.models.s3prl_upstream"),
    },
)
#: upstream name -> writer ``f(path, seed, size)`` of a small random-init checkpoint in its official format
#: (tests, benchmarks and egs/mini; python -m asdlib.bin.make_random_upstream); settings: the size
RANDOM_UPSTREAMS: Registry[Any] = Registry(
    "random-init upstream writer", dict.fromkeys(UPSTREAMS.modules, "asdlib.synth.checkpoints")
)
#: margin head (``head.kind``) -> class with ``from_config(HeadConfig, emb_dim, num_classes)``
HEADS: Registry[Any] = Registry(
    "head", dict.fromkeys(("arcface", "adacos", "subcluster_adacos"), "asdlib.models.heads")
)
#: training objective -> :class:`asdlib.train.objectives.Objective` subclass; each selects itself from the
#: config; the trainer runs their hooks and sums their loss terms in this order
OBJECTIVES: Registry[Any] = Registry(
    "objective", dict.fromkeys(("margin", "vq", "mixup", "eat_pretrain"), "asdlib.train.objectives")
)
#: back-end kind -> class (asdlib.backends.base); settings: ``backend.conf``
BACKENDS: Registry[Any] = Registry(
    "backend",
    {
        "knn": "asdlib.backends.knn",
        "knn_smote": "asdlib.backends.knn_variants",
        "kmeans": "asdlib.backends.knn_variants",
        "knn_rescaled": "asdlib.backends.knn_variants",
        "knn_zscore": "asdlib.backends.domain_norm",
        "knn_centred": "asdlib.backends.domain_norm",
        "knn_memmixup": "asdlib.backends.domain_norm",
        "knn_density": "asdlib.backends.domain_norm",
        "knn_routed": "asdlib.backends.domain_norm",
        "mahalanobis": "asdlib.backends.mahalanobis",
        "fusion": "asdlib.backends.fusion",
    },
)
