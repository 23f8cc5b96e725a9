"""The data a logserver puts in its ZooKeeper node: Finagle's ServerSet JSON.

Existing ServerSet tooling reads ``serviceEndpoint``, ``additionalEndpoints``
and ``status``; our own fields sit beside them and are optional for readers.
``tls`` says whether the Thrift port speaks TLS; nothing about certificates or
keys is ever written here (anyone who can read ZooKeeper can read it).
``serverId`` is the server's persistent id (its data directory's: a wiped
directory is a new server; ``processId`` changes with every start), ``zone``
the failure domain an operator gave it (``logserver serve --zone``; clients
spread a batch's copies across zones first). Both are empty for servers that
predate them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from logwire.errors import EndpointFormatError, MemberFormatError

__all__ = ["Endpoint", "EndpointFormatError", "Member", "MemberFormatError", "zone_problem"]

_ZONE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}\Z")


def zone_problem(zone: str) -> str | None:
    """Why ``zone`` cannot name a zone (None when it can): 1-64 characters of letters,
    digits and ``. _ : -``, starting with a letter or digit (``eu-west-1a``, ``rack-12``)."""
    if not _ZONE.match(zone):
        return (
            "a zone is 1-64 letters, digits, '.', '_', ':' or '-', starting with a letter "
            f"or digit, not {zone[:80]!r}"
        )
    return None


@dataclass(frozen=True, order=True)
class Endpoint:
    """A host and port: the identity of a server for clients (not its znode name)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """Parse ``host:port``; EndpointFormatError (a ValueError) for anything else."""
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise EndpointFormatError(f"not host:port: {text!r}")
        return cls(host.strip("[]"), int(port))


@dataclass(frozen=True)
class Member:
    """One registered server, as read from (or written to) its znode."""

    endpoint: Endpoint
    status: str = "ALIVE"
    additional: dict[str, Endpoint] = field(default_factory=dict)
    process_id: str = ""
    pid: int = 0
    version: str = ""
    started_at: float = 0.0
    #: The service endpoint speaks TLS (data written before this field existed: False).
    tls: bool = False
    #: The server's persistent id (its data directory's; "" from servers before it existed).
    server_id: str = ""
    #: The failure domain the server registered in (``--zone``; "" when it gave none).
    zone: str = ""

    def to_json(self) -> bytes:
        """The znode data: ServerSet fields first, ours after."""
        doc: dict[str, Any] = {
            "serviceEndpoint": {"host": self.endpoint.host, "port": self.endpoint.port},
            "additionalEndpoints": {
                name: {"host": ep.host, "port": ep.port} for name, ep in self.additional.items()
            },
            "status": self.status,
            "processId": self.process_id,
            "pid": self.pid,
            "version": self.version,
            "startedAt": self.started_at,
            "tls": self.tls,
            "serverId": self.server_id,
            "zone": self.zone,
        }
        return json.dumps(doc, sort_keys=False).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Member:
        """Parse znode data; raise MemberFormatError for anything unusable."""
        try:
            doc = json.loads(data)
            ep = doc["serviceEndpoint"]
            endpoint = Endpoint(str(ep["host"]), int(ep["port"]))
            additional = {
                str(name): Endpoint(str(v["host"]), int(v["port"]))
                for name, v in (doc.get("additionalEndpoints") or {}).items()
            }
            if not endpoint.host or not 0 < endpoint.port < 65536:
                raise ValueError(f"bad endpoint {endpoint}")
            return cls(
                endpoint=endpoint,
                status=str(doc.get("status", "ALIVE")),
                additional=additional,
                process_id=str(doc.get("processId", "")),
                pid=int(doc.get("pid", 0)),
                version=str(doc.get("version", "")),
                started_at=float(doc.get("startedAt", 0.0)),
                # Only a JSON true counts: a string "false" must not turn TLS on.
                tls=doc.get("tls", False) is True,
                server_id=_text_field(doc, "serverId"),
                zone=_text_field(doc, "zone"),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MemberFormatError(f"not a ServerSet member: {data[:200]!r}: {exc}") from exc


def _text_field(doc: dict[str, Any], name: str) -> str:
    """An optional string field: "" when absent or not a string (a reader never guesses)."""
    value = doc.get(name, "")
    return value if isinstance(value, str) else ""
