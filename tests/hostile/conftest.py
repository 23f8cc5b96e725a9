"""The hostile suite's tools: attacker processes, a well-behaved client, and /proc figures.

Each test here runs one attack that uses only legal requests against a real
``logserver serve`` process, and checks the figure the attack used to blow up
(memory, connections, descriptors, someone else's records) against its bound,
while a well-behaved client keeps working.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from logclient import BatchPolicy, FailoverPolicy, LogClient, SpoolPolicy, StaticServers
from logserver.tools.launcher import LogServerProcess

ROOT = Path(__file__).resolve().parents[2]
MiB = 2**20


def proc_status(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` figure in bytes (``VmHWM``: peak resident memory)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for pid {pid}")


def open_fds(pid: int) -> int:
    """Descriptors the process holds right now."""
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def raise_fd_limit(needed: int) -> None:
    """Raise this process's soft limit on open files to ``needed`` (attackers inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"the hard limit on open files ({hard}) is below the {needed} this needs")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


class PeakSampler:
    """Samples ``figure()`` every ``interval_s`` on a thread while in the ``with``; ``peak``."""

    def __init__(self, figure: Callable[[], int], interval_s: float = 0.05) -> None:
        self._figure = figure
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-sampler", daemon=True)
        self.peak = 0

    def __enter__(self) -> PeakSampler:
        self.peak = self._figure()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self.peak = max(self.peak, self._figure())

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.peak = max(self.peak, self._figure())
            except OSError:  # the process is gone: the last sample stands
                return


class Attacker:
    """A ``bench.workers.attacker`` process (see that module for the kinds)."""

    def __init__(self, kind: str, **args: Any) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.workers.attacker", json.dumps({"kind": kind, **args})],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self) -> None:
        """Block until an ``idle`` attacker holds all its connections."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.strip() == "READY", f"attacker said {line!r}"

    def result(self, timeout: float = 120.0) -> dict[str, Any]:
        """Stop it (close its stdin) and return its JSON summary."""
        out, _ = self.process.communicate(timeout=timeout)
        assert self.process.returncode == 0, out
        summary: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return summary

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def attackers() -> Iterator[Callable[..., Attacker]]:
    """Start attacker processes; every one is killed after the test."""
    started: list[Attacker] = []

    def start(kind: str, **args: Any) -> Attacker:
        attacker = Attacker(kind, **args)
        started.append(attacker)
        return attacker

    yield start
    for attacker in started:
        attacker.stop()


@pytest.fixture
def good_client(
    clients: list[LogClient], tmp_path: Path
) -> Callable[[LogServerProcess], LogClient]:
    """A well-behaved LogClient of the default shape (1 MiB batches), with a spool to see
    whether it ever had to spill."""

    def make(server: LogServerProcess) -> LogClient:
        client = LogClient(
            servers=StaticServers([server.endpoint]),
            batching=BatchPolicy(linger_s=0.01),
            failover=FailoverPolicy(),
            spool=SpoolPolicy(directory=tmp_path / f"spool-{len(clients)}"),
        )
        clients.append(client)
        return client

    return make
