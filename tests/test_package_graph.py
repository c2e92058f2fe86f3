"""The package import graph points down (bin -> train -> models/losses/backends -> data/io, configs at
the bottom): no cycle between packages, and scoring jobs do not load the model stack.

Each package is imported alone, every module of it, in a fresh interpreter; the asdlib modules that
this pulls into ``sys.modules`` give its edges.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.name for p in (REPO / "asdlib").iterdir() if (p / "__init__.py").is_file())
MODULES = sorted(p.stem for p in (REPO / "asdlib").glob("*.py") if p.stem != "__init__")
UNITS = PACKAGES + MODULES  # asdlib.<unit>: a package or a top-level module

PROBE = """
import importlib, json, pkgutil, sys
unit = sys.argv[1]
mod = importlib.import_module("asdlib." + unit)
if hasattr(mod, "__path__"):
    for info in pkgutil.walk_packages(mod.__path__, "asdlib." + unit + "."):
        importlib.import_module(info.name)
print(json.dumps(sorted(m for m in sys.modules if m == "asdlib" or m.startswith("asdlib."))))
"""


def imported_by(target: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", PROBE, target], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def unit_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return {u: {unit_of(m) for m in imported_by(u)} - {u, None} for u in UNITS}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle as a list of units (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(u: str) -> list[str] | None:
        state[u] = 1
        stack.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == 1:
                return stack[stack.index(v) :] + [v]
            if v not in state and (found := visit(v)):
                return found
        state[u] = 2
        stack.pop()
        return None

    for u in sorted(graph):
        if u not in state and (found := visit(u)):
            return found
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_cycle_between_packages(graph: dict[str, set[str]]) -> None:
    assert find_cycle(graph) is None, f"import cycle between asdlib packages: {' -> '.join(find_cycle(graph))}"


def test_layers_point_down(graph: dict[str, set[str]]) -> None:
    """The bottom layers import nothing above them."""
    assert graph["io"] <= {"utils"}
    # the registries: names of components, whose modules they import by name only on a look-up
    assert graph["registry"] == set()
    assert graph["config"] <= {"io", "utils", "registry"}
    assert graph["utils"] == set()
    assert graph["devices"] == set()  # the launchers use it: no model stack, torch imported lazily
    assert graph["years"] <= {"registry"}  # the per-year table: read by data, metrics, synth and bin
    assert graph["data"] <= {"io", "config", "utils", "years", "registry"}
    for lower in ("models", "losses", "backends", "data", "io", "metrics", "config"):
        assert not graph[lower] & {"train", "bin", "synth"}, (
            f"asdlib.{lower} imports {graph[lower] & {'train', 'bin', 'synth'}}"
        )


def test_scoring_does_not_load_the_model_stack() -> None:
    """A scoring job (stage 5, many in parallel) needs embeddings and the back end only."""
    loaded = imported_by("bin.score")
    assert "asdlib.bin.extract" not in loaded
    assert not [m for m in loaded if m.startswith(("asdlib.models", "asdlib.train"))], loaded
