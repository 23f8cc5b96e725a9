"""The frame guard's cost: checking a 1,000-entry frame, against thriftpy2 decoding the same frame.

The guard walks every frame the thriftpy2 path will decode, so its cost is
only acceptable well under that decode's. Both are timed here, interleaved
(guard, then decode, per repetition), on the ``Log`` and ``Append`` frames of
1,000 entries of 100 bytes that a Scribe client or an older logclient sends:
per frame, the best of ``repeats`` runs of ``loops`` frames each.
"""

from __future__ import annotations

import time
from typing import Any

from thriftpy2.protocol.cybin import TCyBinaryProtocol  # type: ignore[attr-defined]
from thriftpy2.thrift import TMessageType, TProcessor
from thriftpy2.transport.memory import TCyMemoryBuffer

from bench.workers import config, emit
from logserver.transport._guard import check_frame
from logwire.idl import log_thrift

LogService = log_thrift.LogService


def encode_call(name: str, args: Any) -> bytes:
    buf = TCyMemoryBuffer()
    proto = TCyBinaryProtocol(buf, strict_write=True)
    proto.write_message_begin(name, TMessageType.CALL, 1)
    args.write(proto)
    proto.write_message_end()
    return bytes(buf.getvalue())


def frames(entries: int, message_bytes: int) -> dict[str, bytes]:
    batch = [
        log_thrift.LogEntry(category="app.web", message="m" * message_bytes) for _ in range(entries)
    ]
    return {
        "Log": encode_call("Log", LogService.Log_args(messages=batch)),
        "Append": encode_call(
            "Append",
            LogService.Append_args(
                batch=log_thrift.AppendBatch(producer="producer-1", sequence=9, entries=batch)
            ),
        ),
    }


def decode(processor: TProcessor, frame: bytes) -> None:
    """What the server's thriftpy2 path does with a frame before calling the handler."""
    proto = TCyBinaryProtocol(TCyMemoryBuffer(frame), strict_read=False, decode_response=False)
    processor.process_in(proto)


def per_frame_s(fn: Any, frame: bytes, loops: int) -> float:
    started = time.perf_counter()
    for _ in range(loops):
        fn(frame)
    return (time.perf_counter() - started) / loops


def main() -> None:
    cfg = config()
    repeats, loops = int(cfg["repeats"]), int(cfg["loops"])
    processor = TProcessor(LogService, object())
    result: dict[str, Any] = {}
    for name, frame in frames(
        int(cfg.get("entries", 1000)), int(cfg.get("message_bytes", 100))
    ).items():
        check_frame(frame)  # warm-up, and a frame the guard refuses would fail the case here
        decode(processor, frame)
        guard, thrift = [], []
        for _ in range(repeats):
            guard.append(per_frame_s(check_frame, frame, loops))
            thrift.append(per_frame_s(lambda f: decode(processor, f), frame, loops))
        result[name] = {"guard_s": min(guard), "decode_s": min(thrift), "bytes": len(frame)}
    emit(result)


if __name__ == "__main__":
    main()
