"""Which batches have fewer copies than wanted, and where each missing copy comes from and goes.

Pure computation over what the servers said they hold (their holdings, per
category: producer -> spans of sequences), so it is tested without a server.

A batch's copies are the live servers that hold it. For each producer the
spans of every server are swept once, cutting the sequences into intervals
held by one set of servers; an interval held by fewer than ``copies`` servers
gets a copy to as many other servers as it lacks, chosen so that copies land
first in a zone that has none of the batch, then on a host that has none,
then on the server given least so far; each copy is read from the holder read
least so far. An interval that no other live server can take stays short.

Split halves (``<producer>@<sequence>``, ``logwire.batchid``) are counted as
batches of their own. A record then counts its copies in the form each server
holds it, which never counts more copies than there are (each counted server
holds the record); when one server holds a batch whole and another only its
halves, repair copies both forms, and a server may end up with a record twice,
which readers show once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from logwire.holdings import Span
from logwire.serverset import Endpoint

__all__ = ["Copy", "LiveServer", "Plan", "Short", "plan_category"]

#: A category's holdings: server id -> producer -> spans.
Holdings = Mapping[str, Mapping[str, Sequence[Span]]]


@dataclass(frozen=True, order=True)
class LiveServer:
    """A server repair may read from and copy to: registered, answering, serving."""

    server_id: str
    endpoint: Endpoint = field(compare=False)
    zone: str = field(default="", compare=False)

    def __str__(self) -> str:
        return f"{self.server_id} ({self.endpoint}{', ' + self.zone if self.zone else ''})"


@dataclass(frozen=True)
class Copy:
    """Batches ``first..last`` of ``producer``, to be read from ``source`` and stored on ``target``."""

    producer: str
    first: int
    last: int
    source: str
    target: str
    #: The records those batches have in the category (exact unless a span was cut).
    records: int
    #: Where on the source they lie: read from ``first_position`` to ``last_position``.
    first_position: int
    last_position: int

    @property
    def batches(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True)
class Short:
    """Batches that have fewer copies than wanted and that no further live server can take."""

    producer: str
    first: int
    last: int
    holders: tuple[str, ...]

    @property
    def batches(self) -> int:
        return self.last - self.first + 1


@dataclass
class Plan:
    """What one category needs."""

    copies: list[Copy] = field(default_factory=list)
    #: Batches held by at least one live server, and their records.
    batches: int = 0
    records: int = 0
    #: Batches held by fewer servers than wanted (before this plan's copies).
    under: int = 0
    short: list[Short] = field(default_factory=list)
    #: Every batch seen, per producer, as (first, last) ranges: what a later check covers.
    seen: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    @property
    def short_batches(self) -> int:
        return sum(s.batches for s in self.short)


def plan_category(holdings: Holdings, servers: Sequence[LiveServer], copies: int) -> Plan:
    """The copies that bring every batch of the category to ``copies`` live servers."""
    by_id = {s.server_id: s for s in servers}
    load_in: dict[str, int] = dict.fromkeys(by_id, 0)
    load_out: dict[str, int] = dict.fromkeys(by_id, 0)
    plan = Plan()
    producers = sorted({p for held in holdings.values() for p in held})
    for producer in producers:
        spans = {sid: held.get(producer, ()) for sid, held in holdings.items() if sid in by_id}
        seen: list[tuple[int, int]] = []
        for first, last, holders in _intervals(spans):
            count = last - first + 1
            records = _records(spans[holders[0]], first, last)
            plan.batches += count
            plan.records += records
            if seen and seen[-1][1] == first - 1:
                seen[-1] = (seen[-1][0], last)
            else:
                seen.append((first, last))
            if len(holders) >= copies:
                continue
            plan.under += count
            targets = _targets(holders, copies - len(holders), by_id, load_in)
            if len(holders) + len(targets) < copies:
                plan.short.append(Short(producer, first, last, holders))
            for target in targets:
                source = min(holders, key=lambda sid: (load_out[sid], sid))
                span = _span_of(spans[source], first)
                plan.copies.append(
                    Copy(
                        producer,
                        first,
                        last,
                        source,
                        target,
                        records,
                        span.first_position,
                        span.last_position,
                    )
                )
                load_in[target] += records
                load_out[source] += records
        plan.seen[producer] = seen
    return plan


def _intervals(
    spans: Mapping[str, Sequence[Span]],
) -> Iterable[tuple[int, int, tuple[str, ...]]]:
    """``(first, last, holders)`` for every run of sequences that one set of servers holds."""
    events: list[tuple[int, int, str]] = []  # (sequence, +1 starts / -1 ends after, server)
    for sid, held in spans.items():
        for span in held:
            events.append((span.first, 1, sid))
            events.append((span.last + 1, -1, sid))
    events.sort(key=lambda e: (e[0], e[1]))
    active: set[str] = set()
    i = 0
    while i < len(events):
        at = events[i][0]
        while i < len(events) and events[i][0] == at:
            _, kind, sid = events[i]
            if kind == 1:
                active.add(sid)
            else:
                active.discard(sid)
            i += 1
        if active and i < len(events):
            yield at, events[i][0] - 1, tuple(sorted(active))


def _span_of(spans: Sequence[Span], sequence: int) -> Span:
    """The span holding ``sequence`` (it is held: the sweep said so)."""
    lo, hi = 0, len(spans) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if spans[mid].first <= sequence:
            lo = mid
        else:
            hi = mid - 1
    return spans[lo]


def _records(spans: Sequence[Span], first: int, last: int) -> int:
    """The records of batches ``first..last`` in a span that holds them (pro rata when the
    interval is a piece of the span: records per batch are not known one by one)."""
    span = _span_of(spans, first)
    if (first, last) == (span.first, span.last):
        return span.records
    return max(1, round(span.records * (last - first + 1) / span.batches))


def _targets(
    holders: tuple[str, ...],
    needed: int,
    servers: Mapping[str, LiveServer],
    load: dict[str, int],
) -> list[str]:
    """Up to ``needed`` servers that do not hold the batches: another zone first, then
    another host, then the least loaded."""
    zones = {servers[h].zone for h in holders}
    hosts = {servers[h].endpoint.host for h in holders}
    chosen: list[str] = []
    candidates = [sid for sid in servers if sid not in holders]
    while candidates and len(chosen) < needed:
        best = min(
            candidates,
            key=lambda sid: (
                servers[sid].zone in zones and bool(servers[sid].zone),
                servers[sid].endpoint.host in hosts,
                load[sid],
                sid,
            ),
        )
        chosen.append(best)
        candidates.remove(best)
        zones.add(servers[best].zone)
        hosts.add(servers[best].endpoint.host)
    return chosen
