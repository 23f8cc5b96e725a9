"""One LogClient process sending as fast as it can: records/s until acknowledged.

Default policies (batching, failover, queue, spool: the spool lands under the
suite's XDG_STATE_HOME); servers are given as a static list. The clock runs
from the first ``log()`` until ``flush()`` reports every record acknowledged,
so the figure is acknowledged (and, with ``--fsync always``, durable) records
per second. With ``start_at`` several workers start together; with
``copies`` (and ``acks``) every batch is stored on that many servers
(``ReplicationPolicy``), acknowledged once ``acks`` of them hold it.
"""

from __future__ import annotations

import time

from bench.workers import config, emit, sleep_until
from logclient import BatchPolicy, LogClient, ReplicationPolicy, SpoolPolicy, StaticServers


def main() -> None:
    cfg = config()
    records = int(cfg["records"])
    message = b"x" * int(cfg.get("message_bytes", 100))
    category = str(cfg.get("category", "bench"))
    options: dict[str, object] = {}
    if cfg.get("batch_records"):  # experiments only: the suite's cases use the defaults
        options["batching"] = BatchPolicy(max_records=int(cfg["batch_records"]))
    if cfg.get("no_spool"):
        options["spool"] = SpoolPolicy.disabled()
    if cfg.get("copies"):
        acks = cfg.get("acks")
        options["replication"] = ReplicationPolicy(
            copies=int(cfg["copies"]), acks=int(acks) if acks else None
        )
    client = LogClient(servers=StaticServers(cfg["servers"]), **options)  # type: ignore[arg-type]
    try:
        # Connect and warm up (imports, first batch) before the clock starts.
        client.log(category, message)
        if not client.flush(30):
            raise SystemExit(f"warm-up not acknowledged: {client.stats()!r}")
        if cfg.get("start_at") is not None:
            sleep_until(float(cfg["start_at"]))
        log = client.log
        started = time.monotonic()
        for _ in range(records):
            log(category, message)
        logged = time.monotonic()
        if not client.flush(float(cfg.get("flush_timeout", 300))):
            raise SystemExit(f"not acknowledged in time: {client.stats()!r}")
        done = time.monotonic()
        stats = client.stats()
    finally:
        client.close(10)
    emit(
        {
            "records": records,
            "started": started,
            "done": done,
            "seconds": done - started,
            "log_seconds": logged - started,
            "rate": records / (done - started),
            "acknowledged": stats.acknowledged,
            "dropped": stats.dropped,
            "failovers": stats.failovers,
            "spilled": stats.spilled,
            "hedged": stats.hedged,
            "sent_batches": stats.sent_batches,
        }
    )


if __name__ == "__main__":
    main()
