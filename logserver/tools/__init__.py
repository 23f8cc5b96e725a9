"""Operator tools around the server, never imported by a running server.

- :mod:`.launcher`: starts ZooKeeper (standalone, an ensemble, TLS) and
  ``logserver serve`` processes, for the tests, the benchmarks, the demo and
  ``deploy/``;
- :mod:`.reader`: the former home of :mod:`logserver.reader` (re-exports it);
- :mod:`.cluster`: ``logserver cluster start|status|stop``, a local cluster;
- :mod:`.demo` and :mod:`.demo_app`: the kill-a-node failover demo and the app
  it runs.
"""
