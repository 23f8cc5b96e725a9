"""The append path: a batch from the caller to durable bytes, once per (producer, sequence).

In order: the batch is checked whole (:mod:`logserver.storage._batch`) before
anything is written; a batch with a producer claims its (producer, sequence)
in the deduplication index (:mod:`logserver.storage._dedup`), so a retry is
answered "duplicate" and concurrent retries of one batch never both write;
each category's records are encoded outside any lock (blocks of format 2, or
records of format 1 when the policy says so); then the one write path
(:mod:`logserver.storage._write`) writes every category's part under its lock
and waits for the group commit; last, each category's holdings learn what it
holds now. Copies (``_copies``) write through :meth:`Appender.write_one`, so
appends and copies share that write path.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from logserver.errors import StorageUnavailableError
from logserver.storage._batch import BatchChecker, Checked, Group
from logserver.storage._blockcodec import encode_block
from logserver.storage._blocks import FORMAT_VERSION
from logserver.storage._category import CategoryLog, Written
from logserver.storage._columns import DecodeBudget, Payload, payloads
from logserver.storage._commit import GroupCommitter
from logserver.storage._dedup import Claim, DedupIndex
from logserver.storage._format import encode_records
from logserver.storage._policy import StoragePolicy
from logserver.storage._stats import Counters
from logserver.storage._table import CategoryTable
from logserver.storage._types import AppendOutcome
from logserver.storage._write import WritePart, write_durably

__all__ = ["Appender"]


class Appender:
    """Stores batches into a storage's categories (see the module docstring); thread-safe.

    It owns no state of its own: the table, the deduplication index, the decode
    budget, the committer and the counters are storage's, shared with the reads
    and the copies.
    """

    def __init__(
        self,
        *,
        table: CategoryTable,
        checker: BatchChecker,
        decoding: DecodeBudget,
        dedup: DedupIndex,
        committer: GroupCommitter,
        counters: Counters,
        policy: StoragePolicy,
    ) -> None:
        self._table = table
        self._checker = checker
        self._decoding = decoding
        self._dedup = dedup
        self._committer = committer
        self._counters = counters
        self._policy = policy

    def __repr__(self) -> str:
        return f"<Appender {self._table!r} {self._dedup!r} {self._committer!r}>"

    def append(
        self,
        entries: Sequence[tuple[str | bytes, bytes | str]],
        producer: str = "",
        sequence: int = -1,
    ) -> AppendOutcome:
        """``Storage.append``: check the batch whole, then store it."""
        self._check_open()
        checked = self._checker.check(entries, producer, sequence)
        return self._append(checked, producer, sequence)

    def append_columns(
        self,
        runs: Sequence[tuple[str | bytes, int]],
        messages: Sequence[bytes | str],
        producer: str = "",
        sequence: int = -1,
    ) -> AppendOutcome:
        """``Storage.append_columns``: a batch in columns, checked whole, then stored."""
        self._check_open()
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
        """``Storage.append_compressed``: decompressed once within the decode budget,
        checked whole, then stored."""
        self._check_open()
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

    def write_one(self, part: WritePart) -> Written:
        """Write one category's part through the one write path (what copies store with)."""
        ((_, written),) = write_durably(
            [part],
            committer=self._committer,
            policy=self._policy,
            closed=self._table.is_closed,
        )
        return written

    def _check_open(self) -> None:
        if self._table.is_closed():
            raise StorageUnavailableError("storage is closed")

    def _append(self, checked: Checked, producer: str, sequence: int) -> AppendOutcome:
        """Dedup, then store a checked batch (see ``Storage.append``)."""
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
        categories = self._table.for_batch([group.name for group in checked.groups])
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
            closed=self._table.is_closed,
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
