"""The wire server's policy, counters and errors: what callers of :mod:`logserver.transport` see."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from logserver.errors import AddressInUseError, ConfigError, ListenError

__all__ = ["AddressInUseError", "ListenError", "WireCounter", "WireLimits", "WireStats"]

#: The :class:`WireStats` counters the server bumps (all but ``connections_open``).
WireCounter = Literal[
    "connections_total",
    "connections_refused",
    "connections_evicted",
    "frames",
    "frames_too_large",
    "frames_waited",
    "frames_busy",
    "protocol_errors",
    "idle_closed",
    "frame_timeouts",
    "connection_errors",
    "internal_errors",
    "tls_handshakes",
    "tls_handshake_failures",
]


#: The default in-flight budget, in frames of the largest size (``max_inflight_bytes=None``).
INFLIGHT_FRAMES = 4


@dataclass(frozen=True)
class WireLimits:
    """What one peer, and all of them together, may cost the server. Validated on creation."""

    #: A larger frame length is refused before any allocation and the connection closed.
    max_frame_bytes: int = 16 * 2**20
    #: Open connections at most. A new one beyond it closes the connection idle longest;
    #: only when every connection is busy is the new one refused (accepted and closed).
    max_connections: int = 1024
    #: Connections from one peer address at most (beyond it, that address's connection
    #: idle longest makes room). Above ``max_connections`` it changes nothing.
    max_connections_per_peer: int = 256
    #: Request bytes being received or processed at once, server-wide (see
    #: ``logserver.transport._budget``); None: ``INFLIGHT_FRAMES`` times ``max_frame_bytes``.
    #: A frame that does not fit waits for room up to half of ``frame_timeout_s``, then
    #: is read into nothing and answered busy (``TRY_LATER`` for ``Log``,
    #: ``StorageUnavailable`` for the calls that declare it).
    max_inflight_bytes: int | None = None
    #: No frame started for this long: the connection is closed quietly.
    idle_timeout_s: float = 60.0
    #: A frame once started must be complete within this (and a reply sent within it).
    frame_timeout_s: float = 10.0
    #: Nesting limit of structs and containers in a request, the args struct included.
    max_depth: int = 32

    def __post_init__(self) -> None:
        if not 16 <= self.max_frame_bytes <= 2**31 - 1:
            raise ConfigError(f"max_frame_bytes must be 16..2^31-1, not {self.max_frame_bytes}")
        if self.max_connections < 1:
            raise ConfigError(f"max_connections must be >= 1, not {self.max_connections}")
        if self.max_connections_per_peer < 1:
            raise ConfigError(
                f"max_connections_per_peer must be >= 1, not {self.max_connections_per_peer}"
            )
        if self.max_inflight_bytes is None:
            object.__setattr__(self, "max_inflight_bytes", INFLIGHT_FRAMES * self.max_frame_bytes)
        elif self.max_inflight_bytes < self.max_frame_bytes:
            raise ConfigError(
                f"max_inflight_bytes ({self.max_inflight_bytes}) must be at least "
                f"max_frame_bytes ({self.max_frame_bytes}): a frame that size could never be read"
            )
        if not self.idle_timeout_s > 0 or not self.frame_timeout_s > 0:
            raise ConfigError(
                f"timeouts must be > 0, not idle={self.idle_timeout_s} frame={self.frame_timeout_s}"
            )
        if not 2 <= self.max_depth <= 256:
            raise ConfigError(f"max_depth must be 2..256, not {self.max_depth}")

    @property
    def inflight_bytes(self) -> int:
        """``max_inflight_bytes``, resolved (never None after creation)."""
        assert self.max_inflight_bytes is not None
        return self.max_inflight_bytes

    @property
    def connections_per_peer(self) -> int:
        """``max_connections_per_peer``, within ``max_connections``."""
        return min(self.max_connections_per_peer, self.max_connections)


@dataclass(frozen=True)
class WireStats:
    """Counters since start (``connections_open`` is the current number)."""

    connections_open: int = 0
    connections_total: int = 0
    #: Accepted and closed at once: no room could be made (every connection busy), or closing.
    connections_refused: int = 0
    #: Idle connections closed to make room for a new one (see ``WireLimits.max_connections``).
    connections_evicted: int = 0
    #: Complete frames received.
    frames: int = 0
    #: Length prefixes over max_frame_bytes (HTTP requests and TLS hellos land here).
    frames_too_large: int = 0
    #: Frames that waited for room in the in-flight budget before being read.
    frames_waited: int = 0
    #: Frames for which no room was made in time: read into nothing and answered busy.
    frames_busy: int = 0
    #: Frames refused by the guard or the decoder, and zero or negative lengths.
    protocol_errors: int = 0
    idle_closed: int = 0
    #: Connections cut because a frame did not arrive (or a reply was not taken) in time.
    frame_timeouts: int = 0
    #: Resets, broken pipes and EOF in the middle of a frame.
    connection_errors: int = 0
    #: Handler exceptions the IDL does not declare (answered with INTERNAL_ERROR).
    internal_errors: int = 0
    #: TLS handshakes completed (always 0 without TLS).
    tls_handshakes: int = 0
    #: TLS handshakes that failed or timed out; each such connection was closed quietly.
    tls_handshake_failures: int = 0
