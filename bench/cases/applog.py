"""An application logging through stdlib ``logging``: LogServerHandler vs FileHandler vs syslog.

Each repetition runs the same app (a separate process) once per handler, in
turn, so all handlers see the same machine state. The figure is the app's time
per logging call; the ratio is the other handler's time over ours (above 1:
ours is faster). Delivery is counted where the records land: the logserver's
own counter of stored records, and the lines in rsyslog's output file.
"""

from __future__ import annotations

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
    records = env.profile.app_records
    runs: dict[str, list[dict[str, Any]]] = {
        "logserver": [],
        "file": [],
        "file_text": [],
        "syslog": [],
    }
    for rep in range(env.profile.repeats):
        before = stored_records(server.endpoint)
        r = env.run_worker(
            "app",
            {"handler": "logserver", "records": records, "servers": [server.endpoint]},
            timeout=300,
        )
        r["stored"] = stored_records(server.endpoint) - before
        r["delivered"] = r["stored"] / r["total"]
        runs["logserver"].append(r)
        for kind in ("file", "file_text"):
            path = env.workdir / "applog" / f"{kind}-{rep}.log"
            path.parent.mkdir(parents=True, exist_ok=True)
            r = env.run_worker(
                "app", {"handler": kind, "records": records, "path": str(path)}, timeout=300
            )
            runs[kind].append(r)
        marker = uuid.uuid4().hex[:12]
        r = env.run_worker(
            "app",
            {
                "handler": "syslog",
                "records": records,
                "syslog": list(rsyslog.address),
                "marker": marker,
            },
            timeout=300,
        )
        r["stored"] = rsyslog.wait_count(marker, r["total"], timeout=60)
        r["delivered"] = r["stored"] / r["total"]
        runs["syslog"].append(r)
    env.cache["applog"] = runs
    return runs


def _per_call(runs: list[dict[str, Any]]) -> list[float]:
    return [r["per_call_us"] for r in runs]


def _speed_ratio(theirs: list[dict[str, Any]], ours: list[dict[str, Any]]) -> list[float]:
    return [t["per_call_us"] / o["per_call_us"] for t, o in zip(theirs, ours, strict=True)]


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
            ratio_def="FileHandler time / LogServerHandler time (>1: ours faster)",
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
            ratio_def="SysLogHandler time / LogServerHandler time (>1: ours faster)",
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
