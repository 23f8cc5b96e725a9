"""Turning ``append()``'s arguments into per-category groups, refusing bad input first.

The whole batch is checked before any byte is written: one bad category or
one oversized message refuses the batch, so a batch is stored whole or not at
all. The common case, every record in one category with bytes messages, is
checked with C-level passes over the batch (``zip``, ``set``, ``map``), not a
Python loop per record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from logserver.errors import (
    BatchTooLargeError,
    InvalidCategoryError,
    InvalidRequestError,
    MessageTooLargeError,
)
from logserver.storage._columns import IndexRuns, Payload, check_payload, index_runs
from logserver.storage._format import MAX_PRODUCER_BYTES
from logwire.categories import category_problem
from logwire.compression import column_messages

__all__ = ["BatchChecker", "Group"]

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_NAME_CACHE_SIZE = 10_000
_MAX_COUNT = 2**32 - 1  # the format's record count is a u32


class Group:
    """The records of one batch that go to one category, with their indexes in the batch.

    A group that came compressed (``AppendCompressed``, one category) keeps the
    client's ``payload`` to store as it is, and its decoded ``columns``; its
    messages are split out of the columns only if something needs them.
    """

    __slots__ = ("_messages", "_runs", "columns", "indexes", "name", "payload")

    def __init__(
        self,
        name: str,
        indexes: Sequence[int],
        messages: Sequence[bytes] | None = None,
        *,
        runs: IndexRuns | None = None,
        payload: Payload | None = None,
        columns: bytes | None = None,
    ) -> None:
        self.name = name
        self.indexes = indexes
        self._messages = messages
        self._runs = runs
        self.payload = payload
        self.columns = columns

    def __repr__(self) -> str:
        kind = " compressed" if self.payload is not None else ""
        return f"<Group {self.name!r} records={len(self.indexes)}{kind}>"

    @property
    def records(self) -> int:
        return len(self.indexes)

    @property
    def message_bytes(self) -> int:
        """The bytes of the group's messages."""
        if self.payload is not None:
            return self.payload.raw_bytes - 4 * len(self.indexes)
        return sum(map(len, self.messages))

    @property
    def messages(self) -> Sequence[bytes]:
        if self._messages is None:
            assert self.columns is not None
            self._messages = column_messages(self.columns, len(self.indexes))
        return self._messages

    @property
    def index_runs(self) -> IndexRuns:
        """The batch indexes as ``(first, count)`` runs (for the block header)."""
        if self._runs is None:
            self._runs = index_runs(self.indexes)
        return self._runs

    def without(self, stored_mask: int) -> Group:
        """This group minus the records whose bit is set in ``stored_mask`` (already on disk)."""
        keep = [k for k, i in enumerate(self.indexes) if not (stored_mask >> i) & 1]
        messages = self.messages
        return Group(self.name, [self.indexes[k] for k in keep], [messages[k] for k in keep])


class Checked(NamedTuple):
    """A validated batch: groups in category-name order (the lock order)."""

    groups: list[Group]
    records: int
    #: The producer, UTF-8 encoded as the record format stores it.
    producer_bytes: bytes


def _message_bytes(message: object, index: int) -> bytes:
    if isinstance(message, bytes):
        return message
    if isinstance(message, str):
        return message.encode("utf-8", "surrogatepass")
    if isinstance(message, bytearray | memoryview):
        return bytes(message)
    raise TypeError(f"message {index} is {type(message).__name__}, not bytes or str")


class BatchChecker:
    """Validates batches; remembers valid category names so a hot category costs a dict lookup."""

    def __init__(self, max_message_bytes: int, max_categories: int = 2**31) -> None:
        self._max_message_bytes = max_message_bytes
        self._max_categories = max_categories
        self._names: dict[str | bytes, str] = {}

    def __repr__(self) -> str:
        return (
            f"<BatchChecker max_message_bytes={self._max_message_bytes} "
            f"max_categories={self._max_categories}>"
        )

    def category(self, category: str | bytes) -> str:
        """The category's name, or InvalidCategoryError."""
        name = self._names.get(category)
        if name is not None:
            return name
        if not isinstance(category, str | bytes):
            raise InvalidCategoryError(repr(category), "category must be str or bytes")
        problem = category_problem(category)
        if problem is not None:
            raise InvalidCategoryError(category, problem)
        name = category.decode("ascii") if isinstance(category, bytes) else category
        if len(self._names) >= _NAME_CACHE_SIZE:
            self._names.clear()
        self._names[category] = name
        return name

    def check(
        self,
        entries: Sequence[tuple[str | bytes, bytes | str]],
        producer: str,
        sequence: int,
    ) -> Checked:
        """Validate everything; raise InvalidCategoryError, MessageTooLargeError,
        InvalidRequestError or TypeError before anything is written."""
        encoded = _encoded_producer(producer, sequence)
        count = len(entries)
        if count == 0:
            return Checked([], 0, encoded)
        _check_count(count)
        try:
            raw_categories, raw_messages = zip(*entries, strict=True)
        except (TypeError, ValueError) as exc:
            raise TypeError("entries must be (category, message) pairs") from exc
        distinct = set(raw_categories)
        self._check_categories(len(distinct))
        names = {raw: self.category(raw) for raw in distinct}
        messages = self._messages(raw_messages)
        if len(set(names.values())) == 1:
            (name,) = set(names.values())
            return Checked([Group(name, range(count), messages)], count, encoded)
        by_name: dict[str, list[int]] = {}
        for i, raw in enumerate(raw_categories):
            by_name.setdefault(names[raw], []).append(i)
        groups = [
            Group(name, idx, [messages[i] for i in idx]) for name, idx in sorted(by_name.items())
        ]
        return Checked(groups, count, encoded)

    def check_columns(
        self,
        runs: Sequence[tuple[str | bytes, int]],
        messages: Sequence[bytes | str],
        producer: str,
        sequence: int,
    ) -> Checked:
        """:meth:`check` for a batch in columns: ``runs`` of ``(category, count)``
        in record order, and the messages.

        The same checks and the same groups as for the records paired up, without
        building and taking apart a pair per record (a sixth of a server's work
        per record when a client sends ``AppendPacked``).
        """
        encoded = _encoded_producer(producer, sequence)
        count = len(messages)
        run_total = _run_total(runs)
        if run_total != count:
            raise InvalidRequestError(f"runs add up to {run_total} records, not {count}")
        if count == 0:
            return Checked([], 0, encoded)
        _check_count(count)
        names = self._run_names(runs)
        return Checked(self._groups(names, runs, self._messages(messages), count), count, encoded)

    def check_compressed(
        self,
        runs: Sequence[tuple[str | bytes, int]],
        codec: int,
        raw_bytes: int,
        payload: bytes,
        producer: str,
        sequence: int,
        *,
        cap: int,
    ) -> Checked:
        """:meth:`check_columns` for columns a client compressed (``AppendCompressed``).

        The payload is decompressed once, within ``cap``, and checked whole (see
        ``_columns.check_payload``): what is stored reads back. A one-category
        batch keeps the client's payload to be stored as it came.
        """
        encoded = _encoded_producer(producer, sequence)
        count = _run_total(runs)
        if count == 0:
            raise InvalidRequestError("a compressed batch needs at least one record")
        _check_count(count)
        names = self._run_names(runs)
        columns = check_payload(
            codec, payload, raw_bytes, count, cap=cap, max_message_bytes=self._max_message_bytes
        )
        if len(set(names)) == 1:
            whole = Payload([(0, count)], codec, raw_bytes, payload)
            group = Group(
                names[0], range(count), runs=whole.index_runs, payload=whole, columns=columns
            )
            return Checked([group], count, encoded)
        messages = column_messages(columns, count)
        return Checked(self._groups(names, runs, messages, count), count, encoded)

    @staticmethod
    def _groups(
        names: list[str],
        runs: Sequence[tuple[str | bytes, int]],
        messages: Sequence[bytes],
        count: int,
    ) -> list[Group]:
        """Records in category runs, grouped per category in name order (the lock order)."""
        if len(set(names)) == 1:
            return [Group(names[0], range(count), messages)]
        by_name: dict[str, tuple[list[int], list[bytes], IndexRuns]] = {}
        start = 0
        for name, (_, n) in zip(names, runs, strict=True):
            indexes, group, index_runs_ = by_name.setdefault(name, ([], [], []))
            indexes.extend(range(start, start + n))
            group.extend(messages[start : start + n])
            index_runs_.append((start, n))
            start += n
        return [
            Group(name, idx, msgs, runs=_merged(r))
            for name, (idx, msgs, r) in sorted(by_name.items())
        ]

    def _run_names(self, runs: Sequence[tuple[str | bytes, int]]) -> list[str]:
        """The category name of each run, checked (the distinct ones counted first)."""
        if len(runs) > self._max_categories:
            self._check_categories(len({category for category, _ in runs}))
        return [self.category(category) for category, _ in runs]

    def _check_categories(self, count: int) -> None:
        """BatchTooLargeError for a batch naming more distinct categories than allowed
        (checked before a name is validated: each costs a regex, and a new one a directory)."""
        if count > self._max_categories:
            raise BatchTooLargeError(
                "too many categories in one batch", self._max_categories, count
            )

    def _messages(self, raw: Sequence[bytes | str]) -> Sequence[bytes]:
        """The messages as bytes, each within the size limit (C-level passes when all are bytes)."""
        messages: Sequence[bytes] = raw  # type: ignore[assignment]
        if set(map(type, raw)) != {bytes}:
            messages = [_message_bytes(m, i) for i, m in enumerate(raw)]
        largest = max(map(len, messages))
        if largest > self._max_message_bytes:
            raise MessageTooLargeError(self._max_message_bytes, largest)
        return messages


def _encoded_producer(producer: str, sequence: int) -> bytes:
    """The producer as stored; InvalidRequestError or TypeError for a bad producer or sequence."""
    if not isinstance(producer, str):
        raise TypeError("producer must be str")
    encoded = producer.encode("utf-8", "surrogatepass")
    if len(encoded) > MAX_PRODUCER_BYTES:
        raise InvalidRequestError(f"producer is longer than {MAX_PRODUCER_BYTES} bytes")
    if not isinstance(sequence, int) or not _I64_MIN <= sequence <= _I64_MAX:
        raise InvalidRequestError(f"sequence {sequence!r} is not a 64-bit integer")
    return encoded


def _run_total(runs: Sequence[tuple[str | bytes, int]]) -> int:
    """The records the runs describe; InvalidRequestError for a count below 1."""
    total = 0
    for category, n in runs:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise InvalidRequestError(f"run of category {category!r} has count {n!r}")
        total += n
    return total


def _merged(runs: IndexRuns) -> IndexRuns:
    """Adjacent runs joined (two runs of one category with nothing between them)."""
    out: IndexRuns = []
    for start, n in runs:
        if out and out[-1][0] + out[-1][1] == start:
            out[-1] = (out[-1][0], out[-1][1] + n)
        else:
            out.append((start, n))
    return out


def _check_count(count: int) -> None:
    if count > _MAX_COUNT:
        raise BatchTooLargeError("too many records in one batch", _MAX_COUNT, count)
