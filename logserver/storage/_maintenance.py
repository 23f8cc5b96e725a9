"""Storage's background thread: the periodic sync (``fsync="interval"``) and retention.

With ``fsync="interval"`` appends are acknowledged once written, and this
thread makes them durable every ``fsync_interval_s``; with retention enabled
it deletes each category's expired segments every ``retention_check_s``. A
storage whose policy asks for neither runs no thread. A failure is logged and
tried again at the next turn: the thread outlives any one bad sync or
deletion, and :meth:`Maintenance.stop` ends it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from logserver.errors import StorageUnavailableError
from logserver.storage._category import CategoryLog
from logserver.storage._commit import GroupCommitter
from logserver.storage._policy import StoragePolicy

__all__ = ["Maintenance"]

log = logging.getLogger(__name__)


class Maintenance:
    """The background thread of one storage (started here if its policy needs one)."""

    def __init__(
        self,
        name: str,
        policy: StoragePolicy,
        committer: GroupCommitter,
        categories: Callable[[], Iterable[CategoryLog]],
    ) -> None:
        self._policy = policy
        self._committer = committer
        self._categories = categories
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if policy.fsync == "interval" or policy.retention_enabled:
            self._thread = threading.Thread(
                target=self._maintain, name=f"storage-maintenance:{name}", daemon=True
            )
            self._thread.start()

    def __repr__(self) -> str:
        running = self._thread is not None and self._thread.is_alive()
        return f"<Maintenance {'running' if running else 'stopped'}>"

    def stop(self) -> None:
        """Stop the thread and wait for it (a sync or retention pass under way finishes)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

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
                    for category in list(self._categories()):
                        category.enforce_retention(time.time())
            except StorageUnavailableError as exc:
                log.error("background sync failed: %s", exc)
            except Exception:
                log.exception("storage maintenance failed; retrying later")
