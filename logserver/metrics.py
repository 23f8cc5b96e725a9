"""Prometheus metrics of one server, in a registry of its own (not the global one)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

__all__ = ["Metrics"]


@dataclass
class Metrics:
    """The counters a log server operator alerts on."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.batches = Counter(
            "logserver_batches",
            "Batches stored, by call (log, append, append_packed)",
            ["call"],
            registry=r,
        )
        self.records = Counter(
            "logserver_records",
            "Records stored, by call (log, append, append_packed)",
            ["call"],
            registry=r,
        )
        self.duplicates = Counter(
            "logserver_duplicate_batches",
            "Retried batches acknowledged without storing",
            registry=r,
        )
        self.rejected = Counter(
            "logserver_rejected_batches",
            "Batches refused, by reason (draining, unavailable, invalid_category, too_large, invalid_request)",
            ["reason"],
            registry=r,
        )
        self.append_seconds = Histogram(
            "logserver_append_seconds",
            "Time from a batch's arrival at storage to its durable acknowledgement",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )

    def serve(self, host: str, port: int) -> int:
        """Expose ``/metrics`` over HTTP; returns the bound port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)
