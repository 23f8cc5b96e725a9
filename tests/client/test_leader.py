"""ChoicePolicy("leader") with real processes: ZooKeeper, three ``logserver serve`` processes
registered one after the other, several clients (on ZooKeeper, or on the servers file of a
real ``logserver discovery-agent``), the leader SIGKILLed and restarted."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from logclient import FileServers, LogClient
from logserver.tools.launcher import DiscoveryAgentProcess, LogServerProcess, wait_for
from tests.conftest import ServerFactory
from tests.delivery import FAILOVER, Producer, messages, progress, sized_client, wait_known
from tests.helpers import number_of
from tests.readback import read_server

# rpc_timeout_s well above a loaded machine's slowest answer: a client that gave up on a
# slow (not dead) leader would send to the next server, and this test is about the choice.
# A long down backoff, not the tests' 0.5 s: a restarted server listens before it
# registers anew, and until its new node replaces the old one (its ghost, with the lowest
# number) a client whose backoff for it has run out would see it back as the leader.
PATIENT = replace(FAILOVER, rpc_timeout_s=5.0, down_backoff_s=10.0, max_down_backoff_s=20.0)


def _registered_in_order(
    logserver_factory: ServerFactory, zk: KazooClient, zk_path: str, count: int
) -> list[LogServerProcess]:
    """Start ``count`` servers, each once the previous one is registered (so their member
    nodes' numbers follow the list)."""
    servers = []
    for n in range(count):
        servers.append(logserver_factory())
        wait_for(
            lambda n=n: zk.exists(zk_path) and len(zk.get_children(zk_path)) == n + 1,
            30,
            what=f"server {n + 1} registered",
        )
    return servers


def _all_on(clients: list[LogClient], server: LogServerProcess) -> bool:
    return all(c.stats().current_server == server.endpoint for c in clients)


Discovery = Callable[[], dict[str, object]]


@pytest.fixture(params=["zookeeper", "agent-file"])
def discovery(
    request: pytest.FixtureRequest, zk_hosts: str, zk_path: str, tmp_path: Path
) -> Iterator[Discovery]:
    """What a client is given to find the servers: ZooKeeper, or the servers file a real
    discovery agent keeps (its member nodes and order come through the file)."""
    if request.param == "zookeeper":
        yield lambda: {"zk_hosts": zk_hosts, "zk_path": zk_path}
        return
    agent = DiscoveryAgentProcess(
        zk_hosts=zk_hosts, zk_path=zk_path, file=tmp_path / "agent" / "servers.json"
    ).start()
    sources: list[FileServers] = []

    def file_source() -> dict[str, object]:
        sources.append(FileServers(agent.file, zk_path=zk_path, poll_interval_s=0.05))
        return {"servers": sources[-1]}

    try:
        yield file_source
    finally:
        for source in sources:
            source.close(5)
        agent.stop()


def test_every_client_follows_the_leader_and_a_restarted_leader_does_not_take_it_back(
    logserver_factory: ServerFactory,
    kazoo_factory: Callable[..., KazooClient],
    discovery: Discovery,
    zk_hosts: str,
    zk_path: str,
    clients: list[LogClient],
    tmp_path: Path,
) -> None:
    """Three servers registered in turn, three clients with choice="leader" logging steadily:
    all send to the first server registered (the others get nothing); once it is SIGKILLed
    all move to the second; the first restarted on its port registers anew, with a higher
    number, and gets nothing more. Read back from all three servers: every line logged is
    stored, once."""
    zk = kazoo_factory(zk_hosts)
    first, second, third = _registered_in_order(logserver_factory, zk, zk_path, 3)
    group = [
        sized_client(clients, tmp_path, choice="leader", failover=PATIENT, **discovery())
        for _ in range(3)
    ]
    for client in group:
        wait_known(client, 3)
    producers = [Producer(c, f"c{n}", per_second=2000) for n, c in enumerate(group)]
    for producer in producers:
        producer.__enter__()
    try:
        for client in group:
            progress(client, 500)
        assert _all_on(group, first), [c.stats() for c in group]
        for client in group:
            assert client.flush(30)
        assert read_server(second.endpoint, "app") == []
        assert read_server(third.endpoint, "app") == []

        first.kill()
        logged_at_kill = [p.count for p in producers]
        for client in group:
            progress(client, 500)
        wait_for(lambda: _all_on(group, second), 30, what="every client on the second server")

        first.start()
        for client in group:
            # The pool (private) says which registration stands for each endpoint.
            wait_for(
                lambda c=client: any(
                    str(m.endpoint) == first.endpoint and (m.order or 0) >= 3
                    for m in c._instance.pool.members()
                ),
                30,
                what="the client to see the first server's new registration",
            )
            progress(client, 500)
        assert _all_on(group, second), [c.stats() for c in group]
    finally:
        logged = [p.stop() for p in producers]
    for client in group:
        assert client.flush(30), client.stats()

    # The restarted first server got nothing logged after it was killed.
    for record in read_server(first.endpoint, "app"):
        text = record.message.decode()
        prefix = text.split("-")[0]
        number = number_of(text, prefix)
        assert number is not None and number < logged_at_kill[int(prefix[1:])], text
    stored = Counter(messages([first.endpoint, second.endpoint, third.endpoint]))
    expected = Counter(m for lines in logged for m in lines)
    assert stored == expected
