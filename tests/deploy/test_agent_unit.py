"""The discovery agent's systemd unit agrees with the command it runs."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from logserver.agent import add_arguments

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def agent_flags() -> set[str]:
    parser = argparse.ArgumentParser()
    add_arguments(parser.add_subparsers())
    (agent,) = parser._subparsers._group_actions[0].choices.values()  # type: ignore[union-attr]
    return {opt for action in agent._actions for opt in action.option_strings}


def test_the_agent_unit_uses_only_real_flags_and_keeps_its_file_across_reboots() -> None:
    """ExecStart runs `logserver discovery-agent` with flags the command knows; the ensemble comes
    from LOGSERVER_ZK (its EnvironmentFile), and the file lives in the unit's StateDirectory,
    which survives reboots and which the apps can read."""
    unit = (DEPLOY / "systemd" / "logserver-discovery-agent.service").read_text()
    lines = unit.splitlines()
    (exec_line,) = [ln for ln in lines if ln.startswith("ExecStart=")]
    words = shlex.split(exec_line.removeprefix("ExecStart="))
    assert words[0].endswith("/logserver") and words[1] == "discovery-agent"
    flags = {w for w in words if w.startswith("--")}
    assert flags <= agent_flags()
    assert "--zk" not in flags and "LOGSERVER_ZK=" in unit
    file = Path(words[words.index("--file") + 1])
    assert file.parent == Path("/var/lib/logservice")
    assert "StateDirectory=logservice" in lines and "StateDirectoryMode=0755" in lines
    assert "Restart=always" in lines
