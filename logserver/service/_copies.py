"""What ``logserver repair`` calls: ``Holdings``, ``ReadBatches`` and ``Restore``.

Repair compares what servers hold and copies the batches one lacks from
another (see :mod:`logserver.tools.repair`). ``Holdings`` answers a page of
producers at a time, within the server's limits; ``ReadBatches`` the stored
blocks of chosen batches; ``Restore`` stores copies with their original
identity, so that a later append of such a batch writes only the records
still missing (a duplicate once all are there). With mutual
TLS only the identities the server was given (``--repair-identity``) may
restore: anyone else could otherwise store records under any producer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from logserver.errors import InvalidRequestError
from logserver.service._context import CallContext
from logserver.service._convert import copied_block, text, thrift_blocks
from logserver.service._limits import check_count
from logserver.transport import client_identity
from logwire.holdings import pack_spans, unpack_ranges
from logwire.idl import log_thrift

__all__ = ["CopyCalls"]


class CopyCalls:
    """The repair calls of ``LogService`` (see the module docstring); thread-safe."""

    def __init__(self, context: CallContext, *, repair_identities: frozenset[str]) -> None:
        self._storage = context.storage
        self._metrics = context.metrics
        self._limits = context.limits
        self._refusals = context.refusals
        self._draining = context.draining
        self._repair_identities = repair_identities

    def __repr__(self) -> str:
        return f"<CopyCalls repair_identities={sorted(self._repair_identities)}>"

    def holdings(self, category: str | bytes, after: str | bytes, limit: int) -> Any:
        """What the server holds of ``category``, per producer, a page at a time."""
        name = text(category or "")
        with self._refusals.declared("read"):
            if limit is None or limit < 1:
                raise InvalidRequestError("limit must be >= 1")
            view = self._storage.copies.holdings(name)
        start = text(after or "")
        limit = min(limit, self._limits.max_holdings_producers)
        names = sorted(p for p in view.producers if p > start)
        page: list[Any] = []
        size = 0
        for producer in names:
            if len(page) >= limit or (page and size >= self._limits.max_holdings_bytes):
                break
            spans = pack_spans(view.producers[producer].spans())
            page.append(log_thrift.ProducerHoldings(producer=producer, spans=spans))
            size += len(spans) + len(producer)
        return log_thrift.HoldingsPage(
            producers=page,
            complete=len(page) == len(names),
            unidentified_records=view.unidentified,
        )

    def read_batches(
        self,
        category: str | bytes,
        wanted: Sequence[Any],
        position: int,
        stop_position: int,
        max_bytes: int,
    ) -> Any:
        """The stored blocks of the wanted batches (see ``log.thrift``)."""
        name = text(category or "")
        with self._refusals.declared("read"):
            if position is None or stop_position is None or not 0 <= position <= stop_position:
                raise InvalidRequestError("need 0 <= position <= stop_position")
            if max_bytes is None or max_bytes < 1:
                raise InvalidRequestError("max_bytes must be >= 1")
            ranges: dict[str, list[tuple[int, int]]] = {}
            for item in wanted or ():
                ranges.setdefault(text(item.producer or ""), []).extend(
                    unpack_ranges(item.ranges or b"")
                )
            found = self._storage.copies.read_batches(
                name,
                ranges,
                position,
                stop_position,
                min(max_bytes, self._limits.max_read_bytes),
            )
        return log_thrift.BlockReadResult(
            blocks=thrift_blocks(found.blocks),
            next_position=found.next_position,
            end_of_log=found.done,
        )

    def restore(self, category: str | bytes, blocks: Sequence[Any]) -> Any:
        """Store copies of batch parts with their original identity (see ``log.thrift``)."""
        if self._draining():
            self._refusals.draining()
            raise log_thrift.ServerDraining(reason="server is shutting down; use another")
        name = text(category or "")
        with self._refusals.declared("restore"):
            identity = client_identity()
            if identity and identity not in self._repair_identities:
                raise InvalidRequestError(
                    f"client identity {identity} may not restore copies (the server's "
                    "--repair-identity lists who may)"
                )
            copied = [copied_block(b) for b in blocks or ()]
            parts: dict[tuple[str, int], int] = {}
            for block in copied:  # each batch within the limit, as when it was first sent
                key = (block.producer, block.sequence)
                parts[key] = parts.get(key, 0) + block.records
            check_count(self._limits, max(parts.values(), default=0))
            outcome = self._storage.copies.restore(name, copied)
        self._metrics.batches.labels("restore").inc(outcome.stored)
        self._metrics.records.labels("restore").inc(outcome.records)
        return log_thrift.RestoreResult(
            stored=outcome.stored, duplicates=outcome.duplicates, records=outcome.records
        )
