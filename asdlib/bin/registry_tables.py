"""Write the tables of registered components into the docs, so that they cannot drift from the code.

A docs page marks each table with ``<!-- registry: NAME -->`` ... ``<!-- /registry -->`` (NAME: upstream
backend, head or objective); this rewrites what lies between the markers from asdlib.registry: every name, the module
that registers it and its settings with their defaults. ``--check`` only reports stale tables (exit 1).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path

from asdlib.io.atomic import atomic_write_text
from asdlib.registry import BACKENDS, HEADS, OBJECTIVES, UPSTREAMS, Registry
from asdlib.utils import run_main, setup_logging

REGISTRIES: dict[str, Registry] = {"upstream": UPSTREAMS, "backend": BACKENDS, "head": HEADS, "objective": OBJECTIVES}
BLOCK = re.compile(r"(<!-- registry: (\w+) -->\n)(.*?)(<!-- /registry -->)", re.S)


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return (
            "null" if f.default is None else str(f.default).lower() if isinstance(f.default, bool) else str(f.default)
        )
    return "[]" if f.default_factory is list else "required"  # type: ignore[comparison-overlap]


def table(registry: Registry) -> str:
    """The Markdown table of one registry: name, module, settings (``conf``) with defaults."""
    rows = ["| name | module | settings (defaults) |", "|---|---|---|"]
    for name in registry.names():
        entry = registry.get(name)
        conf = (
            ", ".join(f"`{f.name}: {_default(f)}`" for f in dataclasses.fields(entry.settings))
            if entry.settings
            else "none"
        )
        rows.append(f"| `{name}` | `{entry.obj.__module__}` | {conf} |")
    return "\n".join(rows) + "\n"


def render(text: str, where: str) -> str:
    def one(m: re.Match) -> str:
        if m.group(2) not in REGISTRIES:
            raise ValueError(f"{where}: unknown registry table '{m.group(2)}'; known: {', '.join(REGISTRIES)}")
        return m.group(1) + table(REGISTRIES[m.group(2)]) + m.group(4)

    return BLOCK.sub(one, text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pages", nargs="+", type=Path, help="Markdown pages with registry tables")
    p.add_argument("--check", action="store_true", help="report stale tables instead of rewriting them")
    p.add_argument("--verbose", type=int, default=1)
    args = p.parse_args(argv)
    setup_logging(args.verbose)
    stale = []
    for page in args.pages:
        old = page.read_text(encoding="utf-8")
        new = render(old, str(page))
        if new != old:
            stale.append(page)
            if not args.check:
                atomic_write_text(page, new)
    if stale and args.check:
        print(
            f"stale registry tables in {', '.join(map(str, stale))}: run python -m asdlib.bin.registry_tables "
            f"{' '.join(map(str, stale))}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
