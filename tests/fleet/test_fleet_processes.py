"""What must hold at fleet scale, with real processes: a ZooKeeper that takes at most 10
connections from this host, real logservers, a real discovery agent, and a host's worth of app
processes reading the agent's file; nothing they log is lost, whatever happens to the agent,
to ZooKeeper or to the file.

What the servers stored is read back over Thrift and deduplicated by (producer, sequence,
index), as a reader does (``tests/readback.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.handlers.threading import KazooTimeoutError

from logclient import FileServers, LogClient, SpoolPolicy
from logserver.tools.launcher import (
    DiscoveryAgentProcess,
    LaunchError,
    LogServerProcess,
    ZooKeeperEnsemble,
    session_count,
    wait_for,
)
from tests.delivery import BATCHING, FAILOVER, Producer, messages, progress, wait_known
from tests.helpers import numbered
from tests.readback import read_unique

from .conftest import (
    MAX_CLIENT_CNXNS,
    AgentFactory,
    Feeder,
    ServersOn,
    document_when,
    write_in_place,
)

pytestmark = [pytest.mark.slow, pytest.mark.process]  # ZooKeeper, servers, agents, workers

ROOT = Path(__file__).resolve().parents[2]
ServerFactory = Callable[..., LogServerProcess]


class Fleet:
    """``tests/fleet/workers.py`` in a subprocess: one parent, ``workers`` forked app processes."""

    def __init__(self, tmp_path: Path, name: str, **config: Any) -> None:
        self.out = tmp_path / f"{name}-out"
        self.out.mkdir()
        self.stop_file = tmp_path / f"{name}-stop"
        self.config = {
            "category": "fleet",
            "prefix": name,
            "mode": "count",
            "records": 0,
            "interval_s": 0.005,
            "route": "all",
            "out_dir": str(self.out),
            "spool_dir": str(tmp_path / f"{name}-spool"),
            "stop_file": str(self.stop_file),
            **config,
        }
        env = {k: v for k, v in os.environ.items() if k != "LOGCLIENT_SERVERS_FILE"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self.stderr = tmp_path / f"{name}.stderr"
        with open(self.stderr, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.fleet.workers", json.dumps(self.config)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,
            )

    def wait_started(self, timeout: float = 60) -> None:
        """Every worker had its first record acknowledged."""
        n = int(self.config["workers"])
        wait_for(
            lambda: len(list(self.out.glob("started-*"))) == n or self.process.poll() is not None,
            timeout,
            what=f"{n} workers to deliver their first record",
        )
        assert self.process.poll() is None or self.process.returncode == 0, self.tail()

    def finish(self, timeout: float = 180) -> list[dict[str, Any]]:
        """Stop the workers (in ``until`` mode), wait for them; every worker's report."""
        self.stop_file.touch()
        try:
            out, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        assert self.process.returncode == 0, self.tail()
        summary = json.loads(out.decode().splitlines()[-1])
        assert summary["exit_codes"] == [0] * int(self.config["workers"]), (summary, self.tail())
        assert summary["kazoo_in_parent"] is False
        return [json.loads(p.read_text()) for p in sorted(self.out.glob("worker-*.json"))]

    def expected(self, reports: list[dict[str, Any]]) -> list[str]:
        """Every message the workers logged."""
        prefix = str(self.config["prefix"])
        return sorted(
            m for r in reports for m in numbered(f"{prefix}-{r['index']:03d}", r["logged"])
        )

    def tail(self) -> str:
        return self.stderr.read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 9)
            self.process.wait(10)


def logging_fleet(
    tmp_path: Path,
    fleets: list[Fleet],
    name: str,
    agent: DiscoveryAgentProcess,
    zk_hosts: str,
    zk_path: str,
) -> Fleet:
    """Four worker processes logging steadily through the agent's file, each with a first
    record delivered; they stop at :meth:`Fleet.finish`."""
    fleet = Fleet(
        tmp_path,
        name,
        file=str(agent.file),
        zk_hosts=zk_hosts,
        zk_path=zk_path,
        workers=4,
        mode="until",
    )
    fleets.append(fleet)
    fleet.wait_started()
    return fleet


@pytest.fixture
def fleets() -> Iterator[list[Fleet]]:
    made: list[Fleet] = []
    yield made
    for fleet in made:
        fleet.kill()


def stored(endpoints: list[str], category: str = "fleet") -> list[str]:
    """Every record on the servers, once per identity, sorted by message."""
    return sorted(r.message.decode() for r in read_unique(endpoints, category))


class SessionSampler:
    """Counts ZooKeeper's sessions every 0.1 s while a fleet runs; the highest count seen."""

    def __init__(self, hosts: str) -> None:
        self.hosts = hosts
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="session-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.samples.append(session_count(self.hosts))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(10)
        return max(self.samples)


def test_fifty_worker_processes_log_through_the_agent_file_with_nothing_lost(
    limited_zookeeper: ZooKeeperEnsemble,
    servers_on: ServersOn,
    tmp_path: Path,
    agent_factory: AgentFactory,
    fleets: list[Fleet],
) -> None:
    """With ZooKeeper taking at most 10 connections from this host, 50 forked worker processes
    all deliver every record: a third with ``LogClient(servers=FileServers)`` (the source shared
    from the parent), a third with ``LogClient(zk_hosts)`` moved to the file by
    ``LOGCLIENT_SERVERS_FILE``, a third using the parent's client, made before the fork (as
    gunicorn ``--preload`` does). The host holds 4 sessions (3 servers, 1 agent), not 54, and no
    worker so much as imports kazoo."""
    hosts = limited_zookeeper.hosts
    servers = servers_on(hosts, 3, session_timeout_s=4.0)
    agent = agent_factory(hosts)
    document_when(agent, lambda d: len(d.servers) == 3, "the agent to list 3")
    sampler = SessionSampler(hosts)
    fleet = Fleet(
        tmp_path,
        "fifty",
        file=str(agent.file),
        zk_hosts=hosts,
        zk_path="/logservers",
        workers=50,
        records=200,
    )
    fleets.append(fleet)
    try:
        reports = fleet.finish()
    finally:
        most_sessions = sampler.stop()
    assert most_sessions == 4 < MAX_CLIENT_CNXNS
    assert len(reports) == 50
    assert {r["route"] for r in reports} == {"source", "env", "inherited"}
    assert [r for r in reports if r["kazoo_loaded"] or r["dropped"]] == []
    assert stored([s.endpoint for s in servers]) == fleet.expected(reports)
    assert len(fleet.expected(reports)) == 50 * 200


def test_the_connection_limit_is_real(limited_zookeeper: ZooKeeperEnsemble) -> None:
    """The control for the test above: on this ZooKeeper an 11th connection from this host is
    refused, so 50 processes with a session each could not all discover their servers."""
    clients: list[KazooClient] = []
    try:
        for _ in range(MAX_CLIENT_CNXNS - 1):
            client = KazooClient(hosts=limited_zookeeper.hosts, timeout=10.0)
            client.start(timeout=15)
            clients.append(client)
        assert session_count(limited_zookeeper.hosts) == MAX_CLIENT_CNXNS - 1  # 'cons' is the 10th
        last = KazooClient(hosts=limited_zookeeper.hosts, timeout=10.0)
        last.start(timeout=15)
        clients.append(last)
        one_too_many = KazooClient(hosts=limited_zookeeper.hosts, timeout=10.0)
        try:
            with pytest.raises(KazooTimeoutError):
                one_too_many.start(timeout=3)
        finally:
            one_too_many.stop()
            one_too_many.close()
        with pytest.raises(LaunchError, match="did not answer"):
            session_count(limited_zookeeper.hosts)  # even 'cons' is one connection too many
    finally:
        for client in clients:
            client.stop()
            client.close()


def test_a_server_that_joins_or_dies_is_seen_through_the_file(
    zk_hosts: str,
    zk_path: str,
    tmp_path: Path,
    logserver_factory: ServerFactory,
    agent_factory: AgentFactory,
    clients: list[LogClient],
) -> None:
    """A client reading the agent's file gets a new server into its pool, and loses a SIGKILLed
    one once its registration expires; meanwhile it fails over by the socket as always, and
    every record logged is stored once."""
    first = logserver_factory()
    agent = agent_factory(zk_hosts, zk_path=zk_path)
    source = FileServers(agent.file, zk_path=zk_path)
    client = LogClient(
        servers=source,
        failover=FAILOVER,
        batching=BATCHING,
        spool=SpoolPolicy(directory=tmp_path / "spool"),
    )
    clients.append(client)
    try:
        wait_known(client, 1)
        with Producer(client, "joins") as producer:
            progress(client, 500)
            second = logserver_factory()
            wait_for(
                lambda: second.endpoint in client.stats().known_servers,
                20,
                what="the join in the pool",
            )
            progress(client, 500)
            second.kill()  # its node lingers for the session timeout (2 s)
            wait_for(
                lambda: second.endpoint not in client.stats().known_servers,
                30,
                what="the death in the pool",
            )
            progress(client, 500)
            logged = producer.stop()
        assert client.flush(30)
        second.start()  # what it acknowledged before it died is on its disk: read it too
        assert messages([first.endpoint, second.endpoint]) == logged
    finally:
        client.close(10)
        source.close()


def test_the_agent_killed_and_restarted_costs_the_apps_nothing(
    zk_hosts: str,
    zk_path: str,
    tmp_path: Path,
    logserver_factory: ServerFactory,
    agent_factory: AgentFactory,
    fleets: list[Fleet],
) -> None:
    """SIGKILL the agent while four worker processes log: they keep the servers they had and
    lose nothing; a server that registers meanwhile reaches them once an agent runs again."""
    first = logserver_factory()
    agent = agent_factory(zk_hosts, zk_path=zk_path)
    fleet = logging_fleet(tmp_path, fleets, "agentkill", agent, zk_hosts, zk_path)
    agent.kill()
    second = logserver_factory()
    left = agent.document()  # what the killed agent left: the apps' list meanwhile
    assert left is not None and {str(e) for e in left.servers} == {first.endpoint}
    agent.start()
    document_when(agent, lambda d: len(d.servers) == 2, "the new agent to list both")
    reports = fleet.finish()
    assert all(second.endpoint in r["known_servers"] for r in reports)
    assert stored([first.endpoint, second.endpoint]) == fleet.expected(reports)


def test_a_zookeeper_outage_under_the_agent_costs_the_apps_nothing(
    own_zookeeper: ZooKeeperEnsemble,
    servers_on: ServersOn,
    tmp_path: Path,
    agent_factory: AgentFactory,
    fleets: list[Fleet],
) -> None:
    """ZooKeeper dies while four worker processes log: the agent marks its list stale and keeps
    it, the workers keep sending to the servers they know; ZooKeeper back, the list is current
    again. Nothing is lost."""
    hosts = own_zookeeper.hosts
    servers = servers_on(hosts, 2, session_timeout_s=10.0)
    agent = agent_factory(hosts, session_timeout_s=10.0)
    document_when(agent, lambda d: len(d.servers) == 2, "the agent to list 2")
    fleet = logging_fleet(tmp_path, fleets, "outage", agent, hosts, "/logservers")
    own_zookeeper.nodes[0].kill()
    stale = document_when(agent, lambda d: d.state == "stale", "the list to be stale")
    assert len(stale.servers) == 2
    own_zookeeper.nodes[0].start()
    own_zookeeper.wait_ready()
    document_when(agent, lambda d: d.state == "current", "the list to be current", 30)
    reports = fleet.finish()
    assert all(len(r["known_servers"]) == 2 for r in reports)
    assert stored([s.endpoint for s in servers]) == fleet.expected(reports)


def test_a_torn_or_garbage_file_leaves_the_apps_their_last_good_list(
    zk_hosts: str,
    zk_path: str,
    tmp_path: Path,
    logserver_factory: ServerFactory,
    agent_factory: AgentFactory,
    fleets: list[Fleet],
) -> None:
    """With the agent gone, the file is written in place: half a file, then garbage, then
    nothing. Four worker processes keep their servers, count the bad readings, and lose nothing;
    an agent started again puts a good file back."""
    server = logserver_factory()
    agent = agent_factory(zk_hosts, zk_path=zk_path)
    fleet = logging_fleet(tmp_path, fleets, "torn", agent, zk_hosts, zk_path)
    agent.kill()
    good = agent.file.read_bytes()
    probe = FileServers(agent.file, poll_interval_s=0.05)
    probe.start()
    try:
        for bad in (good[: len(good) // 2], b"\x00garbage\x00", b""):
            before = probe.stats().bad_reads
            write_in_place(agent.file, bad)
            wait_for(
                lambda b=before: probe.stats().bad_reads > b, 10, what="the bad file to be read"
            )
            assert {str(e) for e in probe.servers()} == {server.endpoint}
        agent.file.unlink()
        agent.start()
        wait_for(lambda: probe.stats().problem is None, 20, what="a good file again")
    finally:
        probe.close()
    reports = fleet.finish()
    assert all(r["known_servers"] == [server.endpoint] for r in reports)
    assert any(r["source"]["bad_reads"] > 0 for r in reports)
    assert stored([server.endpoint]) == fleet.expected(reports)


def test_an_app_moved_to_the_file_by_the_environment_needs_no_zookeeper(
    zk_hosts: str,
    zk_path: str,
    tmp_path: Path,
    logserver_factory: ServerFactory,
    feeder: Feeder,
) -> None:
    """An app written for ZooKeeper (``LogClient(zk_hosts)``, ``LogServerHandler(zk_hosts=...)``)
    run with LOGCLIENT_SERVERS_FILE reads the file: it delivers with a ZooKeeper address that
    answers nothing, never imports kazoo, and says so once in its log, however many clients."""
    server = logserver_factory()
    feeder.write([server.endpoint], zk_path=zk_path)
    script = f"""
import logging, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
from logclient import LogClient, LogServerHandler, SpoolPolicy
dead = "127.0.0.1:1"
handler = LogServerHandler(zk_hosts=dead, zk_path={zk_path!r}, category="envapp",
                           spool=SpoolPolicy(directory={str(tmp_path / "spool-h")!r}))
client = LogClient(dead, {zk_path!r}, spool=SpoolPolicy(directory={str(tmp_path / "spool-c")!r}))
for i in range(100):
    client.log("envapp", f"env-{{i:06d}}")
ok = client.flush(30)
client.close()
handler.close()
print("FLUSHED", ok, "kazoo" in sys.modules)
"""
    env = {**os.environ, "LOGCLIENT_SERVERS_FILE": str(feeder.path)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=90, env=env
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "FLUSHED True False"
    announcements = [ln for ln in run.stderr.splitlines() if "LOGCLIENT_SERVERS_FILE=" in ln]
    assert len(announcements) == 1 and str(feeder.path) in announcements[0]
    assert stored([server.endpoint], "envapp") == numbered("env", 100)
