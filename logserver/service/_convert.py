"""Values between ``log.thrift`` and storage: names as text, blocks both ways.

String fields reach the handler as ``bytes`` (the transport decodes requests
with thriftpy2's ``decode_response=False``): :func:`text` makes a name text
without ever raising. Stored blocks go out
as ``log.thrift``'s ``StoredBlock``; copied blocks come in as storage's
:class:`~logserver.storage.CopiedBlock`, their small fields checked here and
their payload left for storage to check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from logserver.errors import InvalidRequestError
from logserver.storage import CopiedBlock, StoredBlock
from logwire.blocks import pack_positions, pack_runs, unpack_runs
from logwire.idl import log_thrift

__all__ = ["copied_block", "text", "thrift_blocks"]


def text(value: str | bytes) -> str:
    """``value`` as text (bytes decoded as UTF-8, an invalid byte replaced)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def thrift_blocks(blocks: Sequence[StoredBlock]) -> list[Any]:
    """Storage's blocks as ``log.thrift``'s ``StoredBlock``."""
    return [
        log_thrift.StoredBlock(
            position=b.position,
            producer=b.producer,
            sequence=b.sequence,
            received_ns=b.received_ns,
            count=b.records,
            batch_count=b.batch_count,
            index_runs=pack_runs(b.index_runs),
            codec=b.codec,
            raw_bytes=b.raw_bytes,
            columns=b.payload,
            positions=pack_positions(b.positions) if b.positions is not None else b"",
        )
        for b in blocks
    ]


def copied_block(block: Any) -> CopiedBlock:
    """A ``StoredBlock`` to restore, its small columns checked (its payload is storage's to check)."""
    count = block.count if isinstance(block.count, int) else 0
    if count < 1:
        raise InvalidRequestError(f"a block of {count} records")
    for name in ("sequence", "received_ns", "batch_count", "codec", "raw_bytes"):
        if not isinstance(getattr(block, name), int):
            raise InvalidRequestError(f"a copied block needs its {name}")
    producer = block.producer or ""
    if isinstance(producer, bytes):
        try:
            producer = producer.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidRequestError("producer must be printable ASCII") from None
    return CopiedBlock(
        producer=producer,
        sequence=block.sequence,
        received_ns=block.received_ns,
        batch_count=block.batch_count,
        index_runs=unpack_runs(block.index_runs or b"", count),
        codec=block.codec,
        raw_bytes=block.raw_bytes,
        payload=block.columns or b"",
    )
