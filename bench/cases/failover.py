"""Failover when the server a client is sending to dies (SIGKILL) or freezes (SIGSTOP).

One cluster serves both cases: ``failover_servers`` logservers registered in
ZooKeeper, and one LogClient in the suite's own process (the servers are
separate processes) that finds them through ZooKeeper and sends a steady
~2,000 records/s. The client uses ``choice="sticky"``, so "the server it is
sending to" is one server, and ``BatchPolicy(linger_s=0.002)`` so that a call
is nearly always in flight: the figure is failover time, not the 50 ms a
record may wait for its batch with the default linger (that wait exists with
or without a failure). Everything else is default, including
``FailoverPolicy`` (RPC timeout 2 s, 5 s backoff for a failed server) and
``HedgePolicy`` (a frozen server's unanswered batches also go to another
server after the hedge delay; the SIGSTOP case also times ``flush()`` of
what was logged before the freeze).

A kill is only fired while the client has been sending to one server for
0.2 s and at least one other server is up and not in the client's backoff;
the killed server is restarted on the same port before the next kill. The
time is from the signal to the first acknowledgement by another server, as
the client's transport saw it (CLOCK_MONOTONIC is shared by processes).

``failover_restarted`` is the rolling restart of a two-server cluster: the
client sends to A; B was SIGKILLed (while the client was sending to it, so
the client marked it down, with the default 5 s backoff) and restarted on its
port 1 s before; now A is SIGKILLed. The client must go to B at once: B's new
registration clears its down state. A is restarted in turn, and the next
round kills B.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import signal
import threading
import time
from typing import Any

from bench.common import BenchEnv, CaseResult, Row, sleep_until, summary
from bench.recording import RecordingTransport
from logclient import BatchPolicy, FailoverPolicy, LogClient, LogClientError, SpoolPolicy
from logserver.tools.launcher import LogServerProcess, wait_for

#: How long before the kill the surviving server was restarted (the issue saw 1-2 s).
RESTART_GAP_S = 1.0


class FailoverCluster:
    """``count`` logservers (``failover_servers`` by default) in ZooKeeper under ``name``,
    and one sticky client (``linger_s=0.002``, default policies otherwise,
    ``client_options`` on top) logging ~2,000 records/s into category ``name`` from a
    thread until the run ends."""

    def __init__(
        self,
        env: BenchEnv,
        name: str = "failover",
        count: int | None = None,
        **client_options: Any,
    ) -> None:
        from logclient.discovery import ZooKeeperServers

        path = env.zk_path(name)
        count = env.profile.failover_servers if count is None else count
        self.name = name
        self.servers = [
            env.new_server(f"{name}-{i}", zk_path=path, wait=False) for i in range(count)
        ]
        for server in self.servers:
            server.wait_ready()
        self.by_endpoint: dict[str, LogServerProcess] = {s.endpoint: s for s in self.servers}
        self.policy = FailoverPolicy()
        self.transport = RecordingTransport()
        self.source = ZooKeeperServers(env.zk_hosts, path)
        self.client = LogClient(
            servers=self.source,
            choice="sticky",
            batching=BatchPolicy(linger_s=0.002),
            failover=self.policy,
            spool=SpoolPolicy(directory=env.workdir / f"{name}-spool"),
            transport=self.transport,
            **client_options,
        )
        self._stop = threading.Event()
        self._producer = threading.Thread(
            target=self._produce, name=f"{name}-producer", daemon=True
        )
        env.on_close(self.close)
        wait_for(
            lambda: {str(e) for e in self.source.servers()} >= set(self.by_endpoint),
            30,
            what=f"the client to discover every {name} server",
        )
        self._producer.start()
        wait_for(lambda: self.transport.acks, 30, what="the first acknowledgement")

    def healthy(self) -> bool:
        """Every server up, known to the client and out of its down backoff."""
        stats = self.client.stats()
        return (
            set(stats.known_servers) >= set(self.by_endpoint)
            and not stats.down_servers
            and all(s.alive() for s in self.servers)
        )

    def _produce(self) -> None:
        message = b"x" * 100
        log = self.client.log
        while not self._stop.is_set():
            try:
                log(self.name, message)
                log(self.name, message)
            except LogClientError:
                pass
            time.sleep(0.001)

    def target(self) -> str | None:
        """The server to hit now, or None while the preconditions do not hold."""
        endpoint = self.transport.stable_on(0.2)
        if endpoint is None or endpoint not in self.by_endpoint:
            return None
        if not self.by_endpoint[endpoint].alive():
            return None
        down = set(self.client.stats().down_servers)
        others = [
            e for e, s in self.by_endpoint.items() if e != endpoint and e not in down and s.alive()
        ]
        return endpoint if others else None

    def round_trip_ms(self) -> float:
        """Median gap between consecutive acknowledgements by one server: one AppendPacked round trip."""
        gaps = []
        acks = self.transport.acks
        for (t1, e1, _), (t2, e2, _) in itertools.pairwise(acks):
            if e1 == e2 and t2 - t1 < 0.1:
                gaps.append(t2 - t1)
        return summary(gaps)["median"] * 1000 if gaps else math.nan

    def close(self) -> None:
        self._stop.set()
        self._producer.join(5)
        with contextlib.suppress(Exception):
            self.client.close(5)
        with contextlib.suppress(Exception):
            self.source.close(5)  # a source passed in is the caller's to close


def _cluster(env: BenchEnv, name: str = "failover", count: int | None = None) -> FailoverCluster:
    key = f"{name}_cluster"
    cluster = env.cache.get(key)
    if cluster is None:
        cluster = env.cache[key] = FailoverCluster(env, name, count)
    return cluster


def _hit(cluster: FailoverCluster, signum: int, timeout: float) -> dict[str, Any]:
    endpoint = str(wait_for(cluster.target, 30, what="a steady sender and a healthy spare server"))
    server = cluster.by_endpoint[endpoint]
    reaped: list[float] = []
    reaper: threading.Thread | None = None
    process = server.process
    if signum == signal.SIGKILL and process is not None:
        # When the kernel has finished the victim (its sockets are closed by then).
        def reap() -> None:
            with contextlib.suppress(Exception):
                process.wait(timeout)
                reaped.append(time.monotonic())

        reaper = threading.Thread(target=reap, name="failover-reaper", daemon=True)
        reaper.start()
    t0 = time.monotonic()
    server.signal(signum)
    flushed = math.nan
    if signum == signal.SIGSTOP:
        # Everything logged before the freeze, acknowledged: hedged to another server.
        flushed = time.monotonic() - t0 if cluster.client.flush(timeout) else math.inf
    ack = cluster.transport.wait_ack(t0, endpoint, timeout)
    seconds = ack[0] - t0 if ack is not None else math.inf
    failure = cluster.transport.first_failure(t0, endpoint)
    # Detection: when the client's call (or connect) to the victim failed.
    detected = failure[0] - t0 if failure is not None else math.nan
    if signum == signal.SIGKILL:
        if reaper is not None:
            reaper.join(timeout)
        server.kill()
        server.start()  # same port and data directory, as an operator's restart
    else:
        server.signal(signal.SIGCONT)
    return {
        "server": endpoint,
        "to": ack[1] if ack else None,
        "seconds": seconds,
        "detected_after": detected,
        "dead_after": reaped[0] - t0 if reaped else math.nan,
        "flushed_after": flushed,
        "failure": failure[2] if failure is not None else None,
    }


def _kill_row(label: str, ms: list[float], rtt: float) -> Row:
    """Times from SIGKILL to the next ack (ms), judged on p99 against the 50 ms target."""
    stats = summary(ms)
    return Row(
        label=label,
        unit="ms",
        figure=stats,
        judge="p99",
        baseline_label="one AppendPacked round trip (steady ack gap)",
        baseline=summary([rtt]),
        ratio_def="p99 / round trip",
        ratio=summary([stats["p99"] / rtt]) if rtt == rtt else None,
        target="p99 <= 50 ms",
        op="<=",
        limit=50.0,
    ).evaluate()


def sigkill(env: BenchEnv) -> CaseResult:
    cluster = _cluster(env)
    events = [_hit(cluster, signal.SIGKILL, 10.0) for _ in range(env.profile.kills)]
    ms = [e["seconds"] * 1000 for e in events]
    result = CaseResult(
        "failover_sigkill",
        "SIGKILL of the server the client is sending to: time to an ack by another server",
    )
    result.rows.append(
        _kill_row(f"SIGKILL x{len(ms)}: next ack by another server", ms, cluster.round_trip_ms())
    )
    detected = [e["detected_after"] * 1000 for e in events]
    resend = [s - d for s, d in zip(ms, detected, strict=True)]
    result.rows.append(
        Row(
            label="  of which: kill -> the client's call fails",
            unit="ms",
            figure=summary(detected),
            judge="p99",
            target="(info: the kernel closing the dead server's sockets)",
        )
    )
    result.rows.append(
        Row(
            label="  of which: failure -> ack by another server",
            unit="ms",
            figure=summary(resend),
            judge="p99",
            target="(info: the client's failover)",
        )
    )
    result.details = {
        "events": events,
        "detection_ms": summary(detected),
        "kill_to_reaped_ms": summary([e["dead_after"] * 1000 for e in events]),
        "resend_ms": summary(resend),
        "client": repr(cluster.client.stats()),
    }
    return result


def sigstop(env: BenchEnv) -> CaseResult:
    cluster = _cluster(env)
    rpc = cluster.policy.rpc_timeout_s
    events = [_hit(cluster, signal.SIGSTOP, rpc + 5.0) for _ in range(env.profile.stops)]
    seconds = [e["seconds"] for e in events]
    limit = rpc + 0.1
    result = CaseResult(
        "failover_sigstop",
        "SIGSTOP of the current server: stall until an ack by another server",
    )
    result.rows.append(
        Row(
            label=f"SIGSTOP x{len(seconds)}: stall",
            unit="s",
            figure=summary(seconds),
            judge="max",
            baseline_label="FailoverPolicy.rpc_timeout_s",
            baseline=summary([rpc]),
            ratio_def="stall / RPC timeout",
            ratio=summary([s / rpc for s in seconds]),
            target=f"max <= RPC timeout + 100 ms ({limit:.1f} s)",
            op="<=",
            limit=limit,
        ).evaluate()
    )
    flushed = [e["flushed_after"] * 1000 for e in events]
    result.rows.append(
        Row(
            label=f"SIGSTOP x{len(flushed)}: flush() of what was logged before",
            unit="ms",
            figure=summary(flushed),
            judge="max",
            baseline_label="FailoverPolicy.rpc_timeout_s",
            baseline=summary([rpc * 1000]),
            ratio_def="flush / RPC timeout",
            ratio=summary([f / (rpc * 1000) for f in flushed]),
            target="max <= 300 ms (hedged to another server)",
            op="<=",
            limit=300.0,
        ).evaluate()
    )
    result.details = {"events": events, "client": repr(cluster.client.stats())}
    return result


def _node(cluster: FailoverCluster, endpoint: str) -> str | None:
    """The member node the client's discovery holds for ``endpoint`` now."""
    for member in cluster.source.members():
        if str(member.endpoint) == endpoint:
            return member.node
    return None


def _restart(cluster: FailoverCluster, server: LogServerProcess) -> float:
    """SIGKILL (if alive) and start ``server`` on its port; once the client's discovery holds
    its new registration, the time it was started."""
    node = _node(cluster, server.endpoint)
    server.kill()
    server.start()
    started = time.monotonic()
    wait_for(
        lambda: _node(cluster, server.endpoint) not in (None, node),
        30,
        what=f"the new registration of {server.endpoint}",
    )
    return started


def restarted_peer(env: BenchEnv) -> CaseResult:
    cluster = _cluster(env, "failover_pair", 2)
    events: list[dict[str, Any]] = []
    restarted_at: dict[str, float] = {}
    for _ in range(env.profile.kills):
        endpoint = str(
            wait_for(lambda: cluster.transport.stable_on(0.2), 30, what="a steady sender")
        )
        victim = cluster.by_endpoint[endpoint]
        (peer,) = [s for s in cluster.servers if s is not victim]
        if peer.endpoint not in restarted_at:
            # The first round: restart the peer now (later rounds restarted it as the victim).
            restarted_at[peer.endpoint] = _restart(cluster, peer)
        sleep_until(restarted_at[peer.endpoint] + RESTART_GAP_S)
        peer_down = peer.endpoint in cluster.client.stats().down_servers
        t0 = time.monotonic()
        victim.signal(signal.SIGKILL)
        ack = cluster.transport.wait_ack(t0, endpoint, 10.0)
        seconds = ack[0] - t0 if ack is not None else math.inf
        restarted_at[victim.endpoint] = _restart(cluster, victim)
        events.append(
            {
                "server": endpoint,
                "to": ack[1] if ack else None,
                "seconds": seconds,
                "peer_restarted_s_before": t0 - restarted_at[peer.endpoint],
                "peer_down_at_kill": peer_down,
            }
        )
    ms = [e["seconds"] * 1000 for e in events]
    result = CaseResult(
        "failover_restarted",
        "Two servers, the survivor restarted 1 s before the SIGKILL: time to its first ack",
    )
    label = f"SIGKILL x{len(ms)}, peer restarted {RESTART_GAP_S:.0f} s before: next ack"
    result.rows.append(_kill_row(label, ms, cluster.round_trip_ms()))
    result.details = {
        "events": events,
        "peer_down_at_kill": sum(bool(e["peer_down_at_kill"]) for e in events),
        "client": repr(cluster.client.stats()),
    }
    return result


def healthy_failover_client(env: BenchEnv) -> LogClient:
    """The failover cluster's client once every server is up and out of its backoff."""
    cluster = _cluster(env)
    wait_for(cluster.healthy, 60, what="every failover server up and out of the client's backoff")
    return cluster.client
