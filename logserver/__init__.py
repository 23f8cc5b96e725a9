"""logserver: a durable, Scribe-compatible Thrift log server that registers itself in ZooKeeper.

A record's path from socket to disk, by folder:

- :mod:`logserver.transport`: sockets, frames, TLS, the guard and fast decoder
  that turn a frame into a call (knows Thrift, not storage);
- :mod:`logserver.service`: the calls of ``log.thrift``, checked and mapped to
  storage, and storage's errors mapped back to the IDL's exceptions;
- :mod:`logserver.storage`: segments on disk, group commit, de-duplication,
  recovery, retention (knows nothing of Thrift or ZooKeeper).

Beside that path: :mod:`logserver.registry` (the server's ZooKeeper node,
all of kazoo on the server side), :mod:`logserver.server` (puts the parts
together and runs the lifecycle), :mod:`logserver.config` (flags,
environment, TOML), :mod:`logserver.errors` (the exception tree),
:mod:`logserver.cli` (the ``logserver`` command), and
:mod:`logserver.tools` (the launcher, reader, local cluster and demo, which a
running server never imports).
"""

from logwire import __version__

__all__ = ["__version__"]
