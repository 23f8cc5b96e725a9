"""One server's (or data directory's) records as it stores them, one object each: for
tests and tools that look at what a server holds. Programs that read a category use
:func:`logserver.reader.read`, which merges the servers and works in columns."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from thriftpy2.thrift import TApplicationException

from logserver.reader._connect import connect
from logserver.reader._records import Record, messages_of
from logserver.reader._seen import SeenRecords
from logwire.blocks import WireBlock
from logwire.serverset import Endpoint

if TYPE_CHECKING:
    from logclient import TLSPolicy

__all__ = ["BLOCK_PAGE_BYTES", "ReadMethod", "merge_unique", "read_data_dir", "read_server"]

#: How :func:`read_server` reads: ``ReadBlocks`` (stored blocks, decompressed here),
#: ``Read`` (one record struct each, what servers before compression answer), or
#: ``auto``: blocks, and ``Read`` with a server that does not know ``ReadBlocks``.
ReadMethod = Literal["auto", "blocks", "records"]

#: Stored bytes asked for per ``ReadBlocks`` call.
BLOCK_PAGE_BYTES = 4 * 2**20


def read_server(
    endpoint: Endpoint,
    category: str,
    timeout: float = 30.0,
    page: int = 5000,
    *,
    tls: TLSPolicy | None = None,
    method: ReadMethod = "auto",
) -> Iterator[Record]:
    """Every record of ``category`` on one server, in storage order, as stored: a split
    half's records under the half's own batch id (see :mod:`logwire.batchid`)."""
    with connect(endpoint, timeout, tls=tls) as client:
        if method != "records":
            try:
                first = client.ReadBlocks(category, 0, BLOCK_PAGE_BYTES)
            except TApplicationException as exc:
                if method == "blocks" or exc.type != TApplicationException.UNKNOWN_METHOD:
                    raise
                first = None  # a server from before ReadBlocks
            if first is not None:
                yield from _blocks(client, endpoint, category, first)
                return
        position = 0
        while True:
            result = client.Read(category, position, page)
            for r in result.records:
                yield Record(
                    r.category,
                    r.message,
                    r.received_ns,
                    str(endpoint),
                    r.producer or "",
                    r.sequence,
                    r.index,
                )
            if result.end_of_log or result.next_position == position:
                return
            position = result.next_position


def _blocks(client: Any, endpoint: Endpoint, category: str, result: Any) -> Iterator[Record]:
    """The records of ``ReadBlocks`` answers from position 0 on, the first one given."""
    source = str(endpoint)
    position = 0
    while True:
        for thrift_block in result.blocks:
            block = WireBlock.from_thrift(thrift_block)
            messages = messages_of(block.decode())
            for message, index, at in zip(
                messages, block.indexes(), block.record_positions(), strict=True
            ):
                if at >= position:  # a block may start before the position asked for
                    yield Record(
                        category,
                        message,
                        block.received_ns,
                        source,
                        block.producer,
                        block.sequence,
                        index,
                    )
        if result.end_of_log or result.next_position == position:
            return
        position = result.next_position
        result = client.ReadBlocks(category, position, BLOCK_PAGE_BYTES)


def read_data_dir(data_dir: Path, category: str) -> Iterator[Record]:
    """Every record of ``category`` in a (possibly stopped) server's data directory."""
    # Imported here: a reader of servers (the usual one) does not load the storage engine.
    from logserver.storage import read_category_offline

    for r in read_category_offline(data_dir, category):
        yield Record(
            r.category, r.message, r.received_ns, str(data_dir), r.producer, r.sequence, r.index
        )


def merge_unique(streams: Iterable[Iterable[Record]]) -> Iterator[Record]:
    """Merge per-source streams of stored records by receive time, each record once, named
    by the batch its client first made (split halves mapped back).

    Each stream is in storage order (receive order on one server); memory is one
    record per stream plus :class:`~logserver.reader._seen.SeenRecords`.
    """
    seen = SeenRecords()
    current: dict[int, tuple[str, int]] = {}
    keyed = (((r.received_ns, i, r) for r in stream) for i, stream in enumerate(streams))
    for _ns, i, record in heapq.merge(*keyed, key=lambda t: (t[0], t[1])):
        if not record.producer:
            yield record
            continue
        key = (record.producer, record.sequence)
        previous = current.get(i)
        if previous is not None and previous != key:
            _finish(seen, previous)
        current[i] = key
        batch, offset = seen.batch_of(*key)
        if seen.admit(batch, offset, [(record.index, 1, 0)]):
            yield Record(
                record.category,
                record.message,
                record.received_ns,
                record.server,
                batch[0],
                batch[1],
                offset + record.index,
            )
    # (Streams ended: nothing left to finish.)


def _finish(seen: SeenRecords, key: tuple[str, int]) -> None:
    batch, _ = seen.batch_of(*key)
    if batch[0] == key[0]:
        seen.finish(batch)
