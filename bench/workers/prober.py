"""Another client's calls, timed one by one: ``Append`` batches of ``records`` x 100 B, one
after another on one connection, for ``seconds`` (or until ``stop_file`` exists; at least
one call either way). With ``ready_file``, that file is created after the first call, so
that an attack can wait until the prober is at work.

What a well-behaved client sees while something else loads the server: every
call's latency and its answer. A call that fails reconnects and counts as
failed; its latency is the time until the failure.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from bench.workers import config, emit
from logwire.idl import log_thrift
from logwire.serverset import Endpoint


def main() -> None:
    from logserver.reader import connect

    cfg = config()
    endpoint = Endpoint.parse(cfg["server"])
    records = int(cfg.get("records", 1000))
    until = time.monotonic() + float(cfg.get("seconds", 10))
    stop_file = Path(cfg["stop_file"]) if cfg.get("stop_file") else None
    ready_file = Path(cfg["ready_file"]) if cfg.get("ready_file") else None
    entries = [
        log_thrift.LogEntry(category=cfg.get("category", "probe"), message=b"p" * 100)
        for _ in range(records)
    ]
    producer = uuid.uuid4().hex
    latencies: list[float] = []
    answers: dict[str, int] = {}
    sequence = 0

    def going() -> bool:
        if not latencies:
            return True
        return time.monotonic() < until and not (stop_file is not None and stop_file.exists())

    while going():
        started = time.perf_counter()
        try:
            with connect(endpoint, 10.0) as client:
                while going():
                    started = time.perf_counter()
                    batch = log_thrift.AppendBatch(
                        producer=producer, sequence=sequence, entries=entries
                    )
                    try:
                        client.Append(batch)
                        answer = "ok"
                    except log_thrift.StorageUnavailable:
                        answer = "unavailable"
                    latencies.append(time.perf_counter() - started)
                    answers[answer] = answers.get(answer, 0) + 1
                    sequence += 1
                    if ready_file is not None and sequence == 1:
                        ready_file.touch()
        except Exception as exc:  # a failed call: counted, then a new connection
            latencies.append(time.perf_counter() - started)
            name = type(exc).__name__
            answers[name] = answers.get(name, 0) + 1
            time.sleep(0.05)
    latencies.sort()
    emit(
        {
            "calls": len(latencies),
            "answers": answers,
            "p50_s": latencies[len(latencies) // 2] if latencies else None,
            "max_s": latencies[-1] if latencies else None,
        }
    )


if __name__ == "__main__":
    main()
