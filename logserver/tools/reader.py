"""Read a category back from every server (or data directory), merged and de-duplicated.

A client that fails over re-sends a batch with the same producer and
sequence; if the first server had stored it before dying, two servers now hold
it. Here such copies meet: records are keyed by (producer, sequence, index)
and shown once. A batch the client split after such a failure (the next
server's limit was smaller) is stored as halves under derived ids; their
records are keyed by the batch they came from (``logwire.batchid``), so they
meet the whole batch's copy too. Records from Scribe's ``Log`` have no
producer and are never merged.
"""

from __future__ import annotations

import heapq
import socket
import ssl
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from thriftpy2.protocol import TCyBinaryProtocolFactory
from thriftpy2.rpc import make_client
from thriftpy2.thrift import TApplicationException, TClient
from thriftpy2.transport import TCyFramedTransportFactory, TSocket

from logserver.errors import LogServerError
from logserver.storage import read_category_offline
from logwire.batchid import canonical_key
from logwire.blocks import WireBlock
from logwire.idl import log_thrift
from logwire.serverset import Endpoint, Member, MemberFormatError
from logwire.zkclient import new_client, stop_client
from logwire.zktls import ZkTLSPolicy

if TYPE_CHECKING:
    from logclient import TLSPolicy

__all__ = [
    "Record",
    "RegisteredServer",
    "connect",
    "list_servers",
    "merge_unique",
    "read_data_dir",
    "read_server",
    "registered_servers",
    "start_zookeeper",
]


@dataclass(frozen=True)
class Record:
    """One stored record, with where it was read from."""

    category: str
    message: bytes
    producer: str
    sequence: int
    index: int
    received_ns: int
    source: str

    @property
    def key(self) -> tuple[str, int, int] | None:
        """The identity of a record across servers, through splits; None for Scribe records."""
        if not self.producer:
            return None
        return canonical_key(self.producer, self.sequence, self.index)


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


@contextmanager
def connect(
    endpoint: Endpoint, timeout: float = 10.0, *, tls: TLSPolicy | None = None
) -> Iterator[Any]:
    """A thriftpy2 client (framed, binary) to one server, closed on exit.

    With ``tls`` (logclient's :class:`~logclient.TLSPolicy`) the connection is
    TLS, verified as that policy says; a failed handshake raises LogServerError.
    """
    if tls is None:
        client = make_client(
            log_thrift.LogService,
            endpoint.host,
            endpoint.port,
            trans_factory=TCyFramedTransportFactory(),
            proto_factory=TCyBinaryProtocolFactory(),
            timeout=int(timeout * 1000),
        )
    else:
        # Not make_client's TLS: its socket checks no host name and cannot be
        # told which name to check.
        sock = TSocket(sock=_tls_socket(endpoint, timeout, tls))
        transport = TCyFramedTransportFactory().get_transport(sock)
        client = TClient(log_thrift.LogService, TCyBinaryProtocolFactory().get_protocol(transport))
    try:
        yield client
    except (ssl.SSLError, ConnectionError) as exc:
        raise LogServerError(_connection_failure(endpoint, exc, tls is not None)) from None
    finally:
        client.close()


def _connection_failure(endpoint: Endpoint, exc: OSError, tls: bool) -> str:
    """Say why a connection broke, with the likely TLS cause when there is one."""
    reason = getattr(exc, "reason", None)
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        text = "the server closed the connection"
    elif reason:
        text = str(reason).lower().replace("_", " ")
    else:
        text = exc.strerror or type(exc).__name__
    if not tls:
        # A TLS server resets a plain client right after its first bytes.
        return f"{endpoint}: connection failed: {text} (does the server speak TLS? --tls-ca)"
    # With TLS 1.3 a server refuses a client certificate after the client's side of
    # the handshake is done: it shows on the first call, as an alert or a reset.
    return (
        f"{endpoint}: TLS: {text} (does the server want a client certificate? --tls-cert/--tls-key)"
    )


def _tls_socket(endpoint: Endpoint, timeout: float, tls: TLSPolicy) -> ssl.SSLSocket:
    """A connected socket after a verified TLS handshake; LogServerError otherwise."""
    try:
        context = tls.ssl_context()
    except ValueError as exc:
        raise LogServerError(str(exc)) from None
    try:
        raw = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
    except OSError as exc:
        raise LogServerError(f"{endpoint}: cannot connect: {exc.strerror or exc}") from exc
    hostname = tls.server_hostname or endpoint.host
    try:
        sock = context.wrap_socket(raw, server_hostname=hostname)
    except ssl.SSLCertVerificationError as exc:
        raw.close()
        raise LogServerError(
            f"{endpoint}: TLS: the server's certificate failed verification for "
            f"{hostname!r}: {exc.verify_message or exc.reason}"
        ) from None
    except (OSError, ValueError) as exc:
        raw.close()
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        raise LogServerError(
            f"{endpoint}: TLS handshake failed: {reason} "
            "(is the port TLS? does the server want a client certificate, --tls-cert?)"
        ) from None
    sock.settimeout(timeout)
    return sock


#: How :func:`read_server` reads: ``ReadBlocks`` (stored blocks, decompressed here),
#: ``Read`` (one record struct each, what servers before compression answer), or
#: ``auto``: blocks, and ``Read`` with a server that does not know ``ReadBlocks``.
ReadMethod = Literal["auto", "blocks", "records"]

#: Stored bytes asked for per ``ReadBlocks`` call.
BLOCK_PAGE_BYTES = 4 * 2**20


def read_server(
    endpoint: Endpoint,
    category: str,
    timeout: float = 30.0,
    page: int = 5000,
    *,
    tls: TLSPolicy | None = None,
    method: ReadMethod = "auto",
) -> Iterator[Record]:
    """Every record of ``category`` on one server, in storage order."""
    with connect(endpoint, timeout, tls=tls) as client:
        if method != "records":
            try:
                first = client.ReadBlocks(category, 0, BLOCK_PAGE_BYTES)
            except TApplicationException as exc:
                if method == "blocks" or exc.type != TApplicationException.UNKNOWN_METHOD:
                    raise
                first = None  # a server from before ReadBlocks
            if first is not None:
                yield from _blocks(client, endpoint, category, first)
                return
        position = 0
        while True:
            result = client.Read(category, position, page)
            for r in result.records:
                yield Record(
                    category=r.category,
                    message=r.message,
                    producer=r.producer or "",
                    sequence=r.sequence,
                    index=r.index,
                    received_ns=r.received_ns,
                    source=str(endpoint),
                )
            if result.end_of_log or result.next_position == position:
                return
            position = result.next_position


def _blocks(client: Any, endpoint: Endpoint, category: str, result: Any) -> Iterator[Record]:
    """The records of ``ReadBlocks`` answers from position 0 on, the first one given."""
    source = str(endpoint)
    position = 0
    while True:
        for thrift_block in result.blocks:
            block = WireBlock.from_thrift(thrift_block)
            messages = block.decode().messages()
            for message, index, at in zip(
                messages, block.indexes(), block.record_positions(), strict=True
            ):
                if at >= position:  # a block may start before the position asked for
                    yield Record(
                        category,
                        message,
                        block.producer,
                        block.sequence,
                        index,
                        block.received_ns,
                        source,
                    )
        if result.end_of_log or result.next_position == position:
            return
        position = result.next_position
        result = client.ReadBlocks(category, position, BLOCK_PAGE_BYTES)


def read_data_dir(data_dir: Path, category: str) -> Iterator[Record]:
    """Every record of ``category`` in a (possibly stopped) server's data directory."""
    for r in read_category_offline(data_dir, category):
        yield Record(
            category=r.category,
            message=r.message,
            producer=r.producer,
            sequence=r.sequence,
            index=r.index,
            received_ns=r.received_ns,
            source=str(data_dir),
        )


def merge_unique(streams: Iterable[Iterable[Record]]) -> Iterator[Record]:
    """Merge per-source streams by receive time, each record (``Record.key``) once.

    Each stream is in storage order, which is receive order on one server, so a
    heap merge keeps memory to one record per source plus the set of keys seen.
    """
    seen: set[tuple[str, int, int]] = set()
    keyed = (((r.received_ns, i, r) for r in stream) for i, stream in enumerate(streams))
    for _ns, _i, record in heapq.merge(*keyed, key=lambda t: (t[0], t[1])):
        key = record.key
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        yield record


def record_json(record: Record) -> dict[str, Any]:
    """A record as a JSON-friendly dict (the message decoded as UTF-8, invalid bytes replaced)."""
    return {
        "category": record.category,
        "message": record.message.decode("utf-8", "replace"),
        "producer": record.producer,
        "sequence": record.sequence,
        "index": record.index,
        "received_ns": record.received_ns,
        "source": record.source,
    }
