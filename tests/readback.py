"""Read back what real servers stored: ``Read`` over Thrift on each server, deduplicated.

This is the reader's side of the no-loss/no-duplicate contract: a batch resent
after an ambiguous failure may sit on two servers; records are identified by
``(producer, sequence, index)`` (a split half's mapped back to the batch it
came from, ``logwire.batchid``) and kept once. The reading itself is
logserver's reader (what ``logserver cat`` uses); this adds the tests' shapes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from logserver import reader
from logwire.batchid import canonical_key
from logwire.idl import log_thrift
from logwire.serverset import Endpoint


@dataclass(frozen=True)
class Stored:
    """One record as a server returned it."""

    category: str
    message: bytes
    producer: str
    sequence: int
    index: int
    received_ns: int
    server: str

    @property
    def key(self) -> tuple[str, int, int]:
        """The record's identity, through splits (as logserver's reader keys it)."""
        return canonical_key(self.producer, self.sequence, self.index)


def read_server(endpoint: Endpoint | str, category: str, page: int = 5000) -> list[Stored]:
    """Every record of ``category`` on one server, in storage order (via logserver's reader)."""
    ep = endpoint if isinstance(endpoint, Endpoint) else Endpoint.parse(endpoint)
    try:
        return [
            Stored(r.category, r.message, r.producer, r.sequence, r.index, r.received_ns, r.server)
            for r in reader.read_server(ep, category, page=page)
        ]
    except log_thrift.InvalidCategory:
        return []


def read_unique(endpoints: Iterable[Endpoint | str], category: str) -> list[Stored]:
    """Records of ``category`` on all servers, each ``(producer, sequence, index)`` once,
    ordered by (producer, sequence, index): the order each producer logged them in."""
    seen: dict[tuple[str, int, int], Stored] = {}
    for endpoint in endpoints:
        for record in read_server(endpoint, category):
            seen.setdefault(record.key, record)
    return [seen[k] for k in sorted(seen)]


def copies(endpoints: Iterable[Endpoint | str], category: str) -> int:
    """How many records the servers hold in total, duplicates across servers included."""
    return sum(len(read_server(e, category)) for e in endpoints)
