"""UNIT-TEST HELPER: a small real Thrift LogService running inside the test process.

It speaks the real protocol (framed transport, Cython binary protocol, the
IDL's ``AppendCompressed``, ``AppendPacked`` and ``Append`` with dedup by
``(producer, sequence)``; ``compressed=False`` plays a server that predates
``AppendCompressed``, ``packed=False`` one that predates both) over a real TCP
socket, so the client's sender, connections and failover are exercised end to
end without the real logserver. It keeps records in memory and can be told to
misbehave: refuse (draining, storage unavailable, TRY_LATER, too large), hang
(like SIGSTOP), drop connections, or die (stop) and come back on the same port.

Integration tests never use it: they run real ``logserver`` processes.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from thriftpy2.protocol import TCyBinaryProtocolFactory
from thriftpy2.thrift import TApplicationException, TProcessor
from thriftpy2.transport import TCyFramedTransportFactory, TSocket

from logwire.compression import decompress
from logwire.idl import log_thrift
from logwire.packed import unpack_records
from logwire.serverset import Endpoint

__all__ = ["InProcessLogServer", "StoredBatch"]


class _DropConnection(Exception):
    """Undeclared in the IDL: thriftpy2 closes the connection without a reply."""


@dataclass(frozen=True)
class StoredBatch:
    producer: str
    sequence: int
    entries: tuple[tuple[str, bytes], ...]


@dataclass
class _Behaviour:
    mode: str = "ok"  # ok, draining, unavailable, try_later, hang, drop, drop_after_store
    max_batch_records: int | None = None
    bad_category: str | None = None
    fail_next: list[str] = field(default_factory=list)


class _Handler:
    def __init__(self, server: InProcessLogServer) -> None:
        self._server = server

    def Append(self, batch: Any) -> Any:
        return self._server._append(batch)

    def AppendCompressed(self, batch: Any) -> Any:
        if not (self._server.packed and self._server.compressed):
            raise TApplicationException(TApplicationException.UNKNOWN_METHOD, "AppendCompressed")
        self._server.compressed_calls += 1
        count = sum(run.count for run in batch.runs)
        columns = decompress(batch.codec, batch.columns, batch.raw_bytes, 1 << 26)
        lengths, messages = columns[: 4 * count], columns[4 * count :]
        runs = [(run.category, run.count) for run in batch.runs]
        entries = [
            log_thrift.LogEntry(category=c, message=m)
            for c, m in unpack_records(runs, lengths, messages)
        ]
        return self._server._append(
            log_thrift.AppendBatch(
                producer=batch.producer, sequence=batch.sequence, entries=entries
            )
        )

    def AppendPacked(self, batch: Any) -> Any:
        if not self._server.packed:
            # What thriftpy2 answers for a method the service lacks (an older server).
            raise TApplicationException(TApplicationException.UNKNOWN_METHOD, "AppendPacked")
        self._server.packed_calls += 1
        runs = [(run.category, run.count) for run in batch.runs]
        entries = [
            log_thrift.LogEntry(category=c, message=m)
            for c, m in unpack_records(runs, batch.lengths, batch.messages)
        ]
        return self._server._append(
            log_thrift.AppendBatch(
                producer=batch.producer, sequence=batch.sequence, entries=entries
            )
        )

    def Ping(self) -> str:
        return "pong"


class InProcessLogServer:
    """A Thrift LogService on 127.0.0.1 with in-memory, deduplicating storage."""

    def __init__(
        self, port: int = 0, name: str = "inproc", *, packed: bool = True, compressed: bool = True
    ) -> None:
        self.name = name
        self.port = port
        self.packed = packed
        self.compressed = compressed
        self.packed_calls = 0
        self.compressed_calls = 0
        self.behaviour = _Behaviour()
        self._lock = threading.Lock()
        self._stored: dict[tuple[str, int], StoredBatch] = {}
        self._order: list[tuple[str, int]] = []
        self.calls = 0
        self.duplicates = 0
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._resume = threading.Event()
        self._running = False

    def __repr__(self) -> str:
        return (
            f"<InProcessLogServer {self.name} {self.endpoint} running={self._running} "
            f"mode={self.behaviour.mode} batches={len(self._stored)} calls={self.calls}>"
        )

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.port)

    # ------------------------------------------------------------- lifecycle

    def start(self) -> InProcessLogServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        sock.settimeout(0.05)
        self.port = sock.getsockname()[1]
        self._listener = sock
        self._running = True
        self._resume.clear()
        self._accept_thread = threading.Thread(
            target=self._accept, name=f"inproc-{self.name}-accept", daemon=True
        )
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        """Die like a killed process: stop listening, reset every connection."""
        self._running = False
        self._resume.set()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._accept_thread is not None:
            self._accept_thread.join(5)
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()
        for thread in self._threads:
            thread.join(5)
        self._threads = [t for t in self._threads if t.is_alive()]

    def restart(self) -> InProcessLogServer:
        """Come back on the same port with the same storage (as after a restart)."""
        self.stop()
        self.behaviour = _Behaviour()
        return self.start()

    def resume(self) -> None:
        """End a hang (like SIGCONT): blocked calls proceed."""
        self.behaviour.mode = "ok"
        self._resume.set()

    # --------------------------------------------------------------- storage

    def batches(self) -> list[StoredBatch]:
        """Stored batches in arrival order (each (producer, sequence) once)."""
        with self._lock:
            return [self._stored[k] for k in self._order]

    def messages(self, category: str | None = None) -> list[bytes]:
        return [
            m for b in self.batches() for c, m in b.entries if category is None or c == category
        ]

    # ------------------------------------------------------------- internals

    def _accept(self) -> None:
        listener = self._listener
        while self._running and listener is not None:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self._lock:
                self._conns.add(conn)
            thread = threading.Thread(
                target=self._serve, args=(conn,), name=f"inproc-{self.name}-conn", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        transport = TCyFramedTransportFactory().get_transport(TSocket(sock=conn))
        protocol = TCyBinaryProtocolFactory().get_protocol(transport)
        processor = TProcessor(log_thrift.LogService, _Handler(self))
        try:
            while self._running:
                processor.process(protocol, protocol)
        except Exception:
            pass
        finally:
            with self._lock:
                self._conns.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def _append(self, batch: Any) -> Any:
        behaviour = self.behaviour
        with self._lock:
            self.calls += 1
            mode = behaviour.fail_next.pop(0) if behaviour.fail_next else behaviour.mode
        if mode == "hang":
            self._resume.wait(30)
            if not self._running:
                raise _DropConnection()
        elif mode == "draining":
            raise log_thrift.ServerDraining(reason="test: draining")
        elif mode == "unavailable":
            raise log_thrift.StorageUnavailable(reason="test: disk full")
        elif mode == "try_later":
            return log_thrift.AppendResult(code=log_thrift.ResultCode.TRY_LATER)
        elif mode == "drop":
            raise _DropConnection()
        if behaviour.max_batch_records is not None and len(batch.entries) > (
            behaviour.max_batch_records
        ):
            raise log_thrift.BatchTooLarge(
                reason="test: too many records",
                limit=behaviour.max_batch_records,
                actual=len(batch.entries),
            )
        entries = tuple(
            (
                e.category if isinstance(e.category, str) else e.category.decode(),
                e.message if isinstance(e.message, bytes) else e.message.encode(),
            )
            for e in batch.entries
        )
        if behaviour.bad_category is not None and any(
            c == behaviour.bad_category for c, _ in entries
        ):
            raise log_thrift.InvalidCategory(category=behaviour.bad_category, reason="test")
        key = (batch.producer, batch.sequence)
        with self._lock:
            duplicate = key in self._stored
            if duplicate:
                self.duplicates += 1
            else:
                self._stored[key] = StoredBatch(batch.producer, batch.sequence, entries)
                self._order.append(key)
        if mode == "drop_after_store":
            # Stored, but the answer is lost: the client cannot tell.
            raise _DropConnection()
        return log_thrift.AppendResult(
            code=log_thrift.ResultCode.OK,
            duplicate=duplicate,
            stored=0 if duplicate else len(entries),
        )
