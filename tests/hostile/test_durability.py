"""Durability edges, with real ``logserver serve`` processes and real signals.

- A server SIGKILLed between a batch's ``pwrite`` and its group fdatasync leaves
  the batch in the page cache only. The restarted server must not answer its
  resend "duplicate" before those bytes are durable (a power cut after that
  answer would lose a batch the client was told is stored).
- A ``--retention-bytes`` below ``--segment-bytes`` makes every rotation want to
  delete the segment just retired, whose batches may still wait for their
  fdatasync. Retention must wait for that round.
- A restart of a server holding many categories and producers reads a bounded
  number of bytes and remembers a bounded number of producers.

The first two watch the server's own system calls with strace
(``tests/hostile/syscalls.py``): it holds the fdatasync open so the kill lands
inside it, and it records which file each call was about, in order.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from logserver.tools.launcher import LogServerProcess, wait_for
from logserver.tools.reader import connect, merge_unique, read_server
from logwire.idl import log_thrift
from logwire.serverset import Endpoint
from tests.faults.support import server_events

from .syscalls import attach, read_calls, segment, strace_problem, traced

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ServerFactory = Callable[..., LogServerProcess]


@pytest.fixture(scope="module")
def strace() -> None:
    problem = strace_problem()
    if problem is not None:
        pytest.skip(problem)


def _append(
    server: LogServerProcess, producer: str, sequence: int, entries: list[tuple[str, bytes]]
) -> Any:
    """One Append on a fresh connection; the AppendResult."""
    batch = log_thrift.AppendBatch(
        producer=producer,
        sequence=sequence,
        entries=[log_thrift.LogEntry(category=c, message=m) for c, m in entries],
    )
    with connect(Endpoint.parse(server.endpoint), timeout=10) as client:
        return client.Append(batch)


@dataclass
class _Traced(LogServerProcess):
    """A server started under strace (its pid is the server's: see ``syscalls.traced``)."""

    trace: Path = field(default_factory=Path)
    calls: tuple[str, ...] = ()
    delay_sync_s: float = 0.0

    def command(self) -> list[str]:
        return traced(super().command(), self.trace, self.calls, delay_sync_s=self.delay_sync_s)


@pytest.fixture
def traced_servers() -> Iterator[list[LogServerProcess]]:
    """Servers a test starts itself; every one is stopped after it."""
    started: list[LogServerProcess] = []
    yield started
    for server in started:
        server.stop()


def test_a_batch_killed_inside_its_fdatasync_is_durable_before_its_resend_is_a_duplicate(
    strace: None,
    logserver_factory: ServerFactory,
    traced_servers: list[LogServerProcess],
    tmp_path: Path,
) -> None:
    """strace holds the server's fdatasyncs; batch victim#1 is written (its pwrite returned)
    and the server is SIGKILLed inside the fdatasync: never acknowledged, in the page cache
    only. The restarted server (under strace) fdatasyncs that segment before its port
    listens, so nothing can be answered from those bytes before they are durable (the
    figure: 0 answers possible before the sync); then the resend is answered duplicate,
    and the record is stored once."""
    server = logserver_factory()
    assert _append(server, "victim", 0, [("app", b"acknowledged before")]).stored == 1
    held = tmp_path / "held"
    assert server.pid is not None
    tracer = attach(server.pid, held, ["pwrite64", "fdatasync"], delay_sync_s=120.0)
    outcome: dict[str, Any] = {}

    def send() -> None:
        try:
            outcome["result"] = _append(server, "victim", 1, [("app", b"killed mid-sync")])
        except Exception as exc:  # the server dies under this call: any error will do
            outcome["error"] = exc

    sender = threading.Thread(target=send, daemon=True)
    try:
        sender.start()

        def inside_the_sync() -> bool:
            calls = read_calls(held)
            written = [c for c in calls if c.name == "pwrite64" and segment(c.path) and c.result]
            syncing = [c for c in calls if c.name == "fdatasync" and c.result is None]
            return bool(written and syncing and syncing[-1].start > written[-1].end)

        wait_for(inside_the_sync, 30.0, interval_s=0.02, what="the batch's fdatasync")
        server.signal(signal.SIGKILL)  # dies inside the held fdatasync, which never runs
    finally:
        # A traced process dies only once its tracer lets go of it (the kernel detaches a
        # dead tracer's tracees; a SIGTERMed strace may hang detaching dying threads).
        tracer.kill()
        tracer.wait(30)
        server.kill()
        sender.join(15)
    assert "result" not in outcome, outcome  # never acknowledged

    trace = tmp_path / "restart"
    restarted = _Traced(
        zk_hosts=server.zk_hosts,
        data_dir=server.data_dir,
        port=server.port,
        zk_path=server.zk_path,
        session_timeout_s=2.0,
        trace=trace,
        calls=("fdatasync", "listen"),
    )
    traced_servers.append(restarted)
    restarted.start(timeout=60)
    (app_segment,) = (server.data_dir / "categories" / "app").glob("*.seg")
    calls = read_calls(trace)
    synced = [c for c in calls if c.name == "fdatasync" and c.path == str(app_segment)]
    listen = next(c for c in calls if c.name == "listen")
    assert synced and synced[0].result == 0
    assert synced[0].end <= listen.start
    (recovered,) = server_events(restarted, "storage recovered")[-1:]
    assert recovered["synced_segments"] >= 1 and recovered["clean_categories"] == 0

    resent = _append(restarted, "victim", 1, [("app", b"killed mid-sync")])
    assert (resent.duplicate, resent.stored) == (True, 0)
    stored = [r.message for r in read_server(Endpoint.parse(restarted.endpoint), "app")]
    assert stored == [b"acknowledged before", b"killed mid-sync"]


def test_retention_below_a_segment_never_deletes_a_segment_before_its_round(
    strace: None,
    zk_hosts: str,
    zk_path: str,
    traced_servers: list[LogServerProcess],
    tmp_path: Path,
) -> None:
    """A real server with --segment-bytes 4096 --retention-bytes 1000 takes 8 clients'
    concurrent batches while strace slows each fdatasync by 2 ms (a slow disk). Every
    segment it deletes was fdatasynced after its last write and before the unlink (the
    figure: 0 deleted early, of at least 20 deletions), and every batch is acknowledged."""
    trace = tmp_path / "retention"
    server = _Traced(
        zk_hosts=zk_hosts,
        data_dir=tmp_path / "server",
        zk_path=zk_path,
        session_timeout_s=2.0,
        extra_args=["--segment-bytes", "4096", "--retention-bytes", "1000"],
        trace=trace,
        calls=("pwrite64", "fdatasync", "unlink", "unlinkat"),
        delay_sync_s=0.002,
    )
    traced_servers.append(server)
    server.start(timeout=60)
    acknowledged = []

    def client(t: int) -> None:
        for sequence in range(40):
            message = os.urandom(300)  # incompressible: a segment fills in a dozen batches
            result = _append(server, f"client-{t}", sequence, [("app", message)])
            acknowledged.append(result.code == log_thrift.ResultCode.OK and result.stored == 1)

    threads = [threading.Thread(target=client, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert acknowledged == [True] * 320
    assert server.terminate() == 0

    deleted_early = []
    deletions = 0
    synced_since_write: set[str] = set()
    for call in read_calls(trace):
        path = segment(call.path)
        if not path:
            continue
        if call.name == "pwrite64":
            synced_since_write.discard(path)
        elif call.name == "fdatasync" and call.path.endswith(" (deleted)"):
            deleted_early.append(path)  # a round synced a file retention had deleted
        elif call.name == "fdatasync" and call.result == 0:
            synced_since_write.add(path)
        elif call.name in ("unlink", "unlinkat") and call.result == 0:
            deletions += 1
            if path not in synced_since_write:
                deleted_early.append(path)
    assert deletions >= 20
    assert deleted_early == []


def test_a_restart_with_many_categories_and_producers_reads_and_remembers_a_bounded_amount(
    logserver_factory: ServerFactory,
) -> None:
    """2,000 producers' batches over 200 categories. Restarted after a clean stop, the server
    reads at most --dedup-scan-bytes of segments (the figure, against 256 KiB) and
    remembers at most --max-producers (300); after a SIGKILL it also reads each category's
    last segment and syncs all it read. A recent batch resent is a duplicate; a forgotten
    one is stored again, and a reader shows each record once."""
    budget, max_producers = 256 * 1024, 300
    server = logserver_factory(
        extra_args=["--dedup-scan-bytes", str(budget), "--max-producers", str(max_producers)]
    )
    endpoint = Endpoint.parse(server.endpoint)
    with connect(endpoint, timeout=30) as client:
        for n in range(2000):
            batch = log_thrift.AppendBatch(
                producer=f"app-{n:04d}",
                sequence=0,
                entries=[log_thrift.LogEntry(category=f"c{n % 200:03d}", message=os.urandom(400))],
            )
            assert client.Append(batch).stored == 1
    assert server.terminate() == 0
    on_disk = sum(f.stat().st_size for f in server.data_dir.glob("categories/*/*.seg"))
    assert on_disk > 2 * budget

    server.start()
    clean = server_events(server, "storage recovered")[-1]
    assert clean["categories"] == clean["clean_categories"] == 200
    assert clean["scanned_bytes"] <= budget
    assert clean["producers"] <= max_producers
    newest = log_thrift.LogEntry(category="c199", message=b"resent")
    with connect(endpoint, timeout=30) as client:
        resend = log_thrift.AppendBatch(producer="app-1999", sequence=0, entries=[newest])
        assert client.Append(resend).duplicate
        oldest = log_thrift.LogEntry(category="c000", message=b"resent")
        forgotten = log_thrift.AppendBatch(producer="app-0000", sequence=0, entries=[oldest])
        assert client.Append(forgotten).stored == 1  # stored again: at least once

    server.kill()
    server.start()
    crashed = server_events(server, "storage recovered")[-1]
    lasts = sum(
        sorted(d.glob("*.seg"))[-1].stat().st_size
        for d in (server.data_dir / "categories").iterdir()
    )
    assert crashed["clean_categories"] == 0
    assert lasts <= crashed["scanned_bytes"] <= lasts + budget
    assert crashed["synced_segments"] == crashed["scanned_segments"]
    records = list(read_server(endpoint, "c000"))
    assert len(list(merge_unique([records]))) == len(records) - 1 == 10
