"""Which servers exist, which are down, and which one gets the next batch.

The known set comes from the :class:`~logclient.discovery.ServerSource` and may
be stale (ZooKeeper keeps a killed server's node for a session timeout). The
socket decides liveness: a failure marks a server down for a backoff that grows
with consecutive failures and resets on success. Endpoints, not node names,
identify servers, so a ghost node never counts twice.

A new registration of a known endpoint (its member node changed: the server
was restarted, or registered again after losing its session) is news: its
down state and what it refused as too large are forgotten, and it is tried at
once, even when every other server is down (a rolling restart of two servers
must not wait out the backoff of the one that just came back).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from logclient._policies import ChoicePolicy, FailoverPolicy
from logclient._source import KnownServer, one_per_endpoint
from logwire.serverset import Endpoint

__all__ = ["ServerPool"]


@dataclass
class _Health:
    failures: int = 0
    down_until: float = 0.0
    reason: str = ""


class ServerPool:
    """Known servers, their health, and the choice policy. Thread-safe.

    ``on_change`` is called (without the lock) when the known set changes, so
    the sender can wake up and move off a server that left.
    """

    def __init__(
        self,
        failover: FailoverPolicy,
        choice: ChoicePolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.failover = failover
        self.choice = choice
        self._clock = clock
        self._rng = rng or random.Random()
        self._on_change = on_change
        self._lock = threading.Lock()
        self._known: tuple[Endpoint, ...] = ()
        self._members: dict[Endpoint, KnownServer] = {}
        # Endpoints in registration order (for the "leader" choice).
        self._by_order: tuple[Endpoint, ...] = ()
        self._health: dict[Endpoint, _Health] = {}
        # The smallest batch (BatchPolicy bytes) each server refused as too large.
        self._too_large: dict[Endpoint, int] = {}
        self._current: Endpoint | None = None
        # The other servers of the last several-copy pick (the sticky choice keeps them).
        self._partners: tuple[Endpoint, ...] = ()
        self._rr = 0
        self._last_probe = -1e18
        #: The source has said which servers exist (False: it may not have answered yet).
        self.answered = False
        self.version = 0

    def __repr__(self) -> str:
        now = self._clock()
        down = [str(e) for e, h in self._health.items() if h.down_until > now]
        return (
            f"<ServerPool {self.choice.strategy} current={self._current} "
            f"known={[str(e) for e in self._known]} down={down}>"
        )

    # ------------------------------------------------------------- membership

    def update(self, servers: Iterable[Endpoint | KnownServer], *, answered: bool = True) -> None:
        """Replace the known set (called from the ServerSource's thread).

        ``servers`` are endpoints, or :class:`KnownServer` when the source can
        tell registrations apart: a known endpoint with a new member node
        starts with a clean slate. ``answered=False``: the source has not
        answered yet (an empty set then means "not known yet", not "none").
        """
        members = {m.endpoint: m for m in one_per_endpoint(servers)}
        known = tuple(members)
        if answered:
            self.answered = True
        with self._lock:
            if known == self._known and members == self._members:
                return
            renewed = {
                e
                for e, m in members.items()
                if m.node and e in self._members and self._members[e].node not in ("", m.node)
            }
            self._known = known
            self._members = members
            self._by_order = tuple(
                m.endpoint for m in sorted(members.values(), key=KnownServer.order_key)
            )
            self.version += 1
            # Health of servers that left is forgotten: one that comes back starts
            # with a clean slate and the socket judges it anew; so does one that
            # registered anew.
            self._health = {
                e: h for e, h in self._health.items() if e in members and e not in renewed
            }
            self._too_large = {
                e: n for e, n in self._too_large.items() if e in members and e not in renewed
            }
            if self._current not in members:
                self._current = None
        if self._on_change is not None:
            self._on_change()

    @property
    def known(self) -> tuple[Endpoint, ...]:
        return self._known

    @property
    def current(self) -> Endpoint | None:
        """The server that got the last batch (None before the first or after it left)."""
        return self._current

    def down(self) -> tuple[Endpoint, ...]:
        """Known servers inside their down backoff now."""
        now = self._clock()
        with self._lock:
            return tuple(e for e in self._known if self._is_down(e, now))

    def is_known(self, endpoint: Endpoint) -> bool:
        return endpoint in self._known

    def members(self) -> tuple[KnownServer, ...]:
        """The known servers as the source described them, sorted by endpoint."""
        with self._lock:
            return tuple(self._members.values())

    def members_unlocked(self) -> tuple[KnownServer, ...]:
        """:meth:`members` without the lock, for a child after fork() (a thread of the
        parent may have held it; no other thread of the child can be changing it)."""
        return tuple(self._members.values())

    # ---------------------------------------------------------------- choice

    def choose(self, exclude: frozenset[Endpoint] = frozenset(), size: int = 0) -> Endpoint | None:
        """A live server for the next batch, per the choice policy, not one in ``exclude``.

        A batch of ``size`` bytes (BatchPolicy's count) avoids servers that
        refused one at least as large, unless only such servers are left.
        When every candidate is down, returns the one whose backoff ends first
        at most once per ``probe_interval_s`` (a probe), else None.
        """
        picks = self.choose_copies(1, exclude, size)
        return picks[0] if picks else None

    def choose_copies(
        self,
        count: int,
        exclude: frozenset[Endpoint] = frozenset(),
        size: int = 0,
        *,
        avoid: frozenset[Endpoint] = frozenset(),
        minimum: int = 1,
        probe: bool = True,
        remember: bool = True,
    ) -> tuple[Endpoint, ...]:
        """Up to ``count`` distinct servers for copies of one batch, none in ``exclude``.

        The first is the choice policy's pick, as :meth:`choose` makes it. The
        others spread the copies over failure domains: a server in a zone none
        of the picked ones is in comes first, then one on another host, then
        any other, each tier in the policy's order (``sticky`` keeps the
        servers it picked last time). Servers in ``avoid`` (slow right now)
        are picked only when too few others are live. With ``probe`` and
        fewer than ``minimum`` live servers found, a down server is added as a
        probe (the one whose backoff ends first, at most once per
        ``probe_interval_s``). ``remember=False`` leaves the pick out of
        :attr:`current` and the sticky choice (a copy made in the background).
        """
        if count < 1:
            return ()
        now = self._clock()
        with self._lock:
            live = [e for e in self._known if e not in exclude and not self._is_down(e, now)]
            if size:
                fitting = [e for e in live if size < self._too_large.get(e, size + 1)]
                live = fitting or live
            picks: list[Endpoint] = []
            for group in ([e for e in live if e not in avoid], [e for e in live if e in avoid]):
                while len(picks) < count:
                    candidates = [e for e in group if e not in picks]
                    if not candidates:
                        break
                    picks.append(
                        self._spread(candidates, picks) if picks else self._first(candidates)
                    )
            if len(picks) < minimum and probe:
                probed = self._probe(now, exclude | frozenset(picks))
                if probed is not None:
                    picks.append(probed)
            if picks and remember:
                self._current = picks[0]
                self._partners = tuple(picks[1:])
            return tuple(picks)

    def _first(self, live: list[Endpoint]) -> Endpoint:
        """The choice policy's pick among ``live`` (the lock is held)."""
        strategy = self.choice.strategy
        if strategy == "sticky" and self._current in live:
            return self._current
        if strategy == "leader":
            return next(e for e in self._by_order if e in live)
        if strategy == "round_robin":
            chosen = live[self._rr % len(live)]
            self._rr += 1
            return chosen
        return self._rng.choice(live)

    def _spread(self, candidates: list[Endpoint], picks: list[Endpoint]) -> Endpoint:
        """The next copy's server: another zone first, then another host (the lock is held)."""
        zones = {self._zone(e) for e in picks}
        hosts = {e.host for e in picks}

        def tier(e: Endpoint) -> tuple[bool, bool]:
            return (self._zone(e) in zones, e.host in hosts)

        best = min(map(tier, candidates))
        tiered = [e for e in candidates if tier(e) == best]
        strategy = self.choice.strategy
        if strategy == "sticky":
            kept = [e for e in self._partners if e in tiered]
            if kept:
                return kept[0]
        if strategy in ("leader", "sticky"):
            return next(e for e in self._by_order if e in tiered)
        if strategy == "round_robin":
            chosen = tiered[self._rr % len(tiered)]
            self._rr += 1
            return chosen
        return self._rng.choice(tiered)

    def _zone(self, endpoint: Endpoint) -> str:
        member = self._members.get(endpoint)
        return member.zone if member is not None else ""

    def live(self, exclude: frozenset[Endpoint] = frozenset()) -> tuple[Endpoint, ...]:
        """Known servers outside their down backoff now, less ``exclude``."""
        now = self._clock()
        with self._lock:
            return tuple(e for e in self._known if e not in exclude and not self._is_down(e, now))

    def _probe(self, now: float, exclude: frozenset[Endpoint]) -> Endpoint | None:
        candidates = [e for e in self._known if e not in exclude]
        if not candidates or now - self._last_probe < self.failover.probe_interval_s:
            return None
        self._last_probe = now
        chosen = min(candidates, key=lambda e: self._health.get(e, _Health()).down_until)
        self._current = chosen
        return chosen

    def next_attempt_in(self) -> float | None:
        """Seconds until ``choose()`` may return a server again (None: no server known)."""
        now = self._clock()
        with self._lock:
            if not self._known:
                return None
            if any(not self._is_down(e, now) for e in self._known):
                return 0.0
            earliest = min(self._health[e].down_until for e in self._known)
            probe = self._last_probe + self.failover.probe_interval_s
            return max(0.0, min(earliest, probe) - now)

    # ---------------------------------------------------------------- health

    def mark_down(self, endpoint: Endpoint, reason: str) -> float:
        """Avoid ``endpoint`` for its backoff; returns the backoff in seconds."""
        now = self._clock()
        with self._lock:
            health = self._health.setdefault(endpoint, _Health())
            health.failures += 1
            backoff = self.failover.backoff(health.failures, self._rng.random())
            health.down_until = now + backoff
            health.reason = reason
            if self._current == endpoint:
                self._current = None
            return backoff

    def mark_up(self, endpoint: Endpoint) -> None:
        """A success: the backoff starts from scratch next time."""
        with self._lock:
            health = self._health.get(endpoint)
            if health is not None and (health.failures or health.down_until):
                self._health[endpoint] = _Health()

    def note_too_large(self, endpoint: Endpoint, size: int) -> None:
        """``endpoint`` refused a batch of ``size`` bytes as too large (until it registers anew)."""
        with self._lock:
            if endpoint in self._members:
                self._too_large[endpoint] = min(size, self._too_large.get(endpoint, size))

    def failures(self, endpoint: Endpoint) -> int:
        with self._lock:
            health = self._health.get(endpoint)
            return health.failures if health else 0

    def _is_down(self, endpoint: Endpoint, now: float) -> bool:
        health = self._health.get(endpoint)
        return health is not None and health.down_until > now
