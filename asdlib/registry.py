"""Name -> implementation registries, at the bottom of the package graph.

Why: a method part (a head, a training objective) is added by registering it in one place; configs
and the trainer look names up here instead of keeping their own if/elif chains and name lists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """One registered name: the object it stands for and the settings dataclass it reads (if any)."""

    name: str
    obj: Any
    settings: type | None


class Registry(Generic[T]):
    """Named entries of one kind (``what``: "head", "objective"), in registration order."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, settings: type | None = None) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; a name registered twice is an error."""

        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.what} '{name}' is already registered (by {self._entries[name].obj!r})")
            self._entries[name] = Entry(name, obj, settings)
            return obj

        return add

    def get(self, name: str) -> Entry:
        """The entry of ``name``; an unknown name is a ValueError that lists the known ones."""
        if name not in self._entries:
            raise ValueError(f"unknown {self.what} '{name}'; known: {', '.join(self.names()) or '(none)'}")
        return self._entries[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
