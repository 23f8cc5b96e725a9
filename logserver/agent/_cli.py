"""``logserver discovery-agent``: the command, its flags and its signals."""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

from logserver.errors import ConfigError

__all__ = ["add_arguments"]


def add_arguments(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    """Add ``discovery-agent``."""
    parser = sub.add_parser(
        "discovery-agent",
        help="one ZooKeeper session per host: keep a local file listing the live servers",
        description=(
            "Watch the servers registered in ZooKeeper and keep FILE listing them, for "
            "every app on this host (logclient.FileServers, LOGCLIENT_SERVERS_FILE)."
        ),
    )
    parser.add_argument(
        "--zk",
        default=os.environ.get("LOGSERVER_ZK"),
        required=not os.environ.get("LOGSERVER_ZK"),
        help="ZooKeeper connection string [env LOGSERVER_ZK]",
    )
    parser.add_argument("--zk-path", default="/logservers")
    parser.add_argument(
        "--file",
        type=Path,
        default=Path("/var/lib/logservice/servers.json"),
        help="the servers file to keep (default: %(default)s)",
    )
    parser.add_argument(
        "--heartbeat",
        type=float,
        default=5.0,
        help="seconds between refreshes of the file's mtime; readers call the list "
        "stale after three missed heartbeats (default: %(default)s)",
    )
    parser.add_argument(
        "--session-timeout", type=float, default=10.0, help="ZooKeeper session, seconds"
    )
    parser.add_argument(
        "--check-interval",
        type=float,
        default=0.2,
        help="how soon a lost ZooKeeper connection shows in the file, seconds",
    )
    parser.add_argument("--log-level", default=os.environ.get("LOGSERVER_LOG_LEVEL", "info"))
    from logserver.cli import add_zk_tls_arguments

    add_zk_tls_arguments(parser)
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from logserver.agent._agent import AgentPolicy, DiscoveryAgent
    from logserver.cli import zk_tls_policy

    _configure_logging(args.log_level)
    policy = AgentPolicy(
        heartbeat_s=args.heartbeat,
        check_interval_s=min(args.check_interval, args.heartbeat),
        session_timeout_s=args.session_timeout,
    )
    agent = DiscoveryAgent(args.zk, args.zk_path, args.file, policy, tls=zk_tls_policy(args))
    signal.signal(signal.SIGTERM, agent.request_stop)
    signal.signal(signal.SIGINT, agent.request_stop)
    agent.run()
    return 0


def _configure_logging(level: str) -> None:
    """The server's JSON lines when structlog is installed; plain lines from a plain install.

    The agent runs on app hosts, which may have only the client's dependencies.
    """
    import importlib.util
    import logging

    if importlib.util.find_spec("structlog") is not None:
        from logserver.logsetup import configure_logging

        try:
            configure_logging(level)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        return
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ConfigError(f"unknown log level {level!r}")
    logging.basicConfig(
        level=numeric, format="%(asctime)s %(levelname)s %(name)s %(message)s", force=True
    )
