"""A batch: what one ``Append`` call carries, and its identity for dedup.

``(producer, sequence)`` names a batch forever: a resend after an ambiguous
failure, a batch read back from the spool after a restart, all carry the same
pair, so a server stores it once and a reader drops the copy another server
holds. The records are kept in two columns, ``categories`` and ``messages``
(bytes), from the queue to the wire and the spool: the columnar ``AppendPacked``
and spool formats take them as they are, and no pair is built per record on
the way (the app's thread and the sender share one GIL).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from logwire.batchid import bounded_producer, split_producer
from logwire.serverset import Endpoint

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

    producer: str
    sequence: int
    categories: list[str]
    messages: list[bytes]
    nbytes: int
    end_ordinal: int | None = None
    spool_id: int | None = None
    attempts: int = field(default=0, compare=False)
    #: For a split half (or a batch minus a rejected category): the batch it came
    #: from. The parent is settled (its spool file removed, flush() told) once
    #: all its children are.
    parent: Batch | None = field(default=None, repr=False)
    children_left: int = 0
    #: Servers that refused this batch as too large: it goes to another, or is split.
    refused_by: frozenset[Endpoint] = field(default=frozenset(), compare=False)

    @classmethod
    def of(
        cls,
        producer: str,
        sequence: int,
        entries: Sequence[Entry],
        nbytes: int | None = None,
        end_ordinal: int | None = None,
    ) -> Batch:
        """A batch of ``(category, message)`` pairs (``nbytes`` counted when not given)."""
        categories = [c for c, _ in entries]
        messages = [m for _, m in entries]
        if nbytes is None:
            nbytes = _nbytes(categories, messages)
        return cls(producer, sequence, categories, messages, nbytes, end_ordinal)

    def __repr__(self) -> str:
        where = f" spool#{self.spool_id}" if self.spool_id is not None else ""
        return (
            f"<Batch {self.producer}/{self.sequence} records={len(self.messages)} "
            f"bytes={self.nbytes} attempts={self.attempts}{where}>"
        )

    @property
    def count(self) -> int:
        """How many records the batch holds."""
        return len(self.messages)

    @property
    def entries(self) -> list[Entry]:
        """The records as ``(category, message)`` pairs (built on each call)."""
        return list(zip(self.categories, self.messages, strict=True))

    @property
    def start_ordinal(self) -> int | None:
        """The ordinal before this batch's first record (None for an earlier process's batch).

        Meaningful on a root batch (a split half shares its parent's ordinals).
        """
        if self.end_ordinal is None:
            return None
        return self.end_ordinal - self.count

    @property
    def key(self) -> tuple[str, int]:
        return (self.producer, self.sequence)

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
        if len(self.messages) < 2:
            raise ValueError("a batch of one record cannot be split")
        mid = len(self.messages) // 2
        derived = split_producer(self.producer, self.sequence)
        halves = []
        for offset, end in ((0, mid), (mid, len(self.messages))):
            categories = self.categories[offset:end]
            messages = self.messages[offset:end]
            halves.append(
                Batch(
                    producer=derived,
                    sequence=offset,
                    categories=categories,
                    messages=messages,
                    nbytes=_nbytes(categories, messages),
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
        pairs = zip(self.categories, self.messages, strict=True)
        messages = [m for c, m in pairs if c != category]
        categories = [c for c in self.categories if c != category]
        child = Batch(
            producer=_derived_producer(self.producer, self.sequence, "x"),
            sequence=0,
            categories=categories,
            messages=messages,
            nbytes=_nbytes(categories, messages),
            end_ordinal=self.end_ordinal,
            parent=self,
        )
        self.children_left = 1
        return child


def _nbytes(categories: list[str], messages: list[bytes]) -> int:
    """What the records count against limits (see :func:`entry_size`)."""
    return sum(map(len, categories)) + sum(map(len, messages)) + ENTRY_OVERHEAD * len(messages)


def _derived_producer(producer: str, sequence: int, tag: str) -> str:
    return bounded_producer(f"{producer}~{tag}{sequence}")
