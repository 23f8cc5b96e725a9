"""The category table: which categories a storage has, and making new ones.

One table per storage maps each category's name to its
:class:`~logserver.storage._category.CategoryLog`. Appends, reads, copies,
retention and stats all look categories up here, so they see the same ones.

- **Copy-on-write**: the dict is replaced on change, never mutated, so
  readers iterate a snapshot without any lock; the table's lock guards only
  the replacing.
- **Creation within a cap**: a batch naming categories the server does not
  have yet creates them, within the policy's ``max_categories``; past it,
  ``InvalidCategoryError`` names the first category that does not fit.
- **Closed is the table's too**: :meth:`CategoryTable.close` sets the flag
  under the same lock that a creation takes to check it and insert, so the
  categories a closing storage sees are all there will ever be (none is
  created behind its back, unclosed).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

from logserver.errors import InvalidCategoryError, StorageUnavailableError
from logserver.storage._category import CategoryLog
from logserver.storage._changes import Changes
from logserver.storage._commit import GroupCommitter
from logserver.storage._descriptors import Descriptors
from logserver.storage._disk import DiskIO
from logserver.storage._policy import StoragePolicy
from logserver.storage._segment import Segment
from logserver.storage._stats import Counters
from logserver.storage._types import CategoryStats

__all__ = ["CategoryTable"]


class CategoryTable:
    """The categories of one storage under ``root`` (see the module docstring)."""

    def __init__(
        self,
        root: Path,
        segments: Mapping[str, list[Segment]],
        *,
        policy: StoragePolicy,
        disk: DiskIO,
        committer: GroupCommitter,
        descriptors: Descriptors,
        counters: Counters,
        changes: Changes,
    ) -> None:
        """A table of the recovered categories (``segments``: each one's, oldest first)."""
        self._root = root
        self._policy = policy
        self._disk = disk
        self._committer = committer
        self._descriptors = descriptors
        self._counters = counters
        self._changes = changes
        self._lock = threading.Lock()
        self._closed = False
        # Replaced on change (copy-on-write): iterated without a lock.
        self._logs: dict[str, CategoryLog] = {
            name: self._log(name, found) for name, found in segments.items()
        }

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<CategoryTable {str(self._root)!r} {state} categories={len(self._logs)}>"

    def __len__(self) -> int:
        return len(self._logs)

    def _log(self, name: str, segments: list[Segment]) -> CategoryLog:
        return CategoryLog(
            name,
            self._root / name,
            segments,
            policy=self._policy,
            disk=self._disk,
            committer=self._committer,
            descriptors=self._descriptors,
            counters=self._counters,
            changes=self._changes,
        )

    # ----------------------------------------------------------------- lookups

    def logs(self) -> Mapping[str, CategoryLog]:
        """A snapshot of the table (never changes once returned)."""
        return self._logs

    def get(self, name: str) -> CategoryLog | None:
        """The log of ``name``, or None if the storage has no such category."""
        return self._logs.get(name)

    def names(self) -> list[str]:
        """The categories that hold (or held) records, sorted."""
        return sorted(name for name, c in self._logs.items() if c.segments)

    def sizes(self) -> dict[str, int]:
        """The bytes stored of each category that holds records (its segments' sizes)."""
        return {name: c.disk_bytes() for name, c in sorted(self._logs.items()) if c.segments}

    def stats(self) -> list[CategoryStats]:
        """Every category with records: counts, size and times from the segments' indexes."""
        out = []
        for name in self.names():
            records, size, first, last = self._logs[name].stats()
            out.append(CategoryStats(name, records, size, first, last))
        return out

    # ---------------------------------------------------------------- creation

    def for_batch(self, names: list[str]) -> list[CategoryLog]:
        """The logs of a batch's categories, creating the missing ones (see :meth:`_create`)."""
        logs = self._logs
        missing = [name for name in names if name not in logs]
        if missing:
            self._create(missing)
            logs = self._logs
        return [logs[name] for name in names]

    def _create(self, names: list[str]) -> None:
        """Create categories, within the per-server cap; InvalidCategoryError beyond it.

        Neither the directories' creation nor their sync holds the table's lock
        (which only guards the name table), so writers that create categories
        do not wait for each other's fsyncs; the directories of one batch share
        one sync of their parent (a new category's directory exists, and its
        name is durable if the policy syncs, before it is in the table). Each new
        category's first segment is made here too, before the batch takes its
        categories' locks.
        """
        self._check_room(names)
        root = self._root
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
                    logs[name] = self._log(name, [])
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

    # ----------------------------------------------------------------- closing

    def is_closed(self) -> bool:
        """Whether :meth:`close` was called (then nothing may be written or created)."""
        return self._closed

    def close(self) -> bool:
        """Mark the storage closed: no category is created from now on. False if it was already."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
            return True
