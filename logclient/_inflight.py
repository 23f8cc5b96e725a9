"""Per-server connections and the calls each one awaits answers to (Kafka's ``InFlightRequests``).

A :class:`Link` is the sender's view of one server: its connection, kept
between uses (a server closes an idle one, so one idle for
``FailoverPolicy.max_idle_s`` is reopened first), and its *window*: the
deliveries sent on it and not yet answered, oldest first, with their send
times. A server answers one connection's calls one at a time, in order, so
the answers come back in window order and each must carry its call's
sequence id; up to ``BatchPolicy.max_in_flight`` calls may be outstanding
(one for a connection that cannot pipeline: its ``append`` answers at once,
and the answer waits in the link until the sender reads it).

A window's calls share one clock: a call must be answered within
``rpc_timeout_s`` of the oldest unanswered send on its connection. After
*any* error the connection is thrown away (thriftpy2 would hand a late reply
to the next call) and the window's deliveries go back to the sender, which
decides what each still needs.

Runs on the sender thread only; ``abort_busy`` is for the thread that closes
the client.
"""

from __future__ import annotations

import contextlib
import select
import time
from collections import deque
from collections.abc import Callable, Iterator

from logclient._connection import Acknowledgement, Connection, Transport
from logclient._delivery import Delivery
from logclient._policies import BatchPolicy, FailoverPolicy
from logwire.serverset import Endpoint

__all__ = ["InFlightRequests", "Link", "pipelines"]


def pipelines(conn: Connection) -> bool:
    """True when ``conn`` can have several calls in flight (``send``/``receive``)."""
    return hasattr(conn, "receive") and hasattr(conn, "send")


class Link:
    """One server's connection and its window of unanswered calls."""

    def __init__(self, endpoint: Endpoint, conn: Connection) -> None:
        self.endpoint = endpoint
        self.conn = conn
        self.pipelined = pipelines(conn)
        self.window: deque[Delivery] = deque()
        self.sent_at: deque[float] = deque()
        self._answers: deque[Acknowledgement] = deque()
        #: The connection had served an earlier window when this one opened.
        self.reused = False
        #: Answers read since this window opened.
        self.answered = 0
        #: No hedging of this window's batches before this time (see logclient._hedging).
        self.hold_hedges_until = 0.0

    def __repr__(self) -> str:
        return (
            f"<Link {self.endpoint} window={len(self.window)} reused={self.reused} "
            f"answered={self.answered}>"
        )

    def limit(self, batching: BatchPolicy) -> int:
        """How many calls may be unanswered at once on this connection."""
        return batching.max_in_flight if self.pipelined else 1

    def deadline(self, failover: FailoverPolicy) -> float:
        """When the oldest unanswered call times out (only with a non-empty window)."""
        return self.sent_at[0] + failover.rpc_timeout_s

    def send(self, delivery: Delivery, failover: FailoverPolicy) -> None:
        """Send ``delivery``'s batch; it joins the window even when this raises."""
        now = time.monotonic()
        deadline = (self.sent_at[0] if self.sent_at else now) + failover.rpc_timeout_s
        self.window.append(delivery)
        self.sent_at.append(now)
        batch = delivery.batch
        if self.pipelined:
            self.conn.send(batch, deadline)  # type: ignore[attr-defined]
        else:
            self._answers.append(self.conn.append(batch))

    def receive(self, failover: FailoverPolicy) -> tuple[Delivery, Acknowledgement, float]:
        """The answer to the oldest call: ``(delivery, answer, when it was sent)``.

        Raises what the connection raises; the window is then left as it was.
        """
        if self.pipelined:
            outcome: Acknowledgement = self.conn.receive(  # type: ignore[attr-defined]
                self.deadline(failover)
            )
        else:
            outcome = self._answers.popleft()
        delivery = self.window.popleft()
        sent_at = self.sent_at.popleft()
        self.answered += 1
        return delivery, outcome, sent_at

    def take_window(self) -> list[Delivery]:
        """Empty the window (its connection failed): its deliveries, oldest first."""
        deliveries = list(self.window)
        self.window.clear()
        self.sent_at.clear()
        self._answers.clear()
        return deliveries

    def ready(self) -> bool | None:
        """Whether an answer can be read without waiting: True, False, or None when the
        connection cannot tell (it offers no ``fileno()``)."""
        if self._answers:
            return True
        fileno = getattr(self.conn, "fileno", None)
        if fileno is None:
            return None
        buffered = getattr(self.conn, "buffered", None)
        return bool(buffered is not None and buffered())


class InFlightRequests:
    """The links to every server the sender talks to, by endpoint."""

    def __init__(self, transport: Transport, failover: FailoverPolicy) -> None:
        self._transport = transport
        self._failover = failover
        self._links: dict[Endpoint, Link] = {}

    def __repr__(self) -> str:
        busy = {str(e): len(link.window) for e, link in self._links.items() if link.window}
        return f"<InFlightRequests links={len(self._links)} busy={busy}>"

    def __iter__(self) -> Iterator[Link]:
        return iter(list(self._links.values()))

    def get(self, endpoint: Endpoint) -> Link | None:
        return self._links.get(endpoint)

    def busy(self) -> list[Link]:
        """Links with unanswered calls."""
        return [link for link in self._links.values() if link.window]

    def open(self, endpoint: Endpoint, *, fresh: bool = False) -> Link:
        """The link to send on; a window that is empty opens anew (on a new connection
        when ``fresh``, or when the kept one was idle too long). Raises
        ServerUnavailableError when a connection cannot be made."""
        link = self._links.get(endpoint)
        if link is not None and link.window:
            return link
        if link is not None and (
            fresh or time.monotonic() - link.conn.last_used > self._failover.max_idle_s
        ):
            self.discard(endpoint)
            link = None
        reused = link is not None
        if link is None:
            link = Link(endpoint, self._transport.connect(endpoint, self._failover))
            self._links[endpoint] = link
        link.reused = reused
        link.answered = 0
        return link

    def discard(self, endpoint: Endpoint) -> None:
        """Close and forget the connection to ``endpoint`` (its window must be taken first)."""
        link = self._links.pop(endpoint, None)
        if link is not None:
            link.conn.close()

    def prune(self, is_known: Callable[[Endpoint], bool]) -> None:
        """Close idle links to servers that left the known set."""
        for endpoint, link in list(self._links.items()):
            if not link.window and not is_known(endpoint):
                self.discard(endpoint)

    def wait(self, links: list[Link], timeout: float) -> list[Link]:
        """Wait up to ``timeout`` seconds until some of ``links`` (all able to tell, see
        :meth:`Link.ready`) have an answer to read; those links (maybe none)."""
        ready = [link for link in links if link.ready()]
        if ready:
            return ready
        poller = select.poll()
        by_fd: dict[int, Link] = {}
        for link in links:
            try:
                fd = link.conn.fileno()  # type: ignore[attr-defined]
            except (OSError, ValueError):
                fd = -1
            if fd < 0:
                return [link]  # closed under us: reading it raises, and that is handled
            by_fd[fd] = link
            poller.register(fd, select.POLLIN | select.POLLPRI)
        try:
            events = poller.poll(max(0, int(timeout * 1000) + 1))
        except InterruptedError:
            return []
        return [by_fd[fd] for fd, _ in events if fd in by_fd]

    def abort_busy(self) -> None:
        """From another thread: make blocked calls fail now (``close()`` is stopping)."""
        for link in list(self._links.values()):
            if link.window:
                with contextlib.suppress(Exception):
                    link.conn.abort()

    def close_all(self) -> None:
        for endpoint in list(self._links):
            self.discard(endpoint)

    def forget_in_child(self) -> None:
        """In a child after fork(): close the inherited sockets (the parent's connections
        stay as they are: only the child's copies of the descriptors go)."""
        for link in list(self._links.values()):
            with contextlib.suppress(Exception):
                link.conn.close()
        self._links = {}
