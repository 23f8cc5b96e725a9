"""Counters storage keeps, and the frozen snapshot :meth:`Storage.stats` returns."""

from __future__ import annotations

import threading
from dataclasses import dataclass

__all__ = ["Counters", "StorageStats"]


@dataclass(frozen=True)
class StorageStats:
    """A consistent-enough snapshot of what storage did since :meth:`Storage.open`."""

    records_stored: int
    batches_stored: int
    duplicates: int
    bytes_stored: int
    """Bytes written to segments (compressed blocks and their headers)."""
    message_bytes_stored: int
    """The bytes of the messages those records hold: ``bytes_stored / message_bytes_stored``
    is what the disk costs per byte logged."""
    fsyncs: int
    """fdatasync calls made for acknowledgements and syncs (group commit keeps this low)."""
    sync_rounds: int
    write_errors: int
    sync_errors: int
    categories: int
    segments: int
    disk_bytes: int
    segments_deleted: int
    producers_tracked: int


class Counters:
    """Thread-safe counters; one lock round-trip per batch, not per record."""

    __slots__ = (
        "_lock",
        "batches_stored",
        "bytes_stored",
        "duplicates",
        "fsyncs",
        "message_bytes_stored",
        "records_stored",
        "segments_deleted",
        "sync_errors",
        "sync_rounds",
        "write_errors",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records_stored = 0
        self.batches_stored = 0
        self.duplicates = 0
        self.bytes_stored = 0
        self.message_bytes_stored = 0
        self.fsyncs = 0
        self.sync_rounds = 0
        self.write_errors = 0
        self.sync_errors = 0
        self.segments_deleted = 0

    def stored(self, records: int, nbytes: int, message_bytes: int = 0) -> None:
        """A batch was written: ``nbytes`` to disk, holding ``message_bytes`` of messages."""
        with self._lock:
            self.records_stored += records
            self.batches_stored += 1
            self.bytes_stored += nbytes
            self.message_bytes_stored += message_bytes

    def add(self, name: str, amount: int = 1) -> None:
        """Add to one counter."""
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)

    def __repr__(self) -> str:
        return (
            f"<Counters records={self.records_stored} batches={self.batches_stored} "
            f"duplicates={self.duplicates} fsyncs={self.fsyncs}>"
        )
