"""Keeping this server's record in the data inventory current (see :mod:`logwire.inventory`).

The record is a persistent znode ``<zk_path>-inventory/<server id>``, written
over the registration's own ZooKeeper session (one session per server, not
two). What goes into it comes from a callable the server hands in (the
registry knows nothing of storage: it is given the categories and their sizes).

When it is written, and why that bounds the write rate:

- on start, once ZooKeeper answers;
- when the server holds a category it did not hold at the last write (looked
  for every ``poll_s``), but never sooner than ``min_interval_s`` after the last
  write: a burst of new categories costs one write, and a reader learns of a
  new category within about ``min_interval_s + poll_s`` (2.5 s by default);
- every ``interval_s`` (30 s) otherwise, so ``last_seen`` stays fresh;
- once more on a graceful stop, marked ``stopped``.

So a server writes at most one record per ``min_interval_s``, and one per
``interval_s`` when nothing changes: a thousand servers cost ZooKeeper about
33 writes a second.

A ZooKeeper outage never reaches the server: a write that fails is logged and
tried again at the next poll. With digest auth (``--zk-auth-file``) the path
and the record get the registration's ACL (only the servers' identity writes,
anyone reads): a reader needs no credentials, ``logserver forget`` does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NodeExistsError, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.security import ACL

from logwire.inventory import InventoryRecord, inventory_path

__all__ = ["InventoryPublisher"]

log = structlog.get_logger("logserver.registry")

#: Bound on one ZooKeeper call of the publisher (a write that takes longer is retried later).
_CALL_TIMEOUT_S = 5.0


class InventoryPublisher:
    """Writes ``record()`` to ``<zk_path>-inventory/<server id>`` on its own thread.

    ``client`` is a started (or starting) kazoo client owned by someone else
    (the registration): the publisher never stops it. :meth:`stop` writes the
    record one last time (``stopped``) if ZooKeeper answers within its bound.
    """

    def __init__(
        self,
        client: KazooClient,
        zk_path: str,
        record: Callable[[], InventoryRecord],
        *,
        acl: list[ACL] | None = None,
        interval_s: float = 30.0,
        min_interval_s: float = 2.0,
        poll_s: float = 0.5,
    ) -> None:
        if not 0 < poll_s <= min_interval_s <= interval_s:
            raise ValueError("need 0 < poll_s <= min_interval_s <= interval_s")
        self._client = client
        self._parent = inventory_path(zk_path)
        self._record = record
        self._acl = acl
        self._interval_s = interval_s
        self._min_interval_s = min_interval_s
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one write at a time (the thread's, or stop()'s last)
        # Owned by whoever holds _lock:
        self._written: frozenset[str] | None = None  # categories in the last record written
        self._last_write = float("-inf")  # monotonic
        self.writes = 0
        self.failures = 0

    def __repr__(self) -> str:
        return (
            f"<InventoryPublisher {self._parent} writes={self.writes} failures={self.failures} "
            f"categories={len(self._written or ())}>"
        )

    @property
    def path(self) -> str:
        """The parent znode of every server's record."""
        return self._parent

    def start(self) -> None:
        """Start the writing thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"zk-inventory{self._parent}", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Stop the thread; write the record once more, marked ``stopped``, within ``timeout``."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._client.connected:
            remaining = max(0.1, deadline - time.monotonic())
            self._write(stopped=True, timeout=remaining)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception as exc:  # never let the thread die: the next poll tries again
                log.warning("inventory_update_failed", path=self._parent, error=repr(exc))
            self._stop.wait(self._poll_s)

    def _tick(self) -> None:
        if not self._client.connected:
            return
        now = time.monotonic()
        since = now - self._last_write
        if self._written is None or since >= self._interval_s:
            self._write()
        elif since >= self._min_interval_s:
            record = self._record()
            if not set(record.categories) <= self._written:
                self._write(record)

    def _write(
        self,
        record: InventoryRecord | None = None,
        *,
        stopped: bool = False,
        timeout: float = _CALL_TIMEOUT_S,
    ) -> bool:
        """Write the record (made now unless given); False (logged) if ZooKeeper did not take it."""
        with self._lock:
            record = record or self._record()
            if stopped:
                record = InventoryRecord(**{**record.__dict__, "stopped": True})
            data = record.to_json()
            node = f"{self._parent}/{record.server_id}"
            try:
                try:
                    self._client.set_async(node, data).get(timeout=timeout)
                except NoNodeError:
                    self._client.ensure_path_async(self._parent, acl=self._acl).get(timeout=timeout)
                    try:
                        self._client.create_async(node, data, acl=self._acl).get(timeout=timeout)
                    except NodeExistsError:  # created meanwhile (a retried create): set it
                        self._client.set_async(node, data).get(timeout=timeout)
            except (KazooException, KazooTimeoutError) as exc:
                self.failures += 1
                log.warning("inventory_write_failed", node=node, error=repr(exc))
                return False
            first = self._written is None
            self._written = frozenset(record.categories)
            self._last_write = time.monotonic()
            self.writes += 1
        if first or stopped:
            log.info(
                "inventory_written",
                node=node,
                categories=len(record.categories),
                stopped=stopped,
            )
        return True
