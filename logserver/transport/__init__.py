"""The transport: from a socket to a decoded call, and the reply back.

A record's path into the server starts here. In the order a frame meets them:

- :mod:`._server` accepts connections (one thread each, within
  :class:`WireLimits`; :mod:`._bookkeeping` keeps them, the requests in
  flight and the counters);
- :mod:`._serving` runs each connection's thread: the TLS handshake off the
  accept loop (:mod:`._tls`), then each 4-byte-length frame read within a
  deadline (:mod:`._sockets`) and within the in-flight budget (:mod:`._budget`);
- :mod:`._processor` decides what to do with a frame: the fast path
  (:mod:`._fast`) decodes ``Log``, ``Append`` and ``AppendPacked`` straight to
  columns; anything else is first walked by the guard (:mod:`._guard`), which
  bounds element counts and nesting by the bytes actually in the frame, and
  only then decoded by thriftpy2;
- the decoded call goes to the handler (:mod:`logserver.service`), and its
  answer, or the IDL exception it raised, is framed and sent back.

With mutual TLS, :func:`client_identity` names the certificate of the client
whose request the calling thread serves.

This package knows Thrift and sockets; it knows nothing of storage or ZooKeeper.
"""

from logserver.transport._limits import AddressInUseError, ListenError, WireLimits, WireStats
from logserver.transport._server import ThriftServer
from logserver.transport._tls import ServerTLS, client_identity

__all__ = [
    "AddressInUseError",
    "ListenError",
    "ServerTLS",
    "ThriftServer",
    "WireLimits",
    "WireStats",
    "client_identity",
]
