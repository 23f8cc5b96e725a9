"""Hedged sends (``HedgePolicy``): a batch with no answer within the hedge delay also goes to
another live server, and the first answer settles it.

What must hold: the delay follows the documented rule (a quantile of recent round trips
times a factor, within bounds) and the budget bounds how many batches are hedged; a hung
server no longer holds records back until its RPC timeout (here 30 s, so only a hedge can
deliver them in the test); nothing is lost or shown twice when read back, also once the hung
server answers late; with hedging off the RPC timeout decides, as before. Frozen and
partitioned logserver processes are in ``tests/faults/test_copies.py``; the time it takes
is measured in ``bench`` (``failover_sigstop``, ``hedged_share``).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from logclient import BatchPolicy, FailoverPolicy, HedgePolicy, ReplicationPolicy
from logclient._hedging import Hedging
from tests.delivery import log_all
from tests.helpers import numbered

from .conftest import ClientFactory, InProcFactory

ROOT = Path(__file__).resolve().parents[2]

# ------------------------------------------------------------------ the rule


@pytest.mark.parametrize(
    "options",
    [
        {"min_delay_s": 0},
        {"min_delay_s": 0.5, "max_delay_s": 0.1},
        {"quantile": 0},
        {"quantile": 1.5},
        {"factor": -1},
        {"max_share": 0},
        {"max_share": 2},
        {"window": 0},
        {"burst": 0},
        {"min_samples": 300, "window": 256},
        {"enabled": "yes"},
    ],
)
def test_bad_hedge_settings_fail_at_construction(options: dict[str, object]) -> None:
    """Every HedgePolicy value is checked when it is made."""
    with pytest.raises(ValueError, match="HedgePolicy"):
        HedgePolicy(**options)  # type: ignore[arg-type]


def test_the_delay_is_a_quantile_of_recent_round_trips_times_a_factor_within_bounds() -> None:
    """Until min_samples round trips are known the delay is max_delay_s; then factor x the
    quantile of the last `window` round trips, clamped to [min_delay_s, max_delay_s]."""
    hedging = Hedging(
        HedgePolicy(min_delay_s=0.05, max_delay_s=1.0, quantile=0.9, factor=2.0, window=100,
                    min_samples=10)
    )  # fmt: skip
    assert hedging.delay() == 1.0
    for _ in range(8):
        hedging.note_round_trip(0.001)
    assert hedging.delay() == 1.0  # 8 < min_samples
    for _ in range(92):
        hedging.note_round_trip(0.001)
    assert hedging.delay() == 0.05  # 2 ms, clamped up to min_delay_s
    for i in range(100):
        hedging.note_round_trip(0.1 if i % 5 == 0 else 0.04)  # 20 % slow
    assert hedging.delay() == pytest.approx(0.2)  # 0.9 quantile is 0.1 s, times 2
    for _ in range(100):
        hedging.note_round_trip(5.0)
    assert hedging.delay() == 1.0  # clamped down to max_delay_s


def test_the_budget_allows_bursts_then_one_hedge_per_share_of_batches_sent() -> None:
    """A burst of `burst` hedges, then one per 1/max_share batches sent."""
    hedging = Hedging(HedgePolicy(burst=3, max_share=0.25))
    for _ in range(3):
        assert hedging.may_hedge()
        hedging.note_hedged()
    assert not hedging.may_hedge()
    for _ in range(3):
        hedging.note_sent()
    assert not hedging.may_hedge()
    hedging.note_sent()
    assert hedging.may_hedge()
    assert hedging.hedged_batches == 3
    assert not Hedging(HedgePolicy.disabled()).may_hedge()


# ------------------------------------------------------------ in-process servers

#: An RPC timeout no test waits out: only a hedge delivers what a hung server holds.
PATIENT = FailoverPolicy(
    connect_timeout_s=0.5, rpc_timeout_s=30.0, down_backoff_s=0.5, probe_interval_s=0.1
)
#: Hedging with a fixed delay (min = max), known at once.
QUICK_HEDGE = HedgePolicy(min_delay_s=0.2, max_delay_s=0.2, min_samples=1)


def test_a_hung_server_no_longer_holds_records_until_its_rpc_timeout(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """The server in use hangs with batches in flight: they are hedged to the other server,
    flush() returns long before the 30 s RPC timeout, nothing is failed over yet, and new
    batches go to the other server. When the hung server answers late nothing is lost or
    shown twice when read back (each server keeps each batch once)."""
    a, b = inproc(), inproc()
    client = make_client(
        a, b, choice="leader", failover=PATIENT, hedging=QUICK_HEDGE,
        batching=BatchPolicy(max_records=50, linger_s=0.0),
    )  # fmt: skip
    before = log_all(client, numbered("before", 200), flush=10)
    a.behaviour.mode = "hang"
    during = log_all(client, numbered("during", 500), flush=20)
    stats = client.stats()
    assert stats.hedged >= 1
    assert stats.failovers == 0
    assert stats.current_server == str(b.endpoint)
    assert {m.encode() for m in during} <= set(b.messages())
    a.resume()
    after = log_all(client, numbered("after", 100), flush=20)
    union = set(a.messages()) | set(b.messages())
    assert union == {m.encode() for m in before + during + after}
    assert a.duplicates == 0 and b.duplicates == 0
    for server in (a, b):
        assert len(server.messages()) == len(set(server.messages()))


def test_with_two_copies_a_hung_copy_is_hedged_to_a_third_server(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """copies=2 over three servers, one of the two in use hangs: its batches go to the third
    server, and every record is acknowledged with two copies before the RPC timeout."""
    servers = [inproc() for _ in range(3)]
    client = make_client(
        *servers,
        choice="leader",
        failover=PATIENT,
        hedging=QUICK_HEDGE,
        replication=ReplicationPolicy(copies=2),
    )
    client.log("app", "warm")
    assert client.flush(10)
    servers[1].behaviour.mode = "hang"
    expected = log_all(client, numbered("hedge2", 300), flush=20)
    assert client.stats().hedged >= 1 and client.stats().failovers == 0
    for m in expected:
        assert m.encode() in servers[0].messages() and m.encode() in servers[2].messages()
    servers[1].resume()


def test_without_hedging_the_rpc_timeout_decides(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """HedgePolicy.disabled(): a hung server holds its batches until the RPC timeout, then
    they fail over (as before hedging existed)."""
    a, b = inproc(), inproc()
    client = make_client(
        a,
        b,
        choice="leader",
        hedging=HedgePolicy.disabled(),
        failover=FailoverPolicy(connect_timeout_s=0.5, rpc_timeout_s=0.5, probe_interval_s=0.1),
    )
    client.log("app", "warm")
    assert client.flush(10)
    a.behaviour.mode = "hang"
    expected = log_all(client, numbered("nohedge", 100), flush=20)
    assert client.stats().hedged == 0 and client.stats().failovers >= 1
    assert {m.encode() for m in expected} <= set(b.messages())
    a.resume()


def test_the_budget_bounds_hedged_batches(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """With a budget of one hedge (and no refill to speak of), a hung server's window gets
    one batch hedged; the rest wait for the RPC timeout."""
    a, b = inproc(), inproc()
    client = make_client(
        a,
        b,
        choice="leader",
        hedging=HedgePolicy(min_delay_s=0.1, max_delay_s=0.1, min_samples=1, burst=1,
                            max_share=0.001),
        failover=FailoverPolicy(connect_timeout_s=0.5, rpc_timeout_s=1.0, probe_interval_s=0.1),
        batching=BatchPolicy(max_records=10, linger_s=0.0, max_in_flight=4),
    )  # fmt: skip
    client.log("app", "warm")
    assert client.flush(10)
    a.behaviour.mode = "hang"
    log_all(client, numbered("budget", 40), flush=20)
    assert client.stats().hedged == 1
    assert client.stats().failovers >= 1
    a.resume()


@pytest.mark.process
def test_a_client_inherited_through_fork_hedges_in_the_child(
    inproc: InProcFactory, tmp_path: Path
) -> None:
    """A child of os.fork() starts its own sender on first use; that sender hedges too: with
    the parent's leader hung (RPC timeout 30 s), the child's records reach the other server,
    its flush() returns, nothing failed over; once the hung server answers, each server holds
    each record once."""
    a, b = inproc(), inproc()
    code = f"""
        import os, sys
        from logclient import (BatchPolicy, FailoverPolicy, HedgePolicy, LogClient,
                               SpoolPolicy, StaticServers)
        client = LogClient(
            servers=StaticServers(["{a.endpoint}", "{b.endpoint}"]),
            choice="leader",
            failover=FailoverPolicy(connect_timeout_s=0.5, rpc_timeout_s=30.0,
                                    down_backoff_s=0.5, probe_interval_s=0.1),
            hedging=HedgePolicy(min_delay_s=0.2, max_delay_s=0.2, min_samples=1),
            batching=BatchPolicy(max_records=50, linger_s=0.0),
            spool=SpoolPolicy(directory="{tmp_path / "spool"}"),
        )
        client.log("app", "parent-before")
        assert client.flush(10)
        print("ready", flush=True)
        assert sys.stdin.readline() == "go\\n"
        pid = os.fork()
        if pid == 0:
            for n in range(300):
                client.log("app", f"child {{n}}")
            ok = client.flush(20)
            stats = client.stats()
            print("child", ok, stats.hedged >= 1, stats.failovers, stats.current_server,
                  flush=True)
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        print("exit", os.waitstatus_to_exitcode(status), flush=True)
        """
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        assert process.stdout.readline() == "ready\n"
        a.behaviour.mode = "hang"
        process.stdin.write("go\n")
        process.stdin.flush()
        out, err = process.communicate(timeout=60)
    finally:
        a.resume()
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 0, err[-3000:]
    assert out.splitlines() == [f"child True True 0 {b.endpoint}", "exit 0"], err[-3000:]
    child = {f"child {n}".encode() for n in range(300)}
    assert child <= set(b.messages())
    assert set(a.messages()) | set(b.messages()) == child | {b"parent-before"}
    for server in (a, b):
        assert len(server.messages()) == len(set(server.messages()))
