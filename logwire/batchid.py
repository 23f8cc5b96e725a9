"""Identities of batches split from another batch, and how a reader maps them back.

A batch is ``(producer, sequence)`` (its batch id) and record ``i`` of it is
``(producer, sequence, i)``; servers deduplicate batches by the pair and
readers deduplicate records by the triple. When a client has to split a batch
that a server found too large, it sends each half as a batch of its own under
the producer ``<producer>@<sequence>``, with the half's **offset in its
parent** as its sequence. Record ``i`` of the half ``(P@S, k)`` is record
``k + i`` of ``(P, S)``, so :func:`canonical_key` maps both to one key.

That matters after an ambiguous send: the client sent ``(P, S)`` to a server
that may have stored it before it died, then found that the next server's
limit is smaller and split the batch. Both copies end up on disk; a reader
that merges servers shows each record once. Halves of halves nest the same
way (``P@S@k``) and map back step by step.

``@`` is therefore reserved in producers: a producer that ends in
``@<digits>`` is read as a split half. logclient's own producers are hex;
the other derived ids it makes (``<producer>~x<sequence>`` for a batch without
one category, a ``d~`` digest past the length limit) contain no ``@`` of their
own. :func:`producer_problem` is the rule servers hold every producer to.
"""

from __future__ import annotations

import hashlib
import re

__all__ = [
    "MAX_PRODUCER_LENGTH",
    "SPLIT_MARK",
    "bounded_producer",
    "canonical_key",
    "producer_problem",
    "split_producer",
]

#: Servers refuse longer producers, in characters (log.thrift says so).
MAX_PRODUCER_LENGTH = 128
SPLIT_MARK = "@"


# Printable ASCII; the base (before any "@") has no "@".
_PRINTABLE = re.compile(r"[\x20-\x7e]+\Z")
# What may follow each "@": a parent's sequence (canonical decimal, an i64), then
# maybe more derivation ("~x3": a batch without one category) but no other "@".
_AFTER_MARK = re.compile(r"(?:0|[1-9][0-9]{0,18})(?:~[^@]*)?\Z")


def producer_problem(producer: str) -> str | None:
    """Why ``producer`` cannot be a producer, or None when it can.

    1 to :data:`MAX_PRODUCER_LENGTH` printable ASCII characters (so one id has
    one spelling: no bytes decoded with replacement, no look-alikes), and ``@``
    only where a split puts it: ``<producer>@<sequence>``, nested, each
    sequence a canonical decimal. So an id like ``app@host`` is refused rather
    than read back as a split half of some other producer's batch.
    """
    if not producer:
        return "producer is empty"
    if len(producer) > MAX_PRODUCER_LENGTH:
        return f"producer is longer than {MAX_PRODUCER_LENGTH} characters"
    if not _PRINTABLE.match(producer):
        return "producer must be printable ASCII"
    base, *derived = producer.split(SPLIT_MARK)
    if not base:
        return f"producer may not start with {SPLIT_MARK!r}"
    for part in derived:
        if not _AFTER_MARK.match(part):
            return (
                f"{SPLIT_MARK!r} is reserved in producers: it may only be followed by the "
                "sequence of the batch a half was split from (<producer>@<sequence>)"
            )
        if int(part.split("~", 1)[0]) > 2**63 - 1:
            return f"the sequence after {SPLIT_MARK!r} is not a 64-bit integer"
    return None


def split_producer(producer: str, sequence: int) -> str:
    """The producer of the halves of batch ``(producer, sequence)``.

    Deterministic, so splitting the same batch again (after a restart, from the
    spool) gives the same identities and servers deduplicate as usual. Past 128
    characters (about a dozen nested splits of a long producer) it is a
    digest instead: still unique and stable, but no longer mapped back by
    :func:`canonical_key` (nor is a negative sequence, which logclient never uses).
    """
    return bounded_producer(f"{producer}{SPLIT_MARK}{sequence}")


def bounded_producer(derived: str) -> str:
    """A derived producer within :data:`MAX_PRODUCER_LENGTH`: itself, or a stable digest of it."""
    if len(derived) <= MAX_PRODUCER_LENGTH:
        return derived
    return "d~" + hashlib.blake2b(derived.encode(), digest_size=16).hexdigest()


def canonical_key(producer: str, sequence: int, index: int) -> tuple[str, int, int]:
    """The record's key in the batch the client first made, through any splits."""
    while True:
        mark = producer.rfind(SPLIT_MARK)
        if mark <= 0:
            return producer, sequence, index
        parent_sequence = producer[mark + 1 :]
        if not (parent_sequence.isascii() and parent_sequence.isdigit()):
            return producer, sequence, index
        producer, sequence, index = producer[:mark], int(parent_sequence), sequence + index
