"""Storage's one write path: bytes into categories' segments, all or nothing, then durable.

Every write (an append's categories, a copy's batch parts) goes through
:func:`write_durably`: the categories' locks in name order (no deadlock
between batches), each category's bytes at the end of its active segment, all
undone if one fails, published, then made as durable as the policy says
before it returns. Encoding, deduplication and bookkeeping are the callers'.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from logserver.errors import StorageUnavailableError
from logserver.storage._category import CategoryLog, Written
from logserver.storage._commit import WIDE, GroupCommitter, Round
from logserver.storage._policy import StoragePolicy

__all__ = ["WritePart", "write_durably"]


class WritePart(NamedTuple):
    """One category's bytes of a write, and what the segment's time index notes of them:
    how many records, received from ``first_ns`` to ``last_ns`` (one batch: one time;
    copies of several batches: their earliest and latest)."""

    category: CategoryLog
    data: bytes
    records: int
    first_ns: int
    last_ns: int = 0


def write_durably(
    parts: list[WritePart],
    *,
    committer: GroupCommitter,
    policy: StoragePolicy,
    closed: Callable[[], bool],
) -> list[tuple[CategoryLog, Written]]:
    """Write each part's bytes to its category (categories in name order, each once) and wait for
    durability; return where each went. StorageUnavailableError when storage is closed or
    the disk refused the write or the sync (nothing of it is then acknowledged)."""
    wide = len(parts) > WIDE
    locks = [part.category.lock for part in parts]  # in name order: no deadlock
    for lock in locks:
        lock.acquire()
    try:
        if closed():
            raise StorageUnavailableError("storage is closed")
        done: list[tuple[CategoryLog, Written]] = []
        try:
            for part in parts:
                category = part.category
                done.append(
                    (category, category.write(part.data, part.first_ns, part.records, part.last_ns))
                )
        except BaseException:
            for category, written in done:
                category.undo(written)
            raise
        for category, written in done:
            category.publish(written)
        alone = wide and policy.fsync == "always"
        if not alone:
            current: Round = committer.join(written.segment for _, written in done)
    finally:
        for lock in reversed(locks):
            lock.release()
    if alone:
        committer.sync_alone(written.segment for _, written in done)
    elif policy.fsync == "always":
        committer.wait(current)
    return done
