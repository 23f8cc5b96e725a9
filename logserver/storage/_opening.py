"""Opening a data directory: everything :meth:`Storage.open` does before the first append.

In order: create the directory, take it for this process (``_dirlock``), give
it a server id on its first open (``_identity``), make sure ``categories/``
exists (and is durable, if the policy syncs), take the clean-shutdown record
(``_clean``), recover every category (``_recovery``: repair torn tails, sync
what a crash left unsynced, rebuild the deduplication index), then build the
parts the storage runs on, which share one disk, one group committer, one
descriptor cache, one set of counters and one wake-up for waiting readers.
If anything fails on the way, the directory is released again.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from logserver.errors import StorageUnavailableError
from logserver.storage._changes import Changes
from logserver.storage._clean import take_clean
from logserver.storage._commit import GroupCommitter
from logserver.storage._dedup import DedupIndex
from logserver.storage._descriptors import Descriptors
from logserver.storage._dirlock import lock_directory
from logserver.storage._disk import DiskIO
from logserver.storage._identity import server_id_of
from logserver.storage._offline import CATEGORIES_DIR
from logserver.storage._policy import StoragePolicy
from logserver.storage._recovery import RecoveryReport, recover
from logserver.storage._stats import Counters
from logserver.storage._table import CategoryTable

__all__ = ["Opened", "open_parts"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Opened:
    """A locked, recovered data directory and the parts a storage runs on."""

    data_dir: Path
    policy: StoragePolicy
    server_id: str
    disk: DiskIO
    lock_fd: int
    table: CategoryTable
    dedup: DedupIndex
    committer: GroupCommitter
    descriptors: Descriptors
    counters: Counters
    changes: Changes
    recovery: RecoveryReport
    """What the open found and did (read, synced, truncated): see ``_recovery``."""


def open_parts(data_dir: Path, policy: StoragePolicy, disk: DiskIO) -> Opened:
    """Lock ``data_dir`` (creating it), give it a server id on its first open, recover it.

    Raises StorageLockedError if another Storage holds the directory, and
    StorageUnavailableError if a torn tail cannot be repaired.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    lock_fd = lock_directory(data_dir)
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
        table = CategoryTable(
            categories,
            recovered.segments,
            policy=policy,
            disk=disk,
            committer=committer,
            descriptors=descriptors,
            counters=counters,
            changes=changes,
        )
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
    return Opened(
        data_dir=data_dir,
        policy=policy,
        server_id=server_id,
        disk=disk,
        lock_fd=lock_fd,
        table=table,
        dedup=dedup,
        committer=committer,
        descriptors=descriptors,
        counters=counters,
        changes=changes,
        recovery=report,
    )
