"""Fixtures for the wire tests: servers on 127.0.0.1 with a recording handler."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from logserver.transport import ThriftServer, WireLimits
from tests.transport.helpers import RecordingHandler

ServerFactory = Callable[..., ThriftServer]


@pytest.fixture
def handler() -> RecordingHandler:
    return RecordingHandler()


@pytest.fixture
def make_server(handler: RecordingHandler) -> Iterator[ServerFactory]:
    """Start ThriftServers (real sockets, real threads); every one closed after the test."""
    started: list[ThriftServer] = []

    def start(handler_: object | None = None, **limits: float) -> ThriftServer:
        server = ThriftServer(
            handler_ if handler_ is not None else handler,
            "127.0.0.1",
            0,
            WireLimits(**limits),  # type: ignore[arg-type]
        )
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.close(timeout=2.0)


@pytest.fixture
def server(make_server: ServerFactory) -> ThriftServer:
    """A server with the default limits."""
    return make_server()
