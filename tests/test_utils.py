"""asdlib.utils.run_main: Ctrl-C is one line and exit code 130, as the shell reports SIGINT."""

from __future__ import annotations

from asdlib.utils import run_main


def test_ctrl_c_is_one_error_line_and_exit_130(capsys) -> None:
    def main() -> int:
        raise KeyboardInterrupt

    assert run_main(main) == 130
    assert capsys.readouterr().err.splitlines() == ["ERROR: interrupted (Ctrl-C)"]
