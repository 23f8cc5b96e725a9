"""What every launched process needs: errors, ports, waiting."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

# Part of logserver's one exception tree; re-exported by the launcher's public face.
from logserver.errors import LaunchError

T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the kernel picked it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for(
    condition: Callable[[], T], timeout: float, interval_s: float = 0.01, what: str = ""
) -> T:
    """Poll ``condition`` until it returns something truthy, and return that; LaunchError after ``timeout``.

    The one polling helper of the project: the launcher, the tools, the tests and
    the benchmarks wait with it rather than sleeping for a guessed time.
    ``condition`` is called at least once, then every ``interval_s`` seconds;
    ``what`` names the awaited event in the error.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise LaunchError(f"timed out after {timeout:.1f}s waiting for {what or condition}")
        time.sleep(interval_s)


def four_letter_word(host: str, port: int, word: str, timeout: float = 1.0) -> str:
    """Send a ZooKeeper four-letter command (``ruok``, ``srvr``...); '' if the node does not answer."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(word.encode())
            chunks = []
            while True:
                data = sock.recv(4096)
                if not data:
                    break
                chunks.append(data)
            return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""


class ZooKeeper(Protocol):
    """What every ZooKeeper source offers its users."""

    @property
    def hosts(self) -> str:
        """The connection string, ``host:port,host:port``."""
        ...

    def stop(self) -> None:
        """Stop what was started (nothing, for an existing ensemble)."""
        ...
