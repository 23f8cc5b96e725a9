"""What must hold for the structlog integration: each rendered event is sent, complete."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import structlog

from logclient import LogServerLoggerFactory

from .conftest import ClientFactory, InProcFactory


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """structlog's configuration is global: every test starts and ends with the defaults."""
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def test_rendered_events_arrive_with_level_logger_and_fields(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """With the production-style chain (contextvars, level, ISO UTC time, JSONRenderer), each
    event arrives as its JSON, with bound and context fields, its level and its logger name."""
    server = inproc()
    client = make_client(server)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=LogServerLoggerFactory(client, category="events"),
        wrapper_class=structlog.make_filtering_bound_logger(10),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(request_id="r-1")
    log = structlog.get_logger("billing").bind(user=7)
    log.info("charged", amount=12.5)
    log.warning("slow", ms=900)
    log.debug("details")
    assert client.flush(5)
    events = [json.loads(m) for m in server.messages("events")]
    assert [e["event"] for e in events] == ["charged", "slow", "details"]
    first = events[0]
    assert (first["level"], first["logger"], first["user"], first["amount"]) == (
        "info",
        "billing",
        7,
        12.5,
    )
    assert first["request_id"] == "r-1" and first["timestamp"].endswith("Z")
    assert events[1]["level"] == "warning"


def test_level_and_logger_are_added_when_the_chain_leaves_them_out(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """Without add_log_level the level comes from the method called; without a renderer the
    event dict is sent as JSON."""
    server = inproc()
    client = make_client(server)
    structlog.configure(
        processors=[structlog.processors.JSONRenderer()],
        logger_factory=LogServerLoggerFactory(client),
    )
    structlog.get_logger("svc").error("bad", code=3)
    structlog.configure(processors=[], logger_factory=LogServerLoggerFactory(client))
    structlog.get_logger().info("raw", n=1)
    assert client.flush(5)
    first, second = (json.loads(m) for m in server.messages("app"))
    assert first == {"level": "error", "logger": "svc", "event": "bad", "code": 3}
    assert second == {"event": "raw", "n": 1, "level": "info"}
