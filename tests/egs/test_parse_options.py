"""egs/TEMPLATE/utils/parse_options.sh: every rule of the Kaldi option grammar, through real bash."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

PARSE_OPTIONS = Path(__file__).resolve().parents[2] / "egs" / "TEMPLATE" / "utils" / "parse_options.sh"

SCRIPT = """\
#!/usr/bin/env bash
set -euo pipefail
stage=1
stop_stage=10
use_gpu=false
opts=
help_message="Usage: demo.sh [options] <dir>
  --stage N   first stage"
. {parse_options}
echo "stage=${{stage}}|stop_stage=${{stop_stage}}|use_gpu=${{use_gpu}}|opts=${{opts}}|nargs=$#|args=$*"
# helpers must not leak into the caller
set | grep -c '^__po_' || true
"""


@pytest.fixture
def demo(tmp_path: Path):
    script = tmp_path / "demo.sh"
    script.write_text(SCRIPT.format(parse_options=PARSE_OPTIONS))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(script), *args], cwd=tmp_path, capture_output=True, text=True, timeout=30)

    return run


def values(proc: subprocess.CompletedProcess) -> dict[str, str]:
    assert proc.returncode == 0, proc.stderr
    first, leaked = proc.stdout.splitlines()
    assert leaked == "0", "parse_options.sh left __po_* helpers behind"
    return dict(kv.split("=", 1) for kv in first.split("|"))


def test_defaults_without_options(demo):
    assert values(demo()) == {
        "stage": "1",
        "stop_stage": "10",
        "use_gpu": "false",
        "opts": "",
        "nargs": "0",
        "args": "",
    }


def test_space_and_equals_forms_and_dash_to_underscore(demo):
    v = values(demo("--stage", "3", "--stop-stage=5", "--use_gpu", "true", "--opts", "--lr 0.1 --x=y"))
    assert (v["stage"], v["stop_stage"], v["use_gpu"], v["opts"]) == ("3", "5", "true", "--lr 0.1 --x=y")


def test_value_with_equals_sign_after_equals_form(demo):
    assert values(demo("--opts=a=b"))["opts"] == "a=b"


def test_empty_value(demo):
    assert values(demo("--opts", ""))["opts"] == ""


def test_stops_at_first_positional_argument(demo):
    v = values(demo("--stage", "2", "data/dir", "--stage", "9"))
    assert (v["stage"], v["nargs"], v["args"]) == ("2", "3", "data/dir --stage 9")


def test_double_dash_ends_options(demo):
    v = values(demo("--", "--stage", "9"))
    assert (v["stage"], v["args"]) == ("1", "--stage 9")


@pytest.mark.parametrize("args", [["--nope", "1"], ["--nope=1"], ["--bad.name", "1"]])
def test_undeclared_option_is_invalid(demo, args):
    proc = demo(*args)
    assert proc.returncode == 1
    assert "invalid option" in proc.stderr and "demo.sh" in proc.stderr


@pytest.mark.parametrize("value", ["yes", "1", ""])
def test_boolean_needs_true_or_false(demo, value):
    proc = demo("--use_gpu", value)
    assert proc.returncode == 1
    assert "true or false" in proc.stderr


def test_non_boolean_accepts_anything(demo):
    v = values(demo("--stage", "true", "--opts", "false"))
    assert (v["stage"], v["opts"]) == ("true", "false")


def test_missing_value_is_an_error(demo):
    proc = demo("--stage")
    assert proc.returncode == 1 and "needs a value" in proc.stderr


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_message_and_exits_zero(demo, flag):
    proc = demo("--stage", "2", flag)
    assert proc.returncode == 0
    assert proc.stdout.startswith("Usage: demo.sh [options] <dir>\n  --stage N")
    assert "stage=" not in proc.stdout


def test_config_file_sets_variables_and_command_line_wins(demo, tmp_path):
    (tmp_path / "a.conf").write_text("# comment\n\nstage=7\nstop_stage=8  # trailing\nuse_gpu=true\n")
    # --stage comes BEFORE --config and still wins over the file.
    v = values(demo("--stage", "2", "--config", "a.conf", "rest"))
    assert (v["stage"], v["stop_stage"], v["use_gpu"], v["args"]) == ("2", "8", "true", "rest")
    assert values(demo("--config=a.conf"))["stage"] == "7"


def test_several_config_files_in_order(demo, tmp_path):
    (tmp_path / "a.conf").write_text("stage=7\nstop_stage=8\n")
    (tmp_path / "b.conf").write_text("stage=9\n")
    v = values(demo("--config", "a.conf", "--config", "b.conf"))
    assert (v["stage"], v["stop_stage"]) == ("9", "8")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("nope=1\n", "invalid option 'nope'"),
        ("use_gpu=1\n", "true or false"),
        ("echo hi\n", "expected name=value"),
    ],
)
def test_bad_config_file(demo, tmp_path, content, message):
    (tmp_path / "bad.conf").write_text(content)
    proc = demo("--config", "bad.conf")
    assert proc.returncode == 1
    assert message in proc.stderr and "bad.conf" in proc.stderr


def test_missing_config_file(demo):
    proc = demo("--config", "missing.conf")
    assert proc.returncode == 1 and "missing.conf" in proc.stderr
