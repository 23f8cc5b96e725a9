"""Helpers shared by the client and fault tests: waiting for conditions, numbered messages."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(condition: Callable[[], T], timeout: float = 10.0, what: str = "") -> T:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what or condition}")
        time.sleep(0.01)


def numbered(prefix: str, n: int, start: int = 0) -> list[str]:
    """``prefix-000000`` ... : messages whose number can be read back."""
    return [f"{prefix}-{i:06d}" for i in range(start, start + n)]


def number_of(message: bytes | str, prefix: str) -> int | None:
    text = message.decode() if isinstance(message, bytes) else message
    if not text.startswith(prefix + "-"):
        return None
    return int(text[len(prefix) + 1 :])
