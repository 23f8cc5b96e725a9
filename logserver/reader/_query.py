"""What a reader asks for: a category, a time range, the last N, a regex, live or not.

Times are when a server received a record's batch (``received_ns``): the
only clock every record has. ``since`` is inclusive, ``until`` exclusive, so
adjacent ranges never show a record twice.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass

from logserver.errors import ConfigError
from logwire.categories import category_problem

__all__ = ["ReadQuery", "parse_time"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_RELATIVE = re.compile(r"(?:(\d+(?:\.\d+)?)(s|m|h|d|w))+\Z")
_PART = re.compile(r"(\d+(?:\.\d+)?)(s|m|h|d|w)")
#: What --grep patterns may be at most (the servers refuse longer ones).
MAX_GREP_BYTES = 4096


def parse_time(text: str, now_ns: int | None = None) -> int:
    """A point in time as ns since the epoch, from what an operator types.

    Accepts RFC 3339 (``2026-01-05T10:00:00Z``, ``2026-01-05 10:00:00.5+02:00``),
    a date (``2026-01-05``: its midnight), a time without offset (local time,
    as ``journalctl`` reads it), a duration ago (``90s``, ``15m``, ``2h``,
    ``1d``, ``1h30m``, optionally with a leading ``-``), ``now``, ``today`` and
    ``yesterday``. Raises ConfigError (one line, naming the forms) otherwise.
    """
    now_ns = time.time_ns() if now_ns is None else now_ns
    value = text.strip()
    lowered = value.lower()
    if lowered == "now":
        return now_ns
    if lowered in ("today", "yesterday"):
        midnight = dt.datetime.fromtimestamp(now_ns / 1e9).astimezone()
        midnight = midnight.replace(hour=0, minute=0, second=0, microsecond=0)
        if lowered == "yesterday":
            midnight -= dt.timedelta(days=1)
        return int(midnight.timestamp()) * 1_000_000_000
    relative = lowered[1:] if lowered.startswith("-") else lowered
    if relative and _RELATIVE.match(relative):
        seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(relative))
        return now_ns - int(seconds * 1e9)
    try:
        parsed = dt.datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise ConfigError(
            f"cannot read {text!r} as a time: use RFC 3339 (2026-01-05T10:00:00Z), a date "
            "(2026-01-05), or a duration ago (30s, 15m, 2h, 1d)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # local time, as journalctl reads it
    whole = int(parsed.replace(microsecond=0).timestamp())
    return whole * 1_000_000_000 + parsed.microsecond * 1000


@dataclass(frozen=True)
class ReadQuery:
    """What to read of one category; validated on creation (ConfigError, one line).

    ``since_ns``/``until_ns``: the time range (inclusive, exclusive; None: open).
    ``last``: only the last N records of the range (with ``follow``: then what
    comes). ``grep``: only records whose message matches this regular
    expression (RE2 syntax, applied on the servers). ``follow``: keep reading
    as records arrive, until the reader is closed.
    """

    category: str
    since_ns: int | None = None
    until_ns: int | None = None
    last: int | None = None
    grep: str | None = None
    follow: bool = False

    def __post_init__(self) -> None:
        problem = category_problem(self.category)
        if problem is not None:
            raise ConfigError(f"category {self.category!r}: {problem}")
        if self.last is not None and self.last < 0:
            raise ConfigError(f"-n must be >= 0, not {self.last}")
        if (
            self.since_ns is not None
            and self.until_ns is not None
            and self.until_ns <= self.since_ns
        ):
            raise ConfigError("--until must be later than --since")
        if self.follow and self.until_ns is not None:
            raise ConfigError("--follow cannot stop at --until: use one or the other")
        if self.grep is not None:
            if not self.grep:
                raise ConfigError("--grep needs a pattern")
            if len(self.grep.encode()) > MAX_GREP_BYTES:
                raise ConfigError(f"--grep pattern is longer than {MAX_GREP_BYTES} bytes")
            from logwire.grep import GrepError, compile_grep

            try:
                compile_grep(self.grep)
            except GrepError as exc:
                raise ConfigError(f"--grep: {exc}") from None

    def admits(self, received_ns: int) -> bool:
        """Whether a block received at ``received_ns`` is in the time range."""
        if self.since_ns is not None and received_ns < self.since_ns:
            return False
        return self.until_ns is None or received_ns < self.until_ns
