"""What must hold for the server pool: choice policies, down marking, probing."""

from __future__ import annotations

import random
from collections import Counter

from logclient import ChoicePolicy, FailoverPolicy
from logclient._servers import ServerPool
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
