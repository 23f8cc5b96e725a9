"""What must hold for the server pool: choice policies, down marking, probing."""

from __future__ import annotations

import random
from collections import Counter

from logclient import ChoicePolicy, FailoverPolicy
from logclient._servers import ServerPool
from logclient._source import KnownServer
from logwire.serverset import Endpoint

A, B, C = (Endpoint("10.0.0.1", p) for p in (1, 2, 3))


class Clock:
    """A clock the test moves by hand (the pool's clock seam)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pool(strategy: str = "random", **failover: float) -> tuple[ServerPool, Clock]:
    clock = Clock()
    policy = FailoverPolicy(jitter=0.0, **failover)
    return (
        ServerPool(policy, ChoicePolicy(strategy), clock=clock, rng=random.Random(1)),  # type: ignore[arg-type]
        clock,
    )


def test_random_choice_spreads_batches_over_all_live_servers() -> None:
    """With the default policy every live server gets a share, also one that joined later."""
    servers, _ = pool()
    servers.update([A, B])
    first = Counter(servers.choose() for _ in range(300))
    assert set(first) == {A, B}
    servers.update([A, B, C])
    later = Counter(servers.choose() for _ in range(300))
    assert set(later) == {A, B, C} and min(later.values()) > 50


def test_round_robin_and_sticky() -> None:
    """round_robin cycles in endpoint order; sticky stays until its server fails or leaves."""
    rr, _ = pool("round_robin")
    rr.update([C, A, B])
    assert [rr.choose() for _ in range(4)] == [A, B, C, A]

    sticky, _ = pool("sticky")
    sticky.update([A, B, C])
    first = sticky.choose()
    assert all(sticky.choose() == first for _ in range(20))
    assert first is not None
    sticky.mark_down(first, "reset")
    second = sticky.choose()
    assert second not in (None, first)
    sticky.update([e for e in (A, B, C) if e != second])
    assert sticky.current is None
    assert sticky.choose() not in (None, second)


def test_a_failed_server_is_avoided_for_a_growing_backoff_reset_by_success() -> None:
    """mark_down keeps a server out of the choice for down_backoff_s, doubling per
    consecutive failure; mark_up resets it."""
    servers, clock = pool(down_backoff_s=1.0, max_down_backoff_s=8.0)
    servers.update([A, B])
    assert servers.mark_down(A, "refused") == 1.0
    assert all(servers.choose() == B for _ in range(20))
    assert servers.down() == (A,)
    clock.now += 1.01
    assert servers.down() == ()
    assert servers.mark_down(A, "refused") == 2.0
    assert servers.mark_down(A, "refused") == 4.0
    servers.mark_up(A)
    assert servers.down() == () and servers.mark_down(A, "refused") == 1.0


def test_with_every_server_down_one_is_probed_per_interval() -> None:
    """When all known servers are down the pool offers the one whose backoff ends first,
    at most once per probe_interval_s, and says how long to wait."""
    servers, clock = pool(down_backoff_s=10.0, max_down_backoff_s=10.0, probe_interval_s=1.0)
    servers.update([A, B])
    servers.mark_down(A, "x")
    clock.now += 0.5
    servers.mark_down(B, "x")
    assert servers.choose() == A  # probe: A's backoff ends first
    assert servers.choose() is None
    assert servers.next_attempt_in() == 1.0
    clock.now += 1.0
    assert servers.choose() == A


def test_endpoints_identify_servers_and_an_empty_source_means_none() -> None:
    """The same endpoint twice (a ghost node) is one server; no known server: no choice."""
    servers, _ = pool()
    servers.update([A, A, Endpoint("10.0.0.1", 1)])
    assert servers.known == (A,)
    servers.update([])
    assert servers.choose() is None and servers.next_attempt_in() is None


def member(endpoint: Endpoint, order: int) -> KnownServer:
    return KnownServer(endpoint, f"member_{order:010d}", order)


def test_a_new_registration_of_a_down_server_clears_its_down_state() -> None:
    """A restart is news: a down server whose endpoint registers anew (a new member node) is
    live at once, also while every other server is down; a repeat of the same registration
    changes nothing."""
    servers, clock = pool(down_backoff_s=5.0)
    servers.update([member(A, 1), member(B, 2)])
    servers.mark_down(A, "refused")
    servers.mark_down(B, "refused")
    clock.now += 0.5
    servers.update([member(A, 1), member(B, 2)])
    assert set(servers.down()) == {A, B}
    servers.update([member(A, 1), member(B, 3)])  # B restarted and registered again
    assert servers.down() == (A,)
    assert servers.choose() == B
    assert servers.next_attempt_in() == 0.0


def test_a_ghost_node_does_not_stand_for_a_restarted_server() -> None:
    """While a restarted server's old node lingers, its newest node is the one that counts."""
    servers, _ = pool("leader")
    servers.update([member(A, 5), member(B, 2), member(B, 7)])
    assert servers.members() == (member(A, 5), member(B, 7))
    assert servers.choose() == A


def test_leader_is_the_live_server_that_registered_first() -> None:
    """'leader': the lowest member order among live servers; on its failure the next lowest;
    a leader that registers again comes last and does not take the lead back."""
    servers, _ = pool("leader", down_backoff_s=5.0)
    servers.update([member(C, 1), member(A, 2), member(B, 3)])
    assert {servers.choose() for _ in range(20)} == {C}
    servers.mark_down(C, "killed")
    assert {servers.choose() for _ in range(20)} == {A}
    servers.update([member(C, 4), member(A, 2), member(B, 3)])  # C restarted
    assert servers.down() == ()
    assert {servers.choose() for _ in range(20)} == {A}
    servers.mark_down(A, "killed")
    assert servers.choose() == B


def test_leader_without_registration_order_falls_back_to_endpoint_order() -> None:
    """Plain endpoints (a source that cannot tell the order) come after ordered ones, by
    endpoint, so every client still picks the same server."""
    servers, _ = pool("leader")
    servers.update([C, member(B, 9), A])
    assert servers.choose() == B
    servers.mark_down(B, "killed")
    assert servers.choose() == A


def test_a_server_that_refused_a_size_is_avoided_for_that_size_until_it_registers_anew() -> None:
    """A server that refused a batch as too large gets no batch at least that large while
    another server is live (it still gets smaller ones); excluded servers are never chosen."""
    servers, _ = pool("round_robin")
    servers.update([member(A, 1), member(B, 2)])
    servers.note_too_large(A, 1000)
    assert {servers.choose(size=2000) for _ in range(10)} == {B}
    assert {servers.choose(size=10) for _ in range(10)} == {A, B}
    assert servers.choose(exclude=frozenset({B}), size=2000) == A  # the only one left
    assert servers.choose(exclude=frozenset({A, B})) is None
    servers.update([member(A, 3), member(B, 2)])
    assert {servers.choose(size=2000) for _ in range(10)} == {A, B}
