"""Reading after a spool replay, against real processes: an app SIGKILLed with batches in
its spool that the server may already hold (it was stopped while they were on the wire),
the server SIGKILLed and restarted, a new app delivering that spool: ``logserver cat``
and ``logserver.read`` print every message once, in logging order."""

from __future__ import annotations

import re
import signal
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

import logserver
from logserver.reader import list_servers
from logserver.tools.launcher import LogServerProcess, wait_for
from tests.client.app_process import run_app
from tests.helpers import numbered
from tests.reader.support import cat, cat_json
from tests.thrift_clients import connect, read_all

pytestmark = [pytest.mark.slow, pytest.mark.process, pytest.mark.timeout(180)]

ServerFactory = Callable[..., LogServerProcess]


def _status(server: LogServerProcess) -> Any:
    """The server's ServerStatus (its counters count since it started: batches stored,
    duplicate batches answered)."""
    with connect(server.endpoint) as client:
        return client.Status()


def _registered(zk_hosts: str, zk_path: str, n: int, what: str) -> None:
    wait_for(lambda: len(list_servers(zk_hosts, zk_path)) == n, 30, what=what)


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


def _kill_app_with_ambiguous_spool(
    server: LogServerProcess, zk_hosts: str, zk_path: str, spool: Path
) -> None:
    """An app logs old-000000..499, acknowledged; the server is SIGSTOPped, the app logs
    old-000500..999 (the first batches reach the stopped server's socket), spools them all
    and is SIGKILLed; the server, continued, stores what reached it."""
    app = run_app(zk_hosts, zk_path, spool, "old", 500, "ack-then-spool")
    try:
        assert app.stdout is not None and app.stdin is not None
        line = app.stdout.readline()
        assert line.strip() == "ACKED", line + (app.stderr.read() if app.poll() else "")
        stored_before = _status(server).batches_stored
        server.signal(signal.SIGSTOP)
        try:
            app.stdin.write("go\n")
            app.stdin.flush()
            line = app.stdout.readline()
            assert line.strip() == "SPOOLED", line + (app.stderr.read() if app.poll() else "")
        finally:
            app.send_signal(signal.SIGKILL)
            app.wait(10)
            server.signal(signal.SIGCONT)
    finally:
        if app.poll() is None:
            app.kill()
            app.wait(10)
    wait_for(
        lambda: _status(server).batches_stored > stored_before,
        30,
        what="the continued server to store the batches that reached it while stopped",
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
    _registered(zk_hosts, zk_path, 1, f"only {replay.endpoint} to be registered")
    duplicates_before = _status(replay).duplicates

    answered_duplicate = _deliver_spool(zk_hosts, zk_path, spool)
    if replay is first:
        assert answered_duplicate >= 1  # the replay met a batch the server had stored
        assert _status(first).duplicates > duplicates_before
    else:
        assert answered_duplicate == 0
        first.restart()
        _registered(zk_hosts, zk_path, 2, "both servers to be registered")
        stored = sum(len(read_all(s.endpoint, "app")) for s in (first, replay))
        assert stored > 1300  # copies on both servers: the reader has to tell them apart

    expected = numbered("old", 1000) + numbered("new", 300)
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
