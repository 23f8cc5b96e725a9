"""The wire under abuse: what the frame guard costs, and what hostile peers cost a good client.

The tests check what the server does with hostile input (refused, counted,
nothing allocated, other clients served); how fast it stays is measured here,
against a baseline of the same run:

- ``guard_cost``: the guard's check of a 1,000-entry ``Log``/``Append`` frame
  against thriftpy2's own decode of the same frame (a worker process);
- ``hostile_load``: a good client's Ping round trip to a real ``logserver``
  while hundreds of connections sit idle or trickle half a frame, and while a
  peer sends the 25-byte ``list<void>`` bomb that freezes a bare thriftpy2
  server for seconds; against the same client's Ping with no one else there.
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import struct
import threading
import time
from collections.abc import Iterator

from bench.common import BenchEnv, BenchError, CaseResult, Row, summary
from logserver.tools.launcher import wait_for

MS = 1e3
T_STOP, T_VOID, T_LIST = 0, 1, 15
VERSION_1 = -2147418112  # 0x80010000 as a signed i32: a strict Thrift message header


def guard_cost(env: BenchEnv) -> CaseResult:
    p = env.profile
    runs = [
        env.run_worker("guard", {"repeats": p.guard_repeats, "loops": p.guard_loops}, timeout=300)
        for _ in range(p.repeats)
    ]
    result = CaseResult(
        "guard_cost", "the frame guard's check of a 1,000-entry frame vs thriftpy2's decode"
    )
    for name in ("Log", "Append"):
        guard_ms = [r[name]["guard_s"] * MS for r in runs]
        decode_ms = [r[name]["decode_s"] * MS for r in runs]
        result.rows.append(
            Row(
                label=f"guard check, {name} of 1,000 x 100 B",
                unit="ms",
                figure=summary(guard_ms),
                baseline_label="thriftpy2 decoding the same frame",
                baseline=summary(decode_ms),
                ratio_def="guard / decode (same process, interleaved)",
                ratio=summary([g / d for g, d in zip(guard_ms, decode_ms, strict=True)]),
                target="<= 1.0 x thriftpy2 decode",
                target_on="ratio",
                op="<=",
                limit=1.0,
            ).evaluate()
        )
    result.details = {"runs": runs}
    return result


def hostile_load(env: BenchEnv) -> CaseResult:
    p = env.profile
    server = env.new_server(
        "hostile",
        zk_path=env.zk_path("hostile"),
        fsync="never",
        # Every peer is 127.0.0.1: let it hold them all (the default is 256 per address).
        extra_args=["--idle-timeout", "60", "--max-connections-per-peer", "1000"],
    )
    host, port = server.host, server.port
    normal_ms: list[float] = []
    attacked_ms: list[float] = []
    bombs_ms: list[float] = []
    details: list[dict[str, list[float]]] = []
    for _ in range(p.repeats):  # interleaved: each repetition measures the baseline first
        normal = ping_times(host, port, p.hostile_pings)
        with idle_and_trickling(host, port, p.hostile_idle, p.hostile_trickling):
            attacked = ping_times(host, port, p.hostile_pings)
        during_bombs = pings_during_bombs(host, port, p.hostile_bombs)
        normal_ms.append(statistics.median(normal) * MS)
        attacked_ms.append(statistics.median(attacked) * MS)
        bombs_ms.append(max(during_bombs) * MS)
        details.append({"normal_s": normal, "attacked_s": attacked, "during_bombs_s": during_bombs})
    server.stop()
    normal_median = statistics.median(normal_ms)
    result = CaseResult("hostile_load", "a good client's Ping while hostile peers are connected")
    result.rows.append(
        Row(
            label=(
                f"Ping with {p.hostile_idle} idle + {p.hostile_trickling} trickling "
                "connections, median"
            ),
            unit="ms",
            figure=summary(attacked_ms),
            baseline_label="the same Ping, no other connection",
            baseline=summary(normal_ms),
            ratio_def="attacked / normal, same repetition",
            ratio=summary([a / n for a, n in zip(attacked_ms, normal_ms, strict=True)]),
            target="median <= normal + 50 ms",
            op="<=",
            limit=normal_median + 50.0,
        ).evaluate()
    )
    result.rows.append(
        Row(
            label=f"Ping while a peer sends {p.hostile_bombs} list<void> bombs, slowest",
            unit="ms",
            figure=summary(bombs_ms),
            judge="max",
            baseline_label="the same Ping, no other connection",
            baseline=summary(normal_ms),
            ratio_def="slowest / normal median, same repetition",
            ratio=summary([b / n for b, n in zip(bombs_ms, normal_ms, strict=True)]),
            target="max <= 1 s (a bare thriftpy2 server stalls about 6 s per bomb)",
            op="<=",
            limit=1000.0,
        ).evaluate()
    )
    result.details = {"repetitions": details}
    return result


# ------------------------------------------------------------------- the peers


def frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def message_header(name: bytes) -> bytes:
    return struct.pack(">ii", VERSION_1 | 1, len(name)) + name + struct.pack(">i", 1)


PING = frame(message_header(b"Ping") + bytes([T_STOP]))
# Ping with a list<void> argument claiming 2^31-1 elements: 25 bytes.
LIST_VOID_BOMB = frame(
    message_header(b"Ping") + struct.pack(">bhbi", T_LIST, 1, T_VOID, 2**31 - 1) + bytes([T_STOP])
)


def recv_reply(sock: socket.socket) -> bytes:
    """One framed reply (its payload)."""
    header = recv_exact(sock, 4)
    return recv_exact(sock, struct.unpack(">i", header)[0])


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the server closed the connection")
        data += chunk
    return data


def ping_times(host: str, port: int, count: int) -> list[float]:
    """Round trips of Ping on one connection, after one to warm up, in seconds."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(PING)
        recv_reply(sock)
        times = []
        for _ in range(count):
            started = time.perf_counter()
            sock.sendall(PING)
            recv_reply(sock)
            times.append(time.perf_counter() - started)
    return times


@contextlib.contextmanager
def idle_and_trickling(host: str, port: int, idle: int, trickling: int) -> Iterator[None]:
    """``idle`` connections that send nothing, ``trickling`` ones that send half a frame."""
    socks: list[socket.socket] = []
    try:
        for _ in range(idle):
            socks.append(socket.create_connection((host, port), timeout=10))
        for _ in range(trickling):
            sock = socket.create_connection((host, port), timeout=10)
            sock.sendall(struct.pack(">i", 1000) + b"\x80\x01\x00\x01\x00\x00")
            socks.append(sock)
        yield
    finally:
        for sock in socks:
            sock.close()


def pings_during_bombs(host: str, port: int, bombs: int) -> list[float]:
    """Ping round trips on one connection while another sends ``bombs`` bombs, one at a time."""
    times: list[float] = []
    ready, done = threading.Event(), threading.Event()

    def pinger() -> None:
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(PING)  # the connection's first round trip is not what is measured
            recv_reply(sock)
            ready.set()
            while not done.is_set():
                started = time.perf_counter()
                sock.sendall(PING)
                recv_reply(sock)
                times.append(time.perf_counter() - started)

    thread = threading.Thread(target=pinger, daemon=True)
    thread.start()
    try:
        if not ready.wait(10):
            raise BenchError("the pinger could not connect")
        with socket.create_connection((host, port), timeout=10) as bomber:
            bomber.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for _ in range(bombs):
                bomber.sendall(LIST_VOID_BOMB)
                reply = recv_reply(bomber)  # the guard's PROTOCOL_ERROR
                if b"element type" not in reply:
                    raise BenchError(f"the bomb was not refused by the guard: {reply!r}")
        after = len(times)
        wait_for(lambda: len(times) >= after + 3, 10, what="pings after the bombs")
    finally:
        done.set()
        thread.join(15)
    return times
