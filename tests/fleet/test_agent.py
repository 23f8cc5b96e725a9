"""What must hold for ``logserver discovery-agent``: one ZooKeeper session per host, the live
servers in a file that is always whole, current while ZooKeeper answers, kept and marked stale
while it does not. Real agent processes, real ZooKeeper; members are ephemeral nodes made the
way a server makes them."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from logclient.discovery import node_order
from logserver.tools.launcher import DiscoveryAgentProcess, ZooKeeperEnsemble, free_port, wait_for
from logwire.serverset import Endpoint, Member
from logwire.serversfile import ListedServer, ServersFile, parse

from .conftest import AgentFactory, document_when

pytestmark = pytest.mark.process  # real agent processes

KazooFactory = Callable[..., KazooClient]


def member(port: int, status: str = "ALIVE") -> Member:
    return Member(endpoint=Endpoint("127.0.0.1", port), status=status, process_id=f"p{port}")


def register(client: KazooClient, path: str, m: Member) -> str:
    return str(
        client.create(f"{path}/member_", m.to_json(), ephemeral=True, sequence=True, makepath=True)
    )


def listed(agent: DiscoveryAgentProcess, *ports: int, state: str = "current") -> ServersFile:
    """Wait until the agent's file lists exactly ``ports`` in ``state``; the document."""
    wanted = {Endpoint("127.0.0.1", p) for p in ports}
    return document_when(
        agent,
        lambda d: d.servers == wanted and d.state == state,
        f"the file to list {sorted(ports)} ({state})",
    )


def test_the_file_lists_the_alive_members_and_follows_them(
    zk_hosts: str, zk_path: str, kazoo_factory: KazooFactory, agent_factory: AgentFactory
) -> None:
    """Joins and leaves reach the file; a ghost (two nodes, one endpoint) counts once, the newest
    node naming the server with its registration order; members not ALIVE and malformed nodes are
    left out; each write has the next serial, the agent's pid,
    the source, a readable mode, and leaves no temporary file behind."""
    zk = kazoo_factory(zk_hosts)
    first = register(zk, zk_path, member(7001))
    newest = register(zk, zk_path, member(7001))  # first is now a ghost: a quick restart
    register(zk, zk_path, member(7002, status="DRAINING"))
    zk.create(f"{zk_path}/member_", b"not json", ephemeral=True, sequence=True)
    agent = agent_factory(zk_hosts, zk_path=zk_path)
    doc = listed(agent, 7001)
    assert (doc.agent.pid, doc.zk_path, doc.zk_hosts, doc.stale_since) == (
        agent.pid,
        zk_path,
        zk_hosts,
        None,
    )
    assert stat.S_IMODE(agent.file.stat().st_mode) == 0o644
    name = newest.rsplit("/", 1)[1]
    assert doc.listed() == (ListedServer(Endpoint("127.0.0.1", 7001), name, node_order(name)),)

    register(zk, zk_path, member(7003))
    joined = listed(agent, 7001, 7003)
    assert joined.serial == doc.serial + 1 and joined.changed_at >= doc.changed_at
    zk.delete(first)
    assert listed(agent, 7001, 7003).serial == joined.serial  # the ghost still registers 7001
    for child in zk.get_children(zk_path):
        data, _ = zk.get(f"{zk_path}/{child}")
        if b'"port": 7001' in data:
            zk.delete(f"{zk_path}/{child}")
    listed(agent, 7003)
    leftovers = [p.name for p in agent.file.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_the_heartbeat_moves_the_mtime_without_rewriting(
    zk_hosts: str, zk_path: str, kazoo_factory: KazooFactory, agent_factory: AgentFactory
) -> None:
    """While current, the agent refreshes the file's mtime every heartbeat: the same file (inode)
    and content, so readers watching for writes are not woken, yet its age stays small."""
    register(kazoo_factory(zk_hosts), zk_path, member(7101))
    agent = agent_factory(zk_hosts, zk_path=zk_path, heartbeat_s=0.3)
    doc = listed(agent, 7101)
    before = agent.file.stat()
    wait_for(
        lambda: agent.file.stat().st_mtime_ns >= before.st_mtime_ns + 500_000_000,
        10,
        what="two heartbeats",
    )
    after = agent.file.stat()
    assert (after.st_ino, after.st_size) == (before.st_ino, before.st_size)
    assert agent.document() == doc
    assert doc.age(time.time(), after.st_mtime) < 5


def test_a_second_agent_for_the_same_file_is_refused(
    zk_hosts: str, zk_path: str, agent_factory: AgentFactory
) -> None:
    """Two agents must never overwrite each other: the second exits 1 at once, naming the pid
    that holds the file."""
    agent = agent_factory(zk_hosts, zk_path=zk_path)
    second = subprocess.run(
        [*replace(agent, process=None).command()],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 1
    assert f"another discovery agent (pid {agent.pid}) writes {agent.file}" in second.stderr
    assert agent.alive() and agent.document() is not None


def test_sigterm_marks_the_list_stopped_and_a_new_agent_takes_over(
    zk_hosts: str, zk_path: str, kazoo_factory: KazooFactory, agent_factory: AgentFactory
) -> None:
    """SIGTERM: exit 0 with the list kept, marked ``stopped`` (readers keep using it). The next
    agent removes temporary files a killed agent left, and writes the list as its own."""
    register(kazoo_factory(zk_hosts), zk_path, member(7201))
    agent = agent_factory(zk_hosts, zk_path=zk_path)
    current = listed(agent, 7201)
    assert agent.terminate() == 0
    stopped = agent.document()
    assert stopped is not None and stopped.state == "stopped"
    assert (stopped.servers, stopped.serial) == (current.servers, current.serial + 1)
    assert stopped.stale_since is not None

    leftover = agent.file.with_name(f".{agent.file.name}.99999.tmp")
    leftover.write_bytes(b'{"torn')
    agent.start()
    again = listed(agent, 7201)
    assert again.agent.pid == agent.pid != stopped.agent.pid
    assert again.changed_at == stopped.changed_at  # the list did not change meanwhile
    assert not leftover.exists()


def test_zookeeper_outage_keeps_the_list_marked_stale(
    own_zookeeper: ZooKeeperEnsemble, kazoo_factory: KazooFactory, agent_factory: AgentFactory
) -> None:
    """ZooKeeper down: the file keeps its servers, says ``stale`` (since when), and its
    heartbeat stops, so its age grows; ZooKeeper back: ``current`` again, same servers."""
    hosts = own_zookeeper.hosts
    register(kazoo_factory(hosts, timeout=30.0), "/logservers", member(7301))
    agent = agent_factory(hosts, heartbeat_s=0.3, session_timeout_s=10.0)
    current = listed(agent, 7301)
    own_zookeeper.nodes[0].kill()
    stale = listed(agent, 7301, state="stale")
    assert stale.stale_since is not None and stale.stale_since >= current.written_at
    mtime = agent.file.stat().st_mtime_ns
    own_zookeeper.nodes[0].start()
    own_zookeeper.wait_ready()
    back = listed(agent, 7301)
    assert back.stale_since is None and back.changed_at == current.changed_at
    assert back.serial == stale.serial + 1
    assert mtime <= agent.file.stat().st_mtime_ns


def test_an_agent_that_cannot_reach_zookeeper_leaves_the_previous_file_alone(
    zk_hosts: str, zk_path: str, kazoo_factory: KazooFactory, agent_factory: AgentFactory
) -> None:
    """A list left by a previous agent is the best there is until ZooKeeper answers: a new agent
    that cannot reach ZooKeeper neither empties nor rewrites it."""
    register(kazoo_factory(zk_hosts), zk_path, member(7401))
    agent = agent_factory(zk_hosts, zk_path=zk_path)
    listed(agent, 7401)
    agent.kill()
    before = agent.file.read_bytes()
    lost = agent_factory(f"127.0.0.1:{free_port()}", zk_path=zk_path, wait=False)
    wait_for(lambda: "agent_started" in lost.log_tail(), 20, what="the second agent to start")
    deadline = time.monotonic() + 1.0  # many check intervals (0.1 s)
    while time.monotonic() < deadline:
        assert agent.file.read_bytes() == before
        time.sleep(0.05)
    assert lost.alive()


def test_a_file_replaced_by_someone_else_is_written_again(
    zk_hosts: str, zk_path: str, kazoo_factory: KazooFactory, agent_factory: AgentFactory
) -> None:
    """The agent vouches only for what it wrote: a file replaced behind its back (another inode)
    or deleted is written again at the next heartbeat, not refreshed."""
    register(kazoo_factory(zk_hosts), zk_path, member(7501))
    agent = agent_factory(zk_hosts, zk_path=zk_path, heartbeat_s=0.3)
    doc = listed(agent, 7501)
    tmp = agent.file.with_name("someone-else")
    tmp.write_bytes(b"garbage")
    os.replace(tmp, agent.file)
    rewritten = wait_for(agent.document, 10, what="the file to be written again")
    assert rewritten.serial == doc.serial + 1 and rewritten.servers == doc.servers
    agent.file.unlink()
    assert (
        wait_for(agent.document, 10, what="the file to be written again").serial == doc.serial + 2
    )


def test_a_file_that_cannot_be_created_fails_the_command(tmp_path: Path, zk_hosts: str) -> None:
    """A directory that cannot be made is an error at start (exit 1, saying which), not a daemon
    that runs and writes nothing; a missing --zk is a usage error."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "logserver",
            "discovery-agent",
            "--zk",
            zk_hosts,
            "--file",
            str(blocker / "servers.json"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1 and str(blocker) in run.stderr
    env = {k: v for k, v in os.environ.items() if k != "LOGSERVER_ZK"}
    usage = subprocess.run(
        [sys.executable, "-m", "logserver", "discovery-agent"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert usage.returncode == 2 and "--zk" in usage.stderr


def test_the_agent_file_parses_as_the_documented_example() -> None:
    """docs/servers-file.md's example is a file readers accept."""
    doc = Path(__file__).resolve().parents[2] / "docs" / "servers-file.md"
    text = doc.read_text()
    example = text.split("```json\n", 1)[1].split("```", 1)[0]
    assert parse(example.encode()).version == 1
