"""The server's own logs: structlog, JSON lines by default, readable on a terminal.

Third-party loggers (kazoo, prometheus) and our stdlib-logging modules go
through the same renderer, so an operator gets one format in one stream.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Literal, cast, get_args

import structlog

__all__ = ["LogFormat", "configure_logging"]

#: How the server's own log lines look.
LogFormat = Literal["json", "console"]


def configure_logging(
    level: str = "info", fmt: LogFormat | None = None, *, structlog_level: str | None = None
) -> None:
    """Configure structlog and stdlib logging for the server process.

    ``fmt`` is ``json`` or ``console``; by default console on a TTY, JSON otherwise
    (``LOGSERVER_LOG_FORMAT`` overrides). ValueError for an unknown level or format. ``structlog_level`` lets structlog pass
    more than the handlers show, for tests that capture debug events themselves
    (it also turns off logger caching, which would hide them from capture).
    """
    chosen = (
        fmt
        or os.environ.get("LOGSERVER_LOG_FORMAT", "").strip().lower()
        or ("console" if sys.stderr.isatty() else "json")
    )
    if chosen not in get_args(LogFormat):
        raise ValueError(f"log format must be json or console, not {chosen!r}")
    fmt = cast(LogFormat, chosen)
    numeric = logging.getLevelName(level.upper())
    struct_numeric = logging.getLevelName((structlog_level or level).upper())
    if not isinstance(numeric, int) or not isinstance(struct_numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info if fmt == "json" else structlog.dev.set_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(struct_numeric),
        cache_logger_on_first_use=structlog_level is None,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # kazoo is chatty at INFO about every reconnect attempt; our registry logs what matters.
    logging.getLogger("kazoo").setLevel(max(numeric, logging.WARNING))
