"""The raw ceiling's client: thriftpy2 Cython binary + framed, ``Log`` batches of 1,000.

Each call encodes the whole batch again (as any client must); the records/s
of ``seconds`` of back-to-back calls after a warm-up is the ceiling.
"""

from __future__ import annotations

import time

from thriftpy2.protocol import TCyBinaryProtocolFactory
from thriftpy2.rpc import make_client
from thriftpy2.transport import TCyFramedTransportFactory

from bench.workers import config, emit
from logwire.idl import log_thrift


def main() -> None:
    cfg = config()
    batch = int(cfg.get("batch", 1000))
    seconds = float(cfg["seconds"])
    message = "x" * int(cfg.get("message_bytes", 100))
    entries = [log_thrift.LogEntry(category="bench", message=message) for _ in range(batch)]
    client = make_client(
        log_thrift.LogService,
        "127.0.0.1",
        int(cfg["port"]),
        proto_factory=TCyBinaryProtocolFactory(),
        trans_factory=TCyFramedTransportFactory(),
        timeout=30_000,
    )
    for _ in range(3):
        client.Log(entries)
    calls = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        client.Log(entries)
        calls += 1
        now = time.perf_counter()
        if now >= deadline:
            break
    client.close()
    emit(
        {
            "records": calls * batch,
            "seconds": now - started,
            "rate": calls * batch / (now - started),
        }
    )


if __name__ == "__main__":
    main()
