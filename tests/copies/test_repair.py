"""``logserver repair`` with real servers: lost disks, repairs in between, interruptions.

Every server is a real ``logserver serve`` process killed with SIGKILL; a lost
disk is its data directory deleted while it is dead, after which it starts
empty (a new server id). Batches are written to two servers each, as a client
with two copies does.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys

import pytest

from logserver.reader import connect
from logserver.storage import read_server_id
from logserver.tools.launcher import LogServerProcess, wait_for
from logwire.inventory import InventoryRecord, inventory_path
from logwire.serverset import Endpoint

from .support import copies_per_record, logserver, repair, write_pairs

pytestmark = pytest.mark.process

CATEGORIES = ("app", "audit")


def lose_disk(server: LogServerProcess, kazoo, zk_path: str) -> str:
    """SIGKILL, delete the data directory, start again empty; the old server id.

    First wait until the server's inventory record lists what it holds (a server writes a
    new category there within seconds; one that dies sooner is a reader's blind spot)."""
    old = read_server_id(server.data_dir)
    assert old is not None
    with connect(Endpoint.parse(server.endpoint)) as client:
        held = set(client.Categories())
    node = f"{inventory_path(zk_path)}/{old}"
    wait_for(
        lambda: (
            kazoo.exists(node)
            and held <= set(InventoryRecord.from_json(kazoo.get(node)[0]).categories)
        ),
        30,
        what="the inventory to list what the server holds",
    )
    server.kill()
    shutil.rmtree(server.data_dir)
    server.port = 0  # the old port may have been taken by someone else meanwhile
    server.start()
    return old


def wait_members(kazoo, zk_path: str, servers: list[LogServerProcess]) -> None:
    """Until the members are exactly these servers (a killed one's node has expired)."""
    from logwire.serverset import Member

    def ids() -> set[str]:
        found = set()
        for child in kazoo.get_children(zk_path):
            try:
                found.add(Member.from_json(kazoo.get(f"{zk_path}/{child}")[0]).server_id)
            except Exception:
                continue
        return found

    wanted = {read_server_id(s.data_dir) for s in servers}
    wait_for(lambda: ids() == wanted, 30, what="the members to be the live servers")


def test_two_disks_lost_one_after_the_other_with_a_repair_in_between(
    logserver_factory, kazoo_factory, zk_hosts, zk_path
) -> None:
    """Three servers, every batch on two. A disk is lost: repair refuses to call the cluster
    complete while the lost server is still in the inventory, and once it is forgotten brings
    every record back to two copies. Then a second disk is lost (one that got copies in the
    first repair): after forget and repair, every record written is there, twice, each once
    per server, with its original receive time and index."""
    kazoo = kazoo_factory(zk_hosts)
    servers = [logserver_factory() for _ in range(3)]
    written = write_pairs(servers, CATEGORIES, producers=3, batches=40)
    before = {c: copies_per_record(servers, c)[1] for c in CATEGORIES}
    for category in CATEGORIES:
        counts, _, doubled = copies_per_record(servers, category)
        assert set(counts) == written.keys(category) and set(counts.values()) == {2}
        assert doubled == 0

    for victim in (servers[0], servers[1]):
        old_id = lose_disk(victim, kazoo, zk_path)
        wait_members(kazoo, zk_path, servers)
        status, summary, output = repair(zk_hosts, zk_path, "--copies", "2")
        assert status == 3, output
        assert summary["unreachable_servers"] == [old_id], output
        assert summary["copied_batches"] > 0  # what could be copied was

        assert (
            logserver("forget", old_id, "--yes", "--zk", zk_hosts, "--zk-path", zk_path).returncode
            == 0
        )
        status, summary, output = repair(zk_hosts, zk_path, "--copies", "2")
        assert status == 0, output
        assert summary["complete"] and summary["short_batches"] == 0
        for category in CATEGORIES:
            counts, messages, doubled = copies_per_record(servers, category)
            assert set(counts) == written.keys(category), category
            assert set(counts.values()) == {2}, category
            assert doubled == 0
            assert messages == {k: m for (c, k), m in written.records.items() if c == category}

        again, summary, output = repair(zk_hosts, zk_path, "--copies", "2")
        assert again == 0 and summary["copied_batches"] == 0, output

    # The copies are the records: same receive time and batch index as first stored.
    from tests.readback import read_unique

    for category in CATEGORIES:
        now = {
            r.key: (r.received_ns, r.message)
            for r in read_unique([s.endpoint for s in servers], category)
        }
        assert {k: m for k, (_, m) in now.items()} == before[category]
        assert len({ns for ns, _ in now.values()}) > 1


def test_repair_says_what_it_cannot_do_with_too_few_live_servers(
    logserver_factory, zk_hosts, zk_path
) -> None:
    """Asked for three copies with two servers, repair copies what it can and exits 3 naming
    the short batches; a dry run copies nothing."""
    servers = [logserver_factory() for _ in range(2)]
    write_pairs(servers, ("app",), producers=1, batches=5)
    dry, summary, output = repair(zk_hosts, zk_path, "--copies", "3", "--dry-run")
    assert dry == 3 and summary["copied_batches"] == 0 and summary["short_batches"] == 5, output
    status, summary, output = repair(zk_hosts, zk_path, "--copies", "3")
    assert status == 3 and summary["short_batches"] == 5, output
    assert "no other live server" in output


def test_scribe_records_are_reported_not_copied(logserver_factory, zk_hosts, zk_path) -> None:
    """Records without a batch id (Scribe's Log) are counted per server and left alone."""
    servers = [logserver_factory() for _ in range(2)]
    with connect(Endpoint.parse(servers[0].endpoint)) as client:
        from logwire.idl import log_thrift

        client.Log([log_thrift.LogEntry(category="app", message="scribe line")] * 3)
    status, summary, output = repair(zk_hosts, zk_path, "--copies", "2")
    assert status == 0, output
    assert summary["unidentified_records"] == 3 and summary["copied_batches"] == 0
    assert "without a batch id" in output


def test_repair_killed_midway_and_run_again_stores_every_copy_once(
    logserver_factory, kazoo_factory, zk_hosts, zk_path
) -> None:
    """A repair SIGKILLed while it copies (its target frozen mid-write, so the kill lands
    inside a copy) leaves every batch part whole or absent; the next run copies only what
    is still missing: every record then has two copies and no server holds one twice."""
    kazoo = kazoo_factory(zk_hosts)
    servers = [logserver_factory() for _ in range(2)]
    categories = [f"c{i}" for i in range(4)]
    written = write_pairs(servers, categories, producers=2, batches=60, records=100, size=100)
    old_id = lose_disk(servers[1], kazoo, zk_path)
    target = servers[1]
    wait_members(kazoo, zk_path, servers)
    forgot = logserver("forget", old_id, "--yes", "--zk", zk_hosts, "--zk-path", zk_path)
    assert forgot.returncode == 0, forgot.stderr

    run = subprocess.Popen(
        [sys.executable, "-m", "logserver", "repair", "--zk", zk_hosts, "--zk-path", zk_path],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def stored() -> int:
            with connect(Endpoint.parse(target.endpoint), timeout=5) as client:
                return int(client.Status().records_stored)

        wait_for(lambda: stored() > 0, 120, interval_s=0.005, what="the first copies")
        target.signal(signal.SIGSTOP)
        run.send_signal(signal.SIGKILL)
        run.wait(30)
    finally:
        target.signal(signal.SIGCONT)
        if run.poll() is None:
            run.kill()
            run.wait(30)
    partial = sum(copies_per_record([target], c)[0].total() for c in categories)
    assert 0 < partial < len(written.records), "the kill must land inside the copy"

    status, summary, output = repair(zk_hosts, zk_path, "--copies", "2")
    assert status == 0, output
    assert summary["copied_batches"] > 0
    for category in categories:
        counts, _, doubled = copies_per_record(servers, category)
        assert set(counts) == written.keys(category)
        assert set(counts.values()) == {2}
        assert doubled == 0, f"{category}: a batch part stored twice on one server"
