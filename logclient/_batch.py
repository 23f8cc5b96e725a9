"""A batch: what one ``Append`` call carries, and its identity for dedup.

``(producer_id, sequence)`` names a batch forever: a resend after an ambiguous
failure, a batch read back from the spool after a restart, all carry the same
pair, so a server stores it once and a reader drops the copy another server
holds. Entries are ``(category, message)`` pairs with the message as bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

__all__ = ["ENTRY_OVERHEAD", "Batch", "Entry", "entry_size"]

Entry = tuple[str, bytes]

#: Bytes counted per entry beyond category and message: the wire's field headers
#: and length prefixes, so that byte limits roughly match frame sizes.
ENTRY_OVERHEAD = 16


def entry_size(category: str, message: bytes) -> int:
    """The bytes an entry counts against queue, batch and spool limits."""
    return len(category) + len(message) + ENTRY_OVERHEAD


@dataclass(eq=False)
class Batch:
    """One batch in the sender's hands (from memory or from the spool).

    ``end_ordinal`` is the number of records this client had accepted up to and
    including this batch's last one (what ``flush()`` waits for); None for a
    batch an earlier process left in the spool. ``spool_id`` is set while the
    batch has a file in the spool. ``attempts`` counts ``Append`` calls made.
    """

    producer_id: str
    sequence: int
    entries: list[Entry]
    nbytes: int
    end_ordinal: int | None = None
    spool_id: int | None = None
    attempts: int = field(default=0, compare=False)
    #: For a split half (or a batch minus a rejected category): the batch it came
    #: from. The parent is settled (its spool file removed, flush() told) once
    #: all its children are.
    parent: Batch | None = field(default=None, repr=False)
    children_left: int = 0

    def __repr__(self) -> str:
        where = f" spool#{self.spool_id}" if self.spool_id is not None else ""
        return (
            f"<Batch {self.producer_id}/{self.sequence} records={len(self.entries)} "
            f"bytes={self.nbytes} attempts={self.attempts}{where}>"
        )

    @property
    def key(self) -> tuple[str, int]:
        return (self.producer_id, self.sequence)

    @property
    def root(self) -> Batch:
        """The batch this one was derived from (itself when not derived)."""
        node = self
        while node.parent is not None:
            node = node.parent
        return node

    def split(self) -> tuple[Batch, Batch]:
        """Two halves with derived identities (for a batch a server found too large).

        The halves are new batches ``<producer>~<sequence>`` with sequences 0 and
        1: derived, not freshly numbered, so that splitting the same batch again
        (after a crash, from the spool) gives the same identities and the same
        entries, and a server or reader dedups them as usual.
        """
        if len(self.entries) < 2:
            raise ValueError("a batch of one record cannot be split")
        mid = len(self.entries) // 2
        derived = _derived_producer(self.producer_id, self.sequence)
        halves = []
        for i, part in enumerate((self.entries[:mid], self.entries[mid:])):
            halves.append(
                Batch(
                    producer_id=derived,
                    sequence=i,
                    entries=part,
                    nbytes=sum(entry_size(c, m) for c, m in part),
                    end_ordinal=self.end_ordinal,
                    parent=self,
                )
            )
        self.children_left = 2
        return halves[0], halves[1]

    def without_category(self, category: str) -> Batch:
        """This batch minus one category's records, under a derived identity."""
        kept = [(c, m) for c, m in self.entries if c != category]
        child = Batch(
            producer_id=_derived_producer(self.producer_id, self.sequence, "x"),
            sequence=0,
            entries=kept,
            nbytes=sum(entry_size(c, m) for c, m in kept),
            end_ordinal=self.end_ordinal,
            parent=self,
        )
        self.children_left = 1
        return child


def _derived_producer(producer_id: str, sequence: int, tag: str = "") -> str:
    derived = f"{producer_id}~{tag}{sequence}"
    if len(derived) > 128:
        # Producer ids are limited to 128 characters; keep them unique and stable.
        digest = hashlib.blake2b(derived.encode(), digest_size=16).hexdigest()
        derived = f"d~{digest}"
    return derived
