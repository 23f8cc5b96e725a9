"""Group commit: many appending threads share each fdatasync.

Leader/follower: a thread that has written its batch joins the *open round*
(the set of segments written since the last sync began) and waits. If no sync
is running, it becomes the leader: it closes the round, releases the lock,
fdatasyncs every segment in it, and wakes all threads of that round with the
outcome. Batches written while a sync runs gather in the next round, so under
load one fdatasync per segment acknowledges everything written during the
previous one: the more concurrent appends, the fewer syncs per append.

After a sync, the synced bytes are dropped from the page cache
(``drop_synced_pages``, see :class:`~logserver.storage.StoragePolicy`): a log
server writes a stream that is rarely read back soon, and keeping it cached
only makes every new write allocate fresh pages (measured on this project's VMs:
a 1.3 MB append into fresh page-cache pages 2.8-3.3 ms, into recycled ones
0.36 ms).

A segment's descriptor may be closed (by rotation, or by the descriptor cache,
:mod:`logserver.storage._descriptors`) while a round still needs it: a round
*pins* the descriptors it syncs, so they stay open until it is done. A segment
already closed when its round starts is synced by reopening it by name
(fdatasync works per file, not per descriptor).

A batch that wrote to many segments at once (a *wide* batch, more than
:data:`WIDE`: a client naming thousands of categories in one call) syncs them
in its own thread, outside the shared rounds (:meth:`GroupCommitter.sync_alone`):
otherwise every other writer's acknowledgement would wait behind thousands of
fdatasyncs that are none of its business.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Iterable

from logserver.errors import StorageUnavailableError
from logserver.storage._changes import Changes
from logserver.storage._descriptors import Descriptors
from logserver.storage._disk import DiskIO
from logserver.storage._segment import Segment
from logserver.storage._stats import Counters

__all__ = ["WIDE", "GroupCommitter", "Round"]

#: A batch that wrote to more segments than this syncs them itself (see the module doc).
WIDE = 64

_PAGE = os.sysconf("SC_PAGE_SIZE")

log = logging.getLogger(__name__)


class Round:
    """The segments one sync covers, and its outcome once done."""

    __slots__ = ("done", "error", "segments")

    def __init__(self) -> None:
        self.segments: dict[Segment, None] = {}  # an ordered set
        self.done = False
        self.error: OSError | None = None

    def __repr__(self) -> str:
        state = "failed" if self.error else "done" if self.done else "open"
        return f"<Round {state} segments={len(self.segments)}>"


class GroupCommitter:
    """Makes written segments durable, one round at a time.

    ``publish_on_sync``: raise each segment's ``readable`` to what a round
    made durable (fsync="always": readers never see data a crash could take
    back). Otherwise the category log publishes at write time.
    """

    def __init__(
        self,
        disk: DiskIO,
        counters: Counters,
        descriptors: Descriptors,
        *,
        publish_on_sync: bool,
        drop_synced_pages: bool = False,
        changes: Changes | None = None,
    ) -> None:
        self._disk = disk
        self._changes = changes
        self._counters = counters
        self._descriptors = descriptors
        self._publish_on_sync = publish_on_sync
        self._drop_synced_pages = drop_synced_pages
        self._cond = threading.Condition(threading.Lock())
        self._open = Round()
        self._syncing = False
        self._alone = 0  # syncs running in sync_alone

    def __repr__(self) -> str:
        return (
            f"<GroupCommitter syncing={self._syncing} pending_segments={len(self._open.segments)}>"
        )

    def join(self, segments: Iterable[Segment]) -> Round:
        """Register segments just written (after the write returned); return the round that will
        make them durable."""
        with self._cond:
            current = self._open
            for segment in segments:
                current.segments[segment] = None
            return current

    def wait(self, current: Round) -> None:
        """Block until ``current`` is durable, leading the sync if nobody else is.

        Raises StorageUnavailableError when the round's fdatasync failed.
        """
        with self._cond:
            while not current.done:
                if self._syncing:
                    self._cond.wait()
                else:
                    # Not done and nobody syncing: ``current`` is still the open round.
                    self._lead()
        if current.error is not None:
            err = current.error
            raise StorageUnavailableError(f"fsync failed: {err.strerror or err}") from err

    def flush(self) -> None:
        """Make everything written so far durable (Storage.sync, the interval thread, close):
        the open round, and the wide batches syncing alone right now."""
        with self._cond:
            current = self._open
        self.wait(current)
        with self._cond:
            while self._alone:
                self._cond.wait()

    def sync_alone(self, segments: Iterable[Segment]) -> None:
        """Make ``segments`` durable in the calling thread, beside the shared rounds.

        For a wide batch (see the module doc). Everything written to them so far
        is covered, and published to readers as a round would. Raises
        StorageUnavailableError when an fdatasync failed.
        """
        alone = Round()
        with self._cond:
            targets = self._pin(alone, segments)
            self._alone += 1
        outcome: tuple[OSError | None, int] = (OSError(errno.EINTR, "sync interrupted"), 0)
        try:
            outcome = self._sync(targets, drop=False)
        finally:
            with self._cond:
                self._finish(alone, targets, *outcome)
                self._alone -= 1
                self._cond.notify_all()
        if alone.error is not None:
            err = alone.error
            raise StorageUnavailableError(f"fsync failed: {err.strerror or err}") from err

    def retire(self, segment: Segment) -> None:
        """The segment takes no more writes: close its descriptor once no sync uses it."""
        self._descriptors.retire(segment)

    def close_all(self, segments: Iterable[Segment]) -> None:
        """Close descriptors at shutdown (after a flush, with no writer left)."""
        self._descriptors.close_all(segments)

    def _lead(self) -> None:
        """Sync the open round; called and returns with the lock held, lock released meanwhile."""
        current = self._open
        self._open = Round()
        self._syncing = True
        targets = self._pin(current, current.segments)
        # If the sync itself is interrupted (KeyboardInterrupt), the round still completes
        # (as failed) so no thread waits forever for it.
        outcome: tuple[OSError | None, int] = (OSError(errno.EINTR, "sync interrupted"), 0)
        self._cond.release()
        try:
            outcome = self._sync(targets)
        finally:
            self._cond.acquire()
            self._complete(current, targets, *outcome)

    def _pin(self, round_: Round, segments: Iterable[Segment]) -> list[tuple[Segment, int, int]]:
        """(segment, descriptor or -1, bytes to make durable) for each segment; the open
        descriptors pinned until :meth:`_finish` (lock held)."""
        round_.segments = dict.fromkeys(segments)
        pin = self._descriptors.pin
        return [(segment, pin(segment), segment.committed) for segment in round_.segments]

    def _sync(
        self, targets: list[tuple[Segment, int, int]], *, drop: bool = True
    ) -> tuple[OSError | None, int]:
        """fdatasync every target (lock not held); return the first error and the calls made.

        ``drop``: drop synced pages (the round's leader only: ``cached_from`` has
        one writer)."""
        calls = 0
        for segment, fd, size in targets:
            if segment.sync_failed:
                # After a failed fdatasync the kernel may have dropped the dirty pages and a
                # later fdatasync can succeed without them: never trust this file again.
                return OSError(errno.EIO, f"an earlier fdatasync of {segment.path} failed"), calls
            if segment.deleted and fd < 0:
                continue  # retention deleted it (fsync="never" only: see CategoryLog._retain)
            try:
                if fd >= 0:
                    self._disk.fdatasync(fd)
                else:
                    self._disk.sync_path(segment.path)
            except OSError as exc:
                # Also FileNotFoundError: a file someone else deleted holds no durable bytes.
                return exc, calls
            calls += 1
            if drop and self._drop_synced_pages and fd >= 0:
                self._drop(segment, fd, size)
        return None, calls

    def _drop(self, segment: Segment, fd: int, synced: int) -> None:
        """Drop ``segment``'s synced pages from the page cache (advice: errors are ignored).

        Only this round's leader runs it, so ``cached_from`` needs no lock. The
        partial page at the end stays (the next write fills it); the next drop
        starts from its boundary.
        """
        end = synced - synced % _PAGE
        if end <= segment.cached_from:
            return
        try:
            self._disk.drop_cache(fd, segment.cached_from, end - segment.cached_from)
        except OSError as exc:
            log.debug("dropping synced pages of %s: %s", segment.path, exc)
            return
        segment.cached_from = end

    def _complete(
        self,
        current: Round,
        targets: list[tuple[Segment, int, int]],
        error: OSError | None,
        calls: int,
    ) -> None:
        """Publish the leader's round and wake its waiters (lock held)."""
        self._syncing = False
        self._finish(current, targets, error, calls)
        self._cond.notify_all()

    def _finish(
        self,
        done: Round,
        targets: list[tuple[Segment, int, int]],
        error: OSError | None,
        calls: int,
    ) -> None:
        """Record a sync's outcome, publish what it made durable, unpin (lock held)."""
        done.error = error
        done.done = True
        for segment, fd, size in targets:
            if error is not None:
                segment.sync_failed = True
            else:
                if size > segment.synced:
                    segment.synced = size
                if self._publish_on_sync and size > segment.readable:
                    segment.readable = size
            if fd >= 0:
                self._descriptors.unpin(segment)
        if self._publish_on_sync and error is None and self._changes is not None:
            self._changes.published()
        self._counters.add("fsyncs", calls)
        self._counters.add("sync_rounds")
        if error is not None:
            self._counters.add("sync_errors")
            log.error(
                "fdatasync failed for %d segment(s); their batches are not acknowledged: %s",
                len(targets),
                error,
            )
