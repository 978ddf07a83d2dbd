"""Ctrl-C anywhere in a command is one error line and exit 130, never a traceback."""

import pytest

from orchestrator import cli


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch: pytest.MonkeyPatch, capsys, tmp_path) -> None:
    def interrupted(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "load_plan", interrupted)
    assert cli.main([str(tmp_path / "plan.toml"), "--dry-run"]) == 130
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [
        "error: interrupted (Ctrl-C): the step under way was stopped; rerun to see what is left to do"
    ]
