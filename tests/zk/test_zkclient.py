"""logwire.zkclient: every kazoo client of the project retries with a capped backoff and stops within a bound."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from kazoo.protocol.states import KazooState
from kazoo.retry import InterruptedError as RetryInterruptedError
from kazoo.retry import KazooRetry

from logwire.zkclient import (
    RETRY_INITIAL_DELAY_S,
    new_client,
    retry_backoff,
    stop_client,
    zk_retry,
)
from logwire.zktls import ZkTLSPolicy


def test_zk_retry_tries_forever_with_a_capped_backoff() -> None:
    """kazoo's default grows to an hour between tries; ours starts at 50 ms and stops at the cap."""
    retry = zk_retry(0.5)
    assert (retry.max_tries, retry.delay, retry.max_delay) == (-1, RETRY_INITIAL_DELAY_S, 0.5)
    assert zk_retry().max_delay == 1.0
    assert zk_retry() is not zk_retry()  # a KazooRetry counts attempts: one per call site


@pytest.mark.parametrize("bad", [0, -1.0, float("nan")])
def test_zk_retry_refuses_a_cap_that_is_not_positive(bad: float) -> None:
    """A zero or negative cap would make kazoo spin; it is refused when made."""
    with pytest.raises(ValueError, match="max_delay_s"):
        zk_retry(bad)


def test_zk_retry_is_interrupted_at_once() -> None:
    """``interrupt`` ends a retry between tries, so a closing object never waits for ZooKeeper."""
    stopping = threading.Event()
    stopping.set()
    calls = []

    def always_lost() -> None:
        from kazoo.exceptions import ConnectionLoss

        calls.append(1)
        raise ConnectionLoss

    with pytest.raises(RetryInterruptedError):
        zk_retry(interrupt=stopping.is_set)(always_lost)
    assert calls == [1]


def test_new_client_uses_the_capped_retry_for_connections_and_commands() -> None:
    """Both of kazoo's retry objects are ours, separate, and capped; auth and read_only pass through."""
    client = new_client(
        "127.0.0.1:1", session_timeout_s=4.0, retry_max_delay_s=0.3, auth=("digest", "u:p")
    )
    try:
        # kazoo keeps them in private attributes (``client.retry`` is a function over _retry).
        connection_retry, command_retry = client._conn_retry, client._retry
        assert isinstance(connection_retry, KazooRetry)
        assert isinstance(command_retry, KazooRetry)
        assert command_retry is not connection_retry
        for retry in (command_retry, connection_retry):
            assert (retry.max_tries, retry.delay, retry.max_delay) == (-1, 0.05, 0.3)
        assert client.auth_data == {("digest", "u:p")}
        assert client._session_timeout == 4000  # kazoo keeps it in ms
        assert client.read_only is False
        assert new_client("127.0.0.1:1", read_only=True).read_only is True
    finally:
        client.close()


def test_new_client_takes_tls_from_the_policy(tmp_path: Path) -> None:
    """A ZkTLSPolicy turns on TLS with certificate and host-name checks; anything else is refused."""
    ca = tmp_path / "ca.pem"
    ca.write_text("not read until connecting")
    client = new_client("127.0.0.1:1", tls=ZkTLSPolicy(ca_file=ca))
    assert client.use_ssl is True
    assert (client.ca, client.verify_certs, client.check_hostname) == (str(ca), True, True)
    assert new_client("127.0.0.1:1").use_ssl is False
    with pytest.raises(TypeError, match="ZkTLSPolicy"):
        new_client("127.0.0.1:1", tls=str(ca))  # type: ignore[arg-type]


class HangingClient:
    """A stand-in for a kazoo client whose stop() hangs (kazoo #582), until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.stopped_on: threading.Thread | None = None
        self.closed = False

    def stop(self) -> None:
        self.stopped_on = threading.current_thread()
        self.release.wait(30)

    def close(self) -> None:
        self.closed = True


def test_stop_client_returns_by_its_deadline_even_when_stop_hangs() -> None:
    """The caller gets control back at the deadline; the stop goes on on a daemon helper thread."""
    client = HangingClient()
    deadline = time.monotonic() + 0.2
    stopper = stop_client(client, deadline=deadline, name="test-stop")  # type: ignore[arg-type]
    try:
        assert time.monotonic() >= deadline
        assert stopper.is_alive()
        assert stopper.daemon
        assert stopper.name == "test-stop"
        assert client.stopped_on is stopper
        assert not client.closed
    finally:
        client.release.set()
    stopper.join(10)
    assert not stopper.is_alive()
    assert client.closed  # close() follows stop() once it returns


def test_stop_client_hands_an_error_to_on_error() -> None:
    """A failing stop() raises into no one: the caller's on_error gets it (the default logs it)."""

    class Failing:
        def stop(self) -> None:
            raise RuntimeError("boom")

    errors: list[Exception] = []
    stopper = stop_client(
        Failing(),  # type: ignore[arg-type]
        deadline=time.monotonic() + 10,
        on_error=errors.append,
    )
    assert not stopper.is_alive()
    assert [repr(e) for e in errors] == [repr(RuntimeError("boom"))]
    stop_client(Failing(), deadline=time.monotonic() + 10)  # type: ignore[arg-type]


def test_a_real_client_connects_and_stops_within_the_bound(zk_hosts: str) -> None:
    """Against the real ZooKeeper: new_client connects; stop_client ends the session in time."""
    client = new_client(zk_hosts, session_timeout_s=4.0)
    client.start(timeout=15)
    assert client.state == KazooState.CONNECTED
    stopper = stop_client(client, deadline=time.monotonic() + 10)
    assert not stopper.is_alive()
    assert client.state == KazooState.LOST
    assert not client.connected


def test_retry_backoff_matches_zk_retry_without_jitter() -> None:
    """Our own loops around kazoo calls wait as kazoo's retries do: 50 ms doubling to the cap."""
    backoff = retry_backoff(0.3)
    assert [backoff.delay_at(n) for n in range(5)] == [0.05, 0.1, 0.2, 0.3, 0.3]
    assert retry_backoff().max_s == zk_retry().max_delay
    assert retry_backoff(0.01).delay() == 0.01  # a cap under 50 ms caps the first delay too
