"""An application logging through stdlib ``logging``: time per logging call, per handler.

The app holds one logger per handler:

- ``logserver``: :class:`logclient.LogServerHandler` (default policies, a static
  server list), JSON as the handler formats it;
- ``file``: ``logging.FileHandler`` to a local file, with the same JSON formatter;
- ``file_text``: ``logging.FileHandler`` with a classic text format (for context);
- ``syslog``: ``logging.handlers.SysLogHandler`` over TCP, with the same JSON formatter.

It calls ``info("order %08d %s", i, payload)`` (a 100-byte message) in chunks
of ``chunk`` calls, handler after handler, for ``rounds`` rounds (the order
rotates every round), so that the machine's noise lands on every handler
alike. A chunk's wall time counts, so for LogServerHandler the client's sender
thread taking its share of the GIL is included; between chunks the client is
flushed (outside the clock) so its work never lands in another handler's chunk.
"""

from __future__ import annotations

import logging
import logging.handlers
import socket
import time
from typing import Any

from bench.workers import config, emit

WARMUP = 1000


def make_handler(kind: str, cfg: dict[str, Any]) -> tuple[logging.Handler, Any]:
    from logclient import JsonFormatter, LogClient, LogServerHandler, StaticServers

    if kind == "logserver":
        client = LogClient(servers=StaticServers(cfg["servers"]))
        return LogServerHandler(client, category="app"), client
    handler: logging.Handler
    if kind in ("file", "file_text"):
        handler = logging.FileHandler(f"{cfg['directory']}/{kind}.log")
    elif kind == "syslog":
        host, port = cfg["syslog"]
        handler = logging.handlers.SysLogHandler(
            address=(host, int(port)), socktype=socket.SOCK_STREAM
        )
    else:
        raise SystemExit(f"unknown handler {kind!r}")
    if kind == "file_text":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(JsonFormatter())
    return handler, None


def main() -> None:
    cfg = config()
    kinds: list[str] = list(cfg["handlers"])
    rounds = int(cfg["rounds"])
    chunk = int(cfg["chunk"])
    marker = str(cfg.get("marker", "m"))
    payload = (marker + "-").ljust(85, "x")[:85]  # "order 00000001 " + 85 = 100 bytes

    loggers: dict[str, logging.Logger] = {}
    handlers: dict[str, logging.Handler] = {}
    clients: dict[str, Any] = {}
    for kind in kinds:
        handler, client = make_handler(kind, cfg)
        logger = logging.getLogger(f"bench.app.{kind}")
        logger.setLevel(logging.INFO)
        logger.propagate = False
        logger.addHandler(handler)
        loggers[kind], handlers[kind] = logger, handler
        if client is not None:
            clients[kind] = client
    for kind in kinds:
        info = loggers[kind].info
        for i in range(WARMUP):
            info("order %08d %s", i, payload)
    for client in clients.values():
        if not client.flush(30):
            raise SystemExit(f"warm-up not acknowledged: {client.stats()!r}")

    wall: dict[str, list[float]] = {k: [] for k in kinds}
    cpu: dict[str, list[float]] = {k: [] for k in kinds}
    n = WARMUP
    for r in range(rounds):
        order = kinds[r % len(kinds) :] + kinds[: r % len(kinds)]
        for kind in order:
            info = loggers[kind].info
            c0, t0 = time.process_time(), time.perf_counter()
            for i in range(n, n + chunk):
                info("order %08d %s", i, payload)
            t1, c1 = time.perf_counter(), time.process_time()
            wall[kind].append(t1 - t0)
            cpu[kind].append(c1 - c0)
            client = clients.get(kind)
            if client is not None and not client.flush(60):
                raise SystemExit(f"not acknowledged in time: {client.stats()!r}")
        n += chunk

    total = WARMUP + rounds * chunk
    result: dict[str, Any] = {"rounds": rounds, "chunk": chunk, "total_per_handler": total}
    for kind in kinds:
        calls = rounds * chunk
        result[kind] = {
            "per_call_us": sum(wall[kind]) / calls * 1e6,
            "cpu_per_call_us": sum(cpu[kind]) / calls * 1e6,
            "chunks_us": [w / chunk * 1e6 for w in wall[kind]],
        }
    for kind, client in clients.items():
        stats = client.stats()
        result[kind] |= {"acknowledged": stats.acknowledged, "dropped": stats.dropped}
        client.close(10)
    for handler in handlers.values():
        handler.close()
    emit(result)


if __name__ == "__main__":
    main()
