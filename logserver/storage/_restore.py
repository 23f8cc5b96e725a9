"""Storing copies of batch parts with their original identity: what ``Restore`` does.

``logserver repair`` copies a batch part (one batch's records of one category)
from a server that holds it to one that does not. The copy must be the same
records to every reader: the same producer, sequence, batch indexes and batch
size (so readers de-duplicate it with the original and recovery counts it
towards the whole batch), and the same receive time (so a merged read keeps
the order the records were received in, not the order repair ran in). A new
append (``AppendPacked``) would give it none of that: new indexes, a new
batch size, the receive time of the copy, and a deduplication by batch, which
refuses the part of a batch another of whose categories is already there.

So the blocks travel as ``ReadBatches`` shipped them (payloads as stored, not
recompressed) and are checked here as strictly as a client's compressed batch
(every payload decodes, within the caps, to columns that match its records),
because anyone who may write to the server can call this too.

What this module does not do: the write itself (storage's one write path, in
``Storage.restore``), and deciding what to copy (repair's job).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from logserver.errors import InvalidRequestError
from logserver.storage._blockcodec import encode_block
from logserver.storage._category import CategoryLog, Written
from logserver.storage._columns import check_payload, decode_messages
from logserver.storage._dedup import Claim, DedupIndex
from logserver.storage._format import MAX_PRODUCER_BYTES, encode_records
from logserver.storage._write import WritePart
from logwire.blocks import run_indexes

__all__ = ["CopiedBlock", "Part", "RestoreOutcome", "check_parts", "encode_part", "store_parts"]

_I64_MAX = 2**63 - 1
_U32_MAX = 2**32 - 1
# A stored producer: printable ASCII (what servers take), maybe "<client identity>/" first.
_PRODUCER = re.compile(r"[\x20-\x7e]+\Z")


@dataclass(frozen=True, slots=True)
class CopiedBlock:
    """One block as another server stored it (``log.thrift``'s ``StoredBlock``, without the
    positions, which are the other server's)."""

    producer: str
    sequence: int
    received_ns: int
    batch_count: int
    index_runs: tuple[tuple[int, int], ...]
    codec: int
    raw_bytes: int
    payload: bytes

    @property
    def records(self) -> int:
        return sum(n for _, n in self.index_runs)


@dataclass(frozen=True)
class Part:
    """One batch's records of one category, checked: its blocks in order."""

    producer: str
    sequence: int
    received_ns: int
    batch_count: int
    blocks: tuple[CopiedBlock, ...]

    @property
    def records(self) -> int:
        return sum(b.records for b in self.blocks)

    @property
    def message_bytes(self) -> int:
        return sum(b.raw_bytes - 4 * b.records for b in self.blocks)

    def bits(self) -> int:
        """Bit i set for each batch index i the part holds."""
        mask = 0
        for block in self.blocks:
            for start, n in block.index_runs:
                mask |= ((1 << n) - 1) << start
        return mask


def check_parts(
    blocks: Sequence[CopiedBlock], *, cap: int, max_message_bytes: int
) -> Iterator[Part]:
    """Consecutive blocks of one ``(producer, sequence)`` as a part, each checked.

    InvalidRequestError (or its BatchTooLargeError, MessageTooLargeError leaves)
    for anything a block's reader could not rely on: a producer that is not one,
    a sequence or size out of range, index runs outside the batch or overlapping
    within the part, a payload that does not decode to its records' columns, a
    batch id that comes back after another (a part must be in one piece).
    """
    seen: set[tuple[str, int]] = set()
    current: list[CopiedBlock] = []
    for block in blocks:
        _check_block(block, cap=cap, max_message_bytes=max_message_bytes)
        if current and (block.producer, block.sequence) != (
            current[0].producer,
            current[0].sequence,
        ):
            yield _part(current, seen)
            current = []
        current.append(block)
    if current:
        yield _part(current, seen)


def _check_block(block: CopiedBlock, *, cap: int, max_message_bytes: int) -> None:
    producer = block.producer
    if not producer or not _PRODUCER.match(producer) or len(producer) > MAX_PRODUCER_BYTES:
        raise InvalidRequestError(
            f"a copied block needs its producer (1-{MAX_PRODUCER_BYTES} printable ASCII "
            "characters): records without one (Scribe's Log) have no batch id to copy by"
        )
    if not 0 <= block.sequence <= _I64_MAX:
        raise InvalidRequestError(f"sequence {block.sequence} out of range")
    if not 0 <= block.received_ns <= 2**64 - 1:
        raise InvalidRequestError(f"received_ns {block.received_ns} out of range")
    if not 1 <= block.batch_count <= _U32_MAX:
        raise InvalidRequestError(f"batch_count {block.batch_count} out of range")
    if not block.index_runs:
        raise InvalidRequestError("a copied block holds no records")
    floor = 0
    for start, n in block.index_runs:
        if n < 1 or start < floor:
            raise InvalidRequestError(f"index runs {block.index_runs!r} are not ascending")
        floor = start + n
    if floor > block.batch_count:
        raise InvalidRequestError(
            f"index {floor - 1} is outside a batch of {block.batch_count} records"
        )
    check_payload(
        block.codec,
        block.payload,
        block.raw_bytes,
        block.records,
        cap=cap,
        max_message_bytes=max_message_bytes,
    )


def _part(blocks: list[CopiedBlock], seen: set[tuple[str, int]]) -> Part:
    first = blocks[0]
    key = (first.producer, first.sequence)
    if key in seen:
        raise InvalidRequestError(
            f"blocks of batch {first.producer}#{first.sequence} are not together"
        )
    seen.add(key)
    mask = 0
    for block in blocks:
        if (block.batch_count, block.received_ns) != (first.batch_count, first.received_ns):
            raise InvalidRequestError(
                f"the blocks of batch {first.producer}#{first.sequence} disagree on its size "
                "or receive time"
            )
        for start, n in block.index_runs:
            bits = ((1 << n) - 1) << start
            if mask & bits:
                raise InvalidRequestError(
                    f"the blocks of batch {first.producer}#{first.sequence} overlap"
                )
            mask |= bits
    return Part(first.producer, first.sequence, first.received_ns, first.batch_count, tuple(blocks))


def encode_part(part: Part, marker: bytes, segment_format: int) -> tuple[bytes, int]:
    """The bytes of one part in a category's segment format, and the offset of its last
    block (or record) in them. Format 2: the blocks as they came (END on the last);
    format 1: the records, decoded once."""
    producer = part.producer.encode("ascii")
    if segment_format >= 2:
        encoded = [
            encode_block(
                marker,
                producer=producer,
                sequence=part.sequence,
                batch_count=part.batch_count,
                received_ns=part.received_ns,
                index_runs=block.index_runs,
                codec=block.codec,
                raw_bytes=block.raw_bytes,
                payload=block.payload,
                end=k == len(part.blocks) - 1,
            )
            for k, block in enumerate(part.blocks)
        ]
        return b"".join(encoded), sum(map(len, encoded[:-1]))
    indexes: list[int] = []
    messages: list[bytes] = []
    for block in part.blocks:
        indexes.extend(run_indexes(block.index_runs))
        messages.extend(decode_messages(block.codec, block.payload, block.raw_bytes, block.records))
    order = sorted(range(len(indexes)), key=indexes.__getitem__)
    data = encode_records(
        producer,
        part.sequence,
        part.batch_count,
        part.received_ns,
        [indexes[k] for k in order],
        [messages[k] for k in order],
    )
    return data, max(0, len(data) - 1)


@dataclass(frozen=True, slots=True)
class RestoreOutcome:
    """What one ``Storage.restore`` did."""

    #: Batch parts written now.
    stored: int
    #: Batch parts the category held already (nothing written for them).
    duplicates: int
    #: Records written now.
    records: int


def store_parts(
    category: CategoryLog,
    parts: list[Part],
    *,
    dedup: DedupIndex,
    write: Callable[[WritePart], Written],
    segment_format: int,
) -> RestoreOutcome:
    """Write the parts the category does not hold, in one write, and account for them.

    Each part's batch is claimed in the deduplication index first (in one order,
    so two copies never wait for each other), so an append of the same batch
    that runs meanwhile waits, and one that comes later writes only the records
    still missing. The category's holdings decide what is held (they are exact;
    the deduplication window forgets old batches), looked at once the claims are
    taken, when no other write of these batches can be under way.
    """
    holdings = category.holdings
    holdings.view(lambda: category.segments)  # built before anything is decided from it
    claims: list[tuple[Part, Claim | None]] = []
    try:
        for part in sorted(parts, key=lambda p: (p.producer, p.sequence)):
            claims.append((part, dedup.begin(part.producer, part.sequence)))
        new = [
            (part, claim)
            for part, claim in claims
            if not holdings.holds(part.producer, part.sequence)
        ]
        encoded = [encode_part(part, category.marker, segment_format) for part, _ in new]
        written = None
        if new:
            times = [part.received_ns for part, _ in new]
            records = sum(part.records for part, _ in new)
            data = b"".join(data for data, _ in encoded)
            written = write(WritePart(category, data, records, min(times), max(times)))
    except BaseException:
        for _, claim in claims:
            if claim is not None:
                dedup.finish(claim, stored=False)
        raise
    notes = []
    if written is not None:
        at = written.segment.base + written.end - sum(len(data) for data, _ in encoded)
        for (part, _), (data, last_offset) in zip(new, encoded, strict=True):
            notes.append((part.producer, part.sequence, part.records, at, at + last_offset))
            at += len(data)
        holdings.note(notes)
    stored = {id(part) for part, _ in new}
    for part, claim in claims:
        if claim is None:
            continue
        if id(part) in stored:
            dedup.finish_restored(claim, part.bits(), part.batch_count)
        else:
            dedup.finish(claim, stored=False)
    return RestoreOutcome(
        stored=len(new),
        duplicates=len(parts) - len(new),
        records=sum(part.records for part, _ in new),
    )
