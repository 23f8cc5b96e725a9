"""What logserver and logclient share on the wire, and nothing else.

- :mod:`logwire.idl` loads ``log.thrift`` once (the only module that does).
- :mod:`logwire.serverset` reads and writes the Finagle ServerSet JSON that a
  server puts in its ZooKeeper node.
- :mod:`logwire.categories` says which category names are valid.

This package imports nothing heavy at import time: an app that only needs the
category rules does not load thriftpy2.
"""
