"""Wakes readers waiting for records to be published (the long polls of ``QueryBlocks``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["Changes"]


class Changes:
    """One per storage: writers call :meth:`published` each time records become readable;
    readers :meth:`wait` until their own condition holds.

    A writer pays one attribute read when nobody waits. A waiter counts itself
    before it checks its condition, and a writer makes records readable before it
    looks at the count, so a wake-up is never missed.
    """

    __slots__ = ("_closed", "_cond", "_waiting")

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._waiting = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"<Changes waiting={self._waiting} closed={self._closed}>"

    @property
    def waiting(self) -> int:
        return self._waiting

    def published(self) -> None:
        """New records are readable (writer side)."""
        if self._waiting:
            with self._cond:
                self._cond.notify_all()

    def wake_all(self) -> None:
        """Wake every waiter (draining, closing): each re-checks and answers."""
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wait(self, ready: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``ready()`` (checked on every publication), at most ``timeout``
        seconds; the last value of ``ready()``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._waiting += 1
            try:
                while not self._closed:
                    if ready():
                        return True
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)
                return ready()
            finally:
                self._waiting -= 1
