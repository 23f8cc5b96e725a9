"""How records become batches and reach a server: batching, failover, server choice.

These three tune the sender's normal path: how big a batch grows and how long
it lingers (:class:`BatchPolicy`), when a server counts as down and for how
long it is avoided (:class:`FailoverPolicy`: the socket decides, not
ZooKeeper), and which live server gets the next batch (:class:`ChoicePolicy`).
Import them from :mod:`logclient`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from logclient._policies._checks import MiB, non_negative, positive
from logwire.backoff import Backoff

__all__ = ["BatchPolicy", "ChoicePolicy", "FailoverPolicy", "Strategy"]

Strategy = Literal["random", "round_robin", "sticky", "leader"]


@dataclass(frozen=True)
class BatchPolicy:
    """How records are grouped into one ``Append`` call.

    A batch is sent when it holds ``max_records`` records or ``max_bytes`` bytes
    (category plus message), or when its oldest record has waited ``linger_s``.
    ``max_message_bytes`` is checked in ``log()``: a larger message is refused
    there, so no batch can ever carry a record that no server accepts.

    The defaults let a busy client fill batches up to about 1 MiB (8,600 records
    of 100 bytes): one ``Append`` round trip, one server fsync and, when the
    client spills, one spool file per batch. With 1,000-record batches a
    client spent most of its time waiting for round trips and fsyncs (see
    ``BENCHMARKS.md``). At a modest rate ``linger_s`` sends batches long
    before they are full.

    ``max_in_flight`` is how many batches may be sent on one connection before
    the oldest is answered (1: one call at a time). Replies come back in order
    and a batch keeps its identity through any resend, so pipelining changes
    neither ordering nor dedup; it lets the client encode and send the next
    batch while the server decodes, stores and fsyncs the previous one. The
    default of 4 keeps the server busy through an fsync stall and bounds what
    an error makes the client resend to 4 batches (at most 4 MiB).
    """

    max_records: int = 10_000
    max_bytes: int = 1 * MiB
    linger_s: float = 0.05
    max_message_bytes: int = 1 * MiB
    max_in_flight: int = 4

    def __post_init__(self) -> None:
        positive(self, max_records=self.max_records, max_bytes=self.max_bytes)
        positive(self, max_message_bytes=self.max_message_bytes)
        non_negative(self, linger_s=self.linger_s)
        if not isinstance(self.max_in_flight, int) or isinstance(self.max_in_flight, bool):
            raise ValueError(
                f"BatchPolicy.max_in_flight must be an int >= 1, not {self.max_in_flight!r}"
            )
        if not 1 <= self.max_in_flight <= 64:
            raise ValueError(
                f"BatchPolicy.max_in_flight must be between 1 and 64, not {self.max_in_flight!r}"
            )
        if self.max_message_bytes > self.max_bytes:
            raise ValueError(
                f"BatchPolicy.max_message_bytes ({self.max_message_bytes}) must not exceed "
                f"max_bytes ({self.max_bytes}): such a message would fit in no batch"
            )


@dataclass(frozen=True)
class FailoverPolicy:
    """When a server counts as down, and for how long it is avoided.

    The socket decides liveness, not ZooKeeper: a refused or reset connection,
    EOF, or no answer within ``rpc_timeout_s`` marks the server down for
    ``down_backoff_s``, doubling per consecutive failure up to
    ``max_down_backoff_s`` (with ``jitter`` as a fraction), reset by a success.
    When every known server is down the client still probes one (the one whose
    backoff ends first) every ``probe_interval_s``, so a restarted cluster is
    found quickly. A connection idle for ``max_idle_s`` is reopened before use
    (servers close idle connections).
    """

    connect_timeout_s: float = 1.0
    rpc_timeout_s: float = 2.0
    down_backoff_s: float = 5.0
    max_down_backoff_s: float = 60.0
    jitter: float = 0.2
    probe_interval_s: float = 1.0
    max_idle_s: float = 30.0

    def __post_init__(self) -> None:
        positive(
            self,
            connect_timeout_s=self.connect_timeout_s,
            rpc_timeout_s=self.rpc_timeout_s,
            probe_interval_s=self.probe_interval_s,
            max_idle_s=self.max_idle_s,
        )
        non_negative(self, down_backoff_s=self.down_backoff_s, jitter=self.jitter)
        if self.max_down_backoff_s < self.down_backoff_s:
            raise ValueError("FailoverPolicy.max_down_backoff_s must be >= down_backoff_s")
        if self.jitter >= 1:
            raise ValueError("FailoverPolicy.jitter is a fraction and must be < 1")

    def backoff(self, failures: int, random_fraction: float = 0.5) -> float:
        """Seconds to avoid a server after its ``failures``-th consecutive failure.

        ``random_fraction`` in [0, 1) picks the point in the jitter band (0.5 is
        the middle, i.e. no jitter), so callers choose the randomness source.
        """
        if failures < 1:
            return 0.0
        return self._down_backoff.delay_at(failures - 1, random_fraction)

    @property
    def _down_backoff(self) -> Backoff:
        return Backoff(
            initial_s=self.down_backoff_s, max_s=self.max_down_backoff_s, jitter=self.jitter
        )


@dataclass(frozen=True)
class ChoicePolicy:
    """Which live server gets the next batch.

    ``random`` (the default) picks a random live server for every batch, so a
    server that joins later gets its share at once; ``round_robin`` cycles
    through them in endpoint order; ``sticky`` stays on one server until it
    fails or leaves the server set.

    ``leader`` sends to the live server that registered first (with ZooKeeper:
    whose member node has the lowest sequence number; with ``StaticServers``:
    the first listed), and on its failure to the next. Every client with the
    same servers picks the same one, so in normal operation one server holds
    the whole stream in arrival order. A server that registers again (a
    restart) gets a new, higher number: it does not take the lead back. A
    leader that failed without registering again (a network blip) leads again
    once its down backoff (``FailoverPolicy``) ends and a call succeeds.
    """

    strategy: Strategy = "random"

    def __post_init__(self) -> None:
        if self.strategy not in ("random", "round_robin", "sticky", "leader"):
            raise ValueError(
                f"ChoicePolicy.strategy must be random, round_robin, sticky or leader, "
                f"not {self.strategy!r}"
            )

    @classmethod
    def of(cls, value: ChoicePolicy | str) -> ChoicePolicy:
        """Accept a policy or a strategy name."""
        return value if isinstance(value, ChoicePolicy) else cls(value)  # type: ignore[arg-type]
