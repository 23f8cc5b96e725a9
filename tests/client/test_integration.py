"""What must hold end to end: LogClient against REAL logserver processes and REAL ZooKeeper.

Servers come from ``logserver_factory`` (``python -m logserver serve``,
registered under this test's ``zk_path``) and are killed, stopped and restarted
with real signals. What the servers stored is read back over Thrift
(``tests/readback.py``) and deduplicated by (producer, sequence, index), as a reader
does: every message logged must be there exactly once.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import structlog
from kazoo.client import KazooClient

from logclient import (
    HedgePolicy,
    LogClient,
    LogServerHandler,
    LogServerLoggerFactory,
    SpoolPolicy,
    ZooKeeperServers,
)
from logserver.tools.launcher import LogServerProcess, ZooKeeperEnsemble, wait_for
from logwire.serverset import Endpoint, Member
from tests.client.app_process import run_app
from tests.delivery import (
    BATCHING,
    FAILOVER,
    Producer,
    log_all,
    messages,
    progress,
    wait_known,
    zk_client,
)
from tests.helpers import numbered
from tests.readback import copies, read_server

pytestmark = pytest.mark.slow

ServerFactory = Callable[..., LogServerProcess]


# ------------------------------------------------------------------ SIGKILL


def test_sigkill_of_the_current_server_loses_and_duplicates_nothing(
    logserver_factory: ServerFactory,
    zk_hosts: str,
    zk_path: str,
    tmp_path: Path,
    clients: list[LogClient],
) -> None:
    """While the client logs continuously, the server it is sending to is SIGKILLed four
    times (and restarted on the same port): after dedup every message is there exactly once."""
    servers = [logserver_factory() for _ in range(3)]
    by_endpoint = {s.endpoint: s for s in servers}
    client = zk_client(clients, zk_hosts, zk_path, tmp_path)
    wait_known(client, 3)
    with Producer(client, "kill") as producer:
        for _ in range(4):
            progress(client, 2000)
            victim = by_endpoint[wait_for(lambda: client.stats().current_server, 10.0)]
            victim.kill()
            progress(client, 2000)
            victim.restart()
        progress(client, 2000)
        expected = producer.stop()
    assert client.flush(60), client.stats()
    got = messages(list(by_endpoint))
    assert len(got) == len(expected)
    assert got == expected
    stats = client.stats()
    assert stats.failovers >= 1 and stats.dropped == 0


# ------------------------------------------------------------------ SIGSTOP


def test_sigstop_costs_one_rpc_timeout_and_loses_nothing(
    logserver_factory: ServerFactory,
    zk_hosts: str,
    zk_path: str,
    tmp_path: Path,
    clients: list[LogClient],
) -> None:
    """Without hedging (HedgePolicy.disabled(); with it, see tests/faults/test_copies.py):
    the current server is frozen (SIGSTOP): the client moves on after its RPC timeout and
    keeps delivering; after SIGCONT the frozen server may store the batch it held, and dedup
    still leaves every message exactly once."""
    servers = [logserver_factory() for _ in range(2)]
    by_endpoint = {s.endpoint: s for s in servers}
    client = zk_client(
        clients, zk_hosts, zk_path, tmp_path, choice="sticky", hedging=HedgePolicy.disabled()
    )
    wait_known(client, 2)
    with Producer(client, "stop") as producer:
        progress(client, 2000)
        frozen = by_endpoint[wait_for(lambda: client.stats().current_server, 10.0)]
        frozen.signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            progress(client, 3000, timeout=20)
            moved_after = time.monotonic() - started
            assert client.stats().current_server != frozen.endpoint
        finally:
            frozen.signal(signal.SIGCONT)
        progress(client, 2000)
        expected = producer.stop()
    assert client.flush(60), client.stats()
    assert messages(list(by_endpoint)) == expected
    assert moved_after < 10
    assert client.stats().failovers >= 1


# --------------------------------------------------------------- all down


def test_all_servers_down_then_back_delivers_everything(
    logserver_factory: ServerFactory,
    zk_hosts: str,
    zk_path: str,
    tmp_path: Path,
    clients: list[LogClient],
) -> None:
    """Every server SIGKILLed: records logged meanwhile wait in memory, then in the spool
    (spill_after_s); when the servers come back all of it arrives, once, in order."""
    servers = [logserver_factory() for _ in range(2)]
    endpoints = [s.endpoint for s in servers]
    client = zk_client(
        clients,
        zk_hosts,
        zk_path,
        tmp_path,
        spool=SpoolPolicy(directory=tmp_path / "spool", spill_after_s=0.5),
    )
    wait_known(client, 2)
    before = log_all(client, numbered("before", 1000))
    for server in servers:
        server.kill()
    during = log_all(client, numbered("during", 3000), flush=None)
    wait_for(
        lambda: client.stats().spooled == 3000 and client.stats().queued == 0,
        30,
        what="everything logged while down to be in the spool",
    )
    assert not client.flush(0.5)
    for server in servers:
        server.restart()
    assert client.flush(60), client.stats()
    assert messages(endpoints) == before + during
    assert client.stats().spooled == 0


def test_an_app_killed_while_servers_were_down_delivers_its_spool_on_restart(
    logserver_factory: ServerFactory, zk_hosts: str, zk_path: str, tmp_path: Path
) -> None:
    """An app process logs while no server is reachable until its records are in the spool
    (spill_after_s elapsed: on disk, fsync'd; that is what it must have done), then is
    SIGKILLed. Restarted with the same spool directory once a server is back, it delivers
    the old records first, then its new ones: each exactly once, old before new."""
    server = logserver_factory()
    server.kill()
    spool = tmp_path / "app-spool"
    app = run_app(zk_hosts, zk_path, spool, "old", 1000, "spool")
    try:
        assert app.stdout is not None
        line = app.stdout.readline()
        assert line.strip() == "SPOOLED", line + (app.stderr.read() if app.poll() else "")
    finally:
        app.send_signal(signal.SIGKILL)
        app.wait(10)
    server.restart()
    again = run_app(zk_hosts, zk_path, spool, "new", 500, "deliver")
    out, err = again.communicate(timeout=90)
    assert again.returncode == 0, out + err
    assert "FLUSHED True" in out
    stored = read_server(server.endpoint, "app")
    assert [r.message.decode() for r in stored] == numbered("old", 1000) + numbered("new", 500)


# -------------------------------------------------------------- ZooKeeper


def test_logging_goes_on_when_zookeeper_is_gone(
    logserver_factory: ServerFactory,
    own_zookeeper: ZooKeeperEnsemble,
    zk_path: str,
    tmp_path: Path,
    clients: list[LogClient],
) -> None:
    """ZooKeeper stopped after the client started: the client keeps its known servers and
    keeps delivering; a server SIGKILLed meanwhile is detected by the socket (ZooKeeper cannot
    say), and the rest goes to the other server."""
    servers = [logserver_factory(zk=own_zookeeper.hosts) for _ in range(2)]
    client = zk_client(clients, own_zookeeper.hosts, zk_path, tmp_path)
    wait_known(client, 2)
    own_zookeeper.stop()
    first = log_all(client, numbered("nozk", 2000))
    dead, alive = servers
    dead.kill()
    second = log_all(client, numbered("nozk", 2000, start=2000))
    assert len(client.stats().known_servers) == 2

    from logserver.reader import read_data_dir

    seen = {r.key: r.message.decode() for r in read_data_dir(dead.data_dir, "app")}
    for r in read_server(alive.endpoint, "app"):
        seen.setdefault(r.key, r.message.decode())
    assert [seen[k] for k in sorted(seen)] == first + second  # type: ignore[index]


def test_a_server_joining_later_gets_traffic_and_a_ghost_node_counts_once(
    logserver_factory: ServerFactory,
    zk_hosts: str,
    zk_path: str,
    tmp_path: Path,
    clients: list[LogClient],
) -> None:
    """A second node with the same endpoint (a ghost: a restarted server's old node) does not
    make one server two; a server started after the client gets batches (random choice)."""
    first = logserver_factory()
    zk = KazooClient(hosts=zk_hosts)
    zk.start(timeout=15)
    source = ZooKeeperServers(zk_hosts, zk_path)
    try:
        # Registered before the ghost appears: a server's first registration deletes a
        # node with its endpoint (the leftover of its previous incarnation).
        wait_for(lambda: zk.exists(zk_path) and zk.get_children(zk_path), 10.0, what="registered")
        zk.create(
            f"{zk_path}/member_",
            Member(endpoint=Endpoint.parse(first.endpoint), process_id="ghost").to_json(),
            ephemeral=True,
            sequence=True,
            makepath=True,
        )
        client = LogClient(
            servers=source,
            failover=FAILOVER,
            batching=BATCHING,
            spool=SpoolPolicy(directory=tmp_path / "ghost-spool"),
        )
        clients.append(client)
        wait_for(lambda: source.stats().nodes == 2, 10.0, what="both nodes seen")
        assert client.stats().known_servers == (first.endpoint,)

        before = log_all(client, numbered("early", 1000))
        second = logserver_factory()
        wait_known(client, 2)
        later = numbered("late", 10_000)
        for i in range(0, len(later), 200):
            for m in later[i : i + 200]:
                client.log("app", m)
            assert client.flush(30)
        endpoints = [first.endpoint, second.endpoint]
        assert messages(endpoints) == before + later
        assert len(read_server(second.endpoint, "app")) >= 1000
        assert copies(endpoints, "app") == len(before) + len(later)
        client.close()
    finally:
        source.close()
        zk.stop()
        zk.close()


# ---------------------------------------------------------- integrations


def test_logging_handler_and_structlog_deliver_level_logger_and_fields(
    logserver_factory: ServerFactory,
    zk_hosts: str,
    zk_path: str,
    tmp_path: Path,
    clients: list[LogClient],
) -> None:
    """Through a real server: a stdlib record and a structlog event arrive as JSON with their
    level, logger name and fields."""
    server = logserver_factory()
    client = zk_client(clients, zk_hosts, zk_path, tmp_path)
    wait_known(client, 1)

    logger = logging.getLogger("tests.client.integration")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = LogServerHandler(client, category="stdlib")
    logger.addHandler(handler)
    try:
        logger.warning("disk %s%% full", 91, extra={"volume": "/data"})
    finally:
        logger.removeHandler(handler)

    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=LogServerLoggerFactory(client, category="structured"),
        cache_logger_on_first_use=False,
    )
    try:
        structlog.get_logger("payments").bind(order=17).error("declined", code="E51")
    finally:
        structlog.reset_defaults()
    assert client.flush(30)

    (record,) = [json.loads(r.message) for r in read_server(server.endpoint, "stdlib")]
    assert (record["level"], record["logger"], record["message"], record["volume"]) == (
        "WARNING",
        "tests.client.integration",
        "disk 91% full",
        "/data",
    )
    (event,) = [json.loads(r.message) for r in read_server(server.endpoint, "structured")]
    assert (event["level"], event["logger"], event["event"], event["order"], event["code"]) == (
        "error",
        "payments",
        "declined",
        17,
        "E51",
    )
