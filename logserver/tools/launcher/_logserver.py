"""Real ``logserver serve`` processes."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from logserver.tools.launcher import _process
from logserver.tools.launcher._common import LaunchError, ZooKeeper, wait_for

# ------------------------------------------------------------------------ logserver


@dataclass
class LogServerProcess:
    """A real ``logserver serve`` process.

    The server writes a ready file (JSON: host, port, pid) once its storage is
    recovered and its port listens; :meth:`start` waits for it, so a port of 0
    works and :attr:`port` is the real one. :meth:`restart` reuses the same port
    and data directory, as an operator's restart would.
    """

    zk_hosts: str
    data_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    zk_path: str = "/logservers"
    fsync: str = "always"
    session_timeout_s: float = 4.0
    extra_args: Sequence[str] = ()
    env: dict[str, str] = field(default_factory=dict)
    #: Working directory (``python -m`` imports from it first: a checkout of other code).
    cwd: Path | None = None
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    pid: int | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def ready_file(self) -> Path:
        return self.data_dir / "ready.json"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "logserver",
            "serve",
            "--zk",
            self.zk_hosts,
            "--zk-path",
            self.zk_path,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--fsync",
            self.fsync,
            "--session-timeout",
            str(self.session_timeout_s),
            "--ready-file",
            str(self.ready_file),
            *self.extra_args,
        ]

    def start(self, timeout: float = 30.0, wait: bool = True) -> LogServerProcess:
        """Start the process; with ``wait``, return once it listens (not necessarily registered)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.ready_file.unlink(missing_ok=True)
        env = {**os.environ, "LOGSERVER_LOG_FORMAT": "json", **self.env}
        self.process = _process.spawn(self.command(), self._log_path, env, cwd=self.cwd)
        self.pid = self.process.pid
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise LaunchError(
                    f"logserver exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                info = json.loads(self.ready_file.read_text())
            except (OSError, ValueError):
                return False
            if info.get("pid") != self.pid:
                return False
            self.port = int(info["port"])
            return True

        wait_for(ready, timeout, interval_s=0.05, what=f"logserver in {self.data_dir} to listen")

    @property
    def _log_path(self) -> Path:
        return self.log_path or self.data_dir / "logserver.log"

    def log_tail(self, chars: int = 4000) -> str:
        return _process.log_tail(self._log_path, chars)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        """Send a real signal (SIGKILL, SIGSTOP, SIGCONT, SIGTERM...)."""
        if self.process is None:
            raise LaunchError("logserver is not running")
        os.kill(self.process.pid, signum)

    def kill(self) -> None:
        """SIGKILL and reap: the server dies mid-whatever, like a crashed host."""
        _process.kill(self.process)

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM (graceful: deregister, drain, sync) and wait; return the exit status."""
        return _process.terminate(self.process, "logserver", timeout)

    def restart(self, timeout: float = 30.0) -> LogServerProcess:
        """Start again on the same port and data directory."""
        if self.alive():
            self.terminate()
        return self.start(timeout)

    def stop(self) -> None:
        """Whatever state it is in, make it gone."""
        _process.stop(self.process, "logserver")


def start_logservers(
    zk_hosts: str, base_dir: Path, count: int, **kwargs: object
) -> list[LogServerProcess]:
    """Start ``count`` logservers with data directories ``base_dir/server-N``; all listen on return."""
    servers = [
        LogServerProcess(zk_hosts=zk_hosts, data_dir=base_dir / f"server-{i + 1}", **kwargs)  # type: ignore[arg-type]
        for i in range(count)
    ]
    for server in servers:
        server.start(wait=False)
    for server in servers:
        server.wait_ready()
    return servers


@contextlib.contextmanager
def stopping(*things: ZooKeeper | LogServerProcess) -> Iterator[None]:
    """Stop every thing on the way out, last started first."""
    try:
        yield
    finally:
        for thing in reversed(things):
            with contextlib.suppress(Exception):
                thing.stop()
