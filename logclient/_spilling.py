"""Spilling: batches go to the spool while no server takes them, when the queue stays
full, and at close.

Batches reach the spool in logging order. The batches in the sender's hands
(sent and not yet acknowledged, or waiting to be resent) are the oldest, so
they are written first, before anything newer; they stay in the sender's
hands, and the accumulator's spool *mark* (the highest spool id handed out)
keeps the sender from reading them back from the spool a second time. Once a
batch is acknowledged its file is removed (see :mod:`logclient._ledger`).

What the spool keeps is the batch, not which servers already hold a copy of
it: a batch read back from the spool (after a restart) is sent to as many
servers as if it were new. Servers answer "duplicate" for a batch they
stored before, so that costs a call, never a second copy on one server.

Runs on the sender thread only, and only with no call in flight (the sender
collects the answers first: writing to disk while a window's RPC clock runs
would turn a slow fsync into a failover).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from logclient._accumulator import Accumulator
from logclient._batch import Batch
from logclient._ledger import Ledger
from logclient._policies import BatchPolicy, SpoolPolicy
from logclient._queue import RateLimitedLog
from logclient._spool import Spool, SpoolFullError
from logclient.errors import SpoolError

__all__ = ["Spiller"]

logger = logging.getLogger("logclient._sender")

#: The sender's unacknowledged batches in hand, oldest first, each root batch once.
RootsInHand = Callable[[], Iterable[Batch]]


class Spiller:
    """Decides when to spill and writes batches to the spool, oldest first."""

    def __init__(
        self,
        spool: Spool | None,
        spool_policy: SpoolPolicy,
        batching: BatchPolicy,
        accumulator: Accumulator,
        ledger: Ledger,
        roots_in_hand: RootsInHand,
    ) -> None:
        self._spool = spool
        self._policy = spool_policy
        self._batching = batching
        self._accumulator = accumulator
        self._queue = accumulator.queue
        self._ledger = ledger
        self._roots_in_hand = roots_in_hand
        #: Spilling because no server took a batch for ``spill_after_s``.
        self.spilling = False
        #: When the queue was first seen past high water (None: it is not).
        self._high_since: float | None = None
        self._log = RateLimitedLog(logger)
        self.spilled_records = 0

    def __repr__(self) -> str:
        return f"<Spiller spilling={self.spilling} spilled={self.spilled_records}>"

    @property
    def enabled(self) -> bool:
        return self._spool is not None

    def resume(self) -> None:
        """A server took a batch again: stop spilling for lack of servers."""
        self.spilling = False

    # ---------------------------------------------------------------- deciding

    def wanted(self, failing_since: float | None) -> bool:
        """True when batches should go to the spool now (no server for a while, or a full queue)."""
        spool = self._spool
        if spool is None:
            return False
        now = time.monotonic()
        if (
            failing_since is not None
            and not self.spilling
            and now - failing_since >= self._policy.spill_after_s
        ):
            self.spilling = True
            logger.warning(
                "logclient: no server took a batch for %.1fs; spilling to %s",
                now - failing_since,
                spool.directory,
            )
        if self.spilling:
            return True
        if self._queue.fill_ratio() < self._policy.high_water:
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
        return min(self._policy.high_water_hold_s, queue.block_timeout_s / 2)

    def high_water_wake(self) -> float | None:
        """While a queue past high water is held: when the hold ends (else None)."""
        if self._high_since is None:
            return None
        return self._high_since + self._high_water_hold()

    # ---------------------------------------------------------------- spilling

    def maybe_spill(self, failing_since: float | None) -> None:
        """Spill what the policy says; call only with no call in flight."""
        if not self.wanted(failing_since):
            return
        spool = self._spool
        assert spool is not None
        accumulator = self._accumulator
        queue = self._queue
        high_water = self._policy.high_water
        high = queue.fill_ratio() >= high_water
        if not self.persist_in_hand():
            return
        while accumulator.pending:
            if not self._spool_batch(accumulator.pending[0]):
                return
            accumulator.pending.popleft()
        while len(queue):
            if high:
                if queue.fill_ratio() < high_water / 2:
                    break
            elif not queue.batch_ready() and accumulator.lingering():
                break
            if not self._has_room() and queue.policy.overflow != "drop":
                self._log.warning(
                    "logclient spool %s is full (%d bytes); records wait in memory",
                    spool.directory,
                    spool.bytes,
                )
                break
            batch = accumulator.form_batch()
            if not self._spool_batch(batch):
                accumulator.pending.append(batch)
                break

    def persist_in_hand(self) -> bool:
        """Before anything newer goes to the spool, the batches in hand must be there."""
        spool = self._spool
        if spool is None:
            return True
        for root in self._roots_in_hand():
            if root.spool_id is not None:
                continue
            try:
                spool.append(root)
            except SpoolError as exc:
                self._log.warning("logclient cannot spool a batch in flight: %s", exc)
                return False
            assert root.spool_id is not None
            # It stays in hand: the sender must not read it back from the spool.
            self._accumulator.spool_mark = max(self._accumulator.spool_mark, root.spool_id)
            self.spilled_records += root.count
        return True

    def _has_room(self) -> bool:
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
                self._ledger.drop_batch(batch, f"{exc} (QueuePolicy.overflow='drop')")
                return True
            self._log.warning("logclient: %s; records wait in memory", exc)
            return False
        except SpoolError as exc:
            self._log.warning("logclient: %s; records wait in memory", exc)
            return False
        self.spilled_records += batch.count
        return True

    # ---------------------------------------------------------------- shutdown

    def shutdown(self) -> None:
        """At close, connections closed: keep whatever is undelivered in the spool, or
        count it as lost."""
        accumulator = self._accumulator
        queue = self._queue
        undelivered = self._undelivered_records()
        if not undelivered:
            return
        if self._spool is None:
            self._ledger.count_drop(
                undelivered, "client closed with no spool and no server to take them"
            )
            logger.error(
                "logclient closed with %d undelivered records and no spool: they are lost",
                undelivered,
            )
            return
        if not self.persist_in_hand():
            self._ledger.count_drop(self._memory_only_in_hand(), "spool failed")
        while accumulator.pending:
            batch = accumulator.pending.popleft()
            if not self._spool_batch(batch):
                self._ledger.count_drop(batch.count, "spool failed at close", batch)
        while len(queue):
            batch = accumulator.form_batch()
            if not self._spool_batch(batch):
                self._ledger.count_drop(batch.count, "spool failed at close", batch)
        logger.info(
            "logclient closed with %d undelivered records kept in spool %s",
            undelivered,
            self._spool.directory,
        )

    def _memory_only_in_hand(self) -> int:
        return sum(r.count for r in self._roots_in_hand() if r.spool_id is None)

    def _undelivered_records(self) -> int:
        total = len(self._queue) + sum(b.count for b in self._accumulator.pending)
        return total + self._memory_only_in_hand()
