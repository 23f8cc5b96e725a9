"""structlog integration: a logger factory whose loggers send each rendered event.

::

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=LogServerLoggerFactory(client, category="app"),
        cache_logger_on_first_use=True,
    )

The last processor's output is sent as the message. When it is a JSON object
(``JSONRenderer``) or a dict (no renderer), the level (from the method called)
and the logger name (the argument of ``structlog.get_logger(name)``) are added
when the processors did not put them there. ``structlog.stdlib.add_logger_name``
works too (these loggers have a ``name``).

This module does not import structlog: applications without it pay nothing,
and the loggers here follow structlog's logger protocol (methods named after
levels, taking the rendered event).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from logclient._client import LogClient
from logwire.categories import category_problem

__all__ = ["LogServerLogger", "LogServerLoggerFactory"]

_internal = logging.getLogger(__name__)


class LogServerLogger:
    """A structlog "final" logger: each call sends one rendered event to ``category``.

    Errors never reach the application: they are reported on the
    ``logclient._structlog`` logger.
    """

    def __init__(self, client: LogClient, category: str, name: str | None = None) -> None:
        self.client = client
        self.category = category
        self.name = name

    def __repr__(self) -> str:
        return f"<LogServerLogger name={self.name} category={self.category} {self.client!r}>"

    def _send(self, level: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            self.client.log(self.category, self._render(level, args, kwargs))
        except Exception as exc:
            _internal.warning("could not send a structlog event: %s", exc)

    def _render(self, level: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | bytes:
        if args and not kwargs and isinstance(args[0], str | bytes) and len(args) == 1:
            event = args[0]
            return self._complete(event, level) if isinstance(event, str) else event
        doc: dict[str, Any] = dict(kwargs)
        if args:
            doc.setdefault("event", args[0] if len(args) == 1 else list(args))
        doc.setdefault("level", level)
        if self.name is not None:
            doc.setdefault("logger", self.name)
        return json.dumps(doc, default=repr, ensure_ascii=False)

    def _complete(self, rendered: str, level: str) -> str:
        """Add level and logger to a rendered JSON object that lacks them."""
        if not (rendered.startswith("{") and rendered.endswith("}")):
            return rendered
        extra = ""
        if '"level"' not in rendered:
            extra += f'"level": "{level}"'
        if self.name is not None and '"logger"' not in rendered:
            extra += (", " if extra else "") + f'"logger": {json.dumps(self.name)}'
        if not extra:
            return rendered
        body = rendered[1:-1].strip()
        return "{" + extra + (", " + body if body else "") + "}"

    def debug(self, *args: Any, **kwargs: Any) -> None:
        self._send("debug", args, kwargs)

    def info(self, *args: Any, **kwargs: Any) -> None:
        self._send("info", args, kwargs)

    def msg(self, *args: Any, **kwargs: Any) -> None:
        self._send("info", args, kwargs)

    def warning(self, *args: Any, **kwargs: Any) -> None:
        self._send("warning", args, kwargs)

    warn = warning

    def error(self, *args: Any, **kwargs: Any) -> None:
        self._send("error", args, kwargs)

    err = error
    exception = error
    failure = error

    def critical(self, *args: Any, **kwargs: Any) -> None:
        self._send("critical", args, kwargs)

    fatal = critical

    def log(self, *args: Any, **kwargs: Any) -> None:
        self._send("info", args, kwargs)


class LogServerLoggerFactory:
    """structlog ``logger_factory``: ``LogServerLoggerFactory(client, category="app")``.

    ``structlog.get_logger("name")`` passes ``"name"`` here; it becomes the
    logger's ``name`` and the event's ``logger`` field.
    """

    def __init__(self, client: LogClient, *, category: str = "app") -> None:
        problem = category_problem(category)
        if problem is not None:
            raise ValueError(f"invalid category {category!r}: {problem}")
        self.client = client
        self.category = category

    def __repr__(self) -> str:
        return f"<LogServerLoggerFactory category={self.category} {self.client!r}>"

    def __call__(self, *args: Any) -> LogServerLogger:
        name = str(args[0]) if args and args[0] is not None else None
        return LogServerLogger(self.client, self.category, name)
