"""Hostile peers that use only legal requests, in a process of their own (so that a measured
client is not slowed by the attacker's threads). Used by the hostile cases and by
``tests/hostile``: ``python -m bench.workers.attacker CONFIG_JSON``.

``kind`` in the configuration says which attack:

- ``frames``: ``connections`` connections each send one legal request frame
  (``frame``, hex; or ``log_bytes``: a ``Log`` call of about that many bytes of
  100-byte records in ``category``) at the same moment, then read the replies.
  Result: how many replies of each kind (``ok``, ``try_later``, or the error).
- ``categories``: one ``Append`` naming ``categories`` distinct categories, one
  record each (a category bomb). Result: the answer and how long it took.
- ``idle``: hold ``connections`` connections from source address ``source``
  that never send a byte, re-opening each one the server closes, for
  ``duration_s`` (if given) or until stdin is closed. Prints ``READY`` once all
  are open.

The process raises its own soft limit on open files to its hard limit first.
"""

from __future__ import annotations

import resource
import selectors
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench.workers import config, emit

_T_STRING, _T_STRUCT, _T_LIST, _STOP = 11, 12, 15, 0


def log_frame(total: int, category: bytes = b"flood", message_bytes: int = 100) -> bytes:
    """A framed, strict ``Log`` call of about ``total`` bytes: what Scribe clients send."""
    entry = (
        struct.pack(">bhi", _T_STRING, 1, len(category))
        + category
        + struct.pack(">bhi", _T_STRING, 2, message_bytes)
        + b"m" * message_bytes
        + bytes([_STOP])
    )
    header = struct.pack(">Ii", 0x80010001, 3) + b"Log" + struct.pack(">i", 1)
    count = max(1, (total - len(header) - 13) // len(entry))
    body = header + struct.pack(">bhbi", _T_LIST, 1, _T_STRUCT, count) + entry * count
    body += bytes([_STOP])
    return struct.pack(">i", len(body)) + body


# The last bytes of a Log reply: the i32 of field 0 (OK 0, TRY_LATER 1), then STOP.
_LOG_ANSWERS = {b"\x00\x00\x00\x00\x00": "ok", b"\x00\x00\x00\x01\x00": "try_later"}


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("eof")
        data += chunk
    return bytes(data)


def frames(args: dict[str, Any]) -> dict[str, Any]:
    frame = (
        bytes.fromhex(args["frame"])
        if "frame" in args
        else log_frame(int(args["log_bytes"]), args.get("category", "flood").encode())
    )
    port = int(args["port"])
    count = int(args["connections"])
    socks = [socket.create_connection(("127.0.0.1", port), timeout=120) for _ in range(count)]
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(count)

    def run(sock: socket.socket) -> None:
        try:
            start.wait()
            sock.sendall(frame)
            (length,) = struct.unpack(">i", _recv_exact(sock, 4))
            reply = _recv_exact(sock, length)
            outcome = _LOG_ANSWERS.get(reply[-5:], "other")
        except Exception as exc:  # a reset or a cut: what the attack got
            outcome = type(exc).__name__
        with lock:
            outcomes[outcome] += 1

    threads = [threading.Thread(target=run, args=(s,)) for s in socks]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in socks:
        s.close()
    return {"outcomes": dict(outcomes), "elapsed_s": round(time.monotonic() - started, 2)}


def categories(args: dict[str, Any]) -> dict[str, Any]:
    from logserver.tools.reader import connect
    from logwire.idl import log_thrift
    from logwire.serverset import Endpoint

    count = int(args["categories"])
    prefix = args.get("prefix", "bomb")
    batch = log_thrift.AppendBatch(
        producer=f"{prefix}-attacker",
        sequence=0,
        entries=[
            log_thrift.LogEntry(category=f"{prefix}-{i:06d}", message=b"x") for i in range(count)
        ],
    )
    started = time.monotonic()
    try:
        with connect(Endpoint("127.0.0.1", int(args["port"])), timeout=600) as client:
            result = client.Append(batch)
        answer = f"stored {result.stored}"
    except Exception as exc:  # the declared refusal is the expected answer with default flags
        answer = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
    return {"answer": answer, "elapsed_s": round(time.monotonic() - started, 3)}


def idle(args: dict[str, Any]) -> dict[str, Any]:
    port = int(args["port"])
    source = args.get("source", "127.0.0.1")
    count = int(args["connections"])
    sel = selectors.DefaultSelector()
    opened = 0
    closed_by_server = 0
    failed = 0

    def open_one() -> None:
        nonlocal opened, failed
        try:
            sock = socket.create_connection(
                ("127.0.0.1", port), timeout=5, source_address=(source, 0)
            )
        except OSError:
            failed += 1
            return
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
        opened += 1

    for _ in range(count):
        open_one()
    print("READY", flush=True)
    if "duration_s" not in args:
        sel.register(sys.stdin, selectors.EVENT_READ)
    until = time.monotonic() + float(args.get("duration_s", "inf"))
    while time.monotonic() < until:
        events = sel.select(timeout=min(1.0, max(0.0, until - time.monotonic())))
        done = False
        for key, _ in events:
            if key.fileobj is sys.stdin:
                done = True
                continue
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            if not data:
                sel.unregister(sock)
                sock.close()
                closed_by_server += 1
                open_one()
        if done:
            break
    held = sum(1 for key in sel.get_map().values() if key.fileobj is not sys.stdin)
    return {
        "opened": opened,
        "closed_by_server": closed_by_server,
        "connect_failed": failed,
        "held_at_end": held,
    }


def main() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    args = config()
    attacks: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
        "frames": frames,
        "categories": categories,
        "idle": idle,
    }
    emit(attacks[args["kind"]](args))


if __name__ == "__main__":
    main()
