"""Which servers exist, which are down, and which one gets the next batch.

The known set comes from the :class:`~logclient.discovery.ServerSource` and may
be stale (ZooKeeper keeps a killed server's node for a session timeout). The
socket decides liveness: a failure marks a server down for a backoff that grows
with consecutive failures and resets on success. Endpoints, not node names,
identify servers, so a ghost node never counts twice.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from logclient._policies import ChoicePolicy, FailoverPolicy
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
        self._health: dict[Endpoint, _Health] = {}
        self._current: Endpoint | None = None
        self._rr = 0
        self._last_probe = -1e18
        self.version = 0

    def __repr__(self) -> str:
        now = self._clock()
        down = [str(e) for e, h in self._health.items() if h.down_until > now]
        return (
            f"<ServerPool {self.choice.strategy} current={self._current} "
            f"known={[str(e) for e in self._known]} down={down}>"
        )

    # ------------------------------------------------------------- membership

    def update(self, servers: Iterable[Endpoint]) -> None:
        """Replace the known set (called from the ServerSource's thread)."""
        known = tuple(sorted(set(servers)))
        with self._lock:
            if known == self._known:
                return
            self._known = known
            self.version += 1
            # Health of servers that left is forgotten: one that comes back
            # (a restart) starts with a clean slate and the socket judges it anew.
            self._health = {e: h for e, h in self._health.items() if e in known}
            if self._current not in known:
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

    # ---------------------------------------------------------------- choice

    def choose(self, exclude: frozenset[Endpoint] = frozenset()) -> Endpoint | None:
        """A live server for the next batch, per the choice policy.

        When every known server is down, returns the one whose backoff ends first
        at most once per ``probe_interval_s`` (a probe), else None.
        """
        now = self._clock()
        with self._lock:
            live = [e for e in self._known if e not in exclude and not self._is_down(e, now)]
            if not live:
                return self._probe(now, exclude)
            strategy = self.choice.strategy
            if strategy == "sticky" and self._current in live:
                chosen = self._current
            elif strategy == "round_robin":
                chosen = live[self._rr % len(live)]
                self._rr += 1
            else:
                chosen = self._rng.choice(live)
            self._current = chosen
            return chosen

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

    def failures(self, endpoint: Endpoint) -> int:
        with self._lock:
            health = self._health.get(endpoint)
            return health.failures if health else 0

    def _is_down(self, endpoint: Endpoint, now: float) -> bool:
        health = self._health.get(endpoint)
        return health is not None and health.down_until > now
