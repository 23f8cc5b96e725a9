"""Driving a real LogClient in integration and fault tests: logging numbered messages at
once or from a steady producer, and waits on what the client has acknowledged.

Shared by ``tests/client`` and ``tests/faults``. What the servers stored is read
back with ``tests/readback.py``; the ``clients`` fixture (``tests/conftest.py``)
closes the clients a test made.
"""

from __future__ import annotations

import threading
from pathlib import Path

from logclient import BatchPolicy, FailoverPolicy, LogClient, SpoolPolicy
from logserver.tools.launcher import wait_for
from tests.helpers import numbered
from tests.readback import read_unique

__all__ = [
    "BATCHING",
    "FAILOVER",
    "Producer",
    "log_all",
    "messages",
    "progress",
    "sized_client",
    "wait_known",
    "zk_client",
]

FAILOVER = FailoverPolicy(
    connect_timeout_s=1.0,
    rpc_timeout_s=1.5,
    down_backoff_s=0.5,
    max_down_backoff_s=2.0,
    probe_interval_s=0.2,
)
BATCHING = BatchPolicy(max_records=200, linger_s=0.01)


def zk_client(
    clients: list[LogClient], zk_hosts: str, zk_path: str, tmp_path: Path, **options: object
) -> LogClient:
    """A LogClient on ZooKeeper discovery with test-sized policies and a spool under tmp_path."""
    return sized_client(clients, tmp_path, zk_hosts=zk_hosts, zk_path=zk_path, **options)


def sized_client(clients: list[LogClient], tmp_path: Path, **options: object) -> LogClient:
    """A LogClient (options name its discovery) with test-sized policies and a spool under
    tmp_path, appended to ``clients`` (the fixture closes them)."""
    options.setdefault("failover", FAILOVER)
    options.setdefault("batching", BATCHING)
    options.setdefault("spool", SpoolPolicy(directory=tmp_path / f"spool-{len(clients)}"))
    client = LogClient(**options)  # type: ignore[arg-type]
    clients.append(client)
    return client


class Producer:
    """Logs numbered messages from a thread, at a steady pace, until stopped.

    ``backlog``: at most about that many records logged and not yet settled; past it the
    producer waits for the client. A producer faster than the servers then keeps the
    client's windows full without piling up a queue that would only spill to the spool
    and make every later wait longer (on a loaded machine, much longer).
    """

    def __init__(
        self, client: LogClient, prefix: str, per_second: int = 5000, backlog: int | None = None
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.count = 0
        self._pause = 100 / per_second
        self._backlog = backlog
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"producer-{prefix}")

    def __enter__(self) -> Producer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._backlog is not None and self.client.stats().unsettled >= self._backlog:
                self._stop.wait(0.005)
                continue
            for _ in range(100):
                self.client.log("app", f"{self.prefix}-{self.count:06d}")
                self.count += 1
            self._stop.wait(self._pause)

    def stop(self) -> list[str]:
        """Stop logging; return every message logged, in order."""
        self._stop.set()
        self._thread.join(10)
        return numbered(self.prefix, self.count)


def log_all(
    client: LogClient, logged: list[str], *, flush: float | None = 30, category: str = "app"
) -> list[str]:
    """Log ``logged`` in order and, unless ``flush`` is None, require every one of them to
    be acknowledged within ``flush`` seconds; returns ``logged`` (what a test expects
    stored): ``expected = log_all(client, numbered("x", 1000))``."""
    for message in logged:
        client.log(category, message)
    if flush is not None:
        assert client.flush(flush), client.stats()
    return logged


def messages(endpoints: list[str], category: str = "app") -> list[str]:
    """Every message on the servers, once per (producer, sequence, index), in logging order."""
    return [r.message.decode() for r in read_unique(endpoints, category)]


def wait_known(client: LogClient, count: int, timeout: float = 20) -> None:
    """Wait until the client knows ``count`` servers."""
    wait_for(
        lambda: len(client.stats().known_servers) == count,
        timeout,
        what=f"the client to know {count} servers",
    )


def progress(client: LogClient, records: int, timeout: float = 30) -> None:
    """Wait until the client had ``records`` more acknowledged than now."""
    target = client.stats().acknowledged + records
    wait_for(
        lambda: client.stats().acknowledged >= target,
        timeout,
        what=f"{records} more records acknowledged: {client.stats()!r}",
    )
