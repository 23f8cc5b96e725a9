"""What readers and operators do with the data inventory (:mod:`logwire.inventory`).

- :func:`read_cluster`: the registered members and the inventory, in one
  ZooKeeper session.
- :func:`probe`: ask a server who it is (``Status``), bounded: a registered
  server that does not answer counts as unreachable.
- :class:`Coverage`: which servers a read reached, and which servers hold data
  of a category but were not reached: what a reader must report, because
  records only they hold are missing from its output.
- ``logserver forget ID``: remove the record of a server known to be gone for
  good (its disk is lost, the host is retired), so readers and repair stop
  reporting it. It refuses a server that is registered right now unless
  ``--force``, and does nothing without ``--yes`` (``--dry-run`` shows what it
  would remove).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, KazooException, NoAuthError, NoNodeError

from logserver.errors import LogServerError
from logserver.reader import (
    RegisteredServer,
    connect,
    registered_servers,
    start_zookeeper,
)
from logwire.errors import InventoryFormatError
from logwire.inventory import InventoryRecord, inventory_path
from logwire.serverset import Endpoint
from logwire.zkclient import stop_client

if TYPE_CHECKING:
    from logclient import TLSPolicy
    from logwire.zktls import ZkTLSPolicy

__all__ = [
    "EXIT_INCOMPLETE",
    "ClusterView",
    "Coverage",
    "Unreachable",
    "add_arguments",
    "probe",
    "read_cluster",
    "read_inventory",
]

#: Exit status of a reader (``cat --strict``) or of repair when data may be missing.
EXIT_INCOMPLETE = 3
#: How long a reader waits for a registered server's ``Status`` before it counts it unreachable.
PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ClusterView:
    """The registered members and the inventory, as read at one moment."""

    members: list[RegisteredServer]
    inventory: list[InventoryRecord]
    #: Inventory nodes that could not be parsed: (node, why).
    malformed: list[tuple[str, str]] = field(default_factory=list)

    def record(self, server_id: str) -> InventoryRecord | None:
        return next((r for r in self.inventory if r.server_id == server_id), None)

    def registered_ids(self) -> set[str]:
        """Server ids of the members (members of servers before ids have none)."""
        return {s.member.server_id for s in self.members if s.member and s.member.server_id}


def read_inventory(
    zk: KazooClient, zk_path: str
) -> tuple[list[InventoryRecord], list[tuple[str, str]]]:
    """Every record under ``<zk_path>-inventory``, and the nodes that are not records."""
    parent = inventory_path(zk_path)
    try:
        children = sorted(zk.get_children(parent))
    except NoNodeError:
        return [], []
    records, malformed = [], []
    for child in children:
        try:
            data, _ = zk.get(f"{parent}/{child}")
        except NoNodeError:
            continue  # forgotten meanwhile
        try:
            records.append(InventoryRecord.from_json(data, node=child))
        except InventoryFormatError as exc:
            malformed.append((child, str(exc)))
    return records, malformed


def read_cluster(
    zk_hosts: str, zk_path: str, *, tls: ZkTLSPolicy | None = None, timeout: float = 10.0
) -> ClusterView:
    """Members and inventory in one session; LogServerError when ZooKeeper does not answer."""
    zk = start_zookeeper(zk_hosts, timeout, tls=tls)
    try:
        members = registered_servers(zk, zk_path)
        records, malformed = read_inventory(zk, zk_path)
        return ClusterView(members, records, malformed)
    except KazooException as exc:
        raise LogServerError(f"reading {zk_path} from ZooKeeper failed: {exc!r}") from exc
    finally:
        stop_client(zk, deadline=time.monotonic() + timeout, name="logserver-tool-stop")


def probe(
    endpoint: Endpoint, *, tls: TLSPolicy | None = None, timeout: float = PROBE_TIMEOUT_S
) -> str | None:
    """The server id the server at ``endpoint`` answers ``Status`` with; None if it does not
    answer within ``timeout`` (refused, reset, frozen, a TLS failure)."""
    try:
        with connect(endpoint, timeout, tls=tls) as client:
            return str(client.Status().server_id or "")
    except Exception:  # unreachable, whatever the way: the caller reports it
        return None


@dataclass(frozen=True)
class Unreachable:
    """A server that may hold records of a category that a read could not reach."""

    #: Its server id ("" for a registered server from before ids that did not answer).
    server_id: str
    #: Its inventory record (None when it has none: a registered server from before ids).
    record: InventoryRecord | None
    #: The registered endpoint that did not answer, if it is registered.
    registered_at: Endpoint | None = None

    def describe(self, category: str, now: float | None = None) -> str:
        """One line for stderr: who, where, why it counts, what may be missing."""
        now = time.time() if now is None else now
        record = self.record
        who = f"server {self.server_id}" if self.server_id else "a server"
        where = self.registered_at or (record.endpoint if record else None)
        parts = [
            f"{who} (last at {where}"
            + (f", zone {record.zone}" if record and record.zone else "")
            + ")"
        ]
        if self.registered_at is not None:
            parts.append("is registered but did not answer")
        elif record is not None and record.stopped:
            parts.append(f"was stopped {_when(record.last_seen, now)} and is not registered")
        else:
            parts.append("is not registered")
            if record is not None:
                parts.append(f"(last seen {_when(record.last_seen, now)})")
        if record is not None and category in record.categories:
            held = f"holds {_size(record.categories[category])} of {category!r}"
        elif record is not None and record.truncated:
            held = (
                f"may hold records of {category!r} (its record lists only its largest categories)"
            )
        else:
            held = f"may hold records of {category!r}"
        return (
            " ".join(parts)
            + f"; it {held}: records only it holds are missing here. If it is gone for good: "
            f"logserver forget {self.server_id or 'ID'}"
        )


@dataclass
class Coverage:
    """Which servers a read of one category reaches, and which holders of it it does not."""

    category: str
    #: Server ids read from (registered servers that answered, data directories given).
    reached: set[str] = field(default_factory=set)
    #: Registered endpoints that answered, to read from.
    readable: list[Endpoint] = field(default_factory=list)
    #: Registered endpoints that did not answer: (endpoint, the member's server id or "").
    silent: list[tuple[Endpoint, str]] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        view: ClusterView,
        category: str,
        *,
        tls: TLSPolicy | None = None,
        data_dir_ids: Iterable[str] = (),
        timeout: float = PROBE_TIMEOUT_S,
    ) -> Coverage:
        """Probe every registered server (each once, at most ``timeout``)."""
        coverage = cls(category, reached=set(data_dir_ids))
        endpoints: dict[Endpoint, str] = {}
        for server in view.members:
            if server.member is not None:
                endpoints.setdefault(server.member.endpoint, server.member.server_id)
        for endpoint, member_id in sorted(endpoints.items()):
            answered = probe(endpoint, tls=tls, timeout=timeout)
            if answered is None:
                coverage.silent.append((endpoint, member_id))
            else:
                coverage.readable.append(endpoint)
                if answered:
                    coverage.reached.add(answered)
        return coverage

    def unreachable(self, view: ClusterView) -> list[Unreachable]:
        """Every server that may hold records of the category and that this read misses."""
        found: dict[str, Unreachable] = {}
        anonymous: list[Unreachable] = []
        for endpoint, member_id in self.silent:
            if member_id in self.reached:
                continue  # read through another way (its data directory)
            unreachable = Unreachable(member_id, view.record(member_id), endpoint)
            if member_id:
                found[member_id] = unreachable
            else:
                anonymous.append(unreachable)
        for record in view.inventory:
            if (
                record.server_id in self.reached
                or record.server_id in found
                or not record.holds(self.category)
            ):
                continue
            found[record.server_id] = Unreachable(record.server_id, record)
        return [*anonymous, *(found[k] for k in sorted(found))]


def _when(t: float, now: float) -> str:
    if t <= 0:
        return "at an unknown time"
    stamp = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ago = max(0.0, now - t)
    if ago < 120:
        span = f"{ago:.0f} s"
    elif ago < 7200:
        span = f"{ago / 60:.0f} min"
    elif ago < 172800:
        span = f"{ago / 3600:.0f} h"
    else:
        span = f"{ago / 86400:.0f} days"
    return f"{stamp}, {span} ago"


def _size(nbytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} bytes"


# --------------------------------------------------------------------------- forget


def add_arguments(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    """Add ``forget``."""
    from logserver.cli import add_zk_tls_arguments

    p = sub.add_parser(
        "forget",
        help="remove a server that is gone for good from the data inventory",
        description=(
            "Remove server ID's record from the data inventory, so readers and repair stop "
            "reporting the data it held as missing. Only for a server whose data is gone for "
            "good (a lost disk, a retired host): its records that have no copy elsewhere are "
            "then lost without a word. Refuses a server that is registered now unless --force."
        ),
    )
    p.add_argument("server_id", metavar="ID", help="the server id (logserver list --inventory)")
    p.add_argument("--zk", required=True, help="ZooKeeper connection string")
    p.add_argument("--zk-path", default="/logservers", help="the servers' registration path")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--yes", action="store_true", help="really remove the record")
    mode.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    p.add_argument(
        "--force",
        action="store_true",
        help="remove it even if the server is registered now (it writes a new record while it runs)",
    )
    p.add_argument(
        "--zk-auth-file",
        type=Path,
        help="'user:password' file of the servers' ZooKeeper identity (needed with their ACL)",
    )
    add_zk_tls_arguments(p)
    p.set_defaults(handler=run_forget)


def run_forget(args: argparse.Namespace) -> int:
    """``logserver forget``: 0 when removed (or would be, with --dry-run), 1 when refused,
    2 for a usage error."""
    from logserver.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, zk_tls_policy
    from logserver.registry import read_auth_file
    from logserver.storage import server_id_problem

    problem = server_id_problem(args.server_id)
    if problem is not None:
        print(f"logserver forget: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if not (args.yes or args.dry_run):
        print(
            "logserver forget: give --yes to remove the record, or --dry-run to see it",
            file=sys.stderr,
        )
        return EXIT_USAGE
    auth = read_auth_file(args.zk_auth_file) if args.zk_auth_file else None
    zk = start_zookeeper(args.zk, tls=zk_tls_policy(args), auth=auth, read_only=False)
    node = f"{inventory_path(args.zk_path)}/{args.server_id}"
    try:
        try:
            data, stat = zk.get(node)
        except NoNodeError:
            print(f"logserver forget: no server {args.server_id} in {node}", file=sys.stderr)
            return EXIT_FAILED
        try:
            record: InventoryRecord | None = InventoryRecord.from_json(data, node=args.server_id)
        except InventoryFormatError:
            record = None  # a malformed record: forgetting it is what an operator wants
        registered = [
            s.member.endpoint
            for s in registered_servers(zk, args.zk_path)
            if s.member and s.member.server_id == args.server_id
        ]
        about = _summary(args.server_id, record)
        if registered and not args.force:
            print(
                f"logserver forget: server {args.server_id} is registered now (at "
                f"{', '.join(map(str, registered))}): it is not gone. Stop it first, or give "
                "--force",
                file=sys.stderr,
            )
            return EXIT_FAILED
        if args.dry_run:
            print(f"would forget {about}")
            return EXIT_OK
        try:
            # With the version read: a record rewritten since is a server alive after all.
            zk.delete(node, version=-1 if args.force else stat.version)
        except BadVersionError:
            print(
                f"logserver forget: server {args.server_id} updated its record just now: it is "
                "running. Stop it first, or give --force",
                file=sys.stderr,
            )
            return EXIT_FAILED
        except NoNodeError:
            pass  # forgotten by someone else meanwhile: the end result is the same
        except NoAuthError:
            print(
                f"logserver forget: ZooKeeper refused to delete {node} (NoAuth): give the "
                "servers' --zk-auth-file",
                file=sys.stderr,
            )
            return EXIT_FAILED
        print(f"forgot {about}")
        return EXIT_OK
    finally:
        with contextlib.suppress(Exception):
            stop_client(zk, deadline=time.monotonic() + 10, name="logserver-forget-stop")


def _summary(server_id: str, record: InventoryRecord | None) -> str:
    if record is None:
        return f"server {server_id} (its record is malformed)"
    categories = ", ".join(f"{c} ({_size(n)})" for c, n in sorted(record.categories.items()))
    return (
        f"server {server_id} (last at {record.endpoint}, last seen "
        f"{_when(record.last_seen, time.time())}; categories: {categories or 'none'})"
    )
