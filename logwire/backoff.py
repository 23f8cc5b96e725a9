"""How long to wait before the next try: one doubling backoff for client and server.

:class:`Backoff` is an immutable policy in the spirit of urllib3's ``Retry``:
it holds how many tries failed so far, :meth:`Backoff.next` returns a new
object one failure further, and :meth:`Backoff.delay_at` is a pure function
of the failure count. Nothing here sleeps or draws random numbers: the caller
waits (usually on an event it can be woken from) and, for jitter, passes a
random fraction of its own, so a test can choose it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

__all__ = ["Backoff"]

# 2.0 ** 1024 overflows a float; by then every delay has long reached its cap.
_MAX_DOUBLINGS = 1000


@dataclass(frozen=True)
class Backoff:
    """Delays of ``initial_s``, doubled after every failure, capped at ``max_s``.

    ``jitter`` (a fraction below 1) spreads each delay over
    ``[delay * (1 - jitter), delay * (1 + jitter)]``, so that many processes
    that failed together do not retry together. ``attempt`` counts the
    failures before the current delay: :meth:`delay` is ``initial_s`` at 0.

    >>> b = Backoff(initial_s=0.05, max_s=0.15)
    >>> [b.delay(), b.next().delay(), b.next().next().delay()]
    [0.05, 0.1, 0.15]
    """

    initial_s: float
    max_s: float
    jitter: float = 0.0
    attempt: int = 0

    def __post_init__(self) -> None:
        for name in ("initial_s", "max_s", "jitter"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(f"Backoff.{name} must be a finite number >= 0, not {value!r}")
        if self.max_s < self.initial_s:
            raise ValueError(
                f"Backoff.max_s ({self.max_s}) must be >= initial_s ({self.initial_s})"
            )
        if self.jitter >= 1:
            raise ValueError(f"Backoff.jitter is a fraction and must be < 1, not {self.jitter}")
        if isinstance(self.attempt, bool) or not isinstance(self.attempt, int) or self.attempt < 0:
            raise ValueError(f"Backoff.attempt must be an int >= 0, not {self.attempt!r}")

    def delay_at(self, attempt: int, random_fraction: float = 0.5) -> float:
        """The delay after ``attempt`` earlier failures, in seconds.

        ``random_fraction`` in [0, 1) picks the point in the jitter band; 0.5
        (the default) is its middle, i.e. no jitter.
        """
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, not {attempt}")
        base = min(self.initial_s * 2.0 ** min(attempt, _MAX_DOUBLINGS), self.max_s)
        return base * (1 + self.jitter * (2 * random_fraction - 1))

    def delay(self, random_fraction: float = 0.5) -> float:
        """The delay before the next try, in seconds (see :meth:`delay_at`)."""
        return self.delay_at(self.attempt, random_fraction)

    def next(self) -> Backoff:
        """This policy one failure further: its delay is doubled (up to ``max_s``)."""
        return replace(self, attempt=self.attempt + 1)

    def reset(self) -> Backoff:
        """This policy after a success: back to ``initial_s``."""
        return replace(self, attempt=0)
