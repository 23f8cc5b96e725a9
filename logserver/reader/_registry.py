"""The servers registered in ZooKeeper, as an operator's tool lists them (malformed ones too)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from logserver.errors import LogServerError
from logwire.serverset import Member, MemberFormatError
from logwire.zkclient import new_client, stop_client
from logwire.zktls import ZkTLSPolicy

__all__ = ["RegisteredServer", "list_servers", "registered_servers", "start_zookeeper"]


@dataclass(frozen=True)
class RegisteredServer:
    """A child of the registration path."""

    node: str
    member: Member | None
    owner_session: int
    error: str = ""


def list_servers(
    zk_hosts: str, zk_path: str, timeout: float = 10.0, *, tls: ZkTLSPolicy | None = None
) -> list[RegisteredServer]:
    """The nodes under ``zk_path``, malformed ones included (with ``error`` set).

    Reading needs no credentials (the registration ACL lets anyone read);
    ``tls`` connects to ZooKeeper's TLS client port.
    """
    zk = start_zookeeper(zk_hosts, timeout, tls=tls)
    try:
        return registered_servers(zk, zk_path)
    finally:
        stop_client(zk, deadline=time.monotonic() + timeout, name="logserver-list-stop")


def registered_servers(zk: KazooClient, zk_path: str) -> list[RegisteredServer]:
    """The nodes under ``zk_path`` read with a started client (see :func:`list_servers`)."""
    try:
        children = sorted(zk.get_children(zk_path))
    except NoNodeError:
        return []
    found = []
    for child in children:
        try:
            data, stat = zk.get(f"{zk_path}/{child}")
        except NoNodeError:
            continue
        try:
            found.append(RegisteredServer(child, Member.from_json(data), stat.ephemeralOwner))
        except MemberFormatError as exc:
            found.append(RegisteredServer(child, None, stat.ephemeralOwner, str(exc)))
    return found


def start_zookeeper(
    zk_hosts: str,
    timeout: float = 10.0,
    *,
    tls: ZkTLSPolicy | None = None,
    auth: tuple[str, str] | None = None,
    read_only: bool = True,
) -> KazooClient:
    """A started kazoo client for a tool; LogServerError when ZooKeeper does not answer in time.

    The caller stops it with ``logwire.zkclient.stop_client``.
    """
    zk = new_client(zk_hosts, session_timeout_s=timeout, read_only=read_only, tls=tls, auth=auth)
    try:
        zk.start(timeout=timeout)
    except Exception as exc:
        stop_client(zk, deadline=time.monotonic() + timeout, name="logserver-tool-stop")
        hint = (
            " (over TLS: is it the secureClientPort, and did --zk-tls-ca sign its certificate?)"
            if tls is not None
            else ""
        )
        raise LogServerError(f"cannot reach ZooKeeper at {zk_hosts}: {exc}{hint}") from exc
    return zk
