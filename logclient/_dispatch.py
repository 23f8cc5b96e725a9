"""Which servers get a batch, sending it there, and reading the answers.

**Placement.** A new batch goes to ``ReplicationPolicy.copies`` distinct
servers picked by the :class:`~logclient._servers.ServerPool` (the choice
policy's pick first, the other copies spread over zones and hosts); it is
sent only when at least ``acks`` servers are there to take it, otherwise it
waits (and with it everything logged after it) as it would with no server.
A batch that lost a copy (its connection failed) gets one on another server;
copies beyond ``acks`` that find no server wait in the ledger and are placed
in the background, taking turns with new batches.

**Order.** A server answers one connection's calls in order, so a batch sent
after another on one connection is received after it. Across servers the
dispatcher keeps the same property for the first copy of each batch: a batch
goes to a server only if every older batch still waiting for its
acknowledgement was sent to that server before it; otherwise (the choice
policy picked other servers) the dispatcher first collects the answers in
flight and then sends to the servers it picked. With one copy that is the
old rule: the sender moves to another server only once its window is
answered. Copies made later (after a failure, or in the background) may
reach their server after newer batches; readers order by batch id.

**Hedging.** When the oldest call on a connection has waited longer than the
hedge delay (see :class:`~logclient.HedgePolicy`), the batches of that
window not yet acknowledged are also sent to one other live server, oldest
first, and the stalled server gets no new batches while it stays stalled.
Answers are read from whichever connection has one (``poll`` on their
sockets), so a frozen server holds up nothing but itself; it is still given
up at the RPC timeout, and its late answers, if any, only add holders.

**Outcomes.** What an answer or an error means for the batch and its server
(where the batch waits next, which server counts as down, the failure
clock) is :class:`~logclient._outcomes.Outcomes`'s; the dispatcher keeps
what decides the next send: the servers the choice policy switched to, and
the server to retry at once on a fresh connection.

Runs on the sender thread only.
"""

from __future__ import annotations

import enum
import logging
import time

from logclient._accumulator import Accumulator
from logclient._delivery import Delivery
from logclient._hedging import Hedging
from logclient._inflight import InFlightRequests, Link
from logclient._ledger import Ledger
from logclient._outcomes import Outcomes
from logclient._policies import BatchPolicy, FailoverPolicy, HedgePolicy, ReplicationPolicy
from logclient._queue import RateLimitedLog
from logclient._refusals import Refusals
from logclient._servers import ServerPool
from logclient.errors import BatchRejectedError, ServerUnavailableError
from logwire.serverset import Endpoint

__all__ = ["Dispatcher", "Step"]

logger = logging.getLogger("logclient._sender")


class Step(enum.Enum):
    """What :meth:`Dispatcher.send_next` did, for the sender's loop."""

    #: Sent, settled or refiled something: look again at once.
    PROGRESS = "progress"
    #: Answers in flight must be read before anything more is sent.
    BLOCKED = "blocked"
    #: Too few servers to send the next batch to.
    NO_SERVER = "no_server"
    #: Nothing to send now.
    IDLE = "idle"


class Dispatcher:
    """Places deliveries on servers, sends them and reads the answers (the outcomes file them)."""

    def __init__(
        self,
        *,
        pool: ServerPool,
        links: InFlightRequests,
        accumulator: Accumulator,
        ledger: Ledger,
        outcomes: Outcomes,
        refusals: Refusals,
        batching: BatchPolicy,
        failover: FailoverPolicy,
        replication: ReplicationPolicy,
        hedging: HedgePolicy,
    ) -> None:
        self._pool = pool
        self._links = links
        self._accumulator = accumulator
        self._ledger = ledger
        self._outcomes = outcomes
        self._refusals = refusals
        self._batching = batching
        self._failover = failover
        self._copies = replication.copies
        self._acks = replication.required
        self.hedging = Hedging(hedging)
        self._hedge_log = RateLimitedLog(logger)
        # Set when the choice policy picked other servers while batches were in
        # flight: no more sends until they are answered, then to those servers.
        self._switch_to: tuple[Endpoint, ...] = ()
        self._switching = False
        # A reused connection failed at once (or asked for an older call): the next
        # placement puts this server first, on a fresh connection.
        self._retry_on: Endpoint | None = None
        self._pool_version = -1
        # Copies beyond acks take turns with new batches; after a turn that found no
        # server, they wait for the server set to change or a probe interval to pass.
        self._copies_turn = False
        self._copies_retry_at = 0.0
        self._copies_version = -1
        # Counters: written by the sender thread only, read by stats().
        self.sent_records = 0
        self.sent_batches = 0
        self.batches_retried = 0

    def __repr__(self) -> str:
        return (
            f"<Dispatcher copies={self._copies} acks={self._acks} "
            f"switching_to={[str(e) for e in self._switch_to] if self._switching else None} "
            f"failing={self._outcomes.failing_since is not None} {self._links!r}>"
        )

    # ------------------------------------------------------------------ state

    def busy(self) -> list[Link]:
        """Connections with calls awaiting answers."""
        return self._links.busy()

    def prune(self) -> None:
        """Close idle connections to servers that left (once nothing is in flight)."""
        if self._pool.version != self._pool_version and not self._links.busy():
            self._pool_version = self._pool.version
            self._links.prune(self._pool.is_known)

    def _common(self, excluding: Delivery | None = None) -> set[Endpoint] | None:
        """The servers every batch in flight and not yet acknowledged was sent to
        (None: there is no such batch, so a new one may go anywhere)."""
        common: set[Endpoint] | None = None
        for delivery in self._ledger.unacked():
            if delivery is excluding or not delivery.trying:
                continue
            common = set(delivery.trying) if common is None else common & delivery.trying
        return common

    def _has_room(self, endpoint: Endpoint) -> bool:
        link = self._links.get(endpoint)
        return link is None or len(link.window) < link.limit(self._batching)

    # ---------------------------------------------------------------- sending

    def send_next(self) -> Step:
        """Send the next delivery (or a missing copy), if the windows allow it."""
        common = self._common()
        if common is not None and (self._switching or not all(self._has_room(e) for e in common)):
            return Step.BLOCKED
        self._copies_turn = not self._copies_turn
        if self._copies_turn and self._place_copies():
            return Step.PROGRESS
        delivery = self._accumulator.next()
        if delivery is None:
            return Step.PROGRESS if self._place_copies() else Step.IDLE
        self._ledger.track(delivery)
        return self._deliver(delivery)

    def _deliver(self, delivery: Delivery) -> Step:
        """Send ``delivery`` (the oldest that needs servers) to as many as it lacks."""
        if delivery.done:
            return Step.PROGRESS
        placed = len(delivery.holders) + len(delivery.trying)
        if placed >= self._acks:
            self._outcomes.file([delivery])  # only copies beyond acks are missing: background
            return Step.PROGRESS
        need = self._copies - placed
        minimum = self._acks - placed
        common = self._common(excluding=delivery)
        if common is None:
            return self._open_and_send(delivery, need, minimum)
        batch = delivery.batch
        targets = self._pool.choose_copies(
            need, delivery.excluded(), batch.nbytes, avoid=self._stalled(), minimum=minimum
        )
        if len(targets) >= minimum and all(t in common and self._has_room(t) for t in targets):
            for endpoint in targets:
                link = self._links.get(endpoint)
                assert link is not None
                self._send(link, delivery)
            self._outcomes.file([delivery])
            return Step.PROGRESS
        # Other servers for this batch: first collect the answers in flight.
        self._accumulator.push_front(delivery)
        self._switch_to = targets
        self._switching = True
        return Step.BLOCKED

    def _open_and_send(self, delivery: Delivery, need: int, minimum: int) -> Step:
        """Nothing unacknowledged in flight: pick servers, connect, send."""
        fresh, self._retry_on = self._retry_on, None
        switch_to, self._switch_to = self._switch_to, ()
        self._switching = False
        batch = delivery.batch
        excluded = delivery.excluded()
        picks: list[Endpoint] = []
        for endpoint in (fresh, *switch_to):
            if endpoint is not None and endpoint not in excluded and endpoint not in picks:
                picks.append(endpoint)
        del picks[need:]
        if len(picks) < need:
            picks += self._pool.choose_copies(
                need - len(picks),
                excluded | frozenset(picks),
                batch.nbytes,
                avoid=self._stalled(),
                minimum=max(0, minimum - len(picks)),
            )
        if (
            not picks
            and batch.refused_by
            and self._pool.live(frozenset(delivery.holders | delivery.trying))
        ):
            # Only servers that refused it as too large are up now: split it for them.
            self._refusals.refused_everywhere(delivery)
            return Step.PROGRESS
        if len(picks) < minimum:
            self._accumulator.push_front(delivery)
            if picks or self._acks > 1:
                live = len(self._pool.live())
                reason = f"{live} servers live, {self._acks} needed (ReplicationPolicy.acks)"
            else:
                reason = "no server available"
            self._outcomes.note_failing(reason, announce=True, failure=self._pool.answered)
            return Step.NO_SERVER
        for endpoint in picks:
            try:
                link = self._links.open(endpoint, fresh=endpoint == fresh)
            except ServerUnavailableError as exc:
                self._outcomes.unavailable(endpoint, delivery, exc)
                continue
            self._send(link, delivery)
        self._outcomes.file([delivery])
        return Step.PROGRESS

    def _place_copies(self) -> bool:
        """Send the oldest missing copy beyond ``acks``; False when there is none to send."""
        waiting = self._ledger.waiting()
        if not waiting:
            return False
        now = time.monotonic()
        if self._pool.version == self._copies_version and now < self._copies_retry_at:
            return False
        delivery = next((d for d in waiting if d.missing(self._copies) > 0), None)
        if delivery is None:
            return False  # every missing copy is on its way
        need = delivery.missing(self._copies)
        targets = [
            e
            for e in self._pool.choose_copies(
                need,
                delivery.excluded(),
                delivery.batch.nbytes,
                avoid=self._stalled(),
                minimum=0,
                probe=False,
                remember=False,
            )
            if self._has_room(e)
        ]
        if not targets:
            self._copies_version = self._pool.version
            self._copies_retry_at = now + self._failover.probe_interval_s
            return False
        for endpoint in targets:
            try:
                link = self._links.open(endpoint)
            except ServerUnavailableError as exc:
                self._outcomes.unavailable(endpoint, delivery, exc)
                continue
            self._send(link, delivery)
        self._outcomes.file([delivery])
        return True

    def _send(self, link: Link, delivery: Delivery, *, hedge: bool = False) -> None:
        batch = delivery.batch
        if not hedge:
            self.hedging.note_sent()
        delivery.trying.add(link.endpoint)
        if delivery.first_sent_at is None:
            delivery.first_sent_at = time.monotonic()
        batch.attempts += 1
        if batch.attempts == 2:
            self.batches_retried += 1
        self.sent_batches += 1
        self.sent_records += batch.count
        try:
            link.send(delivery, self._failover)
        except (ServerUnavailableError, BatchRejectedError) as exc:
            self._on_link_error(link, exc)

    # ---------------------------------------------------------------- answers

    def owes_answers(self) -> bool:
        """Some connection holds a batch still waiting for its acknowledgement."""
        return any(not d.acked and not d.done for link in self._links.busy() for d in link.window)

    def receive(self, max_wait: float | None = None) -> None:
        """Read the answers that are there, waiting for one at most ``max_wait`` seconds
        (None: until a connection's RPC timeout); first hedge a stalled connection's
        batches when their delay has passed (see :class:`~logclient.HedgePolicy`).

        With a connection that cannot say whether an answer is there (a transport
        without ``fileno()``), the answer to the oldest call on the connection that
        times out first is read, waiting as long as it takes.
        """
        busy = self._links.busy()
        if not busy:
            return
        failover = self._failover
        now = time.monotonic()
        hedge_at = self.hedging.due(busy)
        if hedge_at is not None and hedge_at <= now:
            self._hedge(busy, now)
            return
        if any(link.ready() is None for link in busy) or (
            hedge_at is None and max_wait is None and len(busy) == 1
        ):
            self._read(min(busy, key=lambda b: b.deadline(failover)))
            return
        until = min(link.deadline(failover) for link in busy)
        if hedge_at is not None:
            until = min(until, hedge_at)
        if max_wait is not None:
            until = min(until, now + max_wait)
        ready = self._links.wait(busy, until - now)
        for link in ready:
            self._read(link)
        if not ready:
            now = time.monotonic()
            for link in busy:
                if link.window and now >= link.deadline(failover):
                    self._read(link)  # raises its timeout: the connection is given up

    def _read(self, link: Link) -> None:
        """The answer to ``link``'s oldest call (or its error)."""
        try:
            delivery, outcome, sent_at = link.receive(self._failover)
        except (ServerUnavailableError, BatchRejectedError) as exc:
            self._on_link_error(link, exc)
            return
        hedged_at = delivery.hedged_at
        if link.pipelined and (hedged_at is None or sent_at >= hedged_at):
            self.hedging.note_round_trip(time.monotonic() - sent_at)
        self._outcomes.answered(link.endpoint, delivery, outcome)

    # ---------------------------------------------------------------- hedging

    def _stalled(self) -> frozenset[Endpoint]:
        """Servers whose oldest call has waited longer than the hedge delay."""
        return self.hedging.stalled(self._links.busy(), time.monotonic())

    def _hedge(self, busy: list[Link], now: float) -> None:
        """Send the batches of every stalled connection to one other live server as well."""
        hedging = self.hedging
        avoid = hedging.stalled(busy, now)
        for link, deliveries in hedging.due_windows(busy, now):
            target: Link | None = None
            sent = 0
            for delivery in deliveries:
                if not hedging.may_hedge():
                    break
                if (
                    target is None
                    or target.endpoint in delivery.excluded()
                    or not self._has_room(target.endpoint)
                    or self._links.get(target.endpoint) is not target
                ):
                    target = self._hedge_target(delivery, avoid)
                    if target is None:
                        break
                hedging.note_hedged()
                delivery.hedged_at = now
                self._send(target, delivery, hedge=True)
                self._outcomes.file([delivery])
                sent += 1
            if sent:
                self._hedge_log.warning(
                    "logclient: no answer from %s for %.0f ms; sent its %d unacknowledged "
                    "batches to %s as well",
                    link.endpoint,
                    (now - link.sent_at[0]) * 1000,
                    sent,
                    target.endpoint if target is not None else "another server",
                )

    def _hedge_target(self, delivery: Delivery, avoid: frozenset[Endpoint]) -> Link | None:
        """A connection to a live server, not stalled, that may take ``delivery`` now."""
        picks = self._pool.choose_copies(
            1, delivery.excluded() | avoid, delivery.batch.nbytes, minimum=0, probe=False
        )
        for endpoint in picks:
            if not self._has_room(endpoint):
                continue
            try:
                return self._links.open(endpoint)
            except ServerUnavailableError as exc:
                self._outcomes.unavailable(endpoint, delivery, exc)
        return None

    def _on_link_error(self, link: Link, exc: ServerUnavailableError | BatchRejectedError) -> None:
        """Any error on a connection: the outcomes file its batches; no switch is pending."""
        self._switching = False
        self._switch_to = ()
        retry = self._outcomes.link_failed(link, exc)
        if retry is not None:
            self._retry_on = retry

    def requeue_all(self) -> None:
        """After an unexpected error: every window emptied, every delivery in hand that
        is not in flight filed anew (the connections are closed next)."""
        for link in self._links.busy():
            for delivery in link.take_window():
                delivery.trying.discard(link.endpoint)
        self._switching = False
        self._switch_to = ()
        self._outcomes.file(d for d in self._ledger.unacked() if not d.trying)
