"""logserver: a durable, Scribe-compatible Thrift log server that registers itself in ZooKeeper.

A record's path from socket to disk, by folder:

- :mod:`logserver.transport`: sockets, frames, TLS, the guard and fast decoder
  that turn a frame into a call (knows Thrift, not storage);
- :mod:`logserver.service`: the calls of ``log.thrift``, checked and mapped to
  storage, and storage's errors mapped back to the IDL's exceptions;
- :mod:`logserver.storage`: segments on disk, group commit, de-duplication,
  recovery, retention (knows nothing of Thrift or ZooKeeper).

Reading back: :mod:`logserver.reader` (``logserver.read(zk_hosts, category, ...)``:
every server merged by time, each record once; what ``logserver cat`` prints).

Beside that path: :mod:`logserver.registry` (the server's ZooKeeper node,
all of kazoo on the server side), :mod:`logserver.server` (puts the parts
together and runs the lifecycle), :mod:`logserver.config` (flags,
environment, TOML), :mod:`logserver.errors` (the exception tree),
:mod:`logserver.cli` (the ``logserver`` command), and
:mod:`logserver.tools` (the launcher, local cluster and demo, which a
running server never imports).
"""

from typing import TYPE_CHECKING, Any

from logwire import __version__

if TYPE_CHECKING:
    from logserver.reader import read

__all__ = ["__version__", "read"]


def __getattr__(name: str) -> Any:
    # ``logserver.read`` (the reader's API, :func:`logserver.reader.read`) is imported on
    # first use: importing logserver itself stays cheap for the server and the tools.
    if name == "read":
        from logserver.reader import read

        return read
    raise AttributeError(f"module 'logserver' has no attribute {name!r}")
