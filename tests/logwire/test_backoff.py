"""logwire.backoff: one immutable doubling backoff, the same delays the hand-written loops had."""

from __future__ import annotations

import dataclasses
import math

import pytest

from logclient import FailoverPolicy
from logwire.backoff import Backoff


def loop_delays(initial: float, cap: float, count: int) -> list[float]:
    """The delays of the loops this replaces: ``delay = min(delay * 2, cap)`` after each wait."""
    delays, delay = [], initial
    for _ in range(count):
        delays.append(delay)
        delay = min(delay * 2, cap)
    return delays


@pytest.mark.parametrize(("initial", "cap"), [(0.05, 1.0), (0.05, 30.0), (0.05, 0.3), (1.0, 1.0)])
def test_next_gives_exactly_the_delays_of_a_doubling_loop(initial: float, cap: float) -> None:
    """Doubling from ``initial_s`` up to ``max_s``, bit for bit what the old loops waited."""
    backoff, delays = Backoff(initial_s=initial, max_s=cap), []
    for _ in range(80):
        delays.append(backoff.delay())
        backoff = backoff.next()
    assert delays == loop_delays(initial, cap, 80)


def test_delay_at_is_a_pure_function_of_the_attempt() -> None:
    """delay_at(n) is the delay after n failures, whatever object it is asked of."""
    policy = Backoff(initial_s=0.05, max_s=1.0)
    assert [policy.delay_at(n) for n in range(7)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert policy.next().next().delay_at(1) == 0.1
    assert policy.delay_at(10**9) == 1.0  # no overflow after a very long outage
    assert Backoff(initial_s=0.0, max_s=1.0).delay_at(10**9) == 0.0
    with pytest.raises(ValueError):
        policy.delay_at(-1)


def test_next_and_reset_return_new_objects_and_leave_the_policy_alone() -> None:
    """Immutable as urllib3's Retry: next() and reset() return new policies; fields cannot be set."""
    first = Backoff(initial_s=0.05, max_s=1.0)
    second = first.next()
    assert (first.attempt, second.attempt, second.next().attempt) == (0, 1, 2)
    assert second.next().reset() == first
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.attempt = 3  # type: ignore[misc]
    assert "attempt=1" in repr(second)


def test_jitter_spreads_a_delay_over_its_band() -> None:
    """``jitter`` is a fraction: the caller's random fraction picks a point in [1-j, 1+j] x delay."""
    policy = Backoff(initial_s=1.0, max_s=8.0, jitter=0.25, attempt=2)
    assert policy.delay() == 4.0
    assert policy.delay(0.0) == 3.0
    assert policy.delay(0.999999) == pytest.approx(5.0, abs=1e-5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_s": -0.1, "max_s": 1.0},
        {"initial_s": 2.0, "max_s": 1.0},
        {"initial_s": 0.1, "max_s": math.inf},
        {"initial_s": math.nan, "max_s": 1.0},
        {"initial_s": "0.1", "max_s": 1.0},
        {"initial_s": True, "max_s": 1.0},
        {"initial_s": 0.1, "max_s": 1.0, "jitter": 1.0},
        {"initial_s": 0.1, "max_s": 1.0, "jitter": -0.1},
        {"initial_s": 0.1, "max_s": 1.0, "attempt": -1},
        {"initial_s": 0.1, "max_s": 1.0, "attempt": 1.5},
        {"initial_s": 0.1, "max_s": 1.0, "attempt": True},
    ],
)
def test_bad_settings_fail_when_the_policy_is_made(kwargs: dict[str, object]) -> None:
    """A negative, infinite or non-numeric delay, a cap below the start, a jitter of 1 or more."""
    with pytest.raises(ValueError):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_failover_backoff_is_unchanged() -> None:
    """FailoverPolicy.backoff, now a Backoff underneath, gives the delays its formula gave."""
    for down, cap, jitter in [(5.0, 60.0, 0.2), (1.0, 5.0, 0.0), (0.0, 0.0, 0.5), (0.2, 0.2, 0.1)]:
        policy = FailoverPolicy(down_backoff_s=down, max_down_backoff_s=cap, jitter=jitter)
        for failures in range(0, 40):
            for fraction in (0.0, 0.3, 0.5, 0.999):
                old = (
                    0.0
                    if failures < 1
                    else min(down * 2 ** min(failures - 1, 32), cap)
                    * (1 + jitter * (2 * fraction - 1))
                )
                assert policy.backoff(failures, fraction) == old
