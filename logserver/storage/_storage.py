"""The storage engine's public face: durable, deduplicated, append-only logs per category.

:class:`Storage` keeps little logic of its own (the order of a close, the
stats snapshot): it wires the parts that each own one job and answers
through them:

- :mod:`._opening`: lock the directory, give it an id, recover it, build the parts;
- :mod:`._table`: the categories, and creating new ones within the cap;
- :mod:`._appender`: the append path (checks, dedup claim, encoding, the write);
- :mod:`._reads`: the read and query paths;
- :mod:`._copies`: what ``logserver repair`` asks (holdings, batches, restoring copies);
- :mod:`._maintenance`: the background thread (interval sync, retention);
- :mod:`._closing`: the final sync and the clean-shutdown record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from logserver.errors import StorageUnavailableError
from logserver.storage._appender import Appender
from logserver.storage._batch import BatchChecker
from logserver.storage._closing import shut_down
from logserver.storage._columns import DecodeBudget
from logserver.storage._copies import Copies
from logserver.storage._dirlock import unlock_directory
from logserver.storage._disk import DiskIO
from logserver.storage._maintenance import Maintenance
from logserver.storage._opening import Opened, open_parts
from logserver.storage._policy import StoragePolicy
from logserver.storage._reads import Reads
from logserver.storage._stats import StorageStats
from logserver.storage._types import (
    AppendOutcome,
    BlockBatch,
    CategoryStats,
    QueryBatch,
    ReadBatch,
)

__all__ = ["Storage"]

log = logging.getLogger(__name__)


class Storage:
    """Append-only, per-category logs in one data directory, owned by one process.

    ``append`` is thread-safe and returns once the batch is as durable as the
    policy promises; ``read`` runs concurrently with appends and never sees a
    record that could still be taken back. Use :meth:`open` (not the
    constructor), and :meth:`close` (or ``with``) when done.
    """

    def __init__(self, opened: Opened) -> None:
        policy = opened.policy
        self._data_dir = opened.data_dir
        self.recovery = opened.recovery
        """What the open found and did (read, synced, truncated): see ``_recovery``."""
        self._policy = policy
        self._server_id = opened.server_id
        self._disk = opened.disk
        self._lock_fd = opened.lock_fd
        self._table = opened.table
        self._dedup = opened.dedup
        self._committer = opened.committer
        self._descriptors = opened.descriptors
        self._counters = opened.counters
        self._changes = opened.changes
        checker = BatchChecker(policy.max_message_bytes, policy.max_batch_categories)
        # Decompressed columns in memory at once: four of the largest batches.
        decoding = DecodeBudget(4 * policy.max_batch_bytes)
        self._appender = Appender(
            table=self._table,
            checker=checker,
            decoding=decoding,
            dedup=self._dedup,
            committer=self._committer,
            counters=self._counters,
            policy=policy,
        )
        self._reads = Reads(table=self._table, checker=checker, changes=self._changes)
        self._copies = Copies(
            logs=self._table.logs,
            categories=self._table.for_batch,
            checker=checker,
            dedup=self._dedup,
            decoding=decoding,
            policy=policy,
            counters=self._counters,
            write=self._appender.write_one,
            closed=self._table.is_closed,
        )
        self._maintenance = Maintenance(
            self._data_dir.name,
            policy,
            self._committer,
            lambda: self._table.logs().values(),
        )

    @classmethod
    def open(
        cls,
        data_dir: Path,
        policy: StoragePolicy = StoragePolicy(),  # noqa: B008 - frozen, safe to share
        *,
        disk: DiskIO | None = None,
    ) -> Storage:
        """Lock ``data_dir`` (creating it), give it a server id on its first open
        (:attr:`server_id`), recover it, and start serving.

        Raises StorageLockedError if another Storage holds the directory, and
        StorageUnavailableError if a torn tail cannot be repaired. ``disk`` is a
        seam for tests (failing writes); production uses the default.
        """
        return cls(open_parts(Path(data_dir), policy, disk or DiskIO()))

    def __repr__(self) -> str:
        c = self._counters
        state = "closed" if self._table.is_closed() else "open"
        return (
            f"<Storage {str(self._data_dir)!r} id={self._server_id} {state} fsync={self._policy.fsync} "
            f"categories={len(self._table)} records={c.records_stored} "
            f"batches={c.batches_stored} duplicates={c.duplicates} fsyncs={c.fsyncs} "
            f"{self._dedup!r} {self._committer!r} {self._descriptors!r}>"
        )

    def __enter__(self) -> Storage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def server_id(self) -> str:
        """The data directory's persistent id (made on its first open; see ``_identity``)."""
        return self._server_id

    @property
    def policy(self) -> StoragePolicy:
        """The policy this storage runs with."""
        return self._policy

    # ------------------------------------------------------------------ append

    def append(
        self,
        entries: Sequence[tuple[str | bytes, bytes | str]],
        producer: str = "",
        sequence: int = -1,
    ) -> AppendOutcome:
        """Store a batch of (category, message) records, all of it or nothing.

        With a ``producer``, a batch whose (producer, sequence) is stored
        already is acknowledged as a duplicate and not written again. Raises
        InvalidCategoryError, MessageTooLargeError or InvalidRequestError before
        writing anything, and StorageUnavailableError when the disk refused the
        write or the sync (nothing acknowledged; retrying later may work).
        """
        return self._appender.append(entries, producer, sequence)

    def append_columns(
        self,
        runs: Sequence[tuple[str | bytes, int]],
        messages: Sequence[bytes | str],
        producer: str = "",
        sequence: int = -1,
    ) -> AppendOutcome:
        """:meth:`append` for a batch in columns: ``runs`` of ``(category, count)``
        in record order, then the messages. Stored exactly as the same records
        given to :meth:`append` would be (same groups, indexes and dedup)."""
        return self._appender.append_columns(runs, messages, producer, sequence)

    def append_compressed(
        self,
        runs: Sequence[tuple[str | bytes, int]],
        codec: int,
        raw_bytes: int,
        payload: bytes,
        producer: str = "",
        sequence: int = -1,
    ) -> AppendOutcome:
        """:meth:`append_columns` for columns a client compressed: ``payload`` decodes
        (``codec``, see :mod:`logwire.compression`) to ``raw_bytes`` bytes of columns.

        Checked whole before anything is written (decompressed once, never past
        the policy's ``max_batch_bytes``); a one-category batch is stored as it
        came, without compressing it again. InvalidRequestError when the payload
        does not decode to valid columns matching the runs; StorageUnavailableError
        when four such batches' worth of columns are being decoded already and none
        finished in 10 s (a flood of small frames that expand: see ``DecodeBudget``).
        """
        return self._appender.append_compressed(runs, codec, raw_bytes, payload, producer, sequence)

    # -------------------------------------------------------------------- read

    def read(
        self,
        category: str | bytes,
        position: int = 0,
        limit: int = 1000,
        max_bytes: int = 4 * 2**20,
    ) -> ReadBatch:
        """Up to ``limit`` records (and about ``max_bytes``, at least one record) of
        ``category`` starting at ``position``.

        ``position`` is 0, a record's position, or a ``next_position`` from an
        earlier read; below the oldest kept record it means "from the oldest".
        Anything else raises InvalidPositionError.
        """
        return self._reads.read(category, position, limit, max_bytes)

    def read_blocks(
        self, category: str | bytes, position: int = 0, max_bytes: int = 4 * 2**20
    ) -> BlockBatch:
        """Whole stored blocks of ``category`` (payloads as stored, see :class:`StoredBlock`)
        from the one holding the record at ``position``, until their payloads reach about
        ``max_bytes`` (at least one block). The first block may start before ``position``:
        its reader skips the records before it. Positions as for :meth:`read`."""
        return self._reads.read_blocks(category, position, max_bytes)

    def query_blocks(
        self,
        category: str | bytes,
        position: int = -1,
        max_bytes: int = 4 * 2**20,
        *,
        since_ns: int | None = None,
        until_ns: int | None = None,
        last: int = 0,
    ) -> QueryBatch:
        """:meth:`read_blocks` with a time range and a start found by the index.

        ``position`` -1 starts at the last ``last`` records (0: at the oldest), and
        the time range skips what is before ``since_ns`` through the segments' time
        indexes, so the cost follows the range read, not the category. Only blocks
        received in ``[since_ns, until_ns)`` are returned. ``start_position`` says
        where reading started: later than ``position`` when retention deleted the
        records in between.
        """
        return self._reads.query_blocks(
            category, position, max_bytes, since_ns=since_ns, until_ns=until_ns, last=last
        )

    def wait_for_records(
        self, category: str, position: int, timeout: float, stop: Callable[[], bool]
    ) -> bool:
        """Wait up to ``timeout`` seconds until ``category`` has data past ``position``, or
        ``stop()`` (checked on every wake-up, see :meth:`wake_readers`); whether data came."""
        return self._reads.wait_for_records(category, position, timeout, stop)

    def wake_readers(self) -> None:
        """Wake every :meth:`wait_for_records` to check its ``stop`` (draining)."""
        self._reads.wake_readers()

    @property
    def copies(self) -> Copies:
        """What ``logserver repair`` asks of storage: holdings, chosen batches, storing copies."""
        return self._copies

    # ------------------------------------------------------------------- stats

    def category_stats(self) -> list[CategoryStats]:
        """Every category with records: counts, size and times from the segments' indexes."""
        return self._table.stats()

    def categories(self) -> list[str]:
        """The categories that hold (or held) records, sorted."""
        return self._table.names()

    def category_sizes(self) -> dict[str, int]:
        """The bytes stored of each category that holds records (its segments' sizes)."""
        return self._table.sizes()

    def stats(self) -> StorageStats:
        """Counters since open, and the current size of the store."""
        c = self._counters
        logs = list(self._table.logs().values())
        return StorageStats(
            records_stored=c.records_stored,
            batches_stored=c.batches_stored,
            duplicates=c.duplicates,
            bytes_stored=c.bytes_stored,
            message_bytes_stored=c.message_bytes_stored,
            fsyncs=c.fsyncs,
            sync_rounds=c.sync_rounds,
            write_errors=c.write_errors,
            sync_errors=c.sync_errors,
            categories=sum(1 for category in logs if category.segments),
            segments=sum(len(category.segments) for category in logs),
            disk_bytes=sum(category.disk_bytes() for category in logs),
            segments_deleted=c.segments_deleted,
            producers_tracked=len(self._dedup),
        )

    # --------------------------------------------------------------- lifecycle

    def sync(self) -> None:
        """Make everything written so far durable (StorageUnavailableError if the disk refused)."""
        if self._table.is_closed():
            raise StorageUnavailableError("storage is closed")
        self._committer.flush()

    def close(self) -> None:
        """Finish in-flight writes, sync, stop the background thread, release the directory.

        Idempotent. Appends that arrive later raise StorageUnavailableError.
        """
        if not self._table.close():
            return
        self._changes.close()
        self._maintenance.stop()
        try:
            shut_down(
                self._data_dir,
                list(self._table.logs().values()),
                disk=self._disk,
                committer=self._committer,
                counters=self._counters,
            )
        finally:
            unlock_directory(self._lock_fd)
        log.info("storage %s closed", self._data_dir)
