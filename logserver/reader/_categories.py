"""``logserver categories``: what each server's time index says of its categories, summed.

Counts come from the servers' own indexes (no record is read): ``records``
and ``bytes`` add up what every server stores, so a record stored on two
servers (a failover's copy, a replica) counts twice; ``logserver cat CAT | wc
-l`` gives the exact number. A server that predates ``CategoryStats`` gives
the names only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from thriftpy2.thrift import TApplicationException
from thriftpy2.transport import TTransportException

from logserver.errors import LogServerError
from logserver.reader._connect import connect
from logserver.reader._records import format_time
from logserver.reader._sources import StaticSources, ZooKeeperSources
from logwire.serverset import Endpoint

__all__ = ["CategoryRow", "category_table"]


@dataclass
class CategoryRow:
    """One category over all servers (None: a server did not say)."""

    category: str
    records: int | None = 0
    bytes: int | None = 0
    first_ns: int = 0
    last_ns: int = 0
    servers: int = 0

    def add(self, records: int | None, size: int | None, first_ns: int, last_ns: int) -> None:
        self.servers += 1
        self.records = None if records is None or self.records is None else self.records + records
        self.bytes = None if size is None or self.bytes is None else self.bytes + size
        if first_ns and (not self.first_ns or first_ns < self.first_ns):
            self.first_ns = first_ns
        self.last_ns = max(self.last_ns, last_ns)

    def to_json(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "records": self.records,
            "bytes": self.bytes,
            "first": format_time(self.first_ns, 9) if self.first_ns else None,
            "last": format_time(self.last_ns, 9) if self.last_ns else None,
            "servers": self.servers,
        }


def category_table(
    zk_hosts: str | None,
    zk_path: str,
    servers: Sequence[str],
    tls: Any = None,
    zk_tls: Any = None,
    timeout: float = 10.0,
) -> tuple[list[CategoryRow], list[str]]:
    """Every category over the servers, sorted, and the servers that could not be asked."""
    static = StaticSources([Endpoint.parse(s) for s in servers])
    sources = ZooKeeperSources(zk_hosts, zk_path, tls=zk_tls, extra=static) if zk_hosts else static
    sources.start()
    listing = sources.listing()
    problems = [f"{p.source}: {p.reason}" for p in listing.unreachable]
    rows: dict[str, CategoryRow] = {}
    for source in listing.sources:
        assert source.endpoint is not None
        try:
            for name, records, size, first_ns, last_ns in _ask(source.endpoint, tls, timeout):
                rows.setdefault(name, CategoryRow(name)).add(records, size, first_ns, last_ns)
        except (LogServerError, TTransportException, OSError, EOFError) as exc:
            problems.append(f"{source.name}: {exc}")
    sources.close()
    return [rows[name] for name in sorted(rows)], problems


def _ask(
    endpoint: Endpoint, tls: Any, timeout: float
) -> list[tuple[str, int | None, int | None, int, int]]:
    with connect(endpoint, timeout, tls=tls) as client:
        try:
            infos = client.CategoryStats()
        except TApplicationException as exc:
            if exc.type != TApplicationException.UNKNOWN_METHOD:
                raise LogServerError(f"{endpoint}: {exc}") from exc
            return [(name, None, None, 0, 0) for name in client.Categories()]
        return [(i.category, i.records, i.bytes, i.first_ns or 0, i.last_ns or 0) for i in infos]
