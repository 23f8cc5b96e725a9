"""A data directory as a source: a stopped server's files, read without it."""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from pathlib import Path

from logserver.storage import StoredBlock, read_blocks_offline
from logwire.blocks import WireBlock

__all__ = ["directory_pages", "wire_block"]


def wire_block(block: StoredBlock) -> WireBlock:
    """Storage's block as a reader's (what ``ReadBlocks`` would have shipped)."""
    return WireBlock(
        position=block.position,
        producer=block.producer,
        sequence=block.sequence,
        received_ns=block.received_ns,
        count=block.records,
        batch_count=block.batch_count,
        index_runs=block.index_runs,
        codec=block.codec,
        raw_bytes=block.raw_bytes,
        payload=block.payload,
        positions=array("q", block.positions) if block.positions is not None else None,
    )


def directory_pages(data_dir: Path, category: str) -> Iterator[list[WireBlock]]:
    """The blocks of ``category`` in ``data_dir``, a page at a time."""
    for page in read_blocks_offline(data_dir, category):
        yield [wire_block(b) for b in page]
