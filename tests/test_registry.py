"""The generic name registry (asdlib.registry) behind heads and training objectives."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from asdlib.registry import Entry, Registry


@dataclass
class Settings:
    size: int = 1


def test_register_get_names_and_contains() -> None:
    reg: Registry[type] = Registry("widget")

    @reg.register("b", Settings)
    class B:
        pass

    @reg.register("a")
    class A:
        pass

    assert reg.names() == ("b", "a")  # registration order
    assert reg.get("b") == Entry("b", B, Settings) and reg.get("a").settings is None
    assert "a" in reg and "c" not in reg


def test_unknown_name_is_one_line_listing_the_known_ones() -> None:
    reg: Registry[type] = Registry("widget")
    reg.register("knob")(int)
    reg.register("dial")(float)
    with pytest.raises(ValueError, match=r"^unknown widget 'lever'; known: knob, dial$"):
        reg.get("lever")


def test_duplicate_registration_is_an_error() -> None:
    reg: Registry[type] = Registry("widget")
    reg.register("knob")(int)
    with pytest.raises(ValueError, match="widget 'knob' is already registered"):
        reg.register("knob")(float)
    assert reg.get("knob").obj is int
