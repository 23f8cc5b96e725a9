"""What must hold for LogServerHandler: one JSON object per record, never raising."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from logclient import LogClient, LogServerHandler, SpoolPolicy, StaticServers

from .conftest import ClientFactory, InProcFactory
from .inproc_server import InProcessLogServer


@pytest.fixture
def app_logger() -> Iterator[logging.Logger]:
    """A logger of the test's own, without propagation, handlers removed after."""
    logger = logging.getLogger("tests.client.app")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def sent(server: InProcessLogServer, category: str = "app") -> list[dict]:
    return [json.loads(m) for m in server.messages(category)]


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque thing>"


def test_each_record_becomes_one_json_object(
    inproc: InProcFactory, make_client: ClientFactory, app_logger: logging.Logger
) -> None:
    """time (ISO, UTC), level, logger, the formatted message, exception text and the extra
    fields arrive; values JSON cannot encode arrive as their repr."""
    server = inproc()
    client = make_client(server)
    app_logger.addHandler(LogServerHandler(client, category="app"))
    app_logger.info("user %s logged in", "ada", extra={"user_id": 7, "obj": Opaque()})
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        app_logger.exception("it failed", extra={"message_id": "x"})
    assert client.flush(5)
    first, second = sent(server)
    assert first["level"] == "INFO" and first["logger"] == "tests.client.app"
    assert first["message"] == "user ada logged in"
    assert (first["user_id"], first["obj"]) == (7, "<Opaque thing>")
    assert first["time"].endswith("+00:00") and "T" in first["time"]
    assert "exception" not in first
    assert second["level"] == "ERROR" and second["message"] == "it failed"
    assert "RuntimeError: boom" in second["exception"]
    assert second["message_id"] == "x"
    assert not {"args", "msg", "levelno", "pathname", "exc_info"} & set(first)


def test_emit_never_raises_into_the_app(
    make_client: ClientFactory, app_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing client (here: closed) goes to handleError; the logging call returns."""
    client = make_client("127.0.0.1:1", spool=SpoolPolicy.disabled())
    handler = LogServerHandler(client)
    errors: list[logging.LogRecord] = []
    monkeypatch.setattr(handler, "handleError", errors.append)
    app_logger.addHandler(handler)
    client.close(timeout=1)
    app_logger.warning("after close")
    assert len(errors) == 1 and errors[0].getMessage() == "after close"


def test_logclients_own_records_are_not_fed_back(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """Records from the logclient loggers are not sent through the client they describe."""
    server = inproc()
    client = make_client(server)
    handler = LogServerHandler(client)
    handler.handle(logging.makeLogRecord({"name": "logclient._sender", "msg": "server down"}))
    handler.handle(logging.makeLogRecord({"name": "app", "msg": "hello"}))
    assert client.flush(5)
    assert [d["message"] for d in sent(server)] == ["hello"]


def test_a_handler_that_made_its_client_closes_it(inproc: InProcFactory, tmp_path: Path) -> None:
    """Given client options instead of a client, the handler owns the client and close()
    closes it (after delivering); a shared client is left open."""
    server = inproc()
    owned = LogServerHandler(
        category="own",
        servers=StaticServers([server.endpoint]),
        spool=SpoolPolicy(directory=tmp_path / "s1"),
    )
    owned.handle(logging.makeLogRecord({"name": "app", "msg": "bye"}))
    owned.close()
    assert owned.client.closed
    assert [d["message"] for d in sent(server, "own")] == ["bye"]

    shared = LogClient(servers=StaticServers([server.endpoint]), spool=SpoolPolicy.disabled())
    handler = LogServerHandler(shared)
    handler.close()
    assert not shared.closed
    shared.close()
    with pytest.raises(ValueError):
        LogServerHandler(shared, category="bad category")
