"""Memory: request bytes in flight are bounded server-wide, whatever legal frames arrive at once.

Before the in-flight budget, 200 connections each sending one legal 15 MiB
``Log`` frame at the same moment drove a server with default flags to 3.9 GB
of RSS (each frame buffered whole and copied while decoded): a 4 GB VM would
have killed it, and every client's batches in flight with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from logclient import LogClient
from logserver.tools.launcher import LogServerProcess
from tests.delivery import Producer, messages
from tests.hostile.conftest import Attacker, MiB, proc_status

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_200_frames_of_15_mib_at_once_keep_the_server_under_600_mib(
    logserver_factory: Callable[..., LogServerProcess],
    attackers: Callable[..., Attacker],
    good_client: Callable[[LogServerProcess], LogClient],
) -> None:
    """200 connections each send a legal 15 MiB Log frame at the same moment, to a server with
    default flags. Its peak RSS (VmHWM) stays <= 600 MiB; every frame is answered OK or
    TRY_LATER (never a reset); and a LogClient on the same address, logging throughout,
    has every record acknowledged without spilling, dropping or failing over."""
    server = logserver_factory()
    assert server.pid is not None
    client = good_client(server)
    with Producer(client, "good", per_second=20_000) as producer:
        attack = attackers("frames", port=server.port, connections=200, log_bytes=15 * MiB)
        summary: dict[str, Any] = attack.result(timeout=240)
        expected = producer.stop()
    assert client.flush(60), client.stats()
    peak = proc_status(server.pid, "VmHWM")
    outcomes = summary["outcomes"]
    stats = client.stats()
    print(f"server peak RSS {peak / MiB:.0f} MiB (bound 600); attack {summary}; client {stats}")
    assert peak <= 600 * MiB, f"peak RSS {peak / MiB:.0f} MiB; attack: {summary}"
    assert sum(outcomes.values()) == 200 and set(outcomes) <= {"ok", "try_later"}, summary
    assert outcomes.get("ok", 0) >= 1, summary
    assert (stats.spilled, stats.dropped, stats.failovers) == (0, 0, 0), stats
    assert stats.acknowledged == len(expected)
    assert messages([server.endpoint]) == expected
