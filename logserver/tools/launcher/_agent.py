"""Real ``logserver discovery-agent`` processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from logserver.tools.launcher import _process
from logserver.tools.launcher._common import LaunchError, wait_for
from logwire.serversfile import ServersFile, ServersFileError, parse


@dataclass
class DiscoveryAgentProcess:
    """A real ``logserver discovery-agent`` process writing ``file``.

    :meth:`start` waits until the file was written by this very process
    (its ``agent.pid``), i.e. ZooKeeper has answered and the list is in the
    file. :meth:`document` reads the file as apps would.
    """

    zk_hosts: str
    file: Path
    zk_path: str = "/logservers"
    heartbeat_s: float = 5.0
    session_timeout_s: float = 4.0
    check_interval_s: float = 0.1
    extra_args: Sequence[str] = ()
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "logserver",
            "discovery-agent",
            "--zk",
            self.zk_hosts,
            "--zk-path",
            self.zk_path,
            "--file",
            str(self.file),
            "--heartbeat",
            str(self.heartbeat_s),
            "--session-timeout",
            str(self.session_timeout_s),
            "--check-interval",
            str(self.check_interval_s),
            *self.extra_args,
        ]

    def start(self, timeout: float = 30.0, wait: bool = True) -> DiscoveryAgentProcess:
        """Start the agent; with ``wait``, return once it has written the file."""
        env = {**os.environ, "LOGSERVER_LOG_FORMAT": "json", **self.env}
        self.process = _process.spawn(self.command(), self._log_path, env)
        if wait:
            self.wait_written(timeout)
        return self

    def wait_written(self, timeout: float = 30.0) -> ServersFile:
        """Wait until this process has written the file; its content."""

        def written() -> ServersFile | None:
            if self.process is not None and self.process.poll() is not None:
                raise LaunchError(
                    f"discovery agent exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            document = self.document()
            return document if document is not None and document.agent.pid == self.pid else None

        document = wait_for(written, timeout, what=f"the discovery agent to write {self.file}")
        assert document is not None  # wait_for returns only what is truthy
        return document

    def document(self) -> ServersFile | None:
        """The file's content now (None if missing or unusable)."""
        try:
            return parse(self.file.read_bytes())
        except (OSError, ServersFileError):
            return None

    @property
    def _log_path(self) -> Path:
        return self.log_path or self.file.with_name(self.file.name + ".agent.log")

    def log_tail(self, chars: int = 4000) -> str:
        return _process.log_tail(self._log_path, chars)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.process is None:
            raise LaunchError("the discovery agent is not running")
        os.kill(self.process.pid, signum)

    def kill(self) -> None:
        """SIGKILL and reap: the file stays as it was."""
        _process.kill(self.process)

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM (the agent marks the file ``stopped``) and wait; the exit status."""
        return _process.terminate(self.process, "discovery agent", timeout)

    def stop(self) -> None:
        """Whatever state it is in, make it gone."""
        _process.stop(self.process, "discovery agent")
