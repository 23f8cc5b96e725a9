"""An application logging through stdlib ``logging``: time per logging call.

``handler`` picks what the app logs to:

- ``logserver``: :class:`logclient.LogServerHandler` (default policies, a static
  server list), JSON as the handler formats it;
- ``file``: ``logging.FileHandler`` to a local file, with the same JSON formatter;
- ``file_text``: ``logging.FileHandler`` with a classic text format (for context);
- ``syslog``: ``logging.handlers.SysLogHandler`` over TCP, with the same JSON formatter.

The app calls ``logger.info("order %08d %s", i, payload)`` with a 100-byte
message, ``records`` times in a loop; the figure is the loop's wall time per
call (so for LogServerHandler it includes the client's sender thread taking
its share of the GIL). Delivery is settled afterwards, outside the clock.
"""

from __future__ import annotations

import logging
import logging.handlers
import socket
import time

from bench.workers import config, emit

WARMUP = 1000


def main() -> None:
    cfg = config()
    kind = cfg["handler"]
    records = int(cfg["records"])
    marker = str(cfg.get("marker", "m"))
    # "order 00000001 <marker>-xxxx": 100 bytes of message.
    payload = (marker + "-").ljust(85, "x")[:85]
    client = None
    if kind == "logserver":
        from logclient import LogClient, LogServerHandler, StaticServers

        client = LogClient(servers=StaticServers(cfg["servers"]))
        handler: logging.Handler = LogServerHandler(client, category="app")
    else:
        from logclient import JsonFormatter

        if kind in ("file", "file_text"):
            handler = logging.FileHandler(cfg["path"])
        elif kind == "syslog":
            host, port = cfg["syslog"]
            handler = logging.handlers.SysLogHandler(
                address=(host, int(port)), socktype=socket.SOCK_STREAM
            )
        else:
            raise SystemExit(f"unknown handler {kind!r}")
        if kind == "file_text":
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
        else:
            handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("bench.app")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)

    info = logger.info
    for i in range(WARMUP):
        info("order %08d %s", i, payload)
    if client is not None and not client.flush(30):
        raise SystemExit(f"warm-up not acknowledged: {client.stats()!r}")
    started = time.perf_counter()
    for i in range(records):
        info("order %08d %s", i, payload)
    elapsed = time.perf_counter() - started

    result = {"handler": kind, "records": records, "total": records + WARMUP, "seconds": elapsed}
    result["per_call_us"] = elapsed / records * 1e6
    if client is not None:
        settle = time.monotonic()
        acked = client.flush(float(cfg.get("flush_timeout", 120)))
        stats = client.stats()
        result |= {
            "flushed": acked,
            "settle_seconds": time.monotonic() - settle,
            "acknowledged": stats.acknowledged,
            "dropped": stats.dropped,
        }
        client.close(10)
    handler.close()
    emit(result)


if __name__ == "__main__":
    main()
