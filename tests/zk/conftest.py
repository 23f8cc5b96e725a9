"""Helpers for the ZooKeeper tests: real clients, members, and cleanup of what a test started.

Everything here talks to a real ZooKeeper (the session one, ``own_zookeeper``
or ``ensemble`` from ``tests/conftest.py``); nothing is faked.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from kazoo.client import KazooClient
from kazoo.protocol.states import ZnodeStat

from logclient.discovery import ZooKeeperServers
from logserver.registry import Registration
from logserver.tools.launcher import free_port
from logwire.serverset import Endpoint, Member

# Short enough that an expired session is noticed quickly, long enough to ride
# out a loaded CI machine (ZooKeeper clamps to 2..20 ticks of 500 ms).
SESSION = 4.0


def make_member(port: int | None = None, host: str = "127.0.0.1") -> Member:
    """A ServerSet member with a fresh per-process id, as a logserver would register."""
    return Member(
        endpoint=Endpoint(host, port or free_port()),
        process_id=uuid.uuid4().hex,
        pid=os.getpid(),
        version="test",
        started_at=time.time(),
    )


@dataclass(frozen=True)
class Node:
    """One child of the registration path as ZooKeeper has it."""

    name: str
    data: bytes
    stat: ZnodeStat

    @property
    def owner(self) -> int:
        return int(self.stat.ephemeralOwner)


def nodes(client: KazooClient, path: str) -> list[Node]:
    """Every child of ``path`` with its data and stat (children deleted meanwhile are left out)."""
    found = []
    for name in sorted(client.get_children(path)):
        got = client.exists(f"{path}/{name}")
        if got is None:
            continue
        data, stat = client.get(f"{path}/{name}")
        found.append(Node(name, data, stat))
    return found


def has(endpoint: Endpoint) -> Callable[[frozenset[Endpoint]], bool]:
    """A wait_for predicate: ``endpoint`` is listed."""
    return lambda servers: endpoint in servers


def lacks(endpoint: Endpoint) -> Callable[[frozenset[Endpoint]], bool]:
    """A wait_for predicate: ``endpoint`` is not listed."""
    return lambda servers: endpoint not in servers


def exactly(*endpoints: Endpoint) -> Callable[[frozenset[Endpoint]], bool]:
    """A wait_for predicate: the listed set is exactly ``endpoints``."""
    wanted = frozenset(endpoints)
    return lambda servers: servers == wanted


@pytest.fixture
def observer(zk_hosts: str, kazoo_factory: Callable[..., KazooClient]) -> KazooClient:
    """A plain kazoo client on the session ZooKeeper: the test's eyes (and an operator's hands)."""
    return kazoo_factory(zk_hosts)


@pytest.fixture
def registration_factory() -> Iterator[Callable[..., Registration]]:
    """Build registrations (not started); every one is deregistered after the test."""
    made: list[Registration] = []

    def make(hosts: str, path: str, member: Member | None = None, **kwargs: object) -> Registration:
        kwargs.setdefault("session_timeout_s", SESSION)
        registration = Registration(hosts, path, member or make_member(), **kwargs)  # type: ignore[arg-type]
        made.append(registration)
        return registration

    yield make
    for registration in made:
        registration.deregister(timeout=5)


@pytest.fixture
def discovery_factory() -> Iterator[Callable[..., ZooKeeperServers]]:
    """Build discovery clients (not started); every one is closed after the test."""
    made: list[ZooKeeperServers] = []

    def make(hosts: str, path: str, **kwargs: object) -> ZooKeeperServers:
        kwargs.setdefault("session_timeout_s", SESSION)
        discovery = ZooKeeperServers(hosts, path, **kwargs)  # type: ignore[arg-type]
        made.append(discovery)
        return discovery

    yield make
    for discovery in made:
        discovery.close(timeout=5)
