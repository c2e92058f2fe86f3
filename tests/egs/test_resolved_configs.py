"""Every recipe YAML resolves to the config its full copy gave before configs became diffs.

tests/fixtures/resolved_configs.json holds, per YAML under egs/*/conf (train.yaml and
tuning/*.yaml), the fully resolved config (``to_dict(load_train_config(path))``) as the loader gave
it when every tuning YAML was still a full copy of its recipe's train.yaml. A change to a recipe
YAML that changes what it resolves to must change the fixture too, on purpose: rewrite the entries
of the YAMLs you changed or added with ``python tests/egs/test_resolved_configs.py egs/<recipe>/conf/...yaml``
and review the diff. ``data.train_sets`` is not compared: recipe YAMLs no longer set it (asd.sh
--train_sets is its only source, docs/design.md §3), so each now resolves to the default there.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from asdlib.config import load_train_config
from asdlib.io.config import to_dict

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "resolved_configs.json"
NOT_COMPARED = {"data.train_sets"}  # given by asd.sh --train_sets, not by the YAML


def recipe_yamls() -> list[str]:
    """Every training YAML of the recipes, relative to the repository root."""
    paths = [*REPO.glob("egs/*/conf/*.yaml"), *REPO.glob("egs/*/conf/tuning/*.yaml")]
    return sorted(str(p.relative_to(REPO)) for p in paths)


def differences(want: Any, got: Any, key: str = "") -> list[str]:
    """Dotted keys where ``got`` differs from ``want`` (mappings compared key by key)."""
    if key in NOT_COMPARED:
        return []
    if isinstance(want, dict) and isinstance(got, dict):
        return [
            d
            for k in sorted(set(want) | set(got))
            for d in differences(want.get(k, "<absent>"), got.get(k, "<absent>"), f"{key}.{k}" if key else k)
        ]
    return [] if want == got else [f"{key or '<top>'}: fixture {want!r}, now {got!r}"]


FIXED = json.loads(FIXTURE.read_text())


def test_the_fixture_covers_every_recipe_yaml() -> None:
    missing = sorted(set(recipe_yamls()) - set(FIXED))
    stale = sorted(set(FIXED) - set(recipe_yamls()))
    assert not missing, (
        f"{missing[0]} has no entry in {FIXTURE.name}; add it deliberately: "
        f"python tests/egs/test_resolved_configs.py {missing[0]}"
    )
    assert not stale, f"{FIXTURE.name} has an entry for {stale[0]}, which no longer exists; delete the entry"


@pytest.mark.parametrize("rel", recipe_yamls())
def test_resolved_config_equals_the_fixture(rel: str) -> None:
    if rel not in FIXED:
        pytest.skip("no fixture entry (test_the_fixture_covers_every_recipe_yaml fails)")
    diffs = differences(FIXED[rel], to_dict(load_train_config(REPO / rel)))
    assert not diffs, f"{rel} resolves differently from {FIXTURE.name}: " + "; ".join(diffs)


@pytest.mark.parametrize("rel", recipe_yamls())
def test_no_recipe_yaml_sets_train_sets(rel: str) -> None:
    """Loaded as asd.sh loads it: a data.train_sets in the YAML would be an error there."""
    assert load_train_config(REPO / rel, train_sets=["train"]).data.train_sets == ["train"]


def write_entries(rels: list[str]) -> None:
    """Rewrite the fixture entries of ``rels`` from the current loader (one entry per line, sorted)."""
    fixed = dict(FIXED)
    for rel in rels:
        fixed[rel] = to_dict(load_train_config(REPO / rel))
    lines = [f"{json.dumps(k)}: {json.dumps(fixed[k], sort_keys=True)}" for k in sorted(fixed)]
    FIXTURE.write_text("{\n" + ",\n".join(lines) + "\n}\n")


if __name__ == "__main__":
    write_entries(sys.argv[1:])
