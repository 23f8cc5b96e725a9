"""ClientStats: a snapshot of a client's state and counters, for health checks and tests."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

__all__ = ["ClientStats"]


@dataclass(frozen=True)
class ClientStats:
    """A snapshot of a client's state and counters (records unless said otherwise).

    ``logged``: accepted by ``log()``. ``queued``: in memory, not yet in a batch.
    ``in_flight``: in batches the sender holds in memory (being sent or waiting
    for a server), not in the spool.
    ``spooled``: in spool files (``spooled_batches`` files, ``spooled_bytes``).
    ``sent``: records in ``Append`` calls made, resends included. ``acknowledged``:
    records servers acknowledged (``duplicates``: batches a server already had).
    ``failovers``: times a server was found unavailable and the batch moved on.
    ``dropped``: records given up by policy (queue or spool full with
    overflow="drop", a batch no server accepts, close without spool); always logged.
    ``unsettled``: records logged and neither acknowledged nor dropped yet
    (queued, in flight or only in the spool): what ``flush()`` waits for.
    ``batches_retried``: batches that needed more than one ``Append`` call.
    ``spilled``: records written to the spool by this client.

    Replication (see :class:`~logclient.ReplicationPolicy`): ``servers_short``:
    how many more live servers the client needs to acknowledge a new batch
    now (0: enough; while it is not, new records wait in the queue and the
    spool). ``waiting_for_copies``: records stored on enough servers for
    ``acks`` but not yet on ``copies``, whose missing copies the client still
    tries to make. ``copies_given_up``: records whose missing copies it gave
    up (memory limit, close); they are stored, on fewer servers.
    ``hedged``: batches also sent to another server because the first did not
    answer within the hedge delay (see :class:`~logclient.HedgePolicy`), out
    of ``sent_batches`` calls made (copies, resends and hedges included).
    """

    producer: str
    current_server: str | None
    known_servers: tuple[str, ...]
    down_servers: tuple[str, ...]
    queued: int
    queued_bytes: int
    in_flight: int
    spooled: int
    spooled_batches: int
    spooled_bytes: int
    logged: int
    sent: int
    acknowledged: int
    duplicates: int
    failovers: int
    dropped: int
    unsettled: int
    batches_retried: int
    spilled: int
    spool_directory: str | None
    closed: bool
    servers_short: int = 0
    waiting_for_copies: int = 0
    copies_given_up: int = 0
    hedged: int = 0
    sent_batches: int = 0

    def __repr__(self) -> str:
        return (
            f"ClientStats(server={self.current_server}, known={list(self.known_servers)}, "
            f"down={list(self.down_servers)}, queued={self.queued}, "
            f"in_flight={self.in_flight}, spooled={self.spooled}, "
            f"logged={self.logged}, sent={self.sent}, acknowledged={self.acknowledged}, "
            f"failovers={self.failovers}, dropped={self.dropped}, unsettled={self.unsettled}, "
            f"batches_retried={self.batches_retried}, spilled={self.spilled}, "
            f"servers_short={self.servers_short}, waiting_for_copies={self.waiting_for_copies}, "
            f"copies_given_up={self.copies_given_up}, hedged={self.hedged})"
        )

    @property
    def producer_id(self) -> str:
        """Deprecated: the old name of :attr:`producer` (see docs/glossary.md)."""
        warnings.warn(
            "ClientStats.producer_id is now ClientStats.producer", DeprecationWarning, stacklevel=2
        )
        return self.producer
