"""The ``logserver`` command: serve, list, cat, categories, forget, repair, discovery-agent (and the operator's cluster and demo commands)."""

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
from typing import TYPE_CHECKING, Any, NoReturn

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


class _Parser(argparse.ArgumentParser):
    """Bad arguments are one line on stderr (which command, what is wrong) and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The command line's parser, with only the subcommand ``argv`` names when it names
    one: building every subcommand's parser imports the server, the tools and their
    dependencies, a tenth of a second that ``logserver cat`` would pay on every run.
    ``logserver --help`` (or no known command) builds them all."""
    parser = _Parser(
        prog="logserver", description="A highly available, Scribe-compatible log service."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    named = next((a for a in argv if not a.startswith("-")), None)
    chosen = [r for names, r in _COMMANDS if named in names] or [r for _, r in _COMMANDS]
    for add in chosen:
        add(sub)
    return parser


def _add_serve(sub: Any) -> None:
    from logserver.config import add_serve_arguments

    add_serve_arguments(sub.add_parser("serve", help="run a log server"))


def _add_list(sub: Any) -> None:
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


def _add_read(sub: Any) -> None:
    from logserver.reader import _cli as reader_cli

    reader_cli.add_arguments(sub, add_zk_tls_arguments, add_tls_arguments)


def _add_agent(sub: Any) -> None:
    from logserver import agent

    agent.add_arguments(sub)


def _add_cluster(sub: Any) -> None:
    from logserver.tools import cluster

    cluster.add_arguments(sub)


def _add_demo(sub: Any) -> None:
    from logserver.tools import demo

    demo.add_arguments(sub)


def _add_forget(sub: Any) -> None:
    from logserver.tools import inventory

    inventory.add_arguments(sub)


def _add_repair(sub: Any) -> None:
    from logserver.tools import repair

    repair.add_arguments(sub)


#: Each subcommand's names and what adds its parser, in the order ``--help`` lists them.
_COMMANDS: tuple[tuple[tuple[str, ...], Callable[[Any], None]], ...] = (
    (("serve",), _add_serve),
    (("list",), _add_list),
    (("cat", "categories"), _add_read),
    (("discovery-agent",), _add_agent),
    (("cluster",), _add_cluster),
    (("demo",), _add_demo),
    (("forget",), _add_forget),
    (("repair",), _add_repair),
)


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


def _subparser(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> argparse.ArgumentParser:
    """The parser of the (innermost) subcommand ``args`` came from."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(args, action.dest, None) or "")
            if chosen is not None:
                return _subparser(chosen, args)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    if argv is None:
        argv = sys.argv[1:]
    parser = _parser(argv)
    args, extra = parser.parse_known_args(argv)
    if extra:
        # Said by the subcommand's parser, so the line names it (logserver cat: ...).
        _subparser(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
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
        if args.command in ("cat", "categories"):
            return _read(args)
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


def _read(args: argparse.Namespace) -> int:
    from logserver.errors import ConfigError
    from logserver.reader import _cli as reader_cli

    try:
        tls = tls_policy(args)
        zk_tls = zk_tls_policy(args)
    except (ValueError, ConfigError) as exc:
        print(f"logserver {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "cat":
        return reader_cli.run_cat(args, tls, zk_tls)
    return reader_cli.run_categories(args, tls, zk_tls)
