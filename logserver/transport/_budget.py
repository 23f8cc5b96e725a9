"""The server-wide budget for request bytes in flight: memory no set of legal frames can exceed.

A frame's length is known from its 4-byte prefix before a byte of its body is
read. Every frame larger than :data:`SMALL_FRAME` reserves its length here
first, and gives it back once its reply is sent or its connection ends. While
the bytes reserved stay within the budget, so does the memory that requests
use (a frame costs a small multiple of its size while it is decoded and
stored; see ``--max-inflight-bytes`` in the README). Without it, 200 clients
each sending one legal 15 MiB frame at once drove a server to 3.9 GB.

A frame that does not fit waits. Who goes first when room is made:

1. the peer *address* with the fewest bytes in flight, so a host that floods
   the server with large frames waits behind every other host;
2. then the smaller frame, so a client's 1 MiB batch is not queued behind two
   hundred 15 MiB frames of another process on the same host;
3. then the frame that came first.

The order is strict: nothing overtakes the first waiter, so a large frame
from a quiet host is not starved by a stream of small frames from a busy one.
Frames up to :data:`SMALL_FRAME` (pings, reads, status, small batches) never
wait; they are counted, and their total is bounded by the number of
connections.
"""

from __future__ import annotations

import itertools
import threading

__all__ = ["SMALL_FRAME", "InflightBudget"]

#: Frames up to this size are admitted at once (still counted).
SMALL_FRAME = 64 * 1024


class _Waiter:
    __slots__ = ("address", "granted", "nbytes", "order", "wake")

    def __init__(self, address: str, nbytes: int, order: int) -> None:
        self.address = address
        self.nbytes = nbytes
        self.order = order
        self.granted = False
        self.wake = threading.Event()


class InflightBudget:
    """Bytes of requests being received or processed, server-wide; thread-safe."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"an in-flight budget must be positive, not {limit}")
        self._limit = limit
        self._lock = threading.Lock()
        self._used = 0
        self._by_address: dict[str, int] = {}
        self._waiters: list[_Waiter] = []
        self._order = itertools.count()

    def __repr__(self) -> str:
        with self._lock:
            return (
                f"<InflightBudget used={self._used} of {self._limit} "
                f"waiting={len(self._waiters)} addresses={len(self._by_address)}>"
            )

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def used(self) -> int:
        """Bytes reserved right now (may exceed the limit by small frames)."""
        return self._used

    @property
    def waiting(self) -> int:
        """Frames waiting for room right now."""
        return len(self._waiters)

    def acquire(self, address: str, nbytes: int, timeout: float) -> bool:
        """Reserve ``nbytes`` for a frame from peer ``address``, waiting up to ``timeout`` seconds.

        True once reserved (the caller must :meth:`release` it), False when no
        room was made in time (nothing reserved).
        """
        with self._lock:
            if nbytes <= SMALL_FRAME:
                self._take(address, nbytes)
                return True
            waiter = _Waiter(address, nbytes, next(self._order))
            self._waiters.append(waiter)
            self._grant()
            if waiter.granted:
                return True
        waiter.wake.wait(max(0.0, timeout))
        with self._lock:
            if waiter.granted:
                return True
            self._waiters.remove(waiter)
            # It may have been the first in line: those behind it may fit now.
            self._grant()
            return False

    def release(self, address: str, nbytes: int) -> None:
        """Give back what :meth:`acquire` reserved; wakes the waiters that fit now."""
        with self._lock:
            self._used -= nbytes
            left = self._by_address[address] - nbytes
            if left:
                self._by_address[address] = left
            else:
                del self._by_address[address]
            if self._waiters:
                self._grant()

    def _take(self, address: str, nbytes: int) -> None:
        self._used += nbytes
        self._by_address[address] = self._by_address.get(address, 0) + nbytes

    def _grant(self) -> None:
        """Admit waiters in priority order while the first in line fits (lock held)."""
        waiters = self._waiters
        by_address = self._by_address
        while waiters:
            first = min(waiters, key=lambda w: (by_address.get(w.address, 0), w.nbytes, w.order))
            if self._used + first.nbytes > self._limit:
                return
            waiters.remove(first)
            self._take(first.address, first.nbytes)
            first.granted = True
            first.wake.set()
