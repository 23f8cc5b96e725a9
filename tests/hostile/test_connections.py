"""Lock-out: idle connections can never keep a real client from delivering.

Before, a script holding 2,000 idle TCP connections to a server (re-opening
those it closed) filled it, and a real LogClient delivered 0 of 20,000
records: all spilled. Now one address holds at most ``--max-connections-per-peer``
connections, and a full server closes its longest-idle connection for a
newcomer.

All traffic is on loopback. The attacker binds its sockets to 127.0.0.2, another
address than the client's, to show the per-address cap; the second test puts
both on 127.0.0.1, where only the eviction rule can tell them apart.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from logclient import LogClient
from logserver.tools.launcher import LogServerProcess
from tests.delivery import log_all, messages
from tests.helpers import numbered
from tests.hostile.conftest import Attacker, PeakSampler, open_fds, raise_fd_limit

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

IDLE = 2000
RECORDS = 20_000


def deliver(client: LogClient, prefix: str) -> list[str]:
    return log_all(client, numbered(prefix, RECORDS), flush=120)


def fd_limit_logged(server: LogServerProcess) -> dict[str, object]:
    """The server's ``open file limit`` log line (it raises its soft limit at start)."""
    for line in Path(server.data_dir / "logserver.log").read_text().splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == "open file limit":
                return dict(event)
    raise AssertionError("the server did not log its open file limit")


@pytest.mark.parametrize(
    ("attacker_address", "flags"),
    [
        ("127.0.0.2", []),
        # One address for both, and no per-address cap: the eviction rule alone.
        ("127.0.0.1", ["--max-connections-per-peer", "1024"]),
    ],
    ids=["other-address", "same-address"],
)
def test_2000_idle_connections_do_not_keep_a_client_from_delivering(
    attacker_address: str,
    flags: list[str],
    logserver_factory: Callable[..., LogServerProcess],
    attackers: Callable[..., Attacker],
    good_client: Callable[[LogServerProcess], LogClient],
) -> None:
    """While one peer holds 2,000 idle connections to a server with default flags (re-opening
    each one the server closes), a LogClient on 127.0.0.1 delivers 20,000 records: all
    acknowledged, none spilled or dropped, each stored once. The server holds at most 256
    connections of one address (--max-connections-per-peer) and 1,024 in all
    (--max-connections), closing the longest idle for each newcomer."""
    raise_fd_limit(IDLE + 512)
    server = logserver_factory(extra_args=flags)
    assert server.pid is not None
    assert fd_limit_logged(server)["soft"] == fd_limit_logged(server)["hard"]
    pid = server.pid
    attack = attackers("idle", port=server.port, connections=IDLE, source=attacker_address)
    attack.wait_ready()
    with PeakSampler(lambda: open_fds(pid)) as fds:
        client = good_client(server)
        expected = deliver(client, "good")
    summary = attack.result()
    stats = client.stats()
    print(f"server peak fds {fds.peak}; attack {summary}; client {stats}")
    assert (stats.spilled, stats.dropped) == (0, 0), stats
    assert stats.acknowledged == RECORDS
    assert messages([server.endpoint]) == expected
    # Connections, plus a few dozen descriptors of the server's own.
    held = 256 if not flags else 1024
    assert fds.peak < held + 64, fds.peak
    assert summary["closed_by_server"] >= IDLE - held, summary
