"""What a reader accepts: times as operators type them, and one-line errors otherwise."""

from __future__ import annotations

import datetime as dt

import pytest

from logserver.errors import ConfigError
from logserver.reader import ReadQuery, parse_time

NOW = 1_800_000_000 * 10**9


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("15m", NOW - 15 * 60 * 10**9),
        ("-2h", NOW - 2 * 3600 * 10**9),
        ("1h30m", NOW - 5400 * 10**9),
        ("1.5s", NOW - 1_500_000_000),
        (
            "2026-01-05T10:00:00Z",
            int(dt.datetime(2026, 1, 5, 10, tzinfo=dt.UTC).timestamp()) * 10**9,
        ),
        (
            "2026-01-05 10:00:00.25+02:00",
            int(dt.datetime(2026, 1, 5, 8, tzinfo=dt.UTC).timestamp()) * 10**9 + 250_000_000,
        ),
    ],
)
def test_times_read_as_operators_write_them(text: str, expected: int) -> None:
    """RFC 3339 (with T or space, Z or an offset, fractions) and durations ago."""
    assert parse_time(text, NOW) == expected


def test_a_date_and_a_time_without_offset_are_local() -> None:
    """As journalctl reads them: midnight / that time in the local zone."""
    local = dt.datetime(2026, 1, 5).astimezone()
    assert parse_time("2026-01-05", NOW) == int(local.timestamp()) * 10**9


@pytest.mark.parametrize("text", ["", "yesterdayx", "15 minutes", "2026-13-01", "1y"])
def test_unreadable_times_are_one_line_errors(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_time(text, NOW)
    assert "\n" not in str(caught.value) and "RFC 3339" in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"category": "a/b"}, "path separator"),
        ({"category": "app", "last": -1}, "-n"),
        ({"category": "app", "since_ns": 5, "until_ns": 5}, "later than"),
        ({"category": "app", "follow": True, "until_ns": 5}, "--follow"),
        ({"category": "app", "grep": "(a"}, "--grep"),
        ({"category": "app", "grep": "x" * 5000}, "longer"),
    ],
)
def test_queries_that_make_no_sense_are_refused(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        ReadQuery(**kwargs)  # type: ignore[arg-type]
