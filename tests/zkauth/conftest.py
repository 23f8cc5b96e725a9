"""Fixtures for the ZooKeeper security tests: credentials, clients with and without them.

Everything runs against a real ZooKeeper and real ``logserver serve``
processes (``tests/conftest.py``). Each test registers under
``/tests/<id>/secure/logservers``: the test creates ``/tests/<id>`` itself,
without an ACL, so that the servers create (and lock down) only the last two
levels and never a parent that other tests share.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from logserver.tools.launcher import LogServerProcess, wait_for

KazooFactory = Callable[..., KazooClient]
ServerFactory = Callable[..., LogServerProcess]


@dataclass(frozen=True)
class Credentials:
    """A ZooKeeper digest identity and the ``--zk-auth-file`` that holds it."""

    user: str
    password: str
    file: Path

    @property
    def auth(self) -> tuple[str, str]:
        """kazoo's ``auth_data`` entry."""
        return ("digest", f"{self.user}:{self.password}")

    def args(self) -> list[str]:
        return ["--zk-auth-file", str(self.file)]


def write_credentials(directory: Path, user: str, password: str | None = None) -> Credentials:
    """A fresh auth file (mode 600) for ``user``; a random password unless one is given."""
    password = password or secrets.token_urlsafe(18)
    path = directory / f"zk-auth-{user}-{secrets.token_hex(4)}"
    path.write_text(f"{user}:{password}\n")
    path.chmod(0o600)
    return Credentials(user, password, path)


@pytest.fixture
def credentials(tmp_path: Path) -> Credentials:
    """The identity the legitimate servers use."""
    return write_credentials(tmp_path, "logserver")


@pytest.fixture
def anonymous(zk_hosts: str, kazoo_factory: KazooFactory) -> KazooClient:
    """A kazoo client without credentials: what any process on the network has."""
    return kazoo_factory(zk_hosts)


@pytest.fixture
def admin(zk_hosts: str, kazoo_factory: KazooFactory, credentials: Credentials) -> KazooClient:
    """A kazoo client with the servers' credentials (it may read the ACLs unmasked)."""
    return kazoo_factory(zk_hosts, auth_data=[credentials.auth])


@pytest.fixture
def zk_base(anonymous: KazooClient) -> str:
    """This test's own subtree, created without an ACL (as another tenant's path would be)."""
    base = f"/tests/{uuid.uuid4().hex[:12]}"
    anonymous.ensure_path(base)
    return base


@pytest.fixture
def zk_path(zk_base: str) -> str:
    """The registration path: two levels the servers create themselves."""
    return f"{zk_base}/secure/logservers"


def children(client: KazooClient, path: str) -> list[str]:
    """Children of ``path``; [] while it does not exist."""
    return sorted(client.get_children(path)) if client.exists(path) else []


def wait_registered(
    client: KazooClient, path: str, count: int = 1, timeout: float = 20.0
) -> list[str]:
    """Wait until ``path`` has ``count`` children; return their full paths."""
    wait_for(
        lambda: len(children(client, path)) == count,
        timeout,
        what=f"{count} node(s) under {path}",
    )
    return [f"{path}/{name}" for name in children(client, path)]


def exit_status(server: LogServerProcess, timeout: float = 30.0) -> int:
    """Wait for a server process to exit by itself; its exit status."""
    assert server.process is not None
    return server.process.wait(timeout)
