"""A batch: what one ``Append`` call carries, and its identity for dedup.

``(producer_id, sequence)`` names a batch forever: a resend after an ambiguous
failure, a batch read back from the spool after a restart, all carry the same
pair, so a server stores it once and a reader drops the copy another server
holds. Entries are ``(category, message)`` pairs with the message as bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from logwire.batchid import MAX_PRODUCER_ID, split_producer_id

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

        The halves are batches of producer ``<producer>@<sequence>`` whose
        sequence is their offset in this batch (``logwire.batchid``): the same
        every time the batch is split (after a restart, from the spool), so
        servers dedup them as usual, and a reader that also finds this batch
        whole (stored by a server before an ambiguous failure) maps both copies
        of a record to one key.
        """
        if len(self.entries) < 2:
            raise ValueError("a batch of one record cannot be split")
        mid = len(self.entries) // 2
        derived = split_producer_id(self.producer_id, self.sequence)
        halves = []
        for offset, part in ((0, self.entries[:mid]), (mid, self.entries[mid:])):
            halves.append(
                Batch(
                    producer_id=derived,
                    sequence=offset,
                    entries=part,
                    nbytes=sum(entry_size(c, m) for c, m in part),
                    end_ordinal=self.end_ordinal,
                    parent=self,
                )
            )
        self.children_left = 2
        return halves[0], halves[1]

    def without_category(self, category: str) -> Batch:
        """This batch minus one category's records, under a derived identity.

        Unlike a split half, the child's records are not a contiguous run of
        this batch's, so a reader cannot map them back: if this batch was also
        stored whole by a server that accepts the category (servers that
        disagree on category rules, plus an ambiguous failure), read-back
        shows the other categories' records twice.
        """
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


def _derived_producer(producer_id: str, sequence: int, tag: str) -> str:
    derived = f"{producer_id}~{tag}{sequence}"
    if len(derived) > MAX_PRODUCER_ID:
        # Producer ids are limited to 128 characters; keep them unique and stable.
        digest = hashlib.blake2b(derived.encode(), digest_size=16).hexdigest()
        derived = f"d~{digest}"
    return derived
