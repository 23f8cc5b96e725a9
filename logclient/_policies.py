"""The client's knobs: frozen, validated dataclasses (urllib3's ``Retry`` is the model).

A policy never changes after construction; ``dataclasses.replace`` makes a
variant. Every value is checked in ``__post_init__`` so that a typo fails at
configuration time, not at three in the morning when the first failover happens.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from logwire.backoff import Backoff

if TYPE_CHECKING:
    import ssl

__all__ = [
    "BatchPolicy",
    "ChoicePolicy",
    "FailoverPolicy",
    "HedgePolicy",
    "QueuePolicy",
    "ReplicationPolicy",
    "SpoolPolicy",
    "TLSPolicy",
]

MiB = 2**20
GiB = 2**30

Overflow = Literal["block", "drop", "raise"]
Strategy = Literal["random", "round_robin", "sticky", "leader"]


def _positive(owner: object, **values: float) -> None:
    for name, value in values.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{type(owner).__name__}.{name} must be > 0, not {value!r}")


def _non_negative(owner: object, **values: float) -> None:
    for name, value in values.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{type(owner).__name__}.{name} must be >= 0, not {value!r}")


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
        _positive(self, max_records=self.max_records, max_bytes=self.max_bytes)
        _positive(self, max_message_bytes=self.max_message_bytes)
        _non_negative(self, linger_s=self.linger_s)
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
        _positive(
            self,
            connect_timeout_s=self.connect_timeout_s,
            rpc_timeout_s=self.rpc_timeout_s,
            probe_interval_s=self.probe_interval_s,
            max_idle_s=self.max_idle_s,
        )
        _non_negative(self, down_backoff_s=self.down_backoff_s, jitter=self.jitter)
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
        _positive(self, max_waiting_bytes=self.max_waiting_bytes)

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
        _positive(
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


@dataclass(frozen=True)
class QueuePolicy:
    """The in-memory queue between ``log()`` and the sender.

    When it is full (``max_records`` or ``max_bytes``), ``overflow`` decides:
    ``block`` waits up to ``block_timeout_s`` for room, then raises
    :class:`~logclient.QueueFullError`; ``drop`` drops the new record (counted
    in ``stats().dropped`` and logged, rate-limited); ``raise`` raises at once.
    With a spool, the sender spills a queue that stays past its high-water
    mark (see :class:`SpoolPolicy`): with ``block``, after
    ``SpoolPolicy.high_water_hold_s`` (at most half of ``block_timeout_s``),
    so during a burst the servers are still taking ``log()`` may wait about
    that long; with ``drop`` and ``raise`` at once. Past that, the limit is
    reached only when the disk cannot keep up or the spool is full too; the
    same ``overflow`` then decides whether a batch that does not fit in the
    spool is dropped.
    """

    max_records: int = 100_000
    max_bytes: int = 64 * MiB
    overflow: Overflow = "block"
    block_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        _positive(self, max_records=self.max_records, max_bytes=self.max_bytes)
        _non_negative(self, block_timeout_s=self.block_timeout_s)
        if self.overflow not in ("block", "drop", "raise"):
            raise ValueError(
                f"QueuePolicy.overflow must be block, drop or raise, not {self.overflow!r}"
            )


_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


def default_spool_name() -> str:
    """The program's name, made safe as a directory name."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else "python"
    stem = Path(argv0).stem or "python"
    if stem in ("-c", "-m", "__main__"):
        stem = "python"
    return _NAME_UNSAFE.sub("_", stem).lstrip(".")[:64] or "python"


def default_state_home() -> Path:
    """``$XDG_STATE_HOME`` or ``~/.local/state``."""
    env = os.environ.get("XDG_STATE_HOME", "").strip()
    return Path(env) if env and Path(env).is_absolute() else Path.home() / ".local" / "state"


@dataclass(frozen=True)
class SpoolPolicy:
    """The on-disk spool that keeps batches while no server takes them.

    ``directory`` is used as it is, by one live client at a time (a second one
    gets :class:`~logclient.SpoolLockedError`). Without it the spool lives under
    ``$XDG_STATE_HOME/logclient/<name>/`` (``~/.local/state`` without the
    variable; ``name`` defaults to the program's name) in the first slot
    (``slot-0``, ``slot-1``...) that no live client holds, so several processes
    of one program each get a spool and a restarted one finds a dead one's.

    Batches are spilled when no server took anything for ``spill_after_s``, when
    the memory queue has stayed past ``high_water`` (a fraction of its limits)
    for ``high_water_hold_s``, and by ``close()`` for whatever is undelivered.
    The spool holds at most ``max_bytes``; ``fsync`` makes every spilled batch
    durable before it leaves memory. ``enabled=False`` (see :meth:`disabled`)
    keeps everything in memory.

    Why the hold: a burst that the servers are taking, only more slowly than
    the app logs, is better kept in memory (``log()`` waits for room if the
    queue fills, as ``QueuePolicy.overflow="block"`` says) than sent through
    the disk: writing, syncing and reading back the same records makes the
    pipeline slower, so the burst takes longer. A queue that stays past high
    water for ``high_water_hold_s`` (servers down, hung or much slower than the
    app) is spilled, so ``log()`` waits at most about that long (the hold is
    capped at half of ``QueuePolicy.block_timeout_s``, so a waiting ``log()``
    is not refused meanwhile). With
    ``overflow="drop"`` or ``"raise"`` a full queue would lose records or
    raise, so the queue is spilled as soon as it passes high water; so it is
    with ``high_water_hold_s=0``.
    """

    directory: Path | None = None
    name: str | None = None
    max_bytes: int = 1 * GiB
    spill_after_s: float = 10.0
    high_water: float = 0.8
    high_water_hold_s: float = 1.0
    fsync: bool = True
    enabled: bool = True

    def __post_init__(self) -> None:
        _positive(self, max_bytes=self.max_bytes, high_water=self.high_water)
        _non_negative(
            self, spill_after_s=self.spill_after_s, high_water_hold_s=self.high_water_hold_s
        )
        if self.high_water > 1:
            raise ValueError("SpoolPolicy.high_water is a fraction of the queue limits (<= 1)")
        if self.directory is not None and not isinstance(self.directory, Path):
            object.__setattr__(self, "directory", Path(self.directory))
        if self.name is not None and (
            not self.name or _NAME_UNSAFE.search(self.name) or self.name.startswith(".")
        ):
            raise ValueError(f"SpoolPolicy.name must be a plain directory name, not {self.name!r}")

    @classmethod
    def disabled(cls) -> SpoolPolicy:
        """No spool: undelivered records live (and die) in memory."""
        return cls(enabled=False)

    def base_directory(self) -> Path:
        """Where the slots of the default spool live (only without ``directory``)."""
        return default_state_home() / "logclient" / (self.name or default_spool_name())


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal and hang the app.
    raise ValueError("TLSPolicy.key_file is encrypted; give an unencrypted key")


@dataclass(frozen=True, repr=False)
class TLSPolicy:
    """TLS to the servers: whom the client trusts and, for mutual TLS, who it is.

    The server's certificate is always verified: against the CAs in
    ``ca_file`` (a PEM bundle) or, without it, the system's default CAs. Its
    host name is verified too, against the host the client connects to (as
    registered in ZooKeeper or given to ``StaticServers``; an IP address must
    then be in the certificate's subjectAltName), or against
    ``server_hostname`` when given (one name for every server, e.g. servers
    registered by address whose certificates name the service).
    ``check_hostname=False`` still verifies the chain but accepts any name.

    ``cert_file`` is the client's PEM certificate chain for mutual TLS, with
    its key in ``key_file`` (or in ``cert_file`` itself when ``key_file`` is
    None). TLS 1.2 is the minimum. The handshake counts against
    :attr:`FailoverPolicy.connect_timeout_s`. A server whose certificate fails
    verification is logged (at ERROR) and treated as down; nothing is sent to it.
    """

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    check_hostname: bool = True
    server_hostname: str | None = None

    def __post_init__(self) -> None:
        for name in ("ca_file", "cert_file", "key_file"):
            value = getattr(self, name)
            if value is None:
                continue
            path = Path(value)
            if not path.is_file():
                raise ValueError(f"TLSPolicy.{name}: no such file: {path}")
            object.__setattr__(self, name, path)
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("TLSPolicy.key_file needs cert_file (the client certificate)")
        if not isinstance(self.check_hostname, bool):
            raise ValueError(
                f"TLSPolicy.check_hostname must be a bool, not {self.check_hostname!r}"
            )
        if self.server_hostname is not None and (
            not isinstance(self.server_hostname, str) or not self.server_hostname.strip()
        ):
            raise ValueError(
                f"TLSPolicy.server_hostname must be a host name, not {self.server_hostname!r}"
            )

    def __repr__(self) -> str:
        # The key's path stays out: reprs end up in logs.
        key = "<hidden>" if self.key_file is not None else None
        return (
            f"TLSPolicy(ca_file={self.ca_file or 'system default'}, "
            f"cert_file={self.cert_file}, key_file={key}, "
            f"check_hostname={self.check_hostname}, server_hostname={self.server_hostname})"
        )

    def ssl_context(self) -> ssl.SSLContext:
        """A new client-side ``ssl.SSLContext`` for this policy.

        Raises ValueError when a file cannot be used (the message names the CA
        and certificate files, never the key's path or contents).
        """
        import ssl

        try:
            ctx = ssl.create_default_context(
                cafile=str(self.ca_file) if self.ca_file is not None else None
            )
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(f"TLSPolicy.ca_file {self.ca_file}: cannot load: {exc}") from None
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.check_hostname = self.check_hostname
        ctx.verify_mode = ssl.CERT_REQUIRED
        if self.cert_file is not None:
            try:
                ctx.load_cert_chain(self.cert_file, self.key_file, password=_no_password)
            except (ssl.SSLError, OSError) as exc:
                reason = getattr(exc, "reason", None) or type(exc).__name__
                raise ValueError(
                    f"TLSPolicy.cert_file {self.cert_file}: cannot use it with its key: {reason}"
                ) from None
        return ctx
