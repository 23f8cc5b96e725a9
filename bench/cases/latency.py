"""The cost of one ``LogClient.log()`` call in the application's thread."""

from __future__ import annotations

from bench.common import BenchEnv, CaseResult, Row, summary


def log_call(env: BenchEnv) -> CaseResult:
    server = env.server("always")
    runs = [
        env.run_worker(
            "log_call", {"servers": [server.endpoint], "calls": env.profile.log_calls}, timeout=300
        )
        for _ in range(env.profile.repeats)
    ]
    log_us = [r["log_median_us"] for r in runs]
    floor_us = [r["floor_median_us"] for r in runs]
    result = CaseResult("log_call", "LogClient.log(): median time per call, sender running")
    result.rows.append(
        Row(
            label="LogClient.log() call, median",
            unit="us",
            figure=summary(log_us),
            baseline_label="lock + deque.append in a function",
            baseline=summary(floor_us),
            ratio_def="log() / baseline (same process)",
            ratio=summary([a / b for a, b in zip(log_us, floor_us, strict=True)]),
            target="median <= 3 us",
            op="<=",
            limit=3.0,
        ).evaluate()
    )
    result.details = {"runs": runs}
    return result
