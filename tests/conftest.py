"""Fixtures shared by every test: real ZooKeeper, real logserver processes.

One ZooKeeper serves the whole session (started by the launcher: Debian's
jars, Docker, or ``LOGSERVICE_ZK``); each test gets its own znode path, as
kazoo's harness gives each test its own chroot, so tests cannot see each
other's servers.

The ``process`` marker: a test that starts real processes (ZooKeeper, a
logserver, any subprocess) carries it, so that ``pytest -m "not process"`` is
the fast unit run. A test that uses one of :data:`PROCESS_FIXTURES` (directly
or through another fixture) is marked here; a test that starts a process
itself is marked in its module.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from kazoo.client import KazooClient

from logclient import LogClient
from logserver.logsetup import configure_logging
from logserver.tools.launcher import (
    LogServerProcess,
    ZooKeeper,
    ZooKeeperEnsemble,
    zookeeper_from_env,
)
from logwire.zkclient import stop_client

# The fixtures that start processes: ZooKeeper (the session's, a test's own, an
# ensemble; logserver_factory and zk_hosts depend on one), the fault tests' tmpfs
# (mount, umount) and the TLS tests' certificates (made by the openssl command).
PROCESS_FIXTURES = frozenset({"zookeeper", "own_zookeeper", "ensemble", "tmpfs", "certs"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a process-starting fixture ``process``."""
    for item in items:
        if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.process)


@pytest.fixture(autouse=True)
def _processes_only_when_marked(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test not marked ``process`` that starts one fails, naming the marker it lacks.

    This keeps ``-m "not process"`` honest: the unit run starts no process at
    all, whoever adds a test.
    """
    if request.node.get_closest_marker("process") is not None:
        return
    test = request.node.nodeid

    def refuse(*args: object, **kwargs: object) -> NoReturn:
        raise AssertionError(
            f"{test} starts a process ({args[1:2] or 'fork'}): mark it @pytest.mark.process"
        )

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    monkeypatch.setattr(os, "fork", refuse)


# Server modules log through structlog; in the test process route them through
# stdlib logging at INFO so pytest captures them (and debug lines stay out).
configure_logging("info", "console", structlog_level="debug")


@pytest.fixture(autouse=True)
def _our_logging_config() -> Iterator[None]:
    """Tests of the structlog integration configure structlog globally; put ours back after."""
    yield
    configure_logging("info", "console", structlog_level="debug")


@pytest.fixture(scope="session")
def zookeeper() -> Iterator[ZooKeeper]:
    """One real ZooKeeper for the whole session."""
    zk = zookeeper_from_env()
    yield zk
    zk.stop()


@pytest.fixture
def zk_hosts(zookeeper: ZooKeeper) -> str:
    return zookeeper.hosts


@pytest.fixture
def zk_path() -> str:
    """A registration path of this test's own."""
    return f"/tests/{uuid.uuid4().hex[:12]}/logservers"


@pytest.fixture
def own_zookeeper(tmp_path: Path) -> Iterator[ZooKeeperEnsemble]:
    """A standalone ZooKeeper of this test's own, for tests that stop or restart it."""
    zk = ZooKeeperEnsemble(size=1, workdir=tmp_path / "zk").start()
    yield zk
    zk.stop()


@pytest.fixture
def ensemble(tmp_path: Path) -> Iterator[ZooKeeperEnsemble]:
    """A real 3-node ensemble on loopback, for tests about the ensemble."""
    zk = ZooKeeperEnsemble(size=3, workdir=tmp_path / "ensemble").start()
    yield zk
    zk.stop()


ServerFactory = Callable[..., LogServerProcess]


@pytest.fixture
def logserver_factory(zk_hosts: str, zk_path: str, tmp_path: Path) -> Iterator[ServerFactory]:
    """Start real logserver processes registered under this test's path; all stopped after."""
    started: list[LogServerProcess] = []

    def start(
        name: str | None = None, *, zk: str | None = None, wait: bool = True, **kwargs: object
    ) -> LogServerProcess:
        name = name or f"server-{len(started) + 1}"
        kwargs.setdefault("session_timeout_s", 2.0)
        server = LogServerProcess(
            zk_hosts=zk or zk_hosts,
            data_dir=tmp_path / name,
            zk_path=zk_path,
            **kwargs,  # type: ignore[arg-type]
        )
        started.append(server)
        return server.start(wait=wait)

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def clients() -> Iterator[list[LogClient]]:
    """LogClients a test made (it appends them); closed after the test."""
    made: list[LogClient] = []
    yield made
    for client in made:
        client.close(timeout=5)


@pytest.fixture
def kazoo_factory() -> Iterator[Callable[..., KazooClient]]:
    """Started kazoo clients to inspect or disturb ZooKeeper with; all stopped after the test."""
    clients: list[KazooClient] = []

    def make(hosts: str, **kwargs: object) -> KazooClient:
        client = KazooClient(hosts=hosts, **kwargs)
        client.start(timeout=15)
        clients.append(client)
        return client

    yield make
    deadline = time.monotonic() + 10.0
    for client in clients:
        stop_client(client, deadline=deadline)
