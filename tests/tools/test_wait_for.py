"""The launcher's wait_for: the one polling helper of the launcher, tools, tests and benchmarks."""

from __future__ import annotations

import itertools

import pytest

from logserver.tools.launcher import LaunchError, wait_for


def test_returns_the_first_truthy_value_of_the_condition() -> None:
    """The caller gets what the condition found, so a wait can also fetch."""
    counter = itertools.count()
    assert wait_for(lambda: next(counter) >= 3 and "found", 5.0, interval_s=0.001) == "found"


def test_the_condition_is_asked_at_least_once_even_with_no_time_left() -> None:
    """A zero timeout still checks once: a condition already true never fails."""
    assert wait_for(lambda: 42, 0.0) == 42


def test_a_timeout_says_what_was_awaited() -> None:
    """After ``timeout`` a LaunchError names the awaited event; the condition ran more than once."""
    calls = []
    with pytest.raises(LaunchError, match="waiting for the moon"):
        wait_for(lambda: calls.append(1), 0.05, interval_s=0.001, what="the moon")
    assert len(calls) > 1


def test_an_error_in_the_condition_is_not_swallowed() -> None:
    """A condition that raises ends the wait with its own error, not with a timeout later."""

    def broken() -> bool:
        raise KeyError("no such thing")

    with pytest.raises(KeyError):
        wait_for(broken, 5.0)
