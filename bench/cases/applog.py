"""An application logging through stdlib ``logging``: LogServerHandler vs FileHandler vs syslog.

Each repetition runs one app process (separate from the server) that holds
all four handlers and logs through them in interleaved chunks (see
:mod:`bench.workers.app`), so the machine's noise lands on every handler
alike. The figure is the app's wall time per logging call; the ratio is the
other handler's time over ours in the same round (above 1: ours is faster),
its median over the rounds of a repetition, then over repetitions. Delivery is counted where the records land: the logserver's
own counter of stored records, and the lines in rsyslog's output file.
"""

from __future__ import annotations

import statistics
import uuid
from typing import Any

from thriftpy2.protocol import TCyBinaryProtocolFactory
from thriftpy2.rpc import make_client
from thriftpy2.transport import TCyFramedTransportFactory

from bench.common import BenchEnv, CaseResult, Row, summary
from bench.rsyslog import PrivateRsyslog
from logwire.idl import log_thrift


def stored_records(endpoint: str) -> int:
    """The server's count of records stored since it started (its ``Status`` call)."""
    host, port = endpoint.rsplit(":", 1)
    client = make_client(
        log_thrift.LogService,
        host,
        int(port),
        proto_factory=TCyBinaryProtocolFactory(),
        trans_factory=TCyFramedTransportFactory(),
        timeout=10_000,
    )
    try:
        return int(client.Status().records_stored)
    finally:
        client.close()


def _rsyslog(env: BenchEnv) -> PrivateRsyslog:
    rs = env.cache.get("rsyslog")
    if rs is None:
        rs = PrivateRsyslog(env.workdir / "rsyslog").start()
        env.on_close(rs.stop)
        env.cache["rsyslog"] = rs
    return rs


def _runs(env: BenchEnv) -> dict[str, list[dict[str, Any]]]:
    cached = env.cache.get("applog")
    if cached is not None:
        return cached
    server = env.server("always")
    rsyslog = _rsyslog(env)
    p = env.profile
    kinds = ["logserver", "file", "file_text", "syslog"]
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    directory = env.workdir / "applog"
    directory.mkdir(parents=True, exist_ok=True)
    for _ in range(p.repeats):
        marker = uuid.uuid4().hex[:12]
        before = stored_records(server.endpoint)
        r = env.run_worker(
            "app",
            {
                "handlers": kinds,
                "rounds": p.app_rounds,
                "chunk": p.app_chunk,
                "servers": [server.endpoint],
                "directory": str(directory),
                "syslog": list(rsyslog.address),
                "marker": marker,
            },
            timeout=600,
        )
        total = r["total_per_handler"]
        r["logserver"]["stored"] = stored_records(server.endpoint) - before
        r["syslog"]["stored"] = rsyslog.wait_count(marker, total, timeout=60)
        for kind in kinds:
            r[kind]["total"] = total
            if "stored" in r[kind]:
                r[kind]["delivered"] = r[kind]["stored"] / total
            runs[kind].append(r[kind])
    env.cache["applog"] = runs
    return runs


def _per_call(runs: list[dict[str, Any]]) -> list[float]:
    return [r["per_call_us"] for r in runs]


def _speed_ratio(theirs: list[dict[str, Any]], ours: list[dict[str, Any]]) -> list[float]:
    """Per repetition: the median over rounds of their chunk's time / ours in the same round.

    Chunks of one round run back to back, so a burst of noise from the
    neighbours hits both sides of a ratio alike, and the median drops the rounds
    where it did not.
    """
    return [
        statistics.median(
            t_chunk / o_chunk
            for t_chunk, o_chunk in zip(t["chunks_us"], o["chunks_us"], strict=True)
        )
        for t, o in zip(theirs, ours, strict=True)
    ]


def handler_vs_file(env: BenchEnv) -> CaseResult:
    runs = _runs(env)
    ours, file_json, file_text = runs["logserver"], runs["file"], runs["file_text"]
    result = CaseResult(
        "handler_vs_file", "app logging: LogServerHandler vs logging.FileHandler to a local file"
    )
    result.rows.append(
        Row(
            label="app: LogServerHandler, time per logging call",
            unit="us",
            figure=summary(_per_call(ours)),
            baseline_label="FileHandler, same JSON formatter",
            baseline=summary(_per_call(file_json)),
            ratio_def="FileHandler time / LogServerHandler time, same round (>1: ours faster)",
            ratio=summary(_speed_ratio(file_json, ours)),
            target=">= 1.0 x FileHandler",
            target_on="ratio",
            op=">=",
            limit=1.0,
        ).evaluate()
    )
    result.rows.append(
        Row(
            label="  context: vs FileHandler with a text format",
            unit="us",
            figure=summary(_per_call(ours)),
            baseline_label="FileHandler, '%(asctime)s %(levelname)s ...'",
            baseline=summary(_per_call(file_text)),
            ratio_def="FileHandler(text) time / LogServerHandler time",
            ratio=summary(_speed_ratio(file_text, ours)),
            target="(info)",
        )
    )
    result.details = {"logserver": ours, "file": file_json, "file_text": file_text}
    return result


def handler_vs_syslog(env: BenchEnv) -> CaseResult:
    runs = _runs(env)
    ours, syslog = runs["logserver"], runs["syslog"]
    result = CaseResult(
        "handler_vs_syslog",
        "app logging: LogServerHandler vs SysLogHandler over TCP into a private rsyslogd",
    )
    result.rows.append(
        Row(
            label="app: LogServerHandler, time per logging call",
            unit="us",
            figure=summary(_per_call(ours)),
            baseline_label="SysLogHandler(TCP) -> rsyslog imtcp",
            baseline=summary(_per_call(syslog)),
            ratio_def="SysLogHandler time / LogServerHandler time, same round (>1: ours faster)",
            ratio=summary(_speed_ratio(syslog, ours)),
            target=">= 1.0 x SysLogHandler",
            target_on="ratio",
            op=">=",
            limit=1.0,
        ).evaluate()
    )
    result.rows.append(
        Row(
            label="  delivered: stored by the logserver / logged",
            unit="%",
            figure=summary([100 * r["delivered"] for r in ours]),
            judge="min",
            baseline_label="rsyslog: lines in its file / logged",
            baseline=summary([100 * r["delivered"] for r in syslog]),
            target="100 %",
            op=">=",
            limit=100.0,
        ).evaluate()
    )
    result.details = {"logserver": ours, "syslog": syslog, "rsyslog": PrivateRsyslog.version()}
    return result
