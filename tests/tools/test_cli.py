"""The ``logserver`` command line: every subcommand is there, and a command builds only
its own parser (``logserver cat`` must not import the server and the tools to start)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from logserver.cli import _COMMANDS, main

NAMES = [name for names, _ in _COMMANDS for name in names]


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in NAMES), out


@pytest.mark.parametrize("name", NAMES)
def test_each_command_has_its_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([name, "--help"])
    assert exited.value.code == 0
    assert f"usage: logserver {name}" in capsys.readouterr().out


@pytest.mark.process
def test_cat_builds_only_the_readers_parser() -> None:
    """Parsing ``cat``'s command line imports neither the server's configuration (and its
    storage) nor the tools: that start-up is paid by every ``logserver cat``."""
    probe = (
        "import sys; from logserver.cli import _parser; "
        "_parser(['cat', 'app', '--zk', 'h:1']).parse_args(['cat', 'app', '--zk', 'h:1']); "
        "print(sorted(m for m in ('logserver.config', 'logserver.tools.demo', "
        "'logserver.tools.cluster', 'logserver.tools.repair', 'logserver.agent') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
