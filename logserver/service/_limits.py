"""What one request may ask of the service: :class:`ServiceLimits`.

The transport's frame cap bounds a request's bytes before the service sees
it; these bound what those bytes may ask for (records in a batch, records and
bytes in an answer, producers in a holdings page), so that no one request
costs the server more than its share.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from logserver.errors import BatchTooLargeError
from logserver.querying import QueryLimits

__all__ = ["ServiceLimits", "check_count"]


@dataclass(frozen=True)
class ServiceLimits:
    """Per-request limits; the frame cap (wire) bounds the total bytes before these run."""

    max_batch_records: int = 100_000
    max_read_records: int = 10_000
    #: What one ``ReadBlocks`` answer carries at most (stored bytes; one block always).
    max_read_bytes: int = 8 * 2**20
    #: What one ``QueryBlocks`` may cost (its bytes, work and long poll).
    query: QueryLimits = field(default_factory=QueryLimits)
    #: Producers in one ``Holdings`` answer at most, and about how many bytes of spans.
    max_holdings_producers: int = 10_000
    max_holdings_bytes: int = 4 * 2**20

    def __post_init__(self) -> None:
        if (
            min(
                self.max_batch_records,
                self.max_read_records,
                self.max_read_bytes,
                self.max_holdings_producers,
                self.max_holdings_bytes,
            )
            < 1
        ):
            raise ValueError("limits must be positive")


def check_count(limits: ServiceLimits, count: int) -> None:
    """BatchTooLargeError if one batch holds more than ``limits.max_batch_records`` records."""
    if count > limits.max_batch_records:
        raise BatchTooLargeError("too many records in one batch", limits.max_batch_records, count)
