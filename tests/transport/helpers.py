"""What the wire tests share: a small LogService handler, clients, raw frames, waiting."""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Any

from thriftpy2.protocol import TCyBinaryProtocolFactory
from thriftpy2.protocol.cybin import TCyBinaryProtocol  # type: ignore[attr-defined]
from thriftpy2.rpc import make_client
from thriftpy2.thrift import TApplicationException, TMessageType
from thriftpy2.transport import TCyFramedTransportFactory
from thriftpy2.transport.memory import TCyMemoryBuffer

from logserver.tools.launcher import wait_for
from logwire.compression import decompress
from logwire.idl import log_thrift
from logwire.packed import unpack_records

LogEntry = log_thrift.LogEntry
AppendBatch = log_thrift.AppendBatch
LogService = log_thrift.LogService

VERSION_1 = 0x80010000


class RecordingHandler:
    """A LogService handler that remembers what it was sent.

    - ``Append`` with producer ``b"bad"`` raises the declared ``InvalidRequest``;
      with producer ``b"slow"`` it waits for ``release`` (or ``slow_s``);
    - ``Status`` raises an exception the IDL does not declare (a handler bug).
    """

    def __init__(self, slow_s: float = 0.5) -> None:
        self.lock = threading.Lock()
        self.logged: list[tuple[bytes, bytes]] = []
        self.batches: list[Any] = []
        self.slow_s = slow_s
        self.entered = threading.Event()
        self.release = threading.Event()

    def Log(self, messages: list[Any]) -> int:
        return self.log_records([(m.category, m.message) for m in messages])

    def log_records(self, records: list[tuple[bytes, bytes]]) -> int:
        """The record-level Log the server's fast path calls (see RecordHandler)."""
        with self.lock:
            self.logged.extend(records)
        return log_thrift.ResultCode.OK

    def Append(self, batch: Any) -> Any:
        records = [(m.category, m.message) for m in batch.entries or ()]
        return self.append_records(batch.producer, batch.sequence, records)

    def AppendPacked(self, batch: Any) -> Any:
        """Append with the records in columns (what logclient sends); same behaviour."""
        runs = [(run.category, run.count) for run in batch.runs or ()]
        records = [
            (c.encode() if isinstance(c, str) else c, m)
            for c, m in unpack_records(runs, batch.lengths or b"", batch.messages or b"")
        ]
        producer = batch.producer
        return self.append_records(
            producer.encode() if isinstance(producer, str) else producer, batch.sequence, records
        )

    def AppendCompressed(self, batch: Any) -> Any:
        """AppendPacked with the columns compressed (what logclient sends); same behaviour."""
        runs = [(run.category, run.count) for run in batch.runs or ()]
        count = sum(n for _, n in runs)
        columns = decompress(batch.codec, batch.columns or b"", batch.raw_bytes, 1 << 26)
        packed = log_thrift.PackedBatch(
            producer=batch.producer,
            sequence=batch.sequence,
            runs=batch.runs,
            lengths=columns[: 4 * count],
            messages=columns[4 * count :],
        )
        return self.AppendPacked(packed)

    def append_records(
        self, producer: bytes | None, sequence: int | None, records: list[tuple[bytes, bytes]]
    ) -> Any:
        """The record-level Append the server's fast path calls; remembers an AppendBatch."""
        if producer == b"bad":
            raise log_thrift.InvalidRequest(reason="producer 'bad' is not allowed")
        if producer == b"slow":
            self.entered.set()
            self.release.wait(self.slow_s)
        batch = AppendBatch(
            producer=producer,
            sequence=sequence,
            entries=[LogEntry(category=c, message=m) for c, m in records],
        )
        with self.lock:
            self.batches.append(batch)
        return log_thrift.AppendResult(
            code=log_thrift.ResultCode.OK, duplicate=False, stored=len(records)
        )

    def Read(self, category: bytes, position: int, limit: int) -> Any:
        return log_thrift.ReadResult(records=[], next_position=position, end_of_log=True)

    def Categories(self) -> list[str]:
        return ["app"]

    def Status(self) -> Any:
        raise ZeroDivisionError("status is broken")

    def Ping(self) -> str:
        return "pong"


class NoopHandler:
    """Answers Log with OK and does nothing else: for throughput measurements."""

    def Log(self, messages: list[Any]) -> int:
        return 0

    def log_records(self, records: list[tuple[bytes, bytes]]) -> int:
        return 0

    def append_records(self, producer: bytes, sequence: int, records: list[Any]) -> Any:
        return log_thrift.AppendResult(code=0, duplicate=False, stored=len(records))

    def Ping(self) -> str:
        return "pong"


def client(port: int, timeout_s: float = 5.0) -> Any:
    """thriftpy2's own client: framed transport, Cython binary protocol."""
    return make_client(
        LogService,
        "127.0.0.1",
        port,
        proto_factory=TCyBinaryProtocolFactory(),
        trans_factory=TCyFramedTransportFactory(),
        timeout=int(timeout_s * 1000),
    )


def ping_once(port: int, timeout_s: float = 5.0) -> None:
    """A Ping over a fresh connection is answered within ``timeout_s`` (else it raises)."""
    c = client(port, timeout_s)
    try:
        assert c.Ping() == "pong"
    finally:
        c.close()


def encode_call(name: str, args: Any, *, strict: bool = True, seqid: int = 1) -> bytes:
    """A request payload (no length prefix) as thriftpy2's client writes it."""
    buf = TCyMemoryBuffer()
    proto = TCyBinaryProtocol(buf, strict_write=strict)
    proto.write_message_begin(name, TMessageType.CALL, seqid)
    args.write(proto)
    proto.write_message_end()
    return bytes(buf.getvalue())


def message_header(name: bytes, *, seqid: int = 1, mtype: int = TMessageType.CALL) -> bytes:
    """A strict message header; append the args struct to make a request."""
    return struct.pack(">Ii", VERSION_1 | mtype, len(name)) + name + struct.pack(">i", seqid)


def framed(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def connect(port: int, timeout_s: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"EOF after {len(data)} of {n} bytes")
        data += chunk
    return bytes(data)


def read_reply(sock: socket.socket) -> tuple[str, int, int, bytes]:
    """Read one framed reply: (method, message type, seqid, the rest of the payload)."""
    (length,) = struct.unpack(">i", recv_exact(sock, 4))
    payload = recv_exact(sock, length)
    proto = TCyBinaryProtocol(TCyMemoryBuffer(payload), strict_read=True)
    name, mtype, seqid = proto.read_message_begin()
    return name, mtype, seqid, payload


def read_exception(sock: socket.socket) -> TApplicationException:
    """Read one framed reply that must be a TApplicationException."""
    (length,) = struct.unpack(">i", recv_exact(sock, 4))
    proto = TCyBinaryProtocol(TCyMemoryBuffer(recv_exact(sock, length)), strict_read=True)
    _, mtype, _ = proto.read_message_begin()
    assert mtype == TMessageType.EXCEPTION, f"expected an exception reply, got type {mtype}"
    exc = TApplicationException()
    proto.read_struct(exc)
    return exc


def closed_by_peer(sock: socket.socket, timeout_s: float = 5.0) -> bool:
    """True when the peer closes (EOF or reset) within ``timeout_s``; discards any data."""
    sock.settimeout(timeout_s)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return False


def ping_raw(sock: socket.socket, seqid: int = 7) -> str:
    """A Ping over an existing raw connection; returns the answer."""
    sock.sendall(framed(encode_call("Ping", LogService.Ping_args(), seqid=seqid)))
    name, mtype, got_seqid, payload = read_reply(sock)
    assert (name, mtype, got_seqid) == ("Ping", TMessageType.REPLY, seqid)
    proto = TCyBinaryProtocol(TCyMemoryBuffer(payload), strict_read=True)
    proto.read_message_begin()
    result = LogService.Ping_result()
    proto.read_struct(result)
    return str(result.success)


class PingMonitor:
    """Pings over one connection in a loop, counting answers and keeping any error.

    A test waits for ``count`` to grow after its abuse: the server kept
    answering. (How fast it kept answering is bench's hostile_load.)
    """

    def __init__(self, port: int) -> None:
        self._client = client(port)
        self._stop = threading.Event()
        self.count = 0
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PingMonitor:
        self._thread.start()
        wait_for(lambda: self.count > 0, 5.0, what="a first ping")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self._client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._client.Ping()
            except BaseException as e:
                self.errors.append(e)
                return
            self.count += 1
            self._stop.wait(0.005)
