"""Reading after a spool replay, against real processes: an app SIGKILLed with batches in
its spool that the server may already hold (it was stopped while they were on the wire),
the server SIGKILLed and restarted, a new app delivering that spool: ``logserver cat``
and ``logserver.read`` print every message once, in logging order.

The same with ``ReplicationPolicy(copies=2)``: the spool keeps a batch, not which servers
hold it, so a replayed batch goes to two servers as a new one would, and is acknowledged
only once ``acks`` hold it; those that hold it already answer "duplicate" and keep one
copy."""

from __future__ import annotations

import re
import signal
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

import logserver
from logclient import LogClient, ReplicationPolicy, SpoolPolicy
from logserver.reader import list_servers
from logserver.tools.launcher import LogServerProcess, wait_for
from tests.client.app_process import run_app
from tests.delivery import log_all, wait_known, zk_client
from tests.helpers import number_of, numbered
from tests.readback import read_server
from tests.reader.support import cat, cat_json
from tests.thrift_clients import connect, read_all

pytestmark = [pytest.mark.slow, pytest.mark.process, pytest.mark.timeout(180)]

ServerFactory = Callable[..., LogServerProcess]


def _status(server: LogServerProcess) -> Any:
    """The server's ServerStatus (its counters count since it started: batches stored,
    duplicate batches answered)."""
    with connect(server.endpoint) as client:
        return client.Status()


def _registered(zk_hosts: str, zk_path: str, servers: list[LogServerProcess]) -> None:
    """Wait until exactly ``servers``' running processes are registered: a killed
    process's member expires with its session, a started one registers in the background
    (so counting members could count an old one and miss a new one)."""
    running = {_status(s).process_id for s in servers}
    wait_for(
        lambda: (
            {r.member.process_id for r in list_servers(zk_hosts, zk_path) if r.member} == running
        ),
        30,
        what=f"only {[s.endpoint for s in servers]} registered, by their running processes",
    )


def _once_in_order(rows: Iterable[tuple[str, str]], expected: list[str]) -> None:
    """``rows`` (producer, message) hold each of ``expected`` once, the messages of each
    producer in logging order, and the killed app's and the new app's under one producer
    each (a replayed batch keeps the producer and sequence it was made with)."""
    rows = list(rows)
    counts = Counter(message for _, message in rows)
    assert [m for m, n in counts.items() if n > 1] == []
    assert sorted(counts) == sorted(expected)
    by_producer: dict[str, list[str]] = {}
    for producer, message in rows:
        by_producer.setdefault(producer, []).append(message)
    assert sorted(by_producer.values()) == [
        [m for m in expected if m.startswith(prefix)] for prefix in ("new-", "old-")
    ]


def _held_once(server: LogServerProcess) -> Counter[str]:
    """The messages ``server`` stores, each of which it must store once: a batch sent to it
    again (a resend, a replay) is answered "duplicate", not stored a second time."""
    held = Counter(r.message.decode() for r in read_server(server.endpoint, "app"))
    assert [m for m, n in held.items() if n > 1] == []
    return held


def _holds_spooled(server: LogServerProcess) -> bool:
    """``server`` holds some of old-000500..999 (the batches the killed app spooled)."""
    return any((number_of(m, "old") or 0) >= 500 for m in _held_once(server))


def _kill_app_with_ambiguous_spool(
    frozen: LogServerProcess,
    zk_hosts: str,
    zk_path: str,
    spool: Path,
    *,
    replication: ReplicationPolicy | None = None,
    killed: LogServerProcess | None = None,
) -> None:
    """An app logs old-000000..499, acknowledged; ``frozen`` is SIGSTOPped (and ``killed``
    SIGKILLed), the app logs old-000500..999 (the first batches reach the stopped server's
    socket), spools them all and is SIGKILLed; ``frozen``, continued, stores what reached
    it."""
    app = run_app(zk_hosts, zk_path, spool, "old", 500, "ack-then-spool", replication=replication)
    try:
        assert app.stdout is not None and app.stdin is not None
        line = app.stdout.readline()
        assert line.strip() == "ACKED", line + (app.stderr.read() if app.poll() else "")
        frozen.signal(signal.SIGSTOP)
        try:
            if killed is not None:
                killed.kill()
            app.stdin.write("go\n")
            app.stdin.flush()
            line = app.stdout.readline()
            assert line.strip() == "SPOOLED", line + (app.stderr.read() if app.poll() else "")
        finally:
            app.send_signal(signal.SIGKILL)
            app.wait(10)
            frozen.signal(signal.SIGCONT)
    finally:
        if app.poll() is None:
            app.kill()
            app.wait(10)
    wait_for(
        lambda: _holds_spooled(frozen),
        30,
        what="the continued server to store spooled batches that reached it while stopped",
    )


def _deliver_spool(zk_hosts: str, zk_path: str, spool: Path) -> int:
    """A new app with the same spool delivers it, then new-000000..299; the number of
    batches servers answered it already had."""
    app = run_app(zk_hosts, zk_path, spool, "new", 300, "deliver")
    out, err = app.communicate(timeout=90)
    assert app.returncode == 0, out + err
    assert "FLUSHED True" in out, out + err
    assert not any(spool.rglob("*.batch")), sorted(spool.rglob("*"))
    duplicates = re.search(r"duplicates=(\d+)", out)
    assert duplicates is not None, out
    return int(duplicates.group(1))


@pytest.mark.parametrize("replayed_to", ["the same server", "another server"])
def test_a_spool_replayed_over_batches_a_server_already_stored_reads_once(
    logserver_factory: ServerFactory,
    zk_hosts: str,
    zk_path: str,
    tmp_path: Path,
    replayed_to: str,
) -> None:
    """An app process (a real LogClient with a spool) logs 500 records that are
    acknowledged; the server is SIGSTOPped and the app logs 500 more: the first batches
    reach the stopped server's socket, the app times out and spools all 500, and is
    SIGKILLed. The server, continued, stores the batches it had received (so the spool
    holds batches the server already has: the ambiguous case), and is SIGKILLed.

    A new app with the same spool directory delivers the spool (under the old
    producer and sequences) and 300 new records: to the same server restarted, which
    answers "duplicate" for the batches it has; or to another server while the first
    is down, which stores them, so two servers hold copies once the first is back.
    Either way ``logserver cat`` (text and --json) and ``logserver.read`` print the
    1300 messages each exactly once, old before new, each producer's in logging order."""
    first = logserver_factory("s1")
    spool = tmp_path / "app-spool"
    _kill_app_with_ambiguous_spool(first, zk_hosts, zk_path, spool)
    first.kill()
    if replayed_to == "the same server":
        first.restart()
        replay = first
    else:
        replay = logserver_factory("s2")
    # The killed server's old member expires with its session.
    _registered(zk_hosts, zk_path, [replay])
    duplicates_before = _status(replay).duplicates

    answered_duplicate = _deliver_spool(zk_hosts, zk_path, spool)
    if replay is first:
        assert answered_duplicate >= 1  # the replay met a batch the server had stored
        assert _status(first).duplicates > duplicates_before
    else:
        assert answered_duplicate == 0
        first.restart()
        _registered(zk_hosts, zk_path, [first, replay])
        stored = sum(len(read_all(s.endpoint, "app")) for s in (first, replay))
        assert stored > 1300  # copies on both servers: the reader has to tell them apart

    _expected_reads(zk_hosts, zk_path, numbered("old", 1000) + numbered("new", 300))


def _expected_reads(zk_hosts: str, zk_path: str, expected: list[str]) -> None:
    """``logserver cat`` (--raw and --json) and ``logserver.read`` print ``expected`` in
    order, each message once."""
    where = ("--zk", zk_hosts, "--zk-path", zk_path)
    text = cat("app", "--raw", *where)
    assert text.returncode == 0, text.stderr.decode()
    assert text.stdout.decode().split() == expected
    records = cat_json("app", *where)
    assert [r["message"] for r in records] == expected
    _once_in_order(((r["producer"], r["message"]) for r in records), expected)
    with logserver.read(zk_hosts, "app", zk_path=zk_path) as reader:
        read = [(r.producer, r.message.decode()) for r in reader]
        assert reader.report.complete
    assert [m for _, m in read] == expected
    _once_in_order(read, expected)


@pytest.mark.parametrize("acks", [2, 1])
def test_a_replicated_spool_is_replayed_to_every_copy_and_reads_once(
    logserver_factory: ServerFactory,
    zk_hosts: str,
    zk_path: str,
    tmp_path: Path,
    clients: list[LogClient],
    acks: int,
) -> None:
    """copies=2 over two servers, s1 and s2. An app process (a real LogClient with
    ``ReplicationPolicy(copies=2, acks=acks)`` and a spool) logs old-000000..499 and flushes:
    they are acknowledged, so stored on ``acks`` servers. s2 is SIGSTOPped (with acks=1 s1
    is SIGKILLed too: one server is enough for acks=1, so batches wait only with none) and
    the app logs old-000500..999: the first batches reach s2's socket (and, with acks=2,
    are stored on s1), nothing is acknowledged, the app spools all 500 and is SIGKILLed.
    s2, continued, stores the batches it had received. Both servers are SIGKILLed; s1 is
    restarted, and a new app with the same spool and policy starts and logs
    new-000000..299; later s2 is restarted too. What must hold:

    - the spool keeps a batch, not which servers hold it: a replayed batch goes to two
      servers as a new one would, and counts as acknowledged (its spool file removed) only
      once ``acks`` hold it. With acks=2 and s2 down nothing is acknowledged and the spool
      keeps every replayed batch; with acks=1 the replay is acknowledged on s1 and every
      record waits for its second copy;
    - once s2 is back, every replayed and every new message is on both servers
      (``copies``), and each acknowledged old-000000..499 on at least ``acks`` (with
      acks=1, a second copy still owed when the first app was killed lived in its memory
      only: ``logserver repair``'s job, as ReplicationPolicy says);
    - a server that already held a replayed batch answers "duplicate" (the app and the
      server's Status count it) and stores no second copy;
    - ``logserver cat`` and ``logserver.read`` print the 1300 messages each once, in order.
    """
    replication = ReplicationPolicy(copies=2, acks=acks)
    s1, s2 = logserver_factory("s1"), logserver_factory("s2")
    spool = tmp_path / "app-spool"
    _kill_app_with_ambiguous_spool(
        s2, zk_hosts, zk_path, spool, replication=replication, killed=s1 if acks == 1 else None
    )
    # The servers the replay will meet batches on (s1 stored the first ones with acks=2).
    holding = [s2] if acks == 1 else [s1, s2]
    assert all(_holds_spooled(s) for s in holding)
    s1.kill()
    s2.kill()
    s1.restart()
    _registered(zk_hosts, zk_path, [s1])

    client = zk_client(
        clients,
        zk_hosts,
        zk_path,
        tmp_path,
        replication=replication,
        spool=SpoolPolicy(directory=spool, spill_after_s=0.3),
    )
    new = log_all(client, numbered("new", 300), flush=None)
    if acks == 2:
        wait_known(client, 1)
        assert not client.flush(1)
        stats = client.stats()
        assert (stats.acknowledged, stats.servers_short) == (0, 1), stats
        assert stats.spooled >= 500, stats
    else:
        assert client.flush(30), client.stats()
        wait_for(
            lambda: client.stats().waiting_for_copies == 800,
            30,
            what="every record to wait for its second copy",
        )
        stats = client.stats()
        assert (stats.acknowledged, stats.spooled) == (800, 0), stats
    s2.restart()
    assert client.flush(60), client.stats()
    wait_for(
        lambda: client.stats().waiting_for_copies == 0,
        60,
        what="every second copy made",
    )
    stats = client.stats()
    assert (stats.acknowledged, stats.spooled) == (800, 0), stats
    assert (stats.dropped, stats.copies_given_up) == (0, 0), stats
    assert stats.duplicates >= len(holding)
    assert all(_status(s).duplicates >= 1 for s in holding)  # counted since its restart
    client.close(10)

    old = numbered("old", 1000)
    held = _held_once(s1) + _held_once(s2)
    assert sorted(held) == sorted(old + new)
    assert [m for m in old[:500] if held[m] < acks] == []
    assert [m for m in old[500:] + new if held[m] != 2] == []
    _registered(zk_hosts, zk_path, [s1, s2])
    _expected_reads(zk_hosts, zk_path, old + new)
