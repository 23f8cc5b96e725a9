"""Fixtures for the client tests.

- ``inproc``: start in-process Thrift servers (a unit-test helper, see
  ``inproc_server.py``); integration tests use ``logserver_factory`` instead.
- ``make_client``: LogClients closed after the test, with test-sized policies.
- Autouse: a private ``$XDG_STATE_HOME`` (default spools never touch the real
  home), and a check that every sender thread a test started has stopped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from logclient import (
    BatchPolicy,
    FailoverPolicy,
    LogClient,
    SpoolPolicy,
    StaticServers,
)
from logserver.tools.launcher import wait_for
from logwire.serverset import Endpoint

from .inproc_server import InProcessLogServer

InProcFactory = Callable[..., InProcessLogServer]
ClientFactory = Callable[..., LogClient]

#: Quick failover for tests: a hung server is given up after 0.5 s.
FAST_FAILOVER = FailoverPolicy(
    connect_timeout_s=0.5,
    rpc_timeout_s=0.5,
    down_backoff_s=0.5,
    max_down_backoff_s=2.0,
    probe_interval_s=0.1,
)


@pytest.fixture(autouse=True)
def _private_state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


def _sender_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("logclient-sender")]


@pytest.fixture(autouse=True)
def _no_thread_left_behind() -> Iterator[None]:
    before = set(_sender_threads())
    yield
    wait_for(
        lambda: not (set(_sender_threads()) - before),
        15,
        what="every logclient sender thread to stop after the test",
    )


@pytest.fixture
def inproc() -> Iterator[InProcFactory]:
    """Start in-process Thrift log servers; all stopped after the test."""
    started: list[InProcessLogServer] = []

    def start(
        name: str | None = None, *, packed: bool = True, compressed: bool = True
    ) -> InProcessLogServer:
        server = InProcessLogServer(
            name=name or f"s{len(started) + 1}", packed=packed, compressed=compressed
        ).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[ClientFactory]:
    """LogClients with fast failover, a short linger and a spool under tmp_path; closed after."""
    clients: list[LogClient] = []

    def make(
        *servers: InProcessLogServer | Endpoint | str,
        source: Any = None,
        spool_dir: Path | None = None,
        **options: Any,
    ) -> LogClient:
        if source is None:
            source = StaticServers(
                [s.endpoint if isinstance(s, InProcessLogServer) else s for s in servers]
            )
        options.setdefault("failover", FAST_FAILOVER)
        options.setdefault("batching", BatchPolicy(max_records=100, linger_s=0.01))
        options.setdefault(
            "spool", SpoolPolicy(directory=spool_dir or tmp_path / f"spool-{len(clients)}")
        )
        client = LogClient(servers=source, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close(timeout=5)
