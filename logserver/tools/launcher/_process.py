"""What every launched child process needs: a log file, a tail of it, and a bounded end.

Plain functions on a ``subprocess.Popen``, so that each kind of process
(:class:`LogServerProcess`, :class:`DiscoveryAgentProcess`) keeps its own
fields and readiness check and shares only these mechanics.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from logserver.tools.launcher._common import LaunchError

__all__ = ["kill", "log_tail", "spawn", "stop", "terminate"]


def spawn(
    command: Sequence[str], log_path: Path, env: Mapping[str, str], cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``command`` in a session of its own, stdout and stderr appended to ``log_path``
    (in ``cwd``: ``python -m`` imports from its working directory first)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )


def log_tail(log_path: Path, chars: int = 4000) -> str:
    """The end of a process's log ('' if there is none yet)."""
    try:
        return log_path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def kill(process: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL and reap: the process dies mid-whatever, like a crashed host."""
    if process is None:
        return
    if process.poll() is None:
        process.kill()
    process.wait(10)


def terminate(process: subprocess.Popen[bytes] | None, name: str, timeout: float) -> int:
    """SIGCONT (a stopped process cannot exit), SIGTERM, and wait; the exit status.

    SIGKILL and LaunchError if it does not exit within ``timeout``.
    """
    if process is None:
        return 0
    if process.poll() is None:
        process.send_signal(signal.SIGCONT)
        process.terminate()
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
        raise LaunchError(f"{name} did not exit within {timeout}s of SIGTERM") from None


def stop(process: subprocess.Popen[bytes] | None, name: str) -> None:
    """Whatever state it is in, make it gone (SIGTERM first, bounded)."""
    if process is None:
        return
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)
        with contextlib.suppress(LaunchError):
            terminate(process, name, timeout=10)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)
