"""Talking to the live servers for repair: who they are, what they hold, copying between them.

Each function opens its own connection (``logserver.reader.connect``)
and closes it, so a server that dies mid-repair costs the work that touched
it, reported, and nothing else. Thrift and socket errors become
:class:`~logserver.errors.LogServerError` here, naming the server.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from logserver.errors import LogServerError
from logserver.reader import connect
from logserver.tools.repair._plan import Copy, LiveServer
from logwire.holdings import Span, pack_ranges, unpack_spans
from logwire.idl import log_thrift
from logwire.serverset import Endpoint

if TYPE_CHECKING:
    from logclient import TLSPolicy

__all__ = ["CopyResult", "ServerCalls"]

#: Producers asked for per ``Holdings`` page.
_HOLDINGS_PAGE = 5000
#: Sequence ranges per ``ReadBatches`` call, and payload bytes per answer.
_RANGES_PER_READ = 2000
_READ_BYTES = 4 * 2**20
#: Payload bytes and records per ``Restore`` call at most (a batch part is never split; one
#: larger goes alone: a server takes every batch it took once).
_RESTORE_BYTES = 8 * 2**20
_RESTORE_RECORDS = 50_000


@dataclass
class CopyResult:
    """What copying one group of batches from one server to another did."""

    stored: int = 0
    duplicates: int = 0
    records: int = 0
    bytes: int = 0
    error: str = ""


class ServerCalls:
    """The calls repair makes, with one TLS policy and timeout for all of them."""

    def __init__(self, *, tls: TLSPolicy | None = None, timeout: float = 60.0) -> None:
        self._tls = tls
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"<ServerCalls tls={self._tls is not None} timeout={self._timeout}>"

    @contextlib.contextmanager
    def _client(self, endpoint: Endpoint) -> Iterator[Any]:
        try:
            with connect(endpoint, self._timeout, tls=self._tls) as client:
                yield client
        except LogServerError:
            raise
        except Exception as exc:  # Thrift, socket, timeout: say which server
            raise LogServerError(f"{endpoint}: {type(exc).__name__}: {exc}") from exc

    def status(self, endpoint: Endpoint) -> Any:
        with self._client(endpoint) as client:
            return client.Status()

    def categories(self, endpoint: Endpoint) -> list[str]:
        with self._client(endpoint) as client:
            return [str(c) for c in client.Categories()]

    def holdings(self, server: LiveServer, category: str) -> tuple[dict[str, list[Span]], int]:
        """Every producer's spans of ``category`` on ``server``, and its records without an id."""
        found: dict[str, list[Span]] = {}
        after = ""
        unidentified = 0
        with self._client(server.endpoint) as client:
            for _ in range(1_000_000):
                page = client.Holdings(category, after, _HOLDINGS_PAGE)
                unidentified = int(page.unidentified_records or 0)
                for item in page.producers or ():
                    found[str(item.producer)] = unpack_spans(item.spans or b"")
                    after = str(item.producer)
                if page.complete or not page.producers:
                    break
        return found, unidentified

    def copy(
        self, category: str, source: LiveServer, target: LiveServer, copies: Sequence[Copy]
    ) -> CopyResult:
        """Read ``copies``'s batches from ``source`` and store them on ``target``."""
        result = CopyResult()
        ordered = sorted(copies, key=lambda c: (c.first_position, c.producer, c.first))
        try:
            with self._client(source.endpoint) as reader, self._client(target.endpoint) as writer:
                for start in range(0, len(ordered), _RANGES_PER_READ):
                    chunk = ordered[start : start + _RANGES_PER_READ]
                    for blocks in self._read(reader, category, chunk):
                        self._restore(writer, category, blocks, result)
        except LogServerError as exc:
            result.error = str(exc)
        except log_thrift.InvalidRequest as exc:
            result.error = f"refused: {exc.reason}"
        except (log_thrift.StorageUnavailable, log_thrift.ServerDraining) as exc:
            result.error = f"{type(exc).__name__}: {exc.reason}"
        except log_thrift.BatchTooLarge as exc:
            result.error = f"BatchTooLarge: {exc.reason}"
        return result

    @staticmethod
    def _read(client: Any, category: str, chunk: Sequence[Copy]) -> Iterator[list[Any]]:
        """The blocks of the chunk's batches, an answer at a time."""
        ranges: dict[str, list[tuple[int, int]]] = {}
        for c in chunk:
            ranges.setdefault(c.producer, []).append((c.first, c.last))
        wanted = [
            log_thrift.WantedBatches(producer=p, ranges=pack_ranges(sorted(r)))
            for p, r in ranges.items()
        ]
        position = min(c.first_position for c in chunk)
        stop = max(c.last_position for c in chunk) + 1
        for _ in range(10_000_000):
            answer = client.ReadBatches(category, wanted, position, stop, _READ_BYTES)
            if answer.blocks:
                yield list(answer.blocks)
            if answer.end_of_log or answer.next_position <= position:
                return
            position = answer.next_position

    @staticmethod
    def _restore(client: Any, category: str, blocks: list[Any], result: CopyResult) -> None:
        """Store ``blocks`` in calls of about ``_RESTORE_BYTES``, a batch part never split."""
        call: list[Any] = []
        size = records = 0
        for k, block in enumerate(blocks):
            call.append(block)
            size += len(block.columns or b"")
            records += int(block.count or 0)
            nxt = blocks[k + 1] if k + 1 < len(blocks) else None
            same = nxt is not None and (nxt.producer, nxt.sequence) == (
                block.producer,
                block.sequence,
            )
            full = size >= _RESTORE_BYTES or (
                nxt is not None and records + int(nxt.count or 0) > _RESTORE_RECORDS
            )
            if nxt is None or (full and not same):
                answer = client.Restore(category, call)
                result.stored += int(answer.stored)
                result.duplicates += int(answer.duplicates)
                result.records += int(answer.records)
                result.bytes += size
                call, size, records = [], 0, 0
