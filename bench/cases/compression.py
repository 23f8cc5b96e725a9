"""Compression: bytes on disk and on the wire per message byte, and what it costs in speed.

Every figure is measured on fresh servers of this run: the same corpus
(``bench.corpus``) is logged by one LogClient with compression (the defaults)
and, as the same-run baseline, without it (client ``CompressionPolicy("none")``,
server ``--compression none``); throughput runs alternate the two.

- ``compression_disk``: bytes of every file in the server's data directory
  (segments, lock and ready files) per message byte, per corpus.
- ``compression_wire``: bytes the client sent over TCP (counted by a relay
  between client and server in this process) per message byte.
- ``compression_speed``: one client's records/s and the server's CPU seconds
  per record (from ``/proc/<pid>/stat``), compressed vs uncompressed, on real
  log lines.
- ``compression_read``: reading a category back (``logserver.reader``)
  stored compressed (``ReadBlocks``) against the same records stored as a
  server before format 2 stored them (``--segment-format 1``) read with
  ``Read``: today's path.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import BenchEnv, CaseResult, Row, summary
from logserver.tools.launcher import LogServerProcess

# Corpus, label, message size, target on disk bytes / message byte.
_DISK_CASES: list[tuple[str, str, int, float]] = [
    ("varlog", "real log lines (this machine's /var/log, cycled)", 0, 0.25),
    ("json", "LogServerHandler JSON lines", 0, 0.2),
    ("random", "random bytes, 1,000-byte messages", 1000, 1.05),
    ("random", "100-byte records from one producer, incompressible", 100, 1.1),
]


def _clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _clock_ticks()


def disk_bytes(path: Path) -> int:
    """Bytes of every file under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _server(env: BenchEnv, name: str, compressed: bool, *extra: str) -> LogServerProcess:
    args = [] if compressed else ["--compression", "none"]
    server = LogServerProcess(
        zk_hosts=env.zk_hosts,
        data_dir=env.workdir / "servers" / f"{name}-{env.worker_count}",
        zk_path=env.zk_path(name),
        extra_args=[*args, *extra],
        log_path=env.logs / f"{name}-{env.worker_count}.log",
    )
    env.worker_count += 1
    env.on_close(server.stop)
    return server.start()


def _log(
    env: BenchEnv, endpoint: str, corpus: str, records: int, size: int, compressed: bool
) -> dict[str, Any]:
    return env.run_worker(
        "corpus_client",
        {
            "servers": [endpoint],
            "corpus": corpus,
            "records": records,
            "message_bytes": size or 100,
            "compression": "zstd" if compressed else "none",
        },
        timeout=900,
    )


def compression_disk(env: BenchEnv) -> CaseResult:
    records = env.profile.compression_records
    result = CaseResult(
        "compression_disk", "bytes on disk per message byte, one LogClient, fresh servers"
    )
    details: dict[str, Any] = {}
    for corpus, label, size, target in _DISK_CASES:
        ratios = {}
        for compressed in (True, False):
            server = _server(env, f"disk-{corpus}{size}", compressed)
            run = _log(
                env,
                server.endpoint,
                corpus,
                records if size != 1000 else records // 10,
                size,
                compressed,
            )
            server.stop()
            ratios[compressed] = disk_bytes(server.data_dir) / run["message_bytes"]
            details[f"{corpus}{size}-{'zstd' if compressed else 'none'}"] = {
                **run,
                "disk_bytes": disk_bytes(server.data_dir),
            }
        result.rows.append(
            Row(
                label=f"disk bytes / message byte: {label}",
                unit="x",
                figure=summary([ratios[True]]),
                judge="value",
                baseline_label="uncompressed (client and server compression none)",
                baseline=summary([ratios[False]]),
                ratio_def="compressed / uncompressed",
                ratio=summary([ratios[True] / ratios[False]]),
                target=f"<= {target} x",
                op="<=",
                limit=target,
            ).evaluate()
        )
    result.details = details
    return result


class _CountingRelay:
    """A TCP relay on loopback that counts the bytes the client sends (one thread per direction)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.upstream_bytes = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._accept = threading.Thread(target=self._serve, name="relay-accept", daemon=True)
        self._accept.start()

    def _serve(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            server = socket.create_connection(self.target, timeout=10)
            self._sockets += [client, server]
            for src, dst, counted in ((client, server, True), (server, client, False)):
                thread = threading.Thread(
                    target=self._pump, args=(src, dst, counted), name="relay", daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def _pump(self, src: socket.socket, dst: socket.socket, counted: bool) -> None:
        src.settimeout(None)
        with contextlib.suppress(OSError):
            while data := src.recv(1 << 20):
                dst.sendall(data)
                if counted:
                    with self._lock:
                        self.upstream_bytes += len(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()
        for thread in [self._accept, *self._threads]:
            thread.join(5)


@contextlib.contextmanager
def _relay(endpoint: str) -> Iterator[_CountingRelay]:
    host, port = endpoint.rsplit(":", 1)
    relay = _CountingRelay((host, int(port)))
    try:
        yield relay
    finally:
        relay.close()


def compression_wire(env: BenchEnv) -> CaseResult:
    records = env.profile.compression_records
    ratios = {}
    details: dict[str, Any] = {}
    for compressed in (True, False):
        server = _server(env, "wire", compressed)
        with _relay(server.endpoint) as relay:
            run = _log(env, f"127.0.0.1:{relay.port}", "varlog", records, 0, compressed)
            sent = relay.upstream_bytes
        server.stop()
        ratios[compressed] = sent / run["message_bytes"]
        details["zstd" if compressed else "none"] = {**run, "bytes_sent": sent}
    result = CaseResult("compression_wire", "bytes on the wire per message byte, real log lines")
    result.rows.append(
        Row(
            label="wire bytes / message byte: real log lines (client -> server)",
            unit="x",
            figure=summary([ratios[True]]),
            judge="value",
            baseline_label="AppendPacked, uncompressed",
            baseline=summary([ratios[False]]),
            ratio_def="compressed / uncompressed",
            ratio=summary([ratios[True] / ratios[False]]),
            target="<= 0.3 x",
            op="<=",
            limit=0.3,
        ).evaluate()
    )
    result.details = details
    return result


def compression_speed(env: BenchEnv) -> CaseResult:
    records = env.profile.compression_records
    on: list[dict[str, Any]] = []
    off: list[dict[str, Any]] = []
    # One server per setting for the whole case (as a deployment would run); runs alternate.
    servers = {c: _server(env, f"speed-{'zstd' if c else 'none'}", c) for c in (True, False)}
    for _ in range(env.profile.repeats):
        for compressed, runs in ((False, off), (True, on)):
            server = servers[compressed]
            assert server.pid is not None
            before = cpu_seconds(server.pid)
            run = _log(env, server.endpoint, "varlog", records, 0, compressed)
            run["server_cpu_us_per_record"] = (cpu_seconds(server.pid) - before) / records * 1e6
            runs.append(run)
    result = CaseResult(
        "compression_speed", "one LogClient on real log lines, compressed vs uncompressed"
    )
    rate_on, rate_off = [r["rate"] for r in on], [r["rate"] for r in off]
    result.rows.append(
        Row(
            label="1 LogClient, real log lines, compressed (zstd 1)",
            unit="rec/s",
            figure=summary(rate_on),
            baseline_label="the same uncompressed",
            baseline=summary(rate_off),
            ratio_def="compressed / uncompressed (same repetition)",
            ratio=summary([a / b for a, b in zip(rate_on, rate_off, strict=True)]),
            target=">= 0.9 x uncompressed",
            target_on="ratio",
            op=">=",
            limit=0.9,
        ).evaluate()
    )
    cpu_on = [r["server_cpu_us_per_record"] for r in on]
    cpu_off = [r["server_cpu_us_per_record"] for r in off]
    result.rows.append(
        Row(
            label="server CPU per record, compressed",
            unit="us",
            figure=summary(cpu_on),
            baseline_label="the same uncompressed",
            baseline=summary(cpu_off),
            ratio_def="compressed / uncompressed (same repetition)",
            # CPU time comes in clock ticks (10 ms): a quick run may see none.
            ratio=summary([a / b if b else math.nan for a, b in zip(cpu_on, cpu_off, strict=True)]),
            target="<= 1.0 x uncompressed (should not rise)",
            target_on="ratio",
            op="<=",
            limit=1.0,
        ).evaluate()
    )
    result.details = {"compressed": on, "uncompressed": off}
    return result


def compression_read(env: BenchEnv) -> CaseResult:
    records = env.profile.compression_records
    compressed = _server(env, "read-v2", True)
    legacy = _server(env, "read-v1", False, "--segment-format", "1")
    for server, on in ((compressed, True), (legacy, False)):
        _log(env, server.endpoint, "varlog", records, 0, on)
    new: list[float] = []
    old: list[float] = []
    old_api: list[float] = []
    for _ in range(env.profile.repeats):
        old.append(_read(env, legacy.endpoint, "records"))
        new.append(_read(env, compressed.endpoint, "blocks"))
        old_api.append(_read(env, compressed.endpoint, "records"))
    result = CaseResult("compression_read", "reading a category back, compressed vs today's format")
    result.rows.append(
        Row(
            label="read back (reader, ReadBlocks), compressed category",
            unit="rec/s",
            figure=summary(new),
            baseline_label="format-1 segments read with Read (today's path)",
            baseline=summary(old),
            ratio_def="compressed / format 1 (same repetition)",
            ratio=summary([a / b for a, b in zip(new, old, strict=True)]),
            target=">= 1.0 x format 1",
            target_on="ratio",
            op=">=",
            limit=1.0,
        ).evaluate()
    )
    result.rows.append(
        Row(
            label="  context: compressed category through the old Read call",
            unit="rec/s",
            figure=summary(old_api),
            baseline_label="format-1 segments read with Read",
            baseline=summary(old),
            ratio_def="Read on compressed / format 1 (same repetition)",
            ratio=summary([a / b for a, b in zip(old_api, old, strict=True)]),
            target="(info)",
        )
    )
    result.details = {"blocks": new, "records_v1": old, "records_v2": old_api}
    return result


def _read(env: BenchEnv, endpoint: str, method: str) -> float:
    run = env.run_worker(
        "reader", {"endpoint": endpoint, "category": "corpus", "method": method}, timeout=600
    )
    return float(run["rate"])
