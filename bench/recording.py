"""A LogClient transport that notes every acknowledgement: when, by which server, how many records.

It wraps the real :class:`~logclient._connection.ThriftTransport` through the
client's documented network seam (``LogClient(transport=...)``), so the client
under test runs its own sockets, timeouts and failover; the wrapper only
timestamps each ``Append`` that a server acknowledged, on the sender thread,
right after the reply was decoded. It passes the connection's ``fileno()`` on,
so the client waits on several connections at once and hedges as it would
without the wrapper.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, cast

from logclient._batch import Batch
from logclient._connection import Acknowledgement, Connection, Pipelined, ThriftTransport
from logclient._policies import FailoverPolicy
from logwire.serverset import Endpoint

__all__ = ["RecordingTransport"]


class _RecordingConnection:
    def __init__(self, inner: Connection, owner: RecordingTransport) -> None:
        self._inner = inner
        self._owner = owner
        self.endpoint = inner.endpoint
        self.calls = inner.calls
        self.last_used = inner.last_used
        self._in_flight: collections.deque[int] = collections.deque()

    def send(self, batch: Batch, deadline: float) -> None:
        """Pipelined call: record a failure; the acknowledgement is recorded by receive()."""
        try:
            cast(Pipelined, self._inner).send(batch, deadline)
        except Exception as exc:
            self._owner.note_failure(self.endpoint, exc)
            raise
        finally:
            self.calls = self._inner.calls
            self.last_used = self._inner.last_used
        self._in_flight.append(batch.count)

    def receive(self, deadline: float) -> Acknowledgement:
        try:
            outcome = cast(Pipelined, self._inner).receive(deadline)
        except Exception as exc:
            self._owner.note_failure(self.endpoint, exc)
            raise
        finally:
            self.last_used = self._inner.last_used
        self._owner.note(self.endpoint, self._in_flight.popleft() if self._in_flight else 0)
        return outcome

    def append(self, batch: Batch) -> Acknowledgement:
        try:
            outcome = self._inner.append(batch)
        except Exception as exc:
            self._owner.note_failure(self.endpoint, exc)
            raise
        finally:
            self.calls = self._inner.calls
            self.last_used = self._inner.last_used
        self._owner.note(self.endpoint, batch.count)
        return outcome

    def fileno(self) -> int:
        """The inner connection's socket, so the client can wait on several at once."""
        return int(self._inner.fileno())  # type: ignore[attr-defined]

    def buffered(self) -> bool:
        return bool(self._inner.buffered())  # type: ignore[attr-defined]

    def abort(self) -> None:
        self._inner.abort()

    def close(self) -> None:
        self._inner.close()


class RecordingTransport:
    """``acks``: ``(time.monotonic(), "host:port", records)`` per acknowledged ``Append``.

    ``failures``: ``(time.monotonic(), "host:port", what)`` per failed call or connect.
    """

    def __init__(self) -> None:
        self._inner = ThriftTransport()
        self.acks: list[tuple[float, str, int]] = []
        self.failures: list[tuple[float, str, str]] = []
        self._cond = threading.Condition()

    def __repr__(self) -> str:
        return f"<RecordingTransport acks={len(self.acks)}>"

    def connect(self, endpoint: Endpoint, policy: FailoverPolicy) -> Connection:
        try:
            inner = self._inner.connect(endpoint, policy)
        except Exception as exc:
            self.note_failure(endpoint, exc, "connect")
            raise
        return _RecordingConnection(inner, self)

    def note_failure(self, endpoint: Endpoint, exc: BaseException, phase: str = "call") -> None:
        self.failures.append((time.monotonic(), str(endpoint), f"{phase}: {exc}"))

    def first_failure(self, after: float, endpoint: str) -> tuple[float, str, str] | None:
        """The first failure noted for ``endpoint`` later than ``after``."""
        for failure in list(self.failures):
            if failure[0] > after and failure[1] == endpoint:
                return failure
        return None

    def note(self, endpoint: Endpoint, records: int) -> None:
        with self._cond:
            self.acks.append((time.monotonic(), str(endpoint), records))
            self._cond.notify_all()

    @property
    def last(self) -> tuple[float, str, int] | None:
        acks = self.acks
        return acks[-1] if acks else None

    def wait_ack(
        self, after: float, not_from: str | None, timeout: float
    ) -> tuple[float, str, int] | None:
        """The first acknowledgement later than ``after`` by a server other than ``not_from``."""
        deadline = time.monotonic() + timeout
        start = 0
        with self._cond:
            while True:
                acks = self.acks
                for i in range(start, len(acks)):
                    t, endpoint, _ = acks[i]
                    if t > after and endpoint != not_from:
                        return acks[i]
                start = len(acks)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(min(remaining, 0.05))

    def stable_on(self, seconds: float) -> str | None:
        """The server that acknowledged everything of the last ``seconds`` (None if several or none)."""
        now = time.monotonic()
        acks = self.acks
        recent: set[str] = set()
        i = len(acks) - 1
        oldest = None
        while i >= 0 and acks[i][0] >= now - seconds:
            recent.add(acks[i][1])
            oldest = acks[i][0]
            i -= 1
        if len(recent) != 1 or oldest is None or i < 0:
            return None
        return next(iter(recent))


def ack_log(acks: list[tuple[float, str, int]]) -> dict[str, Any]:
    """A compact, JSON-able form of an ack list: endpoints once, rows of [t, index, n]."""
    endpoints: dict[str, int] = {}
    rows = []
    for t, endpoint, n in acks:
        idx = endpoints.setdefault(endpoint, len(endpoints))
        rows.append([round(t, 6), idx, n])
    return {"endpoints": list(endpoints), "rows": rows}
