"""One process's client: its producer, memory queue, server pool, spool slot and sender thread.

A :class:`~logclient.LogClient` outlives ``fork()``: pre-fork servers make it
in a parent and every worker gets a copy. What runs it cannot be shared
across processes: the sender thread does not come along, locks a thread of
the parent held stay held in the child, a spool slot is one process's (its
lock is an ``flock``), and the producer must be the child's own (it is the
first half of every batch id, docs/glossary.md: a child sending under the
parent's producer would collide with the parent's batches). So the
LogClient (:mod:`logclient._client`) keeps what every process may share (the
policies, the server source, the category cache, which process it runs in)
and holds one :class:`ClientInstance` for the process it runs in; a child
gets a new one on its first use (:meth:`ClientInstance.successor`), seeded
with the servers the parent knew. It never sends what the parent had
queued (no duplicates), except when the parent was deferred (a uWSGI
master, which never sends): the first of its children takes that over.

The LogClient reaches an instance only after its process check, so an
instance works only in the process that made it. Two exceptions, which a
child calls on the parent's instance and which take none of its locks:
:meth:`forget_in_child` and :meth:`successor`. (``repr()``, ``producer``
and ``spool_directory`` read it without the check: reads of a name or a
counter, harmless in a child.)
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from logclient._connection import Transport
from logclient._policies import (
    BatchPolicy,
    ChoicePolicy,
    FailoverPolicy,
    HedgePolicy,
    QueuePolicy,
    ReplicationPolicy,
    SpoolPolicy,
)
from logclient._queue import RecordQueue
from logclient._sender import Sender
from logclient._servers import ServerPool
from logclient._spool import Spool
from logclient._stats import ClientStats
from logclient.errors import SpoolError

__all__ = ["ClientInstance", "Policies"]

# The LogClient's logger: what is logged here is logged on its behalf.
logger = logging.getLogger("logclient._client")


@dataclass(frozen=True)
class Policies:
    """Every policy a client was made with: the same for each process it runs in."""

    batching: BatchPolicy
    failover: FailoverPolicy
    choice: ChoicePolicy
    queue: QueuePolicy
    spool: SpoolPolicy
    replication: ReplicationPolicy
    hedging: HedgePolicy


class ClientInstance:
    """A client's producer, queue, server pool, spool and sender in one process.

    Made with the spool slot it is to use (None: no spool); :meth:`start`
    starts the sender thread, :meth:`stop` flushes, spools what is left and
    stops it, :meth:`release` gives the spool slot back.
    """

    def __init__(self, policies: Policies, transport: Transport, spool: Spool | None) -> None:
        self.policies = policies
        self._transport = transport
        self.producer = uuid.uuid4().hex
        self.queue = RecordQueue(policies.queue, policies.batching)
        self.pool = ServerPool(
            policies.failover, policies.choice, on_change=self.queue.doorbell.set
        )
        self.spool = spool
        self.sender = Sender(
            queue=self.queue,
            pool=self.pool,
            transport=transport,
            spool=spool,
            batching=policies.batching,
            failover=policies.failover,
            spool_policy=policies.spool,
            producer=self.producer,
            replication=policies.replication,
            hedging=policies.hedging,
        )

    def __repr__(self) -> str:
        return f"<ClientInstance {self.summary()}>"

    def summary(self) -> str:
        """The state a person debugging needs, for the LogClient's ``repr()``."""
        spool, ledger = self.spool, self.sender.ledger
        return (
            f"producer={self.producer[:8]} "
            f"server={self.pool.current} known={[str(e) for e in self.pool.known]} "
            f"queued={len(self.queue)} spooled={spool.records if spool is not None else 0} "
            f"acked={ledger.acked_records} "
            f"failovers={self.sender.outcomes.failovers} "
            f"dropped={self.queue.dropped + ledger.dropped_records}"
        )

    @property
    def spool_directory(self) -> Path | None:
        return self.spool.directory if self.spool is not None else None

    # ------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self.sender.start()

    def stop(self, deadline: float) -> bool:
        """Refuse new records, deliver until near ``deadline``, spool the rest, stop the
        sender; True when its thread has exited."""
        self.queue.close()
        return self.sender.stop(deadline)

    def release(self) -> None:
        """Give the spool slot back (once the sender is stopped, or never started)."""
        if self.spool is not None:
            self.spool.close()

    def forget_in_child(self) -> None:
        """In a child: close our copies of the parent's descriptors (sockets, the spool
        lock), take none of its locks; the parent's instance is left as it is."""
        self.sender.forget_in_child()
        if self.spool is not None:
            self.spool.abandon_in_child()
            self.spool = None

    def successor(self, *, inherit_records: bool, main_slot_free: bool) -> ClientInstance:
        """The instance that runs the client in this process from now on.

        Its own producer, queue, sender and spool slot (see
        :meth:`Spool.open_anew <logclient._spool.Spool.open_anew>` for
        ``main_slot_free``; without a slot, undelivered records stay in
        memory), and a server pool that knows the servers this one knew. With
        ``inherit_records`` it also gets what this one had queued (a deferred
        client's records, which only one process may send). Reads this
        instance without its locks: in a child a thread of the parent may
        have held them at fork time.
        """
        categories, messages = self.queue.records_unlocked() if inherit_records else ([], [])
        known, answered = self.pool.members_unlocked(), self.pool.answered
        spool = _own_spool(self.policies.spool, main_slot_free=main_slot_free)
        instance = ClientInstance(self.policies, self._transport, spool)
        for category, message in zip(categories, messages, strict=True):
            instance.queue.put(category, message)
        instance.pool.update(known, answered=answered)
        return instance

    # ------------------------------------------------------------------ state

    def flush(self, timeout: float | None, *, require_acknowledged: bool) -> bool:
        """``LogClient.flush()`` once the client runs in this process."""
        target = self.queue.accepted
        if not self.sender.flush(timeout, target):
            return False
        if require_acknowledged:
            first_queue_drop = self.queue.first_drop_at
            if self.sender.settlement.dropped_before(target):
                return False
            if first_queue_drop is not None and first_queue_drop <= target:
                return False
        return True

    def stats(self, *, closed: bool) -> ClientStats:
        """``LogClient.stats()``: counters and state of this process's client."""
        sender = self.sender
        dispatch, outcomes, ledger = sender.dispatch, sender.outcomes, sender.ledger
        spool, queue, pool = self.spool, self.queue, self.pool
        current = pool.current
        return ClientStats(
            producer=self.producer,
            current_server=str(current) if current else None,
            known_servers=tuple(str(e) for e in pool.known),
            down_servers=tuple(str(e) for e in pool.down()),
            queued=len(queue),
            queued_bytes=queue.nbytes,
            in_flight=sender.in_memory_records(),
            spooled=spool.records if spool is not None else 0,
            spooled_batches=spool.batches if spool is not None else 0,
            spooled_bytes=spool.bytes if spool is not None else 0,
            logged=queue.accepted,
            sent=dispatch.sent_records,
            acknowledged=ledger.acked_records,
            duplicates=outcomes.duplicates,
            failovers=outcomes.failovers,
            dropped=queue.dropped + ledger.dropped_records,
            unsettled=sender.settlement.unsettled(queue.accepted),
            batches_retried=dispatch.batches_retried,
            spilled=sender.spilled_records,
            spool_directory=str(spool.directory) if spool is not None else None,
            closed=closed,
            servers_short=max(0, self.policies.replication.required - len(pool.live())),
            waiting_for_copies=ledger.waiting_records(),
            copies_given_up=ledger.copies_given_up,
            hedged=dispatch.hedging.hedged_batches,
            sent_batches=dispatch.sent_batches,
        )


def _own_spool(policy: SpoolPolicy, *, main_slot_free: bool) -> Spool | None:
    if not policy.enabled:
        return None
    try:
        return Spool.open_anew(policy, main_slot_free=main_slot_free)
    except SpoolError as exc:
        logger.warning(
            "logclient in process %d: no spool (%s); undelivered records stay in memory",
            os.getpid(),
            exc,
        )
        return None
