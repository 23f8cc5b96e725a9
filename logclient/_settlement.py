"""Which of a client's records are settled: what ``flush()`` waits for, and nothing else.

Records are numbered in the order ``log()`` accepted them: 1, 2, 3... (their
*ordinals*; ``RecordQueue.accepted`` is the newest). A batch formed from the
queue holds a contiguous run of them, ``(start, end]``. A record is *settled*
when a server acknowledged its batch, or when the client gave it up by policy
(dropped: counted in ``stats().dropped`` and logged). Batches settle in any
order: a batch dropped because the spool is full settles while older batches
still sit in the spool, and a batch acknowledged by one server while an older
one waits to be resent elsewhere. So settlement is not a high-water mark: the
*frontier* is the highest ordinal ``n`` such that every record ``1..n`` is
settled, and ``flush()`` returns True only once the frontier reaches the
records logged before it was called. A record that is queued, in a batch in
flight, waiting to be resent, or only in the spool is not settled.

Drops from batches are remembered by position, so that
``flush(require_acknowledged=True)`` can say whether a record logged before the
call was dropped rather than acknowledged (see :meth:`Settlement.dropped_before`;
a record the queue dropped in ``log()`` never got an ordinal: the queue keeps
its own mark, ``RecordQueue.first_drop_at``).

The sender thread reports; any thread may wait. Kept apart from the sender so
that the rule can be tested alone (a property test drives it with any order of
acknowledgements, spills, drops and resends) and carried over by any sender.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["Settlement"]


class Settlement:
    """The settlement state of one client's records. Thread-safe.

    ``formed(start, end)`` when a batch of records ``(start, end]`` is formed,
    ``settle(end)`` when that batch is acknowledged or dropped (by its ``end``:
    split halves and spool copies of a batch settle through the batch they
    came from, once). ``note_dropped(start)`` when records of the batch that
    starts after ``start`` are given up (the whole batch, or some of its
    records while the rest goes on: a category no server accepts).
    """

    def __init__(self) -> None:
        self._cv = threading.Condition()
        # Batches formed and not settled, oldest first: end ordinal -> start ordinal.
        self._open: OrderedDict[int, int] = OrderedDict()
        self._formed = 0
        self._frontier = 0
        self._open_records = 0
        # The smallest ordinal of a batch that lost records (None: none did).
        self._first_drop: int | None = None

    def __repr__(self) -> str:
        return (
            f"<Settlement frontier={self._frontier} formed={self._formed} "
            f"open_batches={len(self._open)} first_drop={self._first_drop}>"
        )

    @property
    def frontier(self) -> int:
        """Every record with an ordinal up to this one is settled."""
        return self._frontier

    @property
    def formed_up_to(self) -> int:
        """The end ordinal of the newest batch formed."""
        return self._formed

    def unsettled(self, accepted: int) -> int:
        """Records neither acknowledged nor dropped, of the first ``accepted``."""
        return self._open_records + max(0, accepted - self._formed)

    # ----------------------------------------------------------------- reports

    def formed(self, start: int, end: int) -> None:
        """A batch of records ``(start, end]`` was formed (batches are formed in order)."""
        if not start < end:
            raise ValueError(f"a batch holds at least one record: ({start}, {end}]")
        with self._cv:
            if start != self._formed:
                raise ValueError(f"batch ({start}, {end}] does not follow {self._formed}")
            self._open[end] = start
            self._formed = end
            self._open_records += end - start

    def settle(self, end: int | None) -> None:
        """The batch ending at ``end`` is acknowledged or dropped (None: not this client's)."""
        if end is None:
            return
        with self._cv:
            start = self._open.pop(end, None)
            if start is None:
                return  # settled before (a copy of it acknowledged twice), or never formed
            self._open_records -= end - start
            self._frontier = next(iter(self._open.values())) if self._open else self._formed
            self._cv.notify_all()

    def note_dropped(self, start: int | None) -> None:
        """Records of the batch that starts after ``start`` were given up."""
        if start is None:
            return
        with self._cv:
            first = start + 1
            if self._first_drop is None or first < self._first_drop:
                self._first_drop = first

    def dropped_before(self, target: int) -> bool:
        """True when a batch holding one of the records ``1..target`` lost records.

        Per batch, not per record: when a batch lost only some records (one
        category), the others of that batch count as well. Errs on the side of
        "not all acknowledged", never the other way.
        """
        first = self._first_drop
        return first is not None and first <= target

    # ----------------------------------------------------------------- waiting

    def wait(
        self, target: int, timeout: float | None, alive: Callable[[], bool] = lambda: True
    ) -> bool:
        """Wait until every record up to ``target`` is settled; False after ``timeout``.

        ``alive`` is asked at least once a second: when it says False (the
        sender died), waiting stops with False.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while self._frontier < target:
                if not alive():
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cv.wait(1.0 if remaining is None else min(remaining, 1.0))
            return True

    def wake(self) -> None:
        """Make every waiter look again (the sender stopped)."""
        with self._cv:
            self._cv.notify_all()
