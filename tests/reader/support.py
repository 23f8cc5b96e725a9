"""Running ``logserver cat`` as an operator would: once, or following in the background."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from typing import Any

from logserver.tools.launcher import wait_for

__all__ = ["Follower", "cat", "cat_json"]


def cat(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """``logserver cat ARGS``, to the end."""
    return subprocess.run(
        [sys.executable, "-m", "logserver", "cat", *args], capture_output=True, timeout=timeout
    )


def cat_json(*args: str) -> list[dict[str, Any]]:
    """The records ``logserver cat --json ARGS`` prints (it must succeed)."""
    done = cat(*args, "--json")
    assert done.returncode == 0, done.stderr.decode()
    return [json.loads(line) for line in done.stdout.splitlines()]


class Follower:
    """``logserver cat -f --json ...`` in the background; its records are collected as
    they come (a thread reads its output), its stderr too."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "logserver", "cat", "--follow", "--json", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.records: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._out, daemon=True),
            threading.Thread(target=self._err, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _out(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._lock:
                self.records.append(json.loads(line))

    def _err(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._lock:
                self.errors.append(line.decode(errors="replace").rstrip())

    def messages(self) -> list[str]:
        with self._lock:
            return [r["message"] for r in self.records]

    def wait_messages(self, expected: set[str], timeout: float = 60) -> None:
        """Wait until every one of ``expected`` has been printed."""
        wait_for(
            lambda: expected <= set(self.messages()),
            timeout,
            interval_s=0.05,
            what=f"{len(expected - set(self.messages()))} records to be followed "
            f"(stderr: {self.errors[-5:]})",
        )

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 30) -> int:
        """SIGINT (Ctrl-C), and the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            status = self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(10)
        for t in self._threads:
            t.join(5)
        return status
