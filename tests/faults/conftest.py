"""Fixtures for the fault tests: real mounts the test makes (and always removes).

The tests here break things for real (a full or read-only filesystem, SIGKILL,
SIGSTOP, a ZooKeeper ensemble losing nodes, a network partition) against real
logserver and ZooKeeper processes, and check what must hold afterwards.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

Mount = Callable[[Path, str], Path]


@pytest.fixture(autouse=True)
def _private_state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


def run(*command: str) -> subprocess.CompletedProcess[str]:
    """Run a system command (mount, ip, tc) and return its result without raising."""
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def must(*command: str) -> None:
    """Run a system command; fail the test with its stderr if it fails."""
    result = run(*command)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed: {result.stderr.strip()}")


@pytest.fixture
def tmpfs() -> Iterator[Mount]:
    """Mount a tmpfs of ``size`` (``"2m"``) on a directory; unmounted after the test.

    Request it before ``logserver_factory`` so the servers are stopped first; a
    mount still busy then is detached lazily (``umount -l``) so nothing is left.
    Skips the test when this machine does not allow mounting.
    """
    mounted: list[Path] = []

    def mount(path: Path, size: str) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        result = run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))
        if result.returncode != 0:
            pytest.skip(f"mounting a tmpfs is not permitted here: {result.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        if run("umount", str(path)).returncode != 0:
            run("umount", "-l", str(path))
