"""The end of a storage's life: finish the writes, sync, leave the clean-shutdown record.

:func:`shut_down` takes every category's lock (in name order, as writers do),
so no write is half done while it runs; makes everything written durable with
one last group commit; closes every category (descriptors, time indexes not
saved yet); and, only if all of that held and no write or sync ever failed,
leaves the clean-shutdown record (``_clean``) that lets the next open skip
reading the categories' last segments. A storage that cannot vouch for its
bytes leaves none, and the next open recovers as after a crash.
"""

from __future__ import annotations

import logging
from pathlib import Path

from logserver.errors import StorageUnavailableError
from logserver.storage._category import CategoryLog
from logserver.storage._clean import write_clean
from logserver.storage._commit import GroupCommitter
from logserver.storage._disk import DiskIO
from logserver.storage._stats import Counters

__all__ = ["shut_down"]

log = logging.getLogger(__name__)


def shut_down(
    data_dir: Path,
    categories: list[CategoryLog],
    *,
    disk: DiskIO,
    committer: GroupCommitter,
    counters: Counters,
) -> None:
    """Sync and close ``categories`` (every one the storage has; no new one may come) under
    their locks, and record a clean close if everything written is durable."""
    logs = sorted(categories, key=lambda c: c.name)
    for category in logs:
        category.lock.acquire()
    try:
        clean = True
        try:
            committer.flush()
        except StorageUnavailableError as exc:
            clean = False
            log.error("final sync of %s failed: %s", data_dir, exc)
        for category in logs:
            category.close()
        if clean:
            _record_clean(data_dir, logs, disk, counters)
    finally:
        for category in reversed(logs):
            category.lock.release()


def _record_clean(
    data_dir: Path, logs: list[CategoryLog], disk: DiskIO, counters: Counters
) -> None:
    """Leave the clean-shutdown record (``_clean``) if everything written is durable and
    complete: no write or sync ever failed (a failed cut may have left bytes past a
    segment's end; a failed sync, bytes that are not durable)."""
    if counters.write_errors or counters.sync_errors:
        log.info("storage %s had write or sync errors: no clean-shutdown record", data_dir)
        return
    lasts = {
        category.name: (segments[-1].path.name, segments[-1].committed)
        for category in logs
        if (segments := category.segments)
    }
    try:
        write_clean(data_dir, disk, lasts)
    except OSError as exc:
        log.warning("cannot write the clean-shutdown record in %s: %s", data_dir, exc)
