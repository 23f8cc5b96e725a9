"""What logserver and logclient share on the wire, and nothing else.

- :mod:`logwire.idl` loads ``log.thrift`` once (the only module that does).
- :mod:`logwire.serverset` reads and writes the Finagle ServerSet JSON that a
  server puts in its ZooKeeper node.
- :mod:`logwire.categories` says which category names are valid.
- :mod:`logwire.batchid` names the halves of a split batch, and maps their
  records back to the batch they came from.
- :mod:`logwire.packed` is the column codec of ``AppendPacked``.
- :mod:`logwire.compression` compresses those columns (``AppendCompressed``,
  stored blocks) and decodes them within a cap; it imports ``zstandard`` only
  when a frame is made or read.
- :mod:`logwire.blocks` is what a reader makes of a ``ReadBlocks`` block.
- :mod:`logwire.zktls` is the TLS policy for ZooKeeper connections.
- :mod:`logwire.backoff` is the one doubling backoff (capped, with jitter) of
  every retry loop on either side.
- :mod:`logwire.zkclient` makes and stops every kazoo client of the project
  (capped retries, TLS, auth, a bounded stop); it imports kazoo, so only code
  that talks to ZooKeeper imports it.
- :mod:`logwire.errors` is the exception tree (:class:`~logwire.errors.LogWireError`).

This package imports nothing heavy at import time: an app that only needs the
category rules does not load thriftpy2.
"""

# The version of the whole distribution (logwire, logclient, logserver): written
# here only; pyproject.toml reads it (hatch's dynamic version) and logserver
# re-exports it (the version a server announces in its node and Status).
__version__ = "0.1.0"
