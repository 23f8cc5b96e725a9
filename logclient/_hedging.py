"""The hedge delay and budget: recent round trips, and how many hedged sends are allowed.

"The Tail at Scale" (Dean and Barroso) sends a second copy of a request
that has not been answered within a high percentile of the expected latency;
the first answer wins. Our ``Append`` is idempotent and readers show each
record once, so a batch stored by both servers is only disk spent. See
:class:`~logclient.HedgePolicy` for the rule; this module keeps its state.

Only batches that were not hedged give round trips: a hedged batch's late
answer measures the server that froze, and letting it raise the delay would
make the next freeze cost more. The budget (a token bucket refilled by every
batch sent) bounds what a persistently slow server can cost: at most
``max_share`` extra batches per batch sent.

It also says which connections are stalled (their oldest call has waited
longer than the delay) and which of their batches are due to be hedged; the
dispatcher picks the server and sends.

Runs on the sender thread only.
"""

from __future__ import annotations

import math
from collections import deque

from logclient._delivery import Delivery
from logclient._inflight import Link
from logclient._policies import HedgePolicy
from logwire.serverset import Endpoint

__all__ = ["Hedging"]

#: Recompute the delay after this many new round trips (sorting 256 floats each
#: answer would cost more than it tells).
_RECOMPUTE_EVERY = 8


class Hedging:
    """Round trips, the hedge delay they give, and the hedge budget."""

    def __init__(self, policy: HedgePolicy) -> None:
        self.policy = policy
        self._round_trips: deque[float] = deque(maxlen=policy.window)
        self._delay = policy.max_delay_s
        self._fresh = 0
        self._tokens = float(policy.burst)
        #: Batches sent to one more server because no answer came in time.
        self.hedged_batches = 0

    def __repr__(self) -> str:
        return (
            f"<Hedging enabled={self.policy.enabled} delay={self._delay * 1000:.0f}ms "
            f"samples={len(self._round_trips)} tokens={self._tokens:.1f} "
            f"hedged={self.hedged_batches}>"
        )

    @property
    def enabled(self) -> bool:
        return self.policy.enabled

    def note_round_trip(self, seconds: float) -> None:
        """A call was answered ``seconds`` after it was sent."""
        self._round_trips.append(max(0.0, seconds))
        self._fresh += 1
        if self._fresh >= _RECOMPUTE_EVERY:
            self._fresh = 0
            self._delay = self._compute()

    def delay(self) -> float:
        """How long the oldest call on a connection may wait before its batches are hedged."""
        return self._delay

    def _compute(self) -> float:
        policy = self.policy
        if len(self._round_trips) < policy.min_samples:
            return policy.max_delay_s
        ordered = sorted(self._round_trips)
        index = min(len(ordered) - 1, max(0, math.ceil(policy.quantile * len(ordered)) - 1))
        return min(policy.max_delay_s, max(policy.min_delay_s, policy.factor * ordered[index]))

    def note_sent(self) -> None:
        """A batch was sent (not as a hedge): the budget grows by ``max_share``."""
        self._tokens = min(float(self.policy.burst), self._tokens + self.policy.max_share)

    def may_hedge(self) -> bool:
        """A hedged send is within the budget now."""
        return self.policy.enabled and self._tokens >= 1.0

    def note_hedged(self) -> None:
        """A batch was hedged: it costs one from the budget."""
        self._tokens -= 1.0
        self.hedged_batches += 1

    # ----------------------------------------------------- which connections

    def due(self, busy: list[Link]) -> float | None:
        """When the next connection's batches are due to be hedged (None: none will be)."""
        if not self.may_hedge():
            return None
        delay = self._delay
        due: float | None = None
        for link in busy:
            if link.pipelined and _hedgeable(link):
                at = max(link.sent_at[0] + delay, link.hold_hedges_until)
                due = at if due is None else min(due, at)
        return due

    def stalled(self, busy: list[Link], now: float) -> frozenset[Endpoint]:
        """Servers whose oldest call has waited longer than the hedge delay."""
        if not self.policy.enabled:
            return frozenset()
        limit = now - self._delay
        return frozenset(link.endpoint for link in busy if link.sent_at[0] <= limit)

    def due_windows(self, busy: list[Link], now: float) -> list[tuple[Link, list[Delivery]]]:
        """The stalled connections whose batches are due to be hedged now, with those
        batches, oldest first; each is then left alone for ``min_delay_s`` (so a
        connection with nowhere to hedge to is not looked at in a loop)."""
        due = []
        for link in busy:
            if not link.pipelined or link.sent_at[0] + self._delay > now:
                continue
            if link.hold_hedges_until > now:
                continue
            link.hold_hedges_until = now + self.policy.min_delay_s
            deliveries = _hedgeable(link)
            if deliveries:
                due.append((link, deliveries))
        return due


def _hedgeable(link: Link) -> list[Delivery]:
    """``link``'s batches that could still be hedged: not acknowledged, not hedged yet."""
    return [d for d in link.window if not d.acked and not d.done and d.hedged_at is None]
