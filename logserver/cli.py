"""The ``logserver`` command: serve, list, cat, forget, repair, discovery-agent (and the operator's cluster and demo commands)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from logserver.errors import LogServerError

if TYPE_CHECKING:
    from logclient import TLSPolicy
    from logserver.tools.inventory import ClusterView
    from logwire.zktls import ZkTLSPolicy

__all__ = ["add_tls_arguments", "add_zk_tls_arguments", "main", "tls_policy", "zk_tls_policy"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

# What the server's commands import beyond a plain `pip install logservice` (the
# client: thriftpy2 and kazoo), and the extra of pyproject.toml that brings it.
# `list` and `cat` need nothing more.
_SERVER_MODULES = ("structlog", "prometheus_client")
_EXTRA_OF_COMMAND = {"serve": "server", "cluster start": "server", "demo": "demo"}


def _parser() -> argparse.ArgumentParser:
    from logserver.config import add_serve_arguments

    parser = argparse.ArgumentParser(
        prog="logserver", description="A highly available, Scribe-compatible log service."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run a log server")
    add_serve_arguments(serve)

    lst = sub.add_parser("list", help="the servers registered in ZooKeeper")
    lst.add_argument("--zk", required=True, help="ZooKeeper connection string")
    lst.add_argument("--zk-path", default="/logservers")
    lst.add_argument("--json", action="store_true", help="one JSON object per server")
    lst.add_argument(
        "--inventory",
        action="store_true",
        help="also the data inventory: every server that holds data, registered or not",
    )
    add_zk_tls_arguments(lst)

    cat = sub.add_parser(
        "cat", help="every record of a category from all servers, merged by time, de-duplicated"
    )
    cat.add_argument("category")
    cat.add_argument("--zk", help="read from every registered server")
    cat.add_argument("--zk-path", default="/logservers")
    cat.add_argument(
        "--server", action="append", default=[], help="host:port of a server to read (repeatable)"
    )
    cat.add_argument(
        "--data-dir",
        action="append",
        default=[],
        type=Path,
        help="read a server's files directly, e.g. of a server that is down (repeatable)",
    )
    cat.add_argument("--json", action="store_true", help="one JSON object per record")
    cat.add_argument(
        "--strict",
        action="store_true",
        help="exit 3 when a server that holds data of the category could not be read "
        "(it is always reported on stderr)",
    )
    add_zk_tls_arguments(cat)
    add_tls_arguments(cat)

    from logserver import agent
    from logserver.tools import cluster, demo, inventory, repair

    agent.add_arguments(sub)
    cluster.add_arguments(sub)
    demo.add_arguments(sub)
    inventory.add_arguments(sub)
    repair.add_arguments(sub)
    return parser


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    """TLS to the servers' Thrift port, as logclient's TLSPolicy does it."""
    group = parser.add_argument_group(
        "TLS to the servers", "any of these turns TLS on; certificate and host name are verified"
    )
    group.add_argument("--tls", action="store_true", help="TLS, trusting the system's CAs")
    group.add_argument("--tls-ca", type=Path, help="PEM CA bundle that signed the servers' certs")
    group.add_argument("--tls-cert", type=Path, help="PEM client certificate (mutual TLS)")
    group.add_argument("--tls-key", type=Path, help="PEM private key for --tls-cert")
    group.add_argument(
        "--tls-server-name",
        help="host name the servers' certificates must carry (default: each host)",
    )


def tls_policy(args: argparse.Namespace) -> TLSPolicy | None:
    """logclient's TLSPolicy from the flags, or None when none of them is given."""
    if not (args.tls or args.tls_ca or args.tls_cert or args.tls_key or args.tls_server_name):
        return None
    from logclient import TLSPolicy

    return TLSPolicy(
        ca_file=args.tls_ca,
        cert_file=args.tls_cert,
        key_file=args.tls_key,
        server_hostname=args.tls_server_name,
    )


def add_zk_tls_arguments(parser: argparse.ArgumentParser) -> None:
    """--zk-tls-ca/-cert/-key for the read-only commands (defaults: serve's environment)."""
    for name, help_text in (
        ("ca", "PEM CA bundle: connect to ZooKeeper over TLS, verifying it"),
        ("cert", "PEM client certificate for ZooKeeper TLS"),
        ("key", "PEM private key for --zk-tls-cert"),
    ):
        env = f"LOGSERVER_ZK_TLS_{name.upper()}"
        parser.add_argument(
            f"--zk-tls-{name}",
            type=Path,
            default=os.environ.get(env) or None,
            help=f"{help_text} [env {env}]",
        )


def zk_tls_policy(args: argparse.Namespace) -> ZkTLSPolicy | None:
    from logserver.errors import ConfigError
    from logwire.zktls import ZkTLSPolicy

    if args.zk_tls_ca is None:
        if args.zk_tls_cert is not None or args.zk_tls_key is not None:
            raise ConfigError("--zk-tls-cert and --zk-tls-key need --zk-tls-ca")
        return None
    try:
        return ZkTLSPolicy(args.zk_tls_ca, args.zk_tls_cert, args.zk_tls_key)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def missing_extra(command: str) -> str | None:
    """One line naming the extra to install if ``command`` cannot run in this install, else None."""
    extra = _EXTRA_OF_COMMAND.get(command)
    if extra is None:
        return None
    missing = [m for m in _SERVER_MODULES if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    return (
        f"logserver {command}: needs the {extra} extra, which a plain install leaves out: "
        f"pip install 'logservice[{extra}]' (missing: {', '.join(missing)})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    command = " ".join(filter(None, (args.command, getattr(args, "action", None))))
    problem = missing_extra(command)
    if problem is not None:
        print(problem, file=sys.stderr)
        return EXIT_FAILED
    if args.command != "serve":
        # One-shot commands report ZooKeeper trouble themselves; kazoo's retry chatter is noise.
        import logging

        logging.getLogger("kazoo").setLevel(logging.CRITICAL)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "list":
            return _list(args)
        if args.command == "cat":
            return _cat(args)
        handler = getattr(args, "handler", None)
        if handler is not None:
            return int(handler(args))
    except LogServerError as exc:
        print(f"logserver {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE


def _serve(args: argparse.Namespace) -> int:
    from logserver.config import config_from_args
    from logserver.errors import ConfigError
    from logserver.logsetup import configure_logging

    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"logserver serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        configure_logging(config.log_level)
    except ValueError as exc:
        print(f"logserver serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    import structlog

    from logserver.server import LogServer

    server = LogServer(config)
    signal.signal(signal.SIGTERM, server.request_stop)
    signal.signal(signal.SIGINT, server.request_stop)
    try:
        return server.run()
    except LogServerError as exc:
        structlog.get_logger("logserver").error("cannot serve", error=str(exc))
        print(f"logserver serve: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _list(args: argparse.Namespace) -> int:
    from logserver.tools.inventory import read_cluster

    view = read_cluster(args.zk, args.zk_path, tls=zk_tls_policy(args))
    for s in view.members:
        if args.json:
            doc = {"node": s.node, "owner_session": hex(s.owner_session)}
            if s.member:
                doc |= json.loads(s.member.to_json())
            else:
                doc["error"] = s.error
            print(json.dumps(doc))
        elif s.member:
            m = s.member
            tls = "\ttls" if m.tls else ""
            zone = f"\tzone={m.zone}" if m.zone else ""
            print(
                f"{s.node}\t{m.endpoint}\t{m.status}\tid={m.server_id or '-'}\tpid={m.pid}"
                f"\tversion={m.version}{zone}{tls}"
            )
        else:
            print(f"{s.node}\tMALFORMED\t{s.error}")
    if args.inventory:
        _list_inventory(args, view)
    return EXIT_OK


def _list_inventory(args: argparse.Namespace, view: ClusterView) -> None:
    """The inventory's records: one line (or JSON object) per server id."""
    registered = view.registered_ids()
    for record in view.inventory:
        state = (
            "registered"
            if record.server_id in registered
            else "stopped"
            if record.stopped
            else "NOT-REGISTERED"
        )
        if args.json:
            doc = json.loads(record.to_json())
            print(json.dumps({"inventory": doc, "state": state}))
            continue
        categories = ",".join(sorted(record.categories)) or "-"
        seen = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.last_seen))
        zone = f"\tzone={record.zone}" if record.zone else ""
        print(
            f"inventory\t{record.server_id}\t{record.endpoint}\t{state}\tlast_seen={seen}"
            f"\tcategories={categories}{zone}"
        )
    for node, error in view.malformed:
        print(f"inventory\t{node}\tMALFORMED\t{error}")


def _cat(args: argparse.Namespace) -> int:
    from logserver.storage import read_server_id
    from logserver.tools.inventory import EXIT_INCOMPLETE, Coverage, read_cluster
    from logserver.tools.reader import merge_unique, read_data_dir, read_server, record_json
    from logwire.serverset import Endpoint

    try:
        tls = tls_policy(args)
    except ValueError as exc:
        print(f"logserver cat: {exc}", file=sys.stderr)
        return EXIT_USAGE
    endpoints = {Endpoint.parse(s) for s in args.server}
    incomplete = False
    if args.zk:
        view = read_cluster(args.zk, args.zk_path, tls=zk_tls_policy(args))
        registered = view.members
        with_tls = sorted(str(s.member.endpoint) for s in registered if s.member and s.member.tls)
        if with_tls and tls is None:
            print(
                f"logserver cat: {', '.join(with_tls)} speak TLS: give --tls-ca "
                "(or --tls to trust the system's CAs)",
                file=sys.stderr,
            )
            return EXIT_USAGE
        # Who holds data of the category but cannot be read: said before any record.
        coverage = Coverage.of(
            view,
            args.category,
            tls=tls,
            data_dir_ids=filter(None, (_data_dir_id(d, read_server_id) for d in args.data_dir)),
        )
        endpoints |= set(coverage.readable)
        for missing in coverage.unreachable(view):
            incomplete = True
            print(f"logserver cat: warning: {missing.describe(args.category)}", file=sys.stderr)
    if not endpoints and not args.data_dir:
        print("logserver cat: give --zk, --server or --data-dir", file=sys.stderr)
        return EXIT_USAGE
    streams = [read_server(ep, args.category, tls=tls) for ep in sorted(endpoints)]
    streams += [read_data_dir(d, args.category) for d in args.data_dir]
    out = sys.stdout.buffer
    try:
        for record in merge_unique(streams):
            if args.json:
                out.write(json.dumps(record_json(record)).encode() + b"\n")
            else:
                out.write(record.message + b"\n")
    except Exception as exc:  # a server vanished mid-read: say which, not a traceback
        if isinstance(exc, LogServerError | BrokenPipeError):
            raise
        print(f"logserver cat: reading failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    out.flush()
    return EXIT_INCOMPLETE if incomplete and args.strict else EXIT_OK


def _data_dir_id(data_dir: Path, read: Callable[[Path], str | None]) -> str | None:
    """The server id of a data directory given to ``cat`` (None if it has none or a bad one)."""
    try:
        return read(data_dir)
    except LogServerError:
        return None
