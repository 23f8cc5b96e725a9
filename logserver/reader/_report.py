"""What went wrong while reading: sources that failed or went away, and gaps.

A reader never drops records to keep up, but a source can fail (unreachable
for longer than a one-off read waits), and retention can delete records a
slow reader had not reached. Both are reported here, never passed over in
silence: ``logserver cat`` prints each event on stderr as it happens and
exits 1 when a source failed; programs read :attr:`ReadReport.problems`.
Servers that may hold records of the category but are not read at all (the
data inventory's holders that are not registered or do not answer) are
:attr:`ReadReport.missed`: ``cat`` warns of each before any record, and exits
3 with ``--strict``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["ReadEvent", "ReadReport"]

EventKind = Literal["failed", "unreachable", "reachable", "gap", "missed", "note"]


@dataclass(frozen=True)
class ReadEvent:
    """One thing that happened to one source."""

    kind: EventKind
    source: str
    text: str

    def __str__(self) -> str:
        return f"{self.source}: {self.text}"


class ReadReport:
    """Events of one read; ``on_event`` (optional) is called for each, on the thread that
    saw it. A source's unreachable/reachable changes are reported once per change."""

    def __init__(self, on_event: Callable[[ReadEvent], None] | None = None) -> None:
        self._on_event = on_event
        self._lock = threading.Lock()
        self._down: set[str] = set()
        self.problems: list[ReadEvent] = []
        """Failures and gaps: what is missing from the output."""
        self.missed: list[ReadEvent] = []
        """Servers that may hold records of the category and were not read."""

    def __repr__(self) -> str:
        with self._lock:
            return f"<ReadReport problems={len(self.problems)} down={sorted(self._down)}>"

    @property
    def complete(self) -> bool:
        """Nothing is known (or, from the data inventory, suspected) to be missing from what
        was read."""
        with self._lock:
            return not self.problems and not self.missed

    def _emit(self, event: ReadEvent, problem: bool = False) -> None:
        if problem:
            with self._lock:
                self.problems.append(event)
        if self._on_event is not None:
            self._on_event(event)

    def failed(self, source: str, reason: str) -> None:
        """A source will not be read (further): its records are missing."""
        with self._lock:
            self._down.discard(source)
        self._emit(ReadEvent("failed", source, f"{reason}; its records are missing"), True)

    def unreachable(self, source: str, reason: str) -> None:
        with self._lock:
            if source in self._down:
                return
            self._down.add(source)
        self._emit(ReadEvent("unreachable", source, f"unreachable ({reason}); retrying"))

    def reachable(self, source: str) -> None:
        with self._lock:
            if source not in self._down:
                return
            self._down.discard(source)
        self._emit(ReadEvent("reachable", source, "reachable again; reading on"))

    def gap(self, source: str, start: int, end: int) -> None:
        """Records between two positions were deleted before this reader got to them."""
        text = (
            f"GAP: {end - start} bytes of records (positions {start} to {end}) were deleted "
            "by retention before they were read"
        )
        self._emit(ReadEvent("gap", source, text), True)

    def missing(self, source: str, text: str) -> None:
        """A server that may hold records of the category will not be read (``text``: who,
        what it holds, what to do)."""
        event = ReadEvent("missed", source, text)
        with self._lock:
            self.missed.append(event)
        self._emit(event)

    def note(self, source: str, text: str) -> None:
        self._emit(ReadEvent("note", source, text))
