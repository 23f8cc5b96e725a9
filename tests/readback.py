"""Read back what real servers stored: ``Read`` over Thrift on each server, deduplicated.

This is the reader's side of the no-loss/no-duplicate contract: a batch resent
after an ambiguous failure may sit on two servers; records are identified by
``(producer_id, sequence, index)`` and kept once. (A test helper for now; the
product's reader lives in logserver.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from thriftpy2.protocol import TCyBinaryProtocolFactory
from thriftpy2.rpc import make_client
from thriftpy2.transport import TCyFramedTransportFactory

from logwire.idl import log_thrift
from logwire.serverset import Endpoint


@dataclass(frozen=True)
class Stored:
    """One record as a server returned it."""

    category: str
    message: bytes
    producer_id: str
    sequence: int
    index: int
    received_ns: int
    server: str

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.producer_id, self.sequence, self.index)


def read_server(endpoint: Endpoint | str, category: str, page: int = 5000) -> list[Stored]:
    """Every record of ``category`` on one server, in storage order."""
    ep = endpoint if isinstance(endpoint, Endpoint) else Endpoint.parse(endpoint)
    client = make_client(
        log_thrift.LogService,
        ep.host,
        ep.port,
        trans_factory=TCyFramedTransportFactory(),
        proto_factory=TCyBinaryProtocolFactory(),
        timeout=30_000,
    )
    out: list[Stored] = []
    try:
        position = 0
        while True:
            try:
                result = client.Read(category, position, page)
            except log_thrift.InvalidCategory:
                return out
            for r in result.records:
                message = r.message if isinstance(r.message, bytes) else r.message.encode()
                out.append(
                    Stored(
                        category=r.category,
                        message=message,
                        producer_id=r.producer_id or "",
                        sequence=r.sequence,
                        index=r.index,
                        received_ns=r.received_ns,
                        server=str(ep),
                    )
                )
            if result.end_of_log or result.next_position == position:
                return out
            position = result.next_position
    finally:
        client.close()


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
