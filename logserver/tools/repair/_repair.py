"""``logserver repair``: bring every batch of every category back to N copies on live servers.

One run, per category:

1. **Survey**: ask every live server (registered, answering, serving) for its
   holdings of the category. Servers answer from an index of block headers,
   so this reads no record.
2. **Plan** (:mod:`._plan`): the batches held by fewer than N live servers,
   and for each missing copy a source that holds it and a target that does not.
3. **Copy**: for each (source, target), ``ReadBatches`` from the source (only
   the blocks of those batches travel) and ``Restore`` on the target (stored
   with their original ids and receive times, a part the target holds already
   is left alone).
4. **Check**: survey again and count the copies of every batch the first
   survey saw (batches written since are the apps' to copy, not repair's). What
   is still short gets another round (three at most); what stays short is
   reported.

Safe while apps write: a batch that arrives from an app during the copy is
stored once (the target's holdings and deduplication see to it), and batches
newer than the survey are not judged. Safe to interrupt: every copy is a whole
batch part in one write, so a run killed at any moment leaves copies that are
complete or absent, and the next run copies only what is still missing.

What it cannot count: records without a batch id (Scribe's ``Log``) have no
identity to compare or de-duplicate by, so they are neither counted nor copied
(a copy would show twice to every reader); repair says how many each server
holds. And records held only by a server that is gone: the data inventory
names such servers (:mod:`logserver.tools.inventory`); repair reports them and
does not call the run complete until they are back or forgotten.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from logserver.errors import LogServerError
from logserver.tools.inventory import ClusterView, Coverage, Unreachable
from logserver.tools.repair._plan import Copy, LiveServer, Short, plan_category
from logserver.tools.repair._servers import CopyResult, ServerCalls
from logwire.holdings import Span

__all__ = ["CategoryReport", "RepairReport", "Repairer"]

#: Rounds of copy-and-check per category at most.
MAX_ROUNDS = 3
#: Copies between distinct pairs of servers run at once.
PARALLEL_COPIES = 4


@dataclass
class CategoryReport:
    """What repair found and did in one category."""

    category: str
    batches: int = 0
    records: int = 0
    #: Batches that had fewer copies than wanted when the run began.
    under: int = 0
    copied_batches: int = 0
    copied_records: int = 0
    copied_bytes: int = 0
    #: Batches still short at the end, and why (no further live server, failed copies).
    short: list[Short] = field(default_factory=list)
    #: Batches still short that live servers could take: copies planned but not (yet) made
    #: (a dry run), or that failed in every round.
    pending: int = 0
    errors: list[str] = field(default_factory=list)
    #: Records without a batch id, per server id.
    unidentified: dict[str, int] = field(default_factory=dict)
    unreachable: list[Unreachable] = field(default_factory=list)

    @property
    def short_batches(self) -> int:
        return sum(s.batches for s in self.short)

    @property
    def complete(self) -> bool:
        return not (self.short or self.pending or self.errors or self.unreachable)


@dataclass
class RepairReport:
    """The whole run."""

    copies: int
    servers: list[LiveServer]
    categories: list[CategoryReport] = field(default_factory=list)
    seconds: float = 0.0
    dry_run: bool = False

    @property
    def complete(self) -> bool:
        return all(c.complete for c in self.categories) and len(self.servers) >= self.copies

    def summary(self) -> dict[str, Any]:
        return {
            "complete": self.complete,
            "copies": self.copies,
            "live_servers": len(self.servers),
            "categories": len(self.categories),
            "batches": sum(c.batches for c in self.categories),
            "records": sum(c.records for c in self.categories),
            "under_replicated_batches": sum(c.under for c in self.categories),
            "copied_batches": sum(c.copied_batches for c in self.categories),
            "copied_records": sum(c.copied_records for c in self.categories),
            "copied_bytes": sum(c.copied_bytes for c in self.categories),
            "short_batches": sum(c.short_batches for c in self.categories),
            "pending_batches": sum(c.pending for c in self.categories),
            "unidentified_records": sum(sum(c.unidentified.values()) for c in self.categories),
            "unreachable_servers": sorted(
                {
                    u.server_id or str(u.registered_at)
                    for c in self.categories
                    for u in c.unreachable
                }
            ),
            "errors": [e for c in self.categories for e in c.errors],
            "seconds": round(self.seconds, 3),
            "dry_run": self.dry_run,
        }


class Repairer:
    """Runs the repair of the categories of one cluster (see the module docstring)."""

    def __init__(
        self,
        view: ClusterView,
        coverage: Coverage,
        servers: list[LiveServer],
        calls: ServerCalls,
        *,
        copies: int,
        dry_run: bool = False,
        say: Callable[[str], None] = print,
        on_category: Callable[[CategoryReport], None] | None = None,
    ) -> None:
        self._view = view
        self._coverage = coverage
        self._servers = servers
        self._by_id = {s.server_id: s for s in servers}
        self._calls = calls
        self._copies = copies
        self._dry_run = dry_run
        self._say = say
        self._on_category = on_category

    def __repr__(self) -> str:
        return (
            f"<Repairer copies={self._copies} servers={len(self._servers)} dry_run={self._dry_run}>"
        )

    def run(self, categories: list[str]) -> RepairReport:
        started = time.monotonic()
        report = RepairReport(self._copies, self._servers, dry_run=self._dry_run)
        for category in categories:
            done = self._category(category)
            report.categories.append(done)
            if self._on_category is not None:
                self._on_category(done)
        report.seconds = time.monotonic() - started
        return report

    def _category(self, category: str) -> CategoryReport:
        result = CategoryReport(category)
        coverage = Coverage(category, self._coverage.reached, [], self._coverage.silent)
        result.unreachable = coverage.unreachable(self._view)
        holdings, unidentified = self._survey(category, result)
        result.unidentified = {sid: n for sid, n in unidentified.items() if n}
        plan = plan_category(holdings, self._servers, self._copies)
        result.batches, result.records, result.under = plan.batches, plan.records, plan.under
        seen = plan.seen
        for _ in range(MAX_ROUNDS):
            if not plan.copies or self._dry_run:
                break
            self._copy(category, plan.copies, result)
            holdings, _ = self._survey(category, result)
            plan = plan_category(_within(holdings, seen), self._servers, self._copies)
        result.short = plan.short
        result.pending = sum(c.batches for c in plan.copies)
        return result

    def _survey(
        self, category: str, result: CategoryReport
    ) -> tuple[dict[str, dict[str, list[Span]]], dict[str, int]]:
        holdings: dict[str, dict[str, list[Span]]] = {}
        unidentified: dict[str, int] = {}
        for server in self._servers:
            try:
                holdings[server.server_id], unidentified[server.server_id] = self._calls.holdings(
                    server, category
                )
            except LogServerError as exc:
                result.errors.append(f"holdings of {category!r} from {server}: {exc}")
        return holdings, unidentified

    def _copy(self, category: str, copies: list[Copy], result: CategoryReport) -> None:
        groups: dict[tuple[str, str], list[Copy]] = {}
        for copy in copies:
            groups.setdefault((copy.source, copy.target), []).append(copy)
        with ThreadPoolExecutor(max_workers=PARALLEL_COPIES) as pool:
            futures = {
                pair: pool.submit(
                    self._calls.copy,
                    category,
                    self._by_id[pair[0]],
                    self._by_id[pair[1]],
                    group,
                )
                for pair, group in sorted(groups.items())
            }
            for (source, target), future in futures.items():
                done: CopyResult = future.result()
                result.copied_batches += done.stored
                result.copied_records += done.records
                result.copied_bytes += done.bytes
                line = (
                    f"repair: {category}: {source} -> {target}: {done.stored} batches "
                    f"({done.records} records) copied, {done.duplicates} held already"
                )
                if done.error:
                    line += f"; stopped: {done.error}"
                self._say(line)


def _within(
    holdings: dict[str, dict[str, list[Span]]], seen: dict[str, list[tuple[int, int]]]
) -> dict[str, dict[str, list[Span]]]:
    """Holdings cut to the batches of the first survey (newer ones are the apps' to copy)."""
    out: dict[str, dict[str, list[Span]]] = {}
    for sid, producers in holdings.items():
        kept: dict[str, list[Span]] = {}
        for producer, spans in producers.items():
            ranges = seen.get(producer)
            if not ranges:
                continue
            cut = [piece for span in spans for piece in _clip(span, ranges)]
            if cut:
                kept[producer] = cut
        out[sid] = kept
    return out


def _clip(span: Span, ranges: list[tuple[int, int]]) -> list[Span]:
    """The parts of ``span`` inside ``ranges`` (records pro rata for a cut span)."""
    pieces = []
    for first, last in ranges:
        lo, hi = max(first, span.first), min(last, span.last)
        if lo > hi:
            continue
        records = (
            span.records
            if (lo, hi) == (span.first, span.last)
            else max(1, round(span.records * (hi - lo + 1) / span.batches))
        )
        pieces.append(Span(lo, hi, records, span.first_position, span.last_position))
    return pieces
