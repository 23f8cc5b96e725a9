"""More than one server per batch: copies that survive a lost server, hedged sends.

:class:`ReplicationPolicy` says how many servers store each batch and how many
must have it before it counts as acknowledged; :class:`HedgePolicy` says when
a batch a server has not answered also goes to another server, so that a
frozen server costs the hedge delay rather than the RPC timeout. Both rest on
the batch id: ``Append`` is idempotent and readers show each record once, so
an extra copy costs disk, never a duplicate line. Import them from
:mod:`logclient`.
"""

from __future__ import annotations

from dataclasses import dataclass

from logclient._policies._checks import MiB, positive

__all__ = ["HedgePolicy", "ReplicationPolicy"]


@dataclass(frozen=True)
class ReplicationPolicy:
    """How many servers store each batch, and how many must before it counts.

    Each batch goes to ``copies`` distinct servers (endpoints); among the
    live ones, copies spread over zones first (the ``--zone`` a server
    registered), then over hosts. A batch is *acknowledged* (``flush()``
    returns, ``stats().acknowledged`` counts it, its spool file goes) once
    ``acks`` of them (default: all ``copies``) answered that they store it
    durably. So with ``copies=2`` an acknowledged record survives the loss of
    any one server and its disk.

    While fewer than ``acks`` servers are live, new batches wait, in the
    queue and then in the spool, as they do with no server at all (never
    acknowledged with fewer copies); ``stats().servers_short`` says how many
    servers are missing. Copies beyond ``acks`` are made as well, and one
    that fails or finds no server is retried in the background (memory only,
    up to ``max_waiting_bytes`` of batches; past that, and at ``close()``, the
    oldest are given up and counted in ``stats().copies_given_up``:
    ``logserver repair`` restores the count from the servers' side).

    Each copy costs the servers its disk writes and the client a call: with
    ``copies=2`` the client sends twice the bytes.
    """

    copies: int = 1
    acks: int | None = None
    max_waiting_bytes: int = 16 * MiB

    def __post_init__(self) -> None:
        for name in ("copies", "acks"):
            value = getattr(self, name)
            if value is None and name == "acks":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 16:
                raise ValueError(
                    f"ReplicationPolicy.{name} must be an int between 1 and 16, not {value!r}"
                )
        if self.acks is not None and self.acks > self.copies:
            raise ValueError(
                f"ReplicationPolicy.acks ({self.acks}) cannot exceed copies ({self.copies})"
            )
        positive(self, max_waiting_bytes=self.max_waiting_bytes)

    @property
    def required(self) -> int:
        """How many servers must hold a batch before it is acknowledged."""
        return self.copies if self.acks is None else self.acks


@dataclass(frozen=True)
class HedgePolicy:
    """When a batch with no answer is also sent to another server ("hedged").

    A server that froze (a stopped process, a swap storm, a silent network
    partition) answers nothing, and the client would only give it up after
    ``FailoverPolicy.rpc_timeout_s``. With hedging, when the oldest call on a
    connection has waited longer than the *hedge delay*, every batch of that
    connection not yet acknowledged is also sent to another live server (the
    same one for all of them, so it receives them in order), and the first
    answers settle each batch; the frozen connection is still given up at the
    RPC timeout. ``Append`` is idempotent and readers show each record once,
    so a batch both servers store costs disk, never a duplicate line.

    The delay: ``factor`` times the ``quantile`` of the last ``window`` round
    trips (send to answer, on this client, of batches that were not hedged),
    within ``[min_delay_s, max_delay_s]``; ``max_delay_s`` until
    ``min_samples`` round trips are known. Measured round trips include a
    call's wait behind the calls pipelined before it, so the rule errs on the
    late side. A budget keeps hedging cheap: at most ``max_share`` hedged
    batches per batch sent over time, in bursts of at most ``burst``; a
    connection already stalled gets no new batches while another server is
    live. With one live server, or hedging off (``enabled=False``), a frozen
    server costs the RPC timeout as before.
    """

    enabled: bool = True
    min_delay_s: float = 0.05
    max_delay_s: float = 1.0
    quantile: float = 0.99
    factor: float = 2.0
    window: int = 256
    min_samples: int = 16
    max_share: float = 0.1
    burst: int = 10

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ValueError(f"HedgePolicy.enabled must be a bool, not {self.enabled!r}")
        positive(
            self,
            min_delay_s=self.min_delay_s,
            max_delay_s=self.max_delay_s,
            factor=self.factor,
            max_share=self.max_share,
        )
        if self.max_delay_s < self.min_delay_s:
            raise ValueError("HedgePolicy.max_delay_s must be >= min_delay_s")
        if not isinstance(self.quantile, float | int) or not 0 < self.quantile <= 1:
            raise ValueError(f"HedgePolicy.quantile must be in (0, 1], not {self.quantile!r}")
        if self.max_share > 1:
            raise ValueError("HedgePolicy.max_share is a fraction of batches sent (<= 1)")
        for name in ("window", "min_samples", "burst"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"HedgePolicy.{name} must be an int >= 1, not {value!r}")
        if self.min_samples > self.window:
            raise ValueError("HedgePolicy.min_samples cannot exceed window")

    @classmethod
    def disabled(cls) -> HedgePolicy:
        """No hedged sends: a frozen server costs ``FailoverPolicy.rpc_timeout_s``."""
        return cls(enabled=False)
