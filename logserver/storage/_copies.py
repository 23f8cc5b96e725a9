"""What ``logserver repair`` asks of a server's storage, in one place (``Storage.copies``).

- :meth:`Copies.holdings`: which batches a category holds (``_holdings``);
- :meth:`Copies.read_batches`: the stored blocks of chosen batches (``_batches``);
- :meth:`Copies.restore`: store copies of batch parts with their original
  identity (``_restore``).

It owns no state of its own: it is given storage's collaborators (the category
table, the deduplication index, the decode budget, the one write path) and
works through them, so appends and copies see the same categories and the
same deduplication.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from logserver.errors import InvalidPositionError, InvalidRequestError, StorageUnavailableError
from logserver.storage._batch import BatchChecker
from logserver.storage._batches import Wanted, WantedBlocks, read_wanted
from logserver.storage._category import CategoryLog, Written
from logserver.storage._columns import DecodeBudget
from logserver.storage._dedup import DedupIndex
from logserver.storage._holdings import HoldingsView
from logserver.storage._policy import StoragePolicy
from logserver.storage._restore import CopiedBlock, RestoreOutcome, check_parts, store_parts
from logserver.storage._stats import Counters
from logserver.storage._write import WritePart

__all__ = ["Copies"]


class Copies:
    """Holdings, chosen batches and copies of one storage (see the module docstring)."""

    def __init__(
        self,
        *,
        logs: Callable[[], Mapping[str, CategoryLog]],
        categories: Callable[[list[str]], list[CategoryLog]],
        checker: BatchChecker,
        dedup: DedupIndex,
        decoding: DecodeBudget,
        policy: StoragePolicy,
        counters: Counters,
        write: Callable[[WritePart], Written],
        closed: Callable[[], bool],
    ) -> None:
        self._logs = logs
        self._categories = categories
        self._checker = checker
        self._dedup = dedup
        self._decoding = decoding
        self._policy = policy
        self._counters = counters
        self._write = write
        self._closed = closed

    def __repr__(self) -> str:
        return f"<Copies categories={len(self._logs())}>"

    def _name(self, category: str | bytes) -> str:
        if self._closed():
            raise StorageUnavailableError("storage is closed")
        return self._checker.category(category)

    def holdings(self, category: str | bytes) -> HoldingsView:
        """Which batches ``category`` holds: built from the block headers on first use (a scan
        of the category, no decompression), kept current after."""
        name = self._name(category)
        log_ = self._logs().get(name)
        if log_ is None:
            return HoldingsView({}, 0)
        try:
            return log_.holdings.view(lambda: log_.segments)
        except FileNotFoundError as exc:
            raise StorageUnavailableError(f"category {name!r} changes too fast: {exc}") from exc

    def read_batches(
        self,
        category: str | bytes,
        wanted: Mapping[str, Sequence[tuple[int, int]]],
        position: int = 0,
        stop: int = 2**63 - 1,
        max_bytes: int = 4 * 2**20,
        max_scan_bytes: int = 256 * 2**20,
    ) -> WantedBlocks:
        """The stored blocks of the ``wanted`` batches (producer -> sequence ranges) between
        ``position`` and ``stop``."""
        name = self._name(category)
        if not isinstance(position, int) or position < 0 or stop < position:
            raise InvalidPositionError(name, position, "must be 0 <= position <= stop")
        if max_bytes < 1 or max_scan_bytes < 1:
            raise InvalidRequestError("max_bytes and max_scan_bytes must be positive")
        log_ = self._logs().get(name)
        if log_ is None or not wanted:
            return WantedBlocks([], position, True)
        selection = Wanted(wanted)
        for _ in range(8):
            segments = log_.segments
            try:
                return read_wanted(
                    name, segments, selection, position, stop, max_bytes, max_scan_bytes
                )
            except FileNotFoundError:
                if log_.segments is segments:
                    raise
        raise StorageUnavailableError(f"category {name!r} changes too fast to read")

    def restore(self, category: str | bytes, blocks: Sequence[CopiedBlock]) -> RestoreOutcome:
        """Store copies of batch parts another server holds, with their original identity;
        parts the category holds are left alone, so a copy made twice is stored once.

        Checked whole first: InvalidRequestError (and its leaves) for anything a
        reader could not rely on; InvalidCategoryError; StorageUnavailableError.
        """
        name = self._name(category)
        largest = max((b.raw_bytes for b in blocks), default=0)
        with self._decoding.reserve(largest if isinstance(largest, int) else 0):
            parts = list(
                check_parts(
                    blocks,
                    cap=self._policy.max_batch_bytes,
                    max_message_bytes=self._policy.max_message_bytes,
                )
            )
        if not parts:
            return RestoreOutcome(0, 0, 0)
        (log_,) = self._categories([name])
        outcome = store_parts(
            log_,
            parts,
            dedup=self._dedup,
            write=self._write,
            segment_format=self._policy.segment_format,
        )
        if outcome.stored:
            self._counters.stored(outcome.records, 0, sum(p.message_bytes for p in parts))
        return outcome
