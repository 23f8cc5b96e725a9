"""The bounded in-memory queue between ``log()`` and the sender thread.

The fast path is one uncontended lock, a list append and two counters: no
Condition, no Event per call. The sender is woken (its doorbell rung) only when
it asked for it: when it is idle and the first record arrives, or when it is
lingering and a full batch is queued. ``log()`` callers wait only when the
queue is full and the overflow policy says to block.
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_right
from itertools import accumulate, repeat
from operator import add

from logclient._batch import ENTRY_OVERHEAD
from logclient._policies import BatchPolicy, QueuePolicy
from logclient.errors import ClientClosedError, QueueFullError

__all__ = ["RateLimitedLog", "RecordQueue"]

logger = logging.getLogger(__name__)

_NEVER = 1 << 62


class RateLimitedLog:
    """Logs a recurring condition at most once per ``interval_s``, with a count."""

    def __init__(self, log: logging.Logger, interval_s: float = 10.0) -> None:
        self._log = log
        self._interval_s = interval_s
        self._last = -1e18
        self._suppressed = 0
        self._lock = threading.Lock()

    def warning(self, msg: str, *args: object) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last < self._interval_s:
                self._suppressed += 1
                return
            self._last = now
            suppressed, self._suppressed = self._suppressed, 0
        if suppressed:
            self._log.warning(msg + " (%d similar messages suppressed)", *args, suppressed)
        else:
            self._log.warning(msg, *args)


class RecordQueue:
    """FIFO of ``(category, message)`` with record and byte limits.

    Counters: ``accepted`` (records ever put), ``taken`` (records ever taken by
    the sender); ``accepted`` is the ordinal ``flush()`` waits for.
    """

    def __init__(self, policy: QueuePolicy, batch: BatchPolicy) -> None:
        self.policy = policy
        self._max_records = policy.max_records
        self._max_bytes = policy.max_bytes
        self._batch_records = batch.max_records
        self._batch_bytes = batch.max_bytes
        # Two columns, categories and messages: a batch is taken from their heads
        # with C-level slices (lists, not deques: no Python-level popleft per
        # record), and goes to the wire as columns; put() makes no pair per record.
        self._cats: list[str] = []
        self._msgs: list[bytes] = []
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._bytes = 0
        self._blocked = 0
        self._closed = False
        self._closed_reason = "log() after close()"
        # The sender's doorbell, and when put() may ring it.
        self.doorbell = threading.Event()
        self._armed = False
        self._wake_n = _NEVER  # ring when a put finds this many records already queued
        self._wake_bytes = _NEVER
        self.first_at = 0.0
        self.accepted = 0
        self.taken = 0
        self.dropped = 0
        #: ``accepted`` when ``put()`` first dropped a record (None: it never did).
        self.first_drop_at: int | None = None
        self._drop_log = RateLimitedLog(logger)

    def __repr__(self) -> str:
        return (
            f"<RecordQueue records={len(self._msgs)} bytes={self._bytes} "
            f"accepted={self.accepted} taken={self.taken} dropped={self.dropped}"
            f"{' closed' if self._closed else ''}>"
        )

    def __len__(self) -> int:
        return len(self._msgs)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def fill_ratio(self) -> float:
        """How full the queue is: the larger of its record and byte fractions."""
        return max(len(self._msgs) / self._max_records, self._bytes / self._max_bytes)

    # ------------------------------------------------------------------ producers

    def put(self, category: str, message: bytes) -> None:
        """Enqueue one record; may block, drop or raise when full (see QueuePolicy)."""
        size = len(category) + len(message) + ENTRY_OVERHEAD
        with self._lock:
            msgs = self._msgs
            n = len(msgs)
            nbytes = self._bytes + size
            if self._closed or n >= self._max_records or (nbytes > self._max_bytes and n):
                slow = True
            else:
                slow = False
                if not n:
                    self.first_at = time.monotonic()
                self._cats.append(category)
                msgs.append(message)
                self._bytes = nbytes
                self.accepted += 1
                if not self._armed or (n < self._wake_n and nbytes < self._wake_bytes):
                    return
                self._armed = False
        if slow:
            self._put_slow(category, message, size)
        else:
            self.doorbell.set()

    def _put_slow(self, category: str, message: bytes, size: int) -> None:
        """The queue is full or closed: the overflow policy decides."""
        with self._lock:
            if self._closed:
                raise ClientClosedError(self._closed_reason)
            n = len(self._msgs)
            if n >= self._max_records or (self._bytes + size > self._max_bytes and n):
                if not self._make_room(size):
                    self.dropped += 1
                    if self.first_drop_at is None:
                        self.first_drop_at = self.accepted
                    dropped = len(self._msgs), self._bytes
                else:
                    dropped = None
            else:
                dropped = None
            if dropped is None:
                # take() may have replaced the lists while we waited: look them up again.
                if not self._msgs:
                    self.first_at = time.monotonic()
                self._cats.append(category)
                self._msgs.append(message)
                self._bytes += size
                self.accepted += 1
                self._armed = False
        if dropped is not None:
            self._drop_log.warning(
                "logclient queue full (%d records, %d bytes): dropping records "
                "(QueuePolicy.overflow='drop')",
                *dropped,
            )
        else:
            self.doorbell.set()

    def _make_room(self, size: int) -> bool:
        """With the lock held and the queue full: True once there is room, False to drop."""
        overflow = self.policy.overflow
        if overflow == "drop":
            return False
        if overflow == "raise":
            raise QueueFullError(
                f"logclient queue full ({len(self._msgs)} records, {self._bytes} bytes)"
            )
        deadline = time.monotonic() + self.policy.block_timeout_s
        self._blocked += 1
        try:
            # The sender spills or sends to make room; make sure it is awake.
            self.doorbell.set()
            while len(self._msgs) >= self._max_records or (
                self._bytes + size > self._max_bytes and self._msgs
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise QueueFullError(
                        f"logclient queue still full after {self.policy.block_timeout_s}s "
                        f"({len(self._msgs)} records, {self._bytes} bytes)"
                    )
                self._room.wait(remaining)
                if self._closed:
                    raise ClientClosedError(self._closed_reason)
        finally:
            self._blocked -= 1
        return True

    def close(self, reason: str = "log() after close()") -> None:
        """Refuse further records; wake blocked producers (they raise ClientClosedError)."""
        with self._lock:
            self._closed = True
            self._closed_reason = reason
            self._room.notify_all()
        self.doorbell.set()

    @property
    def closed(self) -> bool:
        return self._closed

    def records_unlocked(self) -> tuple[list[str], list[bytes]]:
        """Copies of the queued columns, read without the lock: for a child after fork(),
        where a thread of the parent may have held it and no other thread runs yet."""
        return list(self._cats), list(self._msgs)

    # ------------------------------------------------------------------- sender

    def batch_ready(self) -> bool:
        """A full batch is queued (by records or bytes)."""
        return len(self._msgs) >= self._batch_records or self._bytes >= self._batch_bytes

    def take(self, max_records: int, max_bytes: int) -> tuple[list[str], list[bytes], int, int]:
        """Remove up to a batch from the head: ``(categories, messages, nbytes, end_ordinal)``.

        Takes at least one record if any is queued (a record is never larger
        than a batch: ``log()`` checked it). The work per record is C-level
        (slicing, ``map``, ``accumulate``): this runs on the sender thread, which
        shares the GIL with the application's ``log()`` calls.
        """
        with self._lock:
            cats, msgs = self._cats, self._msgs
            if not msgs:
                return [], [], 0, self.taken
            n = min(len(msgs), max_records)
            if n == len(msgs) and self._bytes <= max_bytes:
                # Everything queued fits: take the whole lists, their size is known.
                nbytes = self._bytes
                self._cats, self._msgs = [], []
            else:
                head_cats, head_msgs = cats[:n], msgs[:n]
                # The exact size of every prefix; the longest that fits is the batch.
                lengths = map(add, map(len, head_cats), map(len, head_msgs))
                sizes = list(accumulate(map(add, lengths, repeat(ENTRY_OVERHEAD))))
                n = max(1, bisect_right(sizes, max_bytes))
                nbytes = sizes[n - 1]
                if n < len(head_msgs):
                    del head_cats[n:], head_msgs[n:]
                del cats[:n], msgs[:n]
                cats, msgs = head_cats, head_msgs
            self._bytes -= nbytes
            self.taken += len(msgs)
            if self._msgs:
                # Unknown arrival time of the rest; at most one extra linger.
                self.first_at = time.monotonic()
            if self._blocked:
                self._room.notify_all()
            return cats, msgs, nbytes, self.taken

    def arm(self, wake_records: int, wake_bytes: int) -> bool:
        """Before the sender waits: ring once ``wake_records`` records or ``wake_bytes`` are queued.

        Returns False (do not wait) when that is already the case. The sender
        clears the doorbell *before* it evaluates its state, then arms, then waits,
        so no ring is lost.
        """
        with self._lock:
            if len(self._msgs) >= wake_records or (self._msgs and self._bytes >= wake_bytes):
                return False
            self._wake_n = wake_records - 1
            self._wake_bytes = wake_bytes
            self._armed = True
            return True

    def disarm(self) -> None:
        """The sender is awake: producers need not ring."""
        self._armed = False
        self._wake_n = _NEVER
        self._wake_bytes = _NEVER

    @property
    def batch_records(self) -> int:
        return self._batch_records

    @property
    def batch_bytes(self) -> int:
        return self._batch_bytes

    @property
    def max_records(self) -> int:
        return self._max_records

    @property
    def max_bytes(self) -> int:
        return self._max_bytes
