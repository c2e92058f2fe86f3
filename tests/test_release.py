"""Release: one version in asdlib/__init__.py and setup.py, and a tree and wheel anyone may redistribute
(no file of the DCASE metadata that asdlib fetches instead of shipping, by path or by content)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import asdlib
from asdlib.data.resources import SOURCES, fetched_files

REPO = Path(__file__).resolve().parents[1]
FETCHED_FOLDERS = tuple(f"asdlib/resources/dcase/{f}/" for f, s in SOURCES.items() if not s.shipped)


def test_version_is_single_sourced():
    proc = subprocess.run([sys.executable, "setup.py", "--version"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == asdlib.__version__
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## [{asdlib.__version__}]" in changelog and "## [Unreleased]" in changelog


def _offending(entries: dict[str, bytes]) -> list[str]:
    """Entries that are fetched-only metadata, by folder or by sha256 (a copy under another name)."""
    digests = set(fetched_files().values())
    return sorted(
        name
        for name, data in entries.items()
        if name.startswith(FETCHED_FOLDERS) or hashlib.sha256(data).hexdigest() in digests
    )


def test_git_tree_holds_no_fetched_metadata():
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True, text=True)
    files = [n for n in listed.stdout.split("\0") if n and (REPO / n).is_file() and not (REPO / n).is_symlink()]
    assert _offending({n: (REPO / n).read_bytes() for n in files}) == []
    assert "asdlib/resources/dcase/fetched.sha256" in files


def test_wheel_holds_no_fetched_metadata(wheel):
    with zipfile.ZipFile(wheel) as zf:
        entries = {n: zf.read(n) for n in zf.namelist() if not n.endswith("/")}
    assert _offending(entries) == []
    names = set(entries)
    assert "asdlib/resources/dcase/fetched.sha256" in names  # the table that the fetch checks against
    assert any(n.startswith("asdlib/resources/dcase/evaluator2022/") for n in names)  # MIT: shipped
    assert "asdlib/bin/fetch_metadata.py" in names
