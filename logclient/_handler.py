"""``logging`` integration: a Handler that sends each record as one JSON object.

Attach it to a logger (or the root logger) and every record becomes a JSON
object in one category: time (ISO 8601, UTC), level, logger, message, the
exception text if any, and the record's extra fields (``extra={...}``); a value
JSON cannot encode is written as its ``repr``. ``emit`` never raises into the
application: failures go to ``logging.Handler.handleError``.

Records of logclient's own loggers are not sent through the client (a client
reporting its own trouble to itself would feed back on itself); give the
``logclient`` logger a handler of its own to see them.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
from json.encoder import encode_basestring as _json_str
from typing import Any

from logclient._client import LogClient
from logwire.categories import category_problem

__all__ = ["JsonFormatter", "LogServerHandler"]

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
_OWN_KEYS = ("time", "level", "logger", "message", "exception", "stack")


#: One encoder for all records: ``json.dumps`` with options builds a new one per call.
_encode = json.JSONEncoder(default=repr, ensure_ascii=False).encode

# The last second formatted, "YYYY-MM-DDTHH:MM:SS": records come many to a second.
_second: tuple[int, str] = (0, "1970-01-01T00:00:00")


def _iso_utc(created: float) -> str:
    """``created`` as ``datetime.fromtimestamp(created, UTC).isoformat(timespec="microseconds")``.

    Written by hand with the date and time cached per second (a third of the
    cost); the microseconds are rounded half-even exactly as ``datetime`` does.
    """
    global _second
    second = math.floor(created)
    micros = round((created - second) * 1e6)
    if micros >= 1_000_000:
        second += 1
        micros -= 1_000_000
    cached, prefix = _second
    if second != cached:
        prefix = _dt.datetime.fromtimestamp(second, _dt.UTC).isoformat(timespec="seconds")[:-6]
        _second = (second, prefix)
    return f"{prefix}.{micros:06d}+00:00"


class JsonFormatter(logging.Formatter):
    """Formats a LogRecord as one JSON object (the LogServerHandler's default)."""

    def format(self, record: logging.LogRecord) -> str:
        # The common record (no exception, stack or extra fields, str values) is
        # written directly, byte for byte what the general path below writes, in a
        # third of its time: this runs in the application's thread on every call.
        if not (record.exc_info or record.exc_text or record.stack_info) and not (
            record.__dict__.keys() - _STANDARD
        ):
            level, name, message = record.levelname, record.name, record.getMessage()
            if type(level) is str and type(name) is str and type(message) is str:
                return (
                    f'{{"time": "{_iso_utc(record.created)}", "level": {_json_str(level)}, '
                    f'"logger": {_json_str(name)}, "message": {_json_str(message)}}}'
                )
        doc: dict[str, Any] = {
            "time": _iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exception"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        if record.__dict__.keys() - _STANDARD:
            for key, value in record.__dict__.items():
                if key in _STANDARD or key.startswith("_"):
                    continue
                doc[f"extra_{key}" if key in _OWN_KEYS else key] = value
        return _encode(doc)


class LogServerHandler(logging.Handler):
    """Sends every record it handles to the logservers, as JSON, in ``category``.

    Pass a ``client`` to share one; without it the handler makes its own from
    ``zk_hosts``/``zk_path`` and the remaining keyword arguments (those of
    :class:`LogClient`), and closes it in :meth:`close`.
    """

    def __init__(
        self,
        client: LogClient | None = None,
        *,
        category: str = "app",
        level: int | str = logging.NOTSET,
        zk_hosts: str | None = None,
        zk_path: str = "/logservers",
        **client_options: Any,
    ) -> None:
        problem = category_problem(category)
        if problem is not None:
            raise ValueError(f"invalid category {category!r}: {problem}")
        super().__init__(level)
        if client is None:
            client = LogClient(zk_hosts, zk_path, **client_options)
            self._owns_client = True
        elif zk_hosts is not None or client_options:
            raise TypeError("pass either a client or the options to make one, not both")
        else:
            self._owns_client = False
        self.client = client
        self.category = category
        self.setFormatter(JsonFormatter())

    def __repr__(self) -> str:
        owner = "own" if self._owns_client else "shared"
        return (
            f"<LogServerHandler {logging.getLevelName(self.level)} category={self.category} "
            f"{owner} {self.client!r}>"
        )

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "logclient" or record.name.startswith("logclient."):
            return
        try:
            self.client.log(self.category, self.format(record))
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        """Wait briefly (at most a second) for what was logged to be acknowledged.

        ``logging.shutdown()`` calls this at exit; the client's own ``close()``
        (or its atexit hook) then flushes longer and spools the rest.
        """
        if not self.client.closed:
            self.client.flush(timeout=1.0)

    def close(self) -> None:
        """Close the client too when the handler made it."""
        try:
            if self._owns_client:
                self.client.close()
        finally:
            super().close()
