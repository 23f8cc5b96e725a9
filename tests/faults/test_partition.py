"""A network partition between the client and its server: packets dropped silently.

The test builds its own network: a namespace of its own holding one logserver,
joined to the root namespace by two veth pairs with addresses from 198.18.0.0/15
(RFC 2544, reserved for benchmarking, never routed): a *data* link that clients use, and a *control*
link to ZooKeeper, which listens on the control link's root end. So the
partition cuts the client off from the server while ZooKeeper still sees the
server alive: the client must trust the socket, not the registration. The
second logserver and the client live in the root namespace, on loopback.

The pairs get point-to-point /32 addresses that nothing here uses (the test
skips if it finds none), never a subnet route, and before any traffic the test
checks that the kernel routes each address through the test's own veth, so not
one packet can leave through the machine's real interface. (Not TEST-NET-1:
this sandbox's own uplink lives in 192.0.2.0/24.)

The kernel here has no ``netem``, so "drop everything" is a ``pfifo`` qdisc of
length 0 on a veth end: every packet leaving through it is discarded, silently
(no RST, no ICMP), the worst case for a client.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from logclient import LogClient
from logserver.tools.launcher import LogServerProcess, ZooKeeperEnsemble, wait_for
from tests.delivery import Producer, messages, progress, wait_known, zk_client
from tests.readback import copies

from .conftest import must, run
from .support import AckWatch, keep_logging_for, numbers_on, registrations, server_events

ServerFactory = Callable[..., LogServerProcess]

#: Candidate addresses: RFC 2544's benchmarking range, unused by this machine's own network.
CANDIDATES = [f"198.18.0.{n}" for n in range(2, 60)]


@dataclass
class Pair:
    """A veth pair between the root namespace (``outer``) and the test's (``inner``)."""

    netns: str
    outer: str
    inner: str
    outer_ip: str
    inner_ip: str

    def create(self) -> None:
        must("ip", "link", "add", self.outer, "type", "veth", "peer", "name", self.inner)
        must("ip", "link", "set", self.inner, "netns", self.netns)
        must("ip", "addr", "add", self.outer_ip, "peer", self.inner_ip, "dev", self.outer)
        must("ip", "link", "set", self.outer, "up")
        inside = ("ip", "-n", self.netns)
        must(*inside, "addr", "add", self.inner_ip, "peer", self.outer_ip, "dev", self.inner)
        must(*inside, "link", "set", self.inner, "up")
        # Safety: the kernel must send traffic for the namespace's address through our veth.
        route = run("ip", "-o", "route", "get", self.inner_ip).stdout
        if f"dev {self.outer} " not in route + " ":
            raise RuntimeError(f"{self.inner_ip} would not route via {self.outer}: {route!r}")

    def drop_from_inside(self) -> None:
        """Discard every packet the namespace sends here (requests arrive; replies vanish)."""
        must("ip", "netns", "exec", self.netns, "tc", "qdisc", "add", "dev", self.inner, "root",
             "pfifo", "limit", "0")  # fmt: skip

    def drop_from_outside(self) -> None:
        """Discard every packet sent into the namespace here."""
        must("tc", "qdisc", "add", "dev", self.outer, "root", "pfifo", "limit", "0")

    def heal(self) -> None:
        """Remove both drops (whichever are there)."""
        run("ip", "netns", "exec", self.netns, "tc", "qdisc", "del", "dev", self.inner, "root")
        run("tc", "qdisc", "del", "dev", self.outer, "root")


@dataclass
class Link:
    """The test's namespace: a data pair (clients) and a control pair (ZooKeeper)."""

    netns: str
    data: Pair
    control: Pair


def _addresses_in_use() -> set[str]:
    used: set[str] = set()
    for command in (("ip", "-o", "-4", "addr", "show"), ("ip", "-4", "neigh", "show")):
        for word in run(*command).stdout.split():
            address = word.split("/", 1)[0]
            try:
                used.add(str(ipaddress.IPv4Address(address)))
            except ValueError:
                continue
    for line in run("ip", "-4", "route", "show").stdout.splitlines():
        for word in line.split():
            if word.startswith("198.18.") and "/" not in word:
                used.add(word)
    return used


@pytest.fixture
def link() -> Iterator[Link]:
    """A fresh namespace and two veth pairs with unique names; always deleted after the test.

    Request it before anything that runs inside it, so those are stopped first."""
    tag = uuid.uuid4().hex[:6]
    used = _addresses_in_use()
    free = [a for a in CANDIDATES if a not in used]
    if len(free) < 4:
        pytest.skip("no four unused 198.18.0.0/15 addresses for test links on this machine")
    netns = f"lsfault-{tag}"
    made = Link(
        netns,
        data=Pair(netns, f"lsf{tag}do", f"lsf{tag}di", free[0], free[1]),
        control=Pair(netns, f"lsf{tag}co", f"lsf{tag}ci", free[2], free[3]),
    )
    result = run("ip", "netns", "add", netns)
    if result.returncode != 0:
        pytest.skip(f"network namespaces are not permitted here: {result.stderr.strip()}")
    try:
        made.data.create()
        made.control.create()
        must("ip", "-n", netns, "link", "set", "lo", "up")
        yield made
    finally:
        run("ip", "link", "del", made.data.outer)
        run("ip", "link", "del", made.control.outer)
        run("ip", "netns", "del", netns)


@dataclass
class NetnsLogServer(LogServerProcess):
    """A logserver started inside a network namespace (``ip netns exec`` execs in place, so
    the process id is the server's own)."""

    netns: str = ""

    def command(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *super().command()]


@pytest.fixture
def link_zookeeper(link: Link, tmp_path: Path) -> Iterator[ZooKeeperEnsemble]:
    """A standalone ZooKeeper on the root end of the control pair: reachable from both
    namespaces."""
    zk = ZooKeeperEnsemble(size=1, workdir=tmp_path / "zk", host=link.control.outer_ip).start()
    yield zk
    zk.stop()


@pytest.fixture
def inside_server(
    link: Link, link_zookeeper: ZooKeeperEnsemble, zk_path: str, tmp_path: Path
) -> Iterator[LogServerProcess]:
    """A logserver in the link's namespace, registered in ``link_zookeeper``."""
    server = NetnsLogServer(
        zk_hosts=link_zookeeper.hosts,
        data_dir=tmp_path / "inside",
        host=link.data.inner_ip,
        zk_path=zk_path,
        session_timeout_s=2.0,
        netns=link.netns,
    )
    try:
        yield server.start()
    finally:
        server.stop()


def test_silent_partition_costs_one_rpc_timeout_and_loses_and_duplicates_nothing(
    link: Link,
    link_zookeeper: ZooKeeperEnsemble,
    inside_server: LogServerProcess,
    logserver_factory: ServerFactory,
    zk_path: str,
    tmp_path: Path,
    clients: list[LogClient],
) -> None:
    """While a client logs to two servers, one of them is cut off from it silently (ZooKeeper
    still sees it alive): first only the server's packets are dropped (requests arrive and are
    stored, replies never come back), then everything both ways. No pause in acknowledgements
    is longer than the client's RPC timeout (plus scheduling slack), the client keeps
    delivering to the other server, and the cut-off server stays registered. When the
    partition heals the client uses that server again; after dedup every message is there
    exactly once (batches stored on both servers are merged by their keys)."""
    outside = logserver_factory("outside", zk=link_zookeeper.hosts)
    endpoints = [inside_server.endpoint, outside.endpoint]
    client = zk_client(clients, link_zookeeper.hosts, zk_path, tmp_path)
    wait_known(client, 2)
    with Producer(client, "part") as producer, AckWatch(client) as watch:
        wait_for(lambda: numbers_on(inside_server, "part"), 20, what="records via the link")
        progress(client, 1000)
        watch.reset()
        failovers = client.stats().failovers
        link.data.drop_from_inside()
        wait_for(
            lambda: client.stats().failovers > failovers,
            15,
            what="the client to give up on the cut-off server",
        )
        keep_logging_for(client, 3)
        link.data.drop_from_outside()
        keep_logging_for(client, 5)
        stall = watch.longest_stall
        cut_failovers = client.stats().failovers - failovers
        assert watch.fewest_known == 2  # ZooKeeper never stopped listing it
        link.data.heal()
        held = len(numbers_on(inside_server, "part"))
        wait_for(
            lambda: len(numbers_on(inside_server, "part")) > held,
            20,
            what="the client to deliver to the healed server again",
        )
        expected = producer.stop()
    assert client.flush(60), client.stats()
    assert messages(endpoints) == expected
    assert stall < client.failover.rpc_timeout_s + 0.5, watch
    assert inside_server.alive()
    nodes = registrations(link_zookeeper.hosts, zk_path)
    assert sorted(nodes) == sorted(endpoints)
    assert all(len(names) == 1 for names in nodes.values()), nodes
    assert len(server_events(inside_server, "registered")) == 1
    stored_twice = copies(endpoints, "app") - len(expected)
    print(
        f"partition: longest stall {stall:.2f}s, {cut_failovers} failovers while cut off, "
        f"{stored_twice} records stored on both servers (merged by dedup)"
    )
