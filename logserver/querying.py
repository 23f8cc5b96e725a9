"""``QueryBlocks`` on the server: a storage query, the pattern, the work budget, the long poll.

Storage finds the start (a position, the last N records, or a time through
its per-segment index) and returns the blocks received in the time range.
Here the pattern (``grep``) is applied: a block whose records all match goes
as stored (compressed), one with some matches goes uncompressed with only
those records and their positions, one with none does not go at all.

The pattern runs on RE2 (:mod:`logwire.grep`: linear time in the message,
bounded memory; a server never falls back to a backtracking engine), and a
request does at most :attr:`QueryLimits.work_s` of reading and matching
before it answers with what it found (possibly nothing, and not the end of
the log), so a pattern that matches nothing in a large category costs its
reader many short calls, never the server one long one.

With ``wait_ms``, a request that finds nothing at the end of the log waits
for records to be published, up to :attr:`QueryLimits.max_wait_s` (below the
transport's frame timeout), and returns early when the server drains.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from logserver.errors import InvalidRequestError
from logserver.storage import QueryBatch, Storage, StoredBlock
from logwire.compression import NONE, join_columns
from logwire.errors import GrepError
from logwire.grep import Matcher, compile_grep, matching_runs
from logwire.packed import pack_lengths

__all__ = ["Query", "QueryLimits", "run_query"]


@dataclass(frozen=True)
class QueryLimits:
    """What one ``QueryBlocks`` may cost."""

    #: Stored bytes one answer carries at most (one block always).
    max_bytes: int = 8 * 2**20
    #: Reading and matching before answering with what was found.
    work_s: float = 0.5
    #: The longest long poll (the transport cuts a request after its frame timeout, 10 s).
    max_wait_s: float = 5.0

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or not self.work_s > 0 or not self.max_wait_s >= 0:
            raise ValueError("max_bytes and work_s must be positive, max_wait_s >= 0")


@dataclass(frozen=True)
class Query:
    """A ``BlockQuery`` checked (InvalidRequestError for what cannot be)."""

    category: str
    position: int
    max_bytes: int
    since_ns: int | None
    until_ns: int | None
    search: Matcher | None
    last: int
    wait_s: float

    @classmethod
    def check(cls, query: object, limits: QueryLimits) -> Query:
        get = query.__getattribute__
        category = get("category") or ""
        if isinstance(category, bytes):
            category = category.decode("utf-8", "replace")
        position = _int(get("position"), -1)
        max_bytes = _int(get("max_bytes"), 0)
        since = _int(get("since_ns"), 0)
        until = _int(get("until_ns"), 0)
        last = _int(get("last"), 0)
        wait_ms = _int(get("wait_ms"), 0)
        if position < -1:
            raise InvalidRequestError("position must be -1 or >= 0")
        if max_bytes < 1:
            raise InvalidRequestError("max_bytes must be >= 1")
        if since < 0 or until < 0 or last < 0 or wait_ms < 0:
            raise InvalidRequestError("since_ns, until_ns, last and wait_ms must be >= 0")
        if since and until and until <= since:
            raise InvalidRequestError("until_ns must be later than since_ns")
        grep = get("grep") or b""
        search = None
        if grep:
            try:
                search = compile_grep(grep, linear_only=True)
            except GrepError as exc:
                raise InvalidRequestError(f"grep: {exc}") from None
        return cls(
            category,
            position,
            min(max_bytes, limits.max_bytes),
            since or None,
            until or None,
            search,
            last,
            min(wait_ms / 1000, limits.max_wait_s),
        )


def _int(value: object, default: int) -> int:
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRequestError(f"expected an integer, not {value!r}")
    return value


def run_query(
    storage: Storage, query: Query, limits: QueryLimits, stop: Callable[[], bool]
) -> QueryBatch:
    """Answer one query (see the module docstring); ``stop()``: the server is draining."""
    deadline = time.monotonic() + limits.work_s
    # With a pattern, the last N records are not the last N matches; with an end time,
    # not the last N before it: then the range is read and the reader keeps the last N.
    last = 0 if query.search is not None or query.until_ns is not None else query.last
    position = query.position
    found: list[StoredBlock] = []
    used = 0
    start = -1
    waited = False
    while True:
        batch = storage.query_blocks(
            query.category,
            position,
            query.max_bytes - used,
            since_ns=query.since_ns,
            until_ns=query.until_ns,
            last=last,
        )
        if start < 0:
            start = batch.start_position
        blocks = batch.blocks
        if query.search is not None:
            blocks = [b for b in map(lambda b: _matching(b, query.search), blocks) if b]
        found += blocks
        used += sum(len(b.payload) for b in blocks)
        position = batch.next_position
        if found or used >= query.max_bytes:
            break
        if batch.end_of_log:
            if waited or not query.wait_s or stop():
                break
            waited = True
            storage.wait_for_records(query.category, position, query.wait_s, stop)
            continue
        if time.monotonic() >= deadline:
            break
    end = batch.end_of_log and position == batch.next_position
    return QueryBatch(found, position, end, start)


def _matching(block: StoredBlock, search: Matcher | None) -> StoredBlock | None:
    """The block with only the records ``search`` matches (itself when all do)."""
    assert search is not None
    messages = block.messages()
    runs = matching_runs(messages, search)
    if not runs:
        return None
    if runs == [(0, block.records)]:
        return block
    picked = [m for first, n in runs for m in messages[first : first + n]]
    indexes = block.indexes()
    positions = block.record_positions()
    chosen = [k for first, n in runs for k in range(first, first + n)]
    columns = join_columns(pack_lengths(picked), picked)
    return StoredBlock(
        block.category,
        positions[chosen[0]],
        block.producer,
        block.sequence,
        block.batch_count,
        tuple(_runs([indexes[k] for k in chosen])),
        block.received_ns,
        len(chosen),
        NONE,
        len(columns),
        columns,
        tuple(positions[k] for k in chosen),
    )


def _runs(indexes: list[int]) -> list[tuple[int, int]]:
    """Ascending batch indexes as ``(first, count)`` runs."""
    runs: list[tuple[int, int]] = []
    for i in indexes:
        if runs and runs[-1][0] + runs[-1][1] == i:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((i, 1))
    return runs
