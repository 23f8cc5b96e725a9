"""The data inventory: which servers hold data, of which categories, and when each was last seen.

Members (``<zk_path>/member_N``) are ephemeral: a server that dies, or whose
disk is lost, vanishes from them, and a reader of the members alone cannot
tell "nothing was there" from "the server that held it is gone". So every
server also keeps a **persistent** record of what it holds, one znode per
server id, beside the members rather than under them so that ServerSet readers
of the members' path never see it::

    <zk_path>-inventory/<server id>     e.g. /logservers-inventory/0123456789abcdef

A record stays after its server is gone: readers (``logserver cat``, repair)
then say which server holds data that cannot be read now, and what may be
missing. ``logserver forget ID`` removes the record of a server that is known
to be gone for good.

The record is JSON (:meth:`InventoryRecord.to_json`), small by construction:
at most :data:`MAX_CATEGORIES` categories (the largest first; ``truncated``
says some were left out, and readers then assume the server may hold any
category). Readers ignore fields they do not know, as ServerSet readers do.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from logwire.errors import InventoryFormatError
from logwire.serverset import Endpoint

__all__ = [
    "INVENTORY_SUFFIX",
    "MAX_CATEGORIES",
    "InventoryFormatError",
    "InventoryRecord",
    "inventory_path",
]

#: The inventory lives at ``<zk_path>`` + this: a sibling of the members' path.
INVENTORY_SUFFIX = "-inventory"
#: Categories listed per record at most (a znode holds 1 MB; this keeps a record < 300 KB).
MAX_CATEGORIES = 5000
_FORMAT = 1


def inventory_path(zk_path: str) -> str:
    """Where the records of the servers registered under ``zk_path`` live."""
    return zk_path.rstrip("/") + INVENTORY_SUFFIX


@dataclass(frozen=True)
class InventoryRecord:
    """What one server (one data directory) holds, as it last said.

    ``categories`` maps each category it holds records of to the bytes it
    stores of it. ``last_seen`` is when the server last wrote the record (Unix
    seconds): it writes on start, when it takes a category it did not hold, and
    every few tens of seconds while it runs. ``stopped`` is set by a graceful
    shutdown (the server is down on purpose, with its data intact).
    """

    server_id: str
    endpoint: Endpoint | None
    categories: dict[str, int] = field(default_factory=dict)
    last_seen: float = 0.0
    started_at: float = 0.0
    zone: str = ""
    data_dir: str = ""
    truncated: bool = False
    stopped: bool = False

    def holds(self, category: str) -> bool:
        """Whether the server may hold records of ``category``."""
        return category in self.categories or self.truncated

    @property
    def holds_data(self) -> bool:
        return bool(self.categories) or self.truncated

    def to_json(self) -> bytes:
        """The znode data (categories limited to :data:`MAX_CATEGORIES`, the largest kept)."""
        categories = self.categories
        truncated = self.truncated
        if len(categories) > MAX_CATEGORIES:
            largest = sorted(categories.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_CATEGORIES]
            categories = dict(largest)
            truncated = True
        doc: dict[str, Any] = {
            "format": _FORMAT,
            "serverId": self.server_id,
            "endpoint": (
                {"host": self.endpoint.host, "port": self.endpoint.port}
                if self.endpoint is not None
                else None
            ),
            "zone": self.zone,
            "dataDir": self.data_dir,
            "categories": dict(sorted(categories.items())),
            "truncated": truncated,
            "lastSeen": self.last_seen,
            "startedAt": self.started_at,
            "stopped": self.stopped,
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes, *, node: str = "") -> InventoryRecord:
        """Parse a record; InventoryFormatError for anything unusable.

        ``node`` (the znode's name) must equal the record's server id when given:
        a record copied under another name is not trusted.
        """
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict):
                raise TypeError("not a JSON object")
            server_id = doc["serverId"]
            if not isinstance(server_id, str) or not server_id:
                raise ValueError("serverId must be a non-empty string")
            if node and node != server_id:
                raise ValueError(f"record of {server_id!r} under the node {node!r}")
            ep = doc.get("endpoint")
            endpoint = Endpoint(str(ep["host"]), int(ep["port"])) if ep else None
            raw_categories = doc.get("categories")
            if raw_categories is None:
                raw_categories = {}
            if not isinstance(raw_categories, dict):
                raise TypeError("categories must be an object")
            categories = {str(k): _count(v) for k, v in raw_categories.items()}
            return cls(
                server_id=server_id,
                endpoint=endpoint,
                categories=categories,
                last_seen=_seconds(doc.get("lastSeen", 0.0)),
                started_at=_seconds(doc.get("startedAt", 0.0)),
                zone=_text(doc.get("zone")),
                data_dir=_text(doc.get("dataDir")),
                truncated=doc.get("truncated") is True,
                stopped=doc.get("stopped") is True,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InventoryFormatError(
                f"not an inventory record: {data[:200]!r}: {exc}", node=node
            ) from exc


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"a category's bytes must be a non-negative integer, not {value!r}")
    return value


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"a time must be a number of seconds, not {value!r}")
    return float(value)
