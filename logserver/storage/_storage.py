"""The storage engine: durable, deduplicated, append-only logs per category."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from logserver.errors import (
    InvalidCategoryError,
    InvalidPositionError,
    InvalidRequestError,
    StorageLockedError,
    StorageUnavailableError,
)
from logserver.storage._batch import BatchChecker, Checked, Group
from logserver.storage._blocks import FORMAT_VERSION, encode_block
from logserver.storage._category import CategoryLog, Written
from logserver.storage._changes import Changes
from logserver.storage._clean import take_clean, write_clean
from logserver.storage._columns import DecodeBudget, Payload, payloads
from logserver.storage._commit import GroupCommitter
from logserver.storage._copies import Copies
from logserver.storage._dedup import Claim, DedupIndex
from logserver.storage._descriptors import Descriptors
from logserver.storage._disk import DiskIO
from logserver.storage._format import encode_records
from logserver.storage._identity import server_id_of
from logserver.storage._offline import CATEGORIES_DIR
from logserver.storage._policy import StoragePolicy
from logserver.storage._reading import TimeRange
from logserver.storage._recovery import RecoveryReport, recover
from logserver.storage._stats import Counters, StorageStats
from logserver.storage._types import (
    AppendOutcome,
    BlockBatch,
    CategoryStats,
    QueryBatch,
    ReadBatch,
)
from logserver.storage._write import WritePart, write_durably

__all__ = ["Storage"]

log = logging.getLogger(__name__)

LOCK_FILE = "LOCK"


def _lock(data_dir: Path) -> int:
    """Take the data directory for this process (flock: released by the kernel on death)."""
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StorageLockedError(f"{data_dir} is in use by another storage") from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


class Storage:
    """Append-only, per-category logs in one data directory, owned by one process.

    ``append`` is thread-safe and returns once the batch is as durable as the
    policy promises; ``read`` runs concurrently with appends and never sees a
    record that could still be taken back. Use :meth:`open` (not the
    constructor), and :meth:`close` (or ``with``) when done.
    """

    def __init__(
        self,
        data_dir: Path,
        policy: StoragePolicy,
        *,
        server_id: str,
        disk: DiskIO,
        lock_fd: int,
        logs: dict[str, CategoryLog],
        dedup: DedupIndex,
        committer: GroupCommitter,
        descriptors: Descriptors,
        counters: Counters,
        recovery: RecoveryReport,
        changes: Changes | None = None,
    ) -> None:
        self._data_dir = data_dir
        self.recovery = recovery
        """What the open found and did (read, synced, truncated): see ``_recovery``."""
        self._policy = policy
        self._server_id = server_id
        self._disk = disk
        self._lock_fd = lock_fd
        self._logs = logs  # replaced on change (copy-on-write): iterated without a lock
        self._dedup = dedup
        self._committer = committer
        self._descriptors = descriptors
        self._counters = counters
        self._changes = changes or Changes()
        self._checker = BatchChecker(policy.max_message_bytes, policy.max_batch_categories)
        # Decompressed columns in memory at once: four of the largest batches.
        self._decoding = DecodeBudget(4 * policy.max_batch_bytes)
        self._lock = threading.Lock()
        self._closed = False
        self._copies = Copies(
            logs=lambda: self._logs,
            categories=self._categories,
            checker=self._checker,
            dedup=dedup,
            decoding=self._decoding,
            policy=policy,
            counters=counters,
            write=self._write_one,
            closed=lambda: self._closed,
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if policy.fsync == "interval" or policy.retention_enabled:
            self._thread = threading.Thread(
                target=self._maintain, name=f"storage-maintenance:{data_dir.name}", daemon=True
            )
            self._thread.start()

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
        data_dir = Path(data_dir)
        disk = disk or DiskIO()
        data_dir.mkdir(parents=True, exist_ok=True)
        lock_fd = _lock(data_dir)
        try:
            server_id, made = server_id_of(data_dir, durable=policy.fsync != "never")
            if made:
                log.info("storage %s: new server id %s", data_dir, server_id)
            categories = data_dir / CATEGORIES_DIR
            if not categories.is_dir():
                categories.mkdir()
                if policy.fsync != "never":
                    disk.sync_path(data_dir)
            started = time.monotonic()
            try:
                clean = take_clean(data_dir, disk)
            except OSError as exc:
                raise StorageUnavailableError(
                    f"cannot remove the clean-shutdown record in {data_dir}: {exc.strerror or exc}"
                ) from exc
            recovered = recover(categories, policy, disk, clean)
            counters = Counters()
            descriptors = Descriptors(disk, policy.max_open_segments)
            changes = Changes()
            committer = GroupCommitter(
                disk,
                counters,
                descriptors,
                publish_on_sync=policy.fsync == "always",
                drop_synced_pages=policy.drop_synced_pages,
                changes=changes,
            )
            dedup = DedupIndex(policy.dedup_window, policy.max_producers)
            dedup.restore(recovered.stored, recovered.partial)
            logs = {
                name: CategoryLog(
                    name,
                    categories / name,
                    segments,
                    policy=policy,
                    disk=disk,
                    committer=committer,
                    descriptors=descriptors,
                    counters=counters,
                    changes=changes,
                )
                for name, segments in recovered.segments.items()
            }
            report = recovered.report
            log.info(
                "storage %s (server id %s) recovered in %.3f s (%s): %d categories, %d segments; "
                "read %d segments (%d bytes), synced %d; %d producers remembered, "
                "%d partial batches, %d bytes truncated",
                data_dir,
                server_id,
                time.monotonic() - started,
                "clean shutdown" if clean is not None else "after a crash",
                report.categories,
                report.segments,
                report.scanned_segments,
                report.scanned_bytes,
                report.synced_segments,
                report.producers,
                report.partial_batches,
                report.truncated_bytes,
            )
        except BaseException:
            os.close(lock_fd)
            raise
        return cls(
            data_dir,
            policy,
            server_id=server_id,
            disk=disk,
            lock_fd=lock_fd,
            logs=logs,
            dedup=dedup,
            committer=committer,
            descriptors=descriptors,
            counters=counters,
            changes=changes,
            recovery=recovered.report,
        )

    def __repr__(self) -> str:
        c = self._counters
        state = "closed" if self._closed else "open"
        return (
            f"<Storage {str(self._data_dir)!r} id={self._server_id} {state} fsync={self._policy.fsync} "
            f"categories={len(self._logs)} records={c.records_stored} "
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
        if self._closed:
            raise StorageUnavailableError("storage is closed")
        checked = self._checker.check(entries, producer, sequence)
        return self._append(checked, producer, sequence)

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
        if self._closed:
            raise StorageUnavailableError("storage is closed")
        checked = self._checker.check_columns(runs, messages, producer, sequence)
        return self._append(checked, producer, sequence)

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
        if self._closed:
            raise StorageUnavailableError("storage is closed")
        with self._decoding.reserve(raw_bytes if isinstance(raw_bytes, int) else 0):
            checked = self._checker.check_compressed(
                runs,
                codec,
                raw_bytes,
                payload,
                producer,
                sequence,
                cap=self._policy.max_batch_bytes,
            )
            return self._append(checked, producer, sequence)

    def _append(self, checked: Checked, producer: str, sequence: int) -> AppendOutcome:
        """Dedup, then store a checked batch (see :meth:`append`)."""
        if not checked.groups:
            return AppendOutcome(0, False)
        claim: Claim | None = None
        if producer:
            claim = self._dedup.begin(producer, sequence)
            if claim is None:
                self._counters.add("duplicates")
                return AppendOutcome(0, True)
        stored = False
        try:
            records = self._store(checked, producer, sequence, claim.stored_mask if claim else 0)
            stored = True
        finally:
            if claim is not None:
                self._dedup.finish(claim, stored=stored)
        return AppendOutcome(records, False)

    def _store(self, checked: Checked, producer: str, sequence: int, stored_mask: int) -> int:
        """Encode, write every category's part under its lock, then wait for durability;
        then tell each category's holdings what it holds now."""
        received_ns = time.time_ns()
        categories = self._categories([group.name for group in checked.groups])
        parts: list[tuple[CategoryLog, bytes, tuple[Group, int]]] = []
        records = 0
        message_bytes = 0
        for group, category in zip(checked.groups, categories, strict=True):
            if stored_mask:
                group = group.without(stored_mask)
                if not group.records:
                    continue
            if self._policy.segment_format >= FORMAT_VERSION:
                data, last_offset = self._encode_blocks(
                    category, checked, sequence, received_ns, group
                )
            else:
                data = encode_records(
                    checked.producer_bytes,
                    sequence,
                    checked.records,
                    received_ns,
                    group.indexes,
                    group.messages,
                )
                last_offset = len(data) - 1  # within the last record
            parts.append((category, data, (group, last_offset)))
            records += group.records
            message_bytes += group.message_bytes
        if not parts:
            return 0
        done = write_durably(
            [
                WritePart(category, data, group.records, received_ns)
                for category, data, (group, _) in parts
            ],
            committer=self._committer,
            policy=self._policy,
            closed=lambda: self._closed,
        )
        for (category, written), (_, data, (group, last_offset)) in zip(done, parts, strict=True):
            # Where the part went: the first block or record, and the last (past a new
            # segment's header, which the write put in front of the data).
            at = written.segment.base + written.end - len(data)
            if producer:
                category.holdings.note([(producer, sequence, group.records, at, at + last_offset)])
            else:
                category.holdings.note([], unidentified=group.records)
        self._counters.stored(records, sum(w.end - w.start for _, w in done), message_bytes)
        return records

    def _encode_blocks(
        self,
        category: CategoryLog,
        checked: Checked,
        sequence: int,
        received_ns: int,
        group: Group,
    ) -> tuple[bytes, int]:
        """One write's blocks: the client's payload as it came, or payloads made here; and
        the offset of the last block in them."""
        made: list[Payload] = (
            [group.payload]
            if group.payload is not None
            else payloads(group.index_runs, group.messages, self._policy.compression)
        )
        blocks = [
            encode_block(
                category.marker,
                producer=checked.producer_bytes,
                sequence=sequence,
                batch_count=checked.records,
                received_ns=received_ns,
                index_runs=part.index_runs,
                codec=part.codec,
                raw_bytes=part.raw_bytes,
                payload=part.data,
                end=last,
            )
            for last, part in ((k == len(made) - 1, p) for k, p in enumerate(made))
        ]
        if len(blocks) == 1:
            return blocks[0], 0
        return b"".join(blocks), sum(map(len, blocks[:-1]))

    def _categories(self, names: list[str]) -> list[CategoryLog]:
        """The logs of a batch's categories, creating the missing ones (see :meth:`_create`)."""
        logs = self._logs
        missing = [name for name in names if name not in logs]
        if missing:
            self._create(missing)
            logs = self._logs
        return [logs[name] for name in names]

    def _create(self, names: list[str]) -> None:
        """Create categories, within the per-server cap; InvalidCategoryError beyond it.

        Neither the directories' creation nor their sync holds the storage lock
        (which only guards the name table), so writers that create categories
        do not wait for each other's fsyncs; the directories of one batch share
        one sync of their parent. Each new category's first segment is made here
        too, before the batch takes its categories' locks.
        """
        self._check_room(names)
        root = self._data_dir / CATEGORIES_DIR
        try:
            for name in names:
                self._disk.mkdir(root / name)
            if self._policy.fsync != "never":
                self._disk.sync_path(root)
        except OSError as exc:
            raise StorageUnavailableError(
                f"cannot create category {names[0]!r}: {exc.strerror or exc}"
            ) from exc
        made = []
        with self._lock:
            if self._closed:
                raise StorageUnavailableError("storage is closed")
            self._check_room([name for name in names if name not in self._logs])
            logs = dict(self._logs)
            for name in names:
                if name not in logs:
                    logs[name] = CategoryLog.create(
                        name,
                        root / name,
                        policy=self._policy,
                        disk=self._disk,
                        committer=self._committer,
                        descriptors=self._descriptors,
                        counters=self._counters,
                        changes=self._changes,
                    )
                    made.append(logs[name])
            self._logs = logs
        for category in made:
            category.prepare()

    def _check_room(self, names: list[str]) -> None:
        """InvalidCategoryError naming the first of ``names`` (new categories, in name order)
        past the per-server cap: a client that drops that category's records and tries
        again stores the rest, down to what fits."""
        cap = self._policy.max_categories
        room = max(0, cap - len(self._logs))
        if len(names) > room:
            raise InvalidCategoryError(
                names[room],
                f"a new category would take the server past its limit of {cap} categories "
                "(--max-categories)",
            )

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
        if self._closed:
            raise StorageUnavailableError("storage is closed")
        name = self._checker.category(category)
        if not isinstance(position, int) or position < 0:
            raise InvalidPositionError(name, position, "must be a non-negative integer")
        if limit < 1 or max_bytes < 1:
            raise InvalidRequestError("limit and max_bytes must be positive")
        log_ = self._logs.get(name)
        if log_ is None:
            if position == 0:
                return ReadBatch([], 0, True)
            raise InvalidPositionError(name, position, "the category has no records")
        return log_.read(position, limit, max_bytes)

    def read_blocks(
        self, category: str | bytes, position: int = 0, max_bytes: int = 4 * 2**20
    ) -> BlockBatch:
        """Whole stored blocks of ``category`` (payloads as stored, see :class:`StoredBlock`)
        from the one holding the record at ``position``, until their payloads reach about
        ``max_bytes`` (at least one block). The first block may start before ``position``:
        its reader skips the records before it. Positions as for :meth:`read`."""
        if self._closed:
            raise StorageUnavailableError("storage is closed")
        name = self._checker.category(category)
        if not isinstance(position, int) or position < 0:
            raise InvalidPositionError(name, position, "must be a non-negative integer")
        if max_bytes < 1:
            raise InvalidRequestError("max_bytes must be positive")
        log_ = self._logs.get(name)
        if log_ is None:
            if position == 0:
                return BlockBatch([], 0, True)
            raise InvalidPositionError(name, position, "the category has no records")
        return log_.read_blocks(position, max_bytes)

    @property
    def copies(self) -> Copies:
        """What ``logserver repair`` asks of storage: holdings, chosen batches, storing copies."""
        return self._copies

    def _write_one(self, part: WritePart) -> Written:
        ((_, written),) = write_durably(
            [part],
            committer=self._committer,
            policy=self._policy,
            closed=lambda: self._closed,
        )
        return written

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
        if self._closed:
            raise StorageUnavailableError("storage is closed")
        name = self._checker.category(category)
        if not isinstance(position, int) or position < -1:
            raise InvalidPositionError(name, position, "must be -1 or a non-negative integer")
        if max_bytes < 1 or last < 0:
            raise InvalidRequestError("max_bytes must be positive and last >= 0")
        log_ = self._logs.get(name)
        if log_ is None:
            if position in (-1, 0):
                return QueryBatch([], 0, True, 0)
            raise InvalidPositionError(name, position, "the category has no records")
        if position == -1:
            position = log_.tail_position(last) if last else 0
        start = max(position, log_.oldest_position())
        times = TimeRange(since_ns, until_ns) if since_ns or until_ns else None
        batch = log_.read_blocks(position, max_bytes, times)
        return QueryBatch(batch.blocks, batch.next_position, batch.end_of_log, start)

    def wait_for_records(
        self, category: str, position: int, timeout: float, stop: Callable[[], bool]
    ) -> bool:
        """Wait up to ``timeout`` seconds until ``category`` has data past ``position``, or
        ``stop()`` (checked on every wake-up, see :meth:`wake_readers`); whether data came."""

        def ready() -> bool:
            log_ = self._logs.get(category)
            return stop() or (log_ is not None and log_.end_position() > position)

        self._changes.wait(ready, timeout)
        log_ = self._logs.get(category)
        return log_ is not None and log_.end_position() > position

    def wake_readers(self) -> None:
        """Wake every :meth:`wait_for_records` to check its ``stop`` (draining)."""
        self._changes.wake_all()

    def category_stats(self) -> list[CategoryStats]:
        """Every category with records: counts, size and times from the segments' indexes."""
        out = []
        for name in self.categories():
            records, size, first, last = self._logs[name].stats()
            out.append(CategoryStats(name, records, size, first, last))
        return out

    def categories(self) -> list[str]:
        """The categories that hold (or held) records, sorted."""
        return sorted(name for name, c in self._logs.items() if c.segments)

    def category_sizes(self) -> dict[str, int]:
        """The bytes stored of each category that holds records (its segments' sizes)."""
        return {name: c.disk_bytes() for name, c in sorted(self._logs.items()) if c.segments}

    def stats(self) -> StorageStats:
        """Counters since open, and the current size of the store."""
        c = self._counters
        logs = list(self._logs.values())
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
        if self._closed:
            raise StorageUnavailableError("storage is closed")
        self._committer.flush()

    def close(self) -> None:
        """Finish in-flight writes, sync, stop the background thread, release the directory.

        Idempotent. Appends that arrive later raise StorageUnavailableError.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        self._changes.close()
        if self._thread is not None:
            self._thread.join()
        logs = sorted(self._logs.values(), key=lambda c: c.name)
        for category in logs:
            category.lock.acquire()
        try:
            clean = True
            try:
                self._committer.flush()
            except StorageUnavailableError as exc:
                clean = False
                log.error("final sync of %s failed: %s", self._data_dir, exc)
            for category in logs:
                category.close()
            if clean:
                self._record_clean(logs)
        finally:
            for category in reversed(logs):
                category.lock.release()
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._lock_fd)
        log.info("storage %s closed", self._data_dir)

    def _record_clean(self, logs: list[CategoryLog]) -> None:
        """Leave the clean-shutdown record (``_clean``) if everything written is durable and
        complete: no write or sync ever failed (a failed cut may have left bytes past a
        segment's end; a failed sync, bytes that are not durable)."""
        c = self._counters
        if c.write_errors or c.sync_errors:
            log.info(
                "storage %s had write or sync errors: no clean-shutdown record", self._data_dir
            )
            return
        lasts = {
            category.name: (segments[-1].path.name, segments[-1].committed)
            for category in logs
            if (segments := category.segments)
        }
        try:
            write_clean(self._data_dir, self._disk, lasts)
        except OSError as exc:
            log.warning("cannot write the clean-shutdown record in %s: %s", self._data_dir, exc)

    def _maintain(self) -> None:
        """Background thread: periodic sync (fsync="interval") and retention."""
        policy = self._policy
        sync_every = policy.fsync_interval_s if policy.fsync == "interval" else None
        retain_every = policy.retention_check_s if policy.retention_enabled else None
        now = time.monotonic()
        next_sync = now + sync_every if sync_every else float("inf")
        next_retain = now + retain_every if retain_every else float("inf")
        while not self._stop.wait(max(0.0, min(next_sync, next_retain) - time.monotonic())):
            now = time.monotonic()
            try:
                if now >= next_sync and sync_every:
                    next_sync = now + sync_every
                    self._committer.flush()
                if now >= next_retain and retain_every:
                    next_retain = now + retain_every
                    for category in list(self._logs.values()):
                        category.enforce_retention(time.time())
            except StorageUnavailableError as exc:
                log.error("background sync failed: %s", exc)
            except Exception:
                log.exception("storage maintenance failed; retrying later")
