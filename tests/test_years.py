"""The per-year table (asdlib.years): lookups, checks on new rows, and a year added by a plugin module."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from asdlib.years import YEARS, UnknownYearError, get_year, metric_years, register_year

REPO = Path(__file__).resolve().parents[1]


def test_unknown_year_names_the_known_ones():
    with pytest.raises(
        UnknownYearError, match="unsupported DCASE year 2019; known years: 2020, .*2026 .*register_year"
    ):
        get_year(2019)


def test_every_scoring_year_has_a_metric():
    assert all(get_year(info.scoring_year).metric is not None for info in YEARS.values())
    assert get_year(2026).scoring_year == 2025 and 2026 not in metric_years()


@pytest.mark.parametrize(
    "change,message",
    [
        ({}, "already registered"),
        ({"year": 2099, "naming": "fancy"}, "naming 'fancy'"),
        ({"year": 2099, "metric": None, "scoring_year": 2099}, "scoring_year 2099 has no official metric"),
        ({"year": 2099, "zenodo": {"test": get_year(2024).zenodo["dev"]}}, "zenodo kinds test"),
    ],
)
def test_register_year_rejects_bad_rows(change, message):
    with pytest.raises(ValueError, match=message):
        register_year(dataclasses.replace(get_year(2024), **change))
    assert 2099 not in YEARS


PLUGIN = """
import dataclasses
from asdlib.years import get_year, register_year
register_year(dataclasses.replace(get_year(2025), year=2027, description="a year from a plugin", eval_list=False))
"""
PROBE = """
from asdlib.bin.download_dcase import get_parser
from asdlib.data.dcase import parse_name
from asdlib.data.zenodo import archive
print(parse_name(2027, "section_00_0001.wav").section, archive(2027, "dev", "fan").url)
get_parser().parse_args(["--year", "2027", "--root", "x"])
"""


def test_a_plugin_module_adds_a_year(tmp_path):
    """One register_year call in a plug-in module named by $ASDLIB_PLUGINS reaches naming, downloads and CLIs."""
    (tmp_path / "my_years.py").write_text(PLUGIN)
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{tmp_path}", "ASDLIB_PLUGINS": "my_years"}
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["00", "https://zenodo.org/records/15097779/files/dev_fan.zip"]
    env["ASDLIB_PLUGINS"] = "no_such_module"
    proc = subprocess.run(
        [sys.executable, "-c", "import asdlib.years"], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode != 0 and "asdlib plug-in 'no_such_module'" in proc.stderr
