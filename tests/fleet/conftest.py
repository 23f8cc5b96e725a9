"""Fixtures for the fleet-scale discovery tests: servers files, FileServers, agents, a limited ZooKeeper.

- ``feeder``: writes servers files the way the agent does (its own writer:
  lock, temporary file, fsync, rename), with documents the test chooses.
- ``file_servers``: FileServers closed after the test.
- ``agent_factory``: real ``logserver discovery-agent`` processes, stopped after.
- ``limited_zookeeper``: a ZooKeeper of the test's own that accepts at most
  10 connections from one address (``maxClientCnxns=10``), as a host would hit
  with more worker processes than that, each with its own session.
- Autouse: after each test, the shared watcher thread has stopped (every
  FileServers a test started was closed, and the last close ended it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from logclient import FileServers
from logserver.agent import ServersFileWriter
from logserver.tools.launcher import (
    DiscoveryAgentProcess,
    LogServerProcess,
    ZooKeeperEnsemble,
    start_logservers,
    wait_for,
)
from logwire.serverset import Endpoint
from logwire.serversfile import AgentInfo, ServersFile

#: The fleet tests' ZooKeeper limit: connections from one client address.
MAX_CLIENT_CNXNS = 10


class Feeder:
    """Writes the servers file at ``path`` as an agent would, with test-chosen content."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writer = ServersFileWriter(path)
        self.writer.acquire()
        self.serial = 0

    def document(
        self,
        servers: Iterable[Endpoint | str],
        *,
        state: str = "current",
        zk_path: str = "/logservers",
        heartbeat_s: float = 5.0,
        written_at: float | None = None,
    ) -> ServersFile:
        self.serial += 1
        now = time.time() if written_at is None else written_at
        return ServersFile(
            servers=frozenset(s if isinstance(s, Endpoint) else Endpoint.parse(s) for s in servers),
            zk_hosts="127.0.0.1:2181",
            zk_path=zk_path,
            state=state,
            written_at=now,
            changed_at=now,
            stale_since=None if state == "current" else now,
            heartbeat_s=heartbeat_s,
            serial=self.serial,
            agent=AgentInfo(pid=1, host="test", started_at=now),
        )

    def write(self, servers: Iterable[Endpoint | str], **kwargs: Any) -> ServersFile:
        document = self.document(servers, **kwargs)
        self.writer.write(document)
        return document

    def write_raw(self, data: bytes) -> None:
        write_in_place(self.path, data)


def write_in_place(path: Path, data: bytes) -> None:
    """Write over the file in place, as an agent never does (a torn or garbage file)."""
    with open(path, "wb") as f:
        f.write(data)


@pytest.fixture
def feeder(tmp_path: Path) -> Iterator[Feeder]:
    made = Feeder(tmp_path / "run" / "servers.json")
    yield made
    made.writer.release()


FileServersFactory = Callable[..., FileServers]


@pytest.fixture
def file_servers() -> Iterator[FileServersFactory]:
    made: list[FileServers] = []

    def make(path: Path | str, *, start: bool = True, **kwargs: Any) -> FileServers:
        source = FileServers(path, **kwargs)
        made.append(source)
        if start:
            source.start()
        return source

    yield make
    for source in made:
        source.close(5)


def _watcher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "logclient-files"]


@pytest.fixture(autouse=True)
def _watcher_stops() -> Iterator[None]:
    yield
    wait_for(lambda: not _watcher_threads(), 10, what="the servers file watcher thread to stop")


AgentFactory = Callable[..., DiscoveryAgentProcess]


@pytest.fixture
def agent_factory(tmp_path: Path) -> Iterator[AgentFactory]:
    started: list[DiscoveryAgentProcess] = []

    def start(zk_hosts: str, *, wait: bool = True, **kwargs: Any) -> DiscoveryAgentProcess:
        kwargs.setdefault("file", tmp_path / "agent" / "servers.json")
        kwargs.setdefault("heartbeat_s", 1.0)
        agent = DiscoveryAgentProcess(zk_hosts=zk_hosts, **kwargs)
        started.append(agent)
        return agent.start(wait=wait)

    yield start
    for agent in reversed(started):
        agent.stop()


def document_when(
    agent: DiscoveryAgentProcess,
    condition: Callable[[ServersFile], bool],
    what: str,
    timeout: float = 20.0,
) -> ServersFile:
    """Wait until the agent's file is usable and satisfies ``condition``; its content."""

    def check() -> ServersFile | None:
        document = agent.document()
        return document if document is not None and condition(document) else None

    return wait_for(check, timeout, what=what)


ServersOn = Callable[..., list[LogServerProcess]]


@pytest.fixture
def servers_on(tmp_path: Path) -> Iterator[ServersOn]:
    """Start logservers registered on a ZooKeeper of the test's own; all stopped after."""
    started: list[LogServerProcess] = []

    def start(zk_hosts: str, count: int, **kwargs: Any) -> list[LogServerProcess]:
        servers = start_logservers(zk_hosts, tmp_path / f"servers-{len(started)}", count, **kwargs)
        started.extend(servers)
        return servers

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def limited_zookeeper(tmp_path: Path) -> Iterator[ZooKeeperEnsemble]:
    zk = ZooKeeperEnsemble(
        size=1, workdir=tmp_path / "zk-limited", max_client_cnxns=MAX_CLIENT_CNXNS
    ).start()
    yield zk
    zk.stop()
