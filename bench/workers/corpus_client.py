"""One LogClient process logging a corpus (``bench.corpus``) as fast as it can.

Like ``throughput``, but the messages come from a corpus (this machine's
``/var/log`` lines, ``LogServerHandler`` JSON lines, random bytes), built
before the clock starts, and the client's compression is set by the config
(``"compression": "zstd" | "none"``, ``"level"``). Reports records/s until
acknowledged, the message bytes sent and the process's CPU seconds.
"""

from __future__ import annotations

import resource
import time

from bench.corpus import corpus
from bench.workers import config, emit
from logclient import CompressionPolicy, LogClient, StaticServers


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    cfg = config()
    records = int(cfg["records"])
    messages = corpus(str(cfg["corpus"]), records, int(cfg.get("message_bytes", 100)))
    category = str(cfg.get("category", "corpus"))
    compression = CompressionPolicy(
        algorithm=cfg.get("compression", "zstd"), level=int(cfg.get("level", 1))
    )
    client = LogClient(servers=StaticServers(cfg["servers"]), compression=compression)
    try:
        client.log(category + "-warmup", messages[0])
        if not client.flush(30):
            raise SystemExit(f"warm-up not acknowledged: {client.stats()!r}")
        log = client.log
        cpu = _cpu()
        started = time.monotonic()
        for message in messages:
            log(category, message)
        if not client.flush(float(cfg.get("flush_timeout", 300))):
            raise SystemExit(f"not acknowledged in time: {client.stats()!r}")
        done = time.monotonic()
        cpu = _cpu() - cpu
        stats = client.stats()
    finally:
        client.close(10)
    emit(
        {
            "records": records,
            # The warm-up record is stored too: counted, so that bytes on disk per
            # message byte compare like with like.
            "message_bytes": sum(map(len, messages)) + len(messages[0]),
            "seconds": done - started,
            "rate": records / (done - started),
            "cpu_seconds": cpu,
            "dropped": stats.dropped,
            "spilled": stats.spilled,
        }
    )


if __name__ == "__main__":
    main()
