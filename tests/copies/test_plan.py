"""Repair's plan: which batches have too few copies, and where each missing copy comes from
and goes. Pure computation over holdings: no server."""

from __future__ import annotations

from logserver.tools.repair import LiveServer, plan_category
from logwire.holdings import Span
from logwire.serverset import Endpoint


def servers(*specs: str) -> list[LiveServer]:
    """``id@host:zone`` -> LiveServer (port from the position)."""
    out = []
    for port, spec in enumerate(specs, 9000):
        sid, _, rest = spec.partition("@")
        host, _, zone = rest.partition(":")
        out.append(LiveServer(sid, Endpoint(host or "h", port), zone))
    return out


def span(first: int, last: int, records: int | None = None) -> Span:
    return Span(first, last, records if records is not None else last - first + 1, first, last)


def test_nothing_to_do_when_every_batch_has_its_copies() -> None:
    live = servers("a", "b", "c")
    plan = plan_category({"a": {"p": [span(0, 9)]}, "b": {"p": [span(0, 9)]}, "c": {}}, live, 2)
    assert plan.copies == [] and plan.under == 0 and plan.short == []
    assert (plan.batches, plan.records) == (10, 10)
    assert plan.seen == {"p": [(0, 9)]}


def test_a_wiped_server_is_refilled_from_the_servers_that_held_its_batches() -> None:
    """a and b each held half of the batches c held (c was wiped): every batch with one copy
    gets a second one, on a server that does not hold it (the least loaded), read from the
    one that does."""
    live = servers("a", "b", "c")
    holdings = {"a": {"p": [span(0, 4)]}, "b": {"p": [span(5, 9)]}, "c": {}}
    plan = plan_category(holdings, live, 2)
    assert plan.under == 10 and plan.short == []
    moved = sorted((c.first, c.last, c.source) for c in plan.copies)
    assert moved == [(0, 4, "a"), (5, 9, "b")]
    # Each goes to a server that lacks it; the least loaded one, so c and the other share.
    assert all(c.target not in (c.source,) for c in plan.copies)
    assert len({c.target for c in plan.copies}) == 2


def test_intervals_follow_which_servers_hold_what() -> None:
    """Overlapping spans are cut where the set of holders changes."""
    live = servers("a", "b", "c")
    holdings = {"a": {"p": [span(0, 9)]}, "b": {"p": [span(5, 14)]}, "c": {}}
    plan = plan_category(holdings, live, 2)
    copied = sorted((c.first, c.last) for c in plan.copies)
    assert copied == [(0, 4), (10, 14)]
    assert plan.batches == 15 and plan.under == 10


def test_copies_go_to_another_zone_first_then_another_host() -> None:
    live = servers("a@h1:z1", "b@h1:z1", "c@h2:z1", "d@h3:z2")
    plan = plan_category({"a": {"p": [span(0, 0)]}}, live, 3)
    assert [c.target for c in plan.copies] == ["d", "c"]


def test_too_few_live_servers_leaves_batches_short_and_says_who_holds_them() -> None:
    live = servers("a", "b")
    plan = plan_category({"a": {"p": [span(0, 3)]}, "b": {}}, live, 3)
    assert [(c.source, c.target) for c in plan.copies] == [("a", "b")]
    ((short),) = plan.short
    assert (short.producer, short.first, short.last, short.holders) == ("p", 0, 3, ("a",))


def test_sources_and_targets_share_the_work() -> None:
    """Many batches on two servers, copies wanted on three: the reads are spread over both
    holders rather than all taken from one."""
    live = servers("a", "b", "c")
    holdings = {
        "a": {f"p{i}": [span(0, 99)] for i in range(10)},
        "b": {f"p{i}": [span(0, 99)] for i in range(10)},
        "c": {},
    }
    plan = plan_category(holdings, live, 3)
    sources = [c.source for c in plan.copies]
    assert {c.target for c in plan.copies} == {"c"}
    assert sources.count("a") == sources.count("b") == 5


def test_servers_that_are_not_live_count_for_nothing() -> None:
    """Holdings of a server repair cannot use (not in the live list) are no copies."""
    live = servers("a", "b")
    plan = plan_category({"a": {"p": [span(0, 0)]}, "gone": {"p": [span(0, 0)]}}, live, 2)
    assert [(c.source, c.target) for c in plan.copies] == [("a", "b")]


def test_record_counts_follow_the_spans() -> None:
    live = servers("a", "b")
    plan = plan_category({"a": {"p": [span(0, 9, records=1000)]}, "b": {}}, live, 2)
    assert plan.records == 1000 and [c.records for c in plan.copies] == [1000]
