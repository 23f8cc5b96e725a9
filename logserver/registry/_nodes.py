"""The znodes a registration deals with: the path, our ``member_`` node, and ghosts.

Plain functions over a connected :class:`~kazoo.client.KazooClient`, so that
:class:`logserver.registry.Registration` keeps only the lifecycle (threads,
sessions, state) and the rules about which node is whose are in one place:

- **Ours** is a child whose data carries our process id *and* whose
  ``ephemeralOwner`` is our current session (Finagle's ``hasJoined``): the
  process id alone would adopt a node of an older session that is about to
  vanish.
- **A ghost** is a child with our endpoint owned by another live session and
  that already existed when our first registration first read the path (see
  :func:`handle_same_endpoint`). Anything younger is a live twin or a
  newcomer, never a leftover of our previous incarnation.

Events are logged under the registry's logger name, which operators filter on.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import structlog
from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NoAuthError, NoNodeError, NotEmptyError
from kazoo.protocol.states import ZnodeStat
from kazoo.security import ACL

from logserver.registry._auth import denied_as
from logwire.serverset import Endpoint, Member, MemberFormatError

__all__ = [
    "NODE_PREFIX",
    "Children",
    "SameEndpoint",
    "create_node",
    "delete_quietly",
    "handle_same_endpoint",
    "hex_session",
    "keep_one",
    "read_children",
    "validate_zk_path",
]

log = structlog.get_logger("logserver.registry")

NODE_PREFIX = "member_"


def validate_zk_path(path: str) -> str:
    """Return ``path`` if it is an absolute ZooKeeper path we can use; raise ValueError if not."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"ZooKeeper path must be absolute: {path!r}")
    if path == "/":
        return path
    if path.endswith("/") or "//" in path or "\x00" in path:
        raise ValueError(f"malformed ZooKeeper path: {path!r}")
    if any(part in (".", "..") for part in path.split("/")[1:]):
        raise ValueError(f"ZooKeeper path may not contain '.' or '..': {path!r}")
    return path


def hex_session(session_id: int | None) -> str | None:
    """A session id as ZooKeeper's own tools print it (``0x...``), for log lines."""
    return None if session_id is None else f"0x{session_id:x}"


def _prefix(zk_path: str) -> str:
    return zk_path.rstrip("/") + "/"


@dataclass(frozen=True)
class SameEndpoint:
    """A child with our endpoint owned by another live session: a ghost or a live twin."""

    path: str
    stat: ZnodeStat
    member: Member


@dataclass(frozen=True)
class Children:
    """One read of the path's children, sorted out for one member and session.

    ``pzxid`` is the zxid of the last change to the list of children when it
    was read: every child listed here was created at or before it, every child
    created later has a greater ``czxid``.
    """

    mine: tuple[str, ...]
    same_endpoint: tuple[SameEndpoint, ...]
    pzxid: int


def read_children(client: KazooClient, zk_path: str, member: Member, session: int) -> Children:
    """Read every child of ``zk_path`` and find ours and those with our endpoint.

    Children that vanish meanwhile, that we may not read or whose data is not
    a ServerSet member are neither ours nor ghosts we may delete: skipped.
    """
    prefix = _prefix(zk_path)
    with denied_as("READ", zk_path):
        names, parent = client.get_children(zk_path, include_data=True)
    mine: list[str] = []
    same_endpoint: list[SameEndpoint] = []
    for name in sorted(names):
        path = prefix + name
        try:
            data, stat = client.get(path)
        except (NoNodeError, NoAuthError):
            continue
        try:
            other = Member.from_json(data)
        except MemberFormatError:
            continue
        if stat.ephemeralOwner == session and other.process_id == member.process_id:
            mine.append(path)
        elif other.endpoint == member.endpoint and stat.ephemeralOwner not in (0, session):
            same_endpoint.append(SameEndpoint(path, stat, other))
    return Children(tuple(mine), tuple(same_endpoint), parent.pzxid)


def handle_same_endpoint(
    client: KazooClient,
    nodes: tuple[SameEndpoint, ...],
    endpoint: Endpoint,
    ghost_horizon: int | None,
) -> int:
    """Delete the ghosts among ``nodes``, log the others; return how many were deleted.

    ``ghost_horizon`` is None except during our first registration, where it
    is the ``pzxid`` of the first read of the path: only a node created at or
    before it can be our previous incarnation's. Our first registration may be
    retried (a create whose reply was lost), and a node that appeared with our
    endpoint in between (a twin started later) must not be taken for a ghost.
    Later re-registrations delete nothing: a twin that keeps re-registering
    would otherwise delete our node, and we its, forever.
    """
    deleted = 0
    for node in nodes:
        if ghost_horizon is not None and node.stat.czxid <= ghost_horizon:
            if _delete_ghost(client, node, endpoint):
                deleted += 1
            continue
        log.warning(
            "endpoint_registered_by_another_session",
            node=node.path,
            owner=hex_session(node.stat.ephemeralOwner),
            endpoint=str(endpoint),
            their_process_id=node.member.process_id,
        )
    return deleted


def _delete_ghost(client: KazooClient, node: SameEndpoint, endpoint: Endpoint) -> bool:
    """Delete ``node`` if it is unchanged since we read it; False if it was not deleted."""
    try:
        client.delete(node.path, version=node.stat.version)
    except (NoNodeError, BadVersionError, NotEmptyError):
        return False
    except NoAuthError:
        log.warning("ghost_registration_not_deletable", node=node.path, reason="NoAuth")
        return False
    log.warning(
        "ghost_registration_deleted",
        node=node.path,
        owner=hex_session(node.stat.ephemeralOwner),
        endpoint=str(endpoint),
    )
    return True


def keep_one(client: KazooClient, mine: tuple[str, ...], current: str | None) -> str:
    """Of our nodes in this session, keep ``current`` (else the oldest); delete the others.

    More than one means a create went through twice (a blind retry).
    """
    keep = current if current in mine else mine[0]
    for extra in mine:
        if extra != keep:
            log.warning("duplicate_registration_deleted", node=extra, kept=keep)
            delete_quietly(client, extra)
    return keep


def create_node(client: KazooClient, zk_path: str, data: bytes, acl: list[ACL] | None) -> str:
    """Create our ephemeral sequential node; return its full path."""
    with denied_as("CREATE", zk_path):
        path: str = client.create(
            _prefix(zk_path) + NODE_PREFIX, data, acl=acl, ephemeral=True, sequence=True
        )
    return path


def delete_quietly(client: KazooClient, path: str) -> None:
    """Delete ``path``; already gone is fine."""
    with contextlib.suppress(NoNodeError):
        client.delete(path)
