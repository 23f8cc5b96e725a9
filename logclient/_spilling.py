"""The sender's spool side: spilling batches while no server takes them, and at close.

Batches reach the spool in logging order. The batches in the sender's hands
(sent and unanswered, or waiting to be resent) are the oldest, so they are
written first, before anything newer; they stay in the sender's hands, and
the spool's *mark* (the highest spool id handed to the sender) keeps the
sender from reading them back from the spool a second time. Once answered,
a batch's file is removed (see ``Sender._settle``).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterator

from logclient._batch import Batch
from logclient._policies import BatchPolicy, SpoolPolicy
from logclient._queue import RateLimitedLog, RecordQueue
from logclient._spool import Spool, SpoolFullError
from logclient.errors import SpoolError

__all__ = ["Spilling"]

logger = logging.getLogger("logclient._sender")


class Spilling:
    """Mixed into :class:`~logclient._sender.Sender`; runs on the sender thread only."""

    _queue: RecordQueue
    _spool: Spool | None
    _batching: BatchPolicy
    _spool_policy: SpoolPolicy
    _window: deque[Batch]
    _front: deque[Batch]
    _pending: deque[Batch]
    _spool_mark: int
    _failing_since: float | None
    _spilling: bool
    #: When the queue was first seen past high water (None: it is not).
    _high_since: float | None
    _spool_log: RateLimitedLog
    spilled_records: int

    def _form_batch(self) -> Batch:
        raise NotImplementedError

    def _lingering(self) -> bool:
        raise NotImplementedError

    def _drop(self, batch: Batch, reason: str) -> None:
        raise NotImplementedError

    def _count_drop(self, records: int, reason: str, batch: Batch | None = None) -> None:
        raise NotImplementedError

    def _close_connections(self) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------- in hand

    def _roots_in_hand(self) -> Iterator[Batch]:
        """The batches in flight, then those to resend: oldest first, each root once."""
        seen: set[int] = set()
        for batch in [*self._window, *self._front]:
            root = batch.root
            if id(root) not in seen:
                seen.add(id(root))
                yield root

    def _memory_only_in_hand(self) -> int:
        return sum(r.count for r in self._roots_in_hand() if r.spool_id is None)

    # ---------------------------------------------------------------- spilling

    def _spill_wanted(self) -> bool:
        """True when batches should go to the spool now (no server for a while, or a full queue)."""
        spool = self._spool
        if spool is None:
            return False
        now = time.monotonic()
        failing = self._failing_since
        if (
            failing is not None
            and not self._spilling
            and now - failing >= self._spool_policy.spill_after_s
        ):
            self._spilling = True
            logger.warning(
                "logclient: no server took a batch for %.1fs; spilling to %s",
                now - failing,
                spool.directory,
            )
        if self._spilling:
            return True
        if self._queue.fill_ratio() < self._spool_policy.high_water:
            self._high_since = None
            return False
        # Past high water: spill now, or after the hold (see SpoolPolicy).
        hold = self._high_water_hold()
        if hold <= 0:
            return True
        if self._high_since is None:
            self._high_since = now
        return now - self._high_since >= hold

    def _high_water_hold(self) -> float:
        """How long a queue past high water stays in memory before it is spilled."""
        queue = self._queue.policy
        if queue.overflow != "block":
            return 0.0
        return min(self._spool_policy.high_water_hold_s, queue.block_timeout_s / 2)

    def _high_water_wake(self) -> float | None:
        """While a queue past high water is held: when the hold ends (else None)."""
        if self._high_since is None:
            return None
        return self._high_since + self._high_water_hold()

    def _maybe_spill(self) -> None:
        """Spill what the policy says; called with no batch in flight (see ``Sender._step``)."""
        if not self._spill_wanted():
            return
        spool = self._spool
        assert spool is not None
        high_water = self._spool_policy.high_water
        high = self._queue.fill_ratio() >= high_water
        if not self._persist_in_hand():
            return
        while self._pending:
            if not self._spool_batch(self._pending[0]):
                return
            self._pending.popleft()
        while len(self._queue):
            if high:
                if self._queue.fill_ratio() < high_water / 2:
                    break
            elif not self._queue.batch_ready() and self._lingering():
                break
            if not self._spool_has_room() and self._queue.policy.overflow != "drop":
                self._spool_log.warning(
                    "logclient spool %s is full (%d bytes); records wait in memory",
                    spool.directory,
                    spool.bytes,
                )
                break
            batch = self._form_batch()
            if not self._spool_batch(batch):
                self._pending.append(batch)
                break

    def _persist_in_hand(self) -> bool:
        """Before anything newer goes to the spool, the batches in hand must be there."""
        if self._spool is None:
            return True
        for root in self._roots_in_hand():
            if root.spool_id is not None:
                continue
            try:
                self._spool.append(root)
            except SpoolError as exc:
                self._spool_log.warning("logclient cannot spool a batch in flight: %s", exc)
                return False
            assert root.spool_id is not None
            # It stays in hand: the sender must not read it back from the spool.
            self._spool_mark = max(self._spool_mark, root.spool_id)
            self.spilled_records += root.count
        return True

    def _spool_has_room(self) -> bool:
        spool = self._spool
        assert spool is not None
        # A file is never larger than the records' counted bytes plus a small header.
        worst = min(self._queue.nbytes, self._batching.max_bytes) + 256
        return spool.bytes + worst <= spool.policy.max_bytes

    def _spool_batch(self, batch: Batch) -> bool:
        """Write ``batch`` to the spool; True when it is there or was dropped by policy."""
        assert self._spool is not None
        try:
            self._spool.append(batch)
        except SpoolFullError as exc:
            if self._queue.policy.overflow == "drop":
                self._drop(batch, f"{exc} (QueuePolicy.overflow='drop')")
                return True
            self._spool_log.warning("logclient: %s; records wait in memory", exc)
            return False
        except SpoolError as exc:
            self._spool_log.warning("logclient: %s; records wait in memory", exc)
            return False
        self.spilled_records += batch.count
        return True

    # ---------------------------------------------------------------- shutdown

    def _shutdown(self) -> None:
        """Keep whatever is undelivered: into the spool, or count it as lost."""
        self._close_connections()
        undelivered = self._undelivered_records()
        if not undelivered:
            return
        if self._spool is None:
            self._count_drop(undelivered, "client closed with no spool and no server to take them")
            logger.error(
                "logclient closed with %d undelivered records and no spool: they are lost",
                undelivered,
            )
            return
        if not self._persist_in_hand():
            self._count_drop(self._memory_only_in_hand(), "spool failed")
        while self._pending:
            batch = self._pending.popleft()
            if not self._spool_batch(batch):
                self._count_drop(batch.count, "spool failed at close", batch)
        while len(self._queue):
            batch = self._form_batch()
            if not self._spool_batch(batch):
                self._count_drop(batch.count, "spool failed at close", batch)
        logger.info(
            "logclient closed with %d undelivered records kept in spool %s",
            undelivered,
            self._spool.directory,
        )

    def _undelivered_records(self) -> int:
        total = len(self._queue) + sum(b.count for b in self._pending)
        return total + self._memory_only_in_hand()
