"""What must hold for the policies: frozen, validated at construction, readable reprs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from logclient import BatchPolicy, ChoicePolicy, FailoverPolicy, QueuePolicy, SpoolPolicy


def test_policies_are_frozen_and_have_a_useful_repr() -> None:
    """A policy cannot be changed after construction; its repr names every setting."""
    policy = BatchPolicy(max_records=10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_records = 20  # type: ignore[misc]
    assert repr(policy) == (
        "BatchPolicy(max_records=10, max_bytes=1048576, linger_s=0.05, max_message_bytes=1048576, "
        "max_in_flight=4)"
    )
    assert dataclasses.replace(policy, linger_s=0.0).linger_s == 0.0


@pytest.mark.parametrize(
    "make",
    [
        lambda: BatchPolicy(max_records=0),
        lambda: BatchPolicy(max_bytes=-1),
        lambda: BatchPolicy(linger_s=-0.1),
        lambda: BatchPolicy(max_bytes=100, max_message_bytes=200),
        lambda: FailoverPolicy(rpc_timeout_s=0),
        lambda: FailoverPolicy(down_backoff_s=10, max_down_backoff_s=5),
        lambda: FailoverPolicy(jitter=1.0),
        lambda: ChoicePolicy("fastest"),  # type: ignore[arg-type]
        lambda: QueuePolicy(overflow="ignore"),  # type: ignore[arg-type]
        lambda: QueuePolicy(max_records=0),
        lambda: SpoolPolicy(max_bytes=0),
        lambda: SpoolPolicy(high_water=1.5),
        lambda: SpoolPolicy(name="../etc"),
        lambda: BatchPolicy(max_records=True),
    ],
)
def test_invalid_settings_fail_at_construction(make: object) -> None:
    """A bad value raises ValueError when the policy is made, not at the first failover."""
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


def test_backoff_grows_per_failure_up_to_the_cap_within_the_jitter_band() -> None:
    """down_backoff_s doubles per consecutive failure, is capped, and jitter stays in its band."""
    policy = FailoverPolicy(down_backoff_s=1.0, max_down_backoff_s=5.0, jitter=0.2)
    assert [policy.backoff(n) for n in (0, 1, 2, 3, 4, 10)] == [0.0, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert policy.backoff(1, 0.0) == pytest.approx(0.8)
    assert policy.backoff(1, 0.999999) == pytest.approx(1.2, abs=1e-5)


def test_choice_accepts_a_name_or_a_policy() -> None:
    """The client's choice argument may be a strategy name or a ChoicePolicy."""
    assert ChoicePolicy.of("sticky") == ChoicePolicy("sticky")
    policy = ChoicePolicy("round_robin")
    assert ChoicePolicy.of(policy) is policy
    assert ChoicePolicy().strategy == "random"


def test_default_spool_lives_under_xdg_state_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a directory the spool is $XDG_STATE_HOME/logclient/<name>, else ~/.local/state."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert SpoolPolicy(name="billing").base_directory() == tmp_path / "xdg/logclient/billing"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert SpoolPolicy(name="billing").base_directory() == (
        tmp_path / "home/.local/state/logclient/billing"
    )
    assert SpoolPolicy(directory="/x/y").directory == Path("/x/y")  # type: ignore[arg-type]
    assert SpoolPolicy.disabled().enabled is False
