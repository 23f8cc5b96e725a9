"""The raw ceiling's server: thriftpy2's own ``make_server`` with a no-op ``Log``.

Framed transport and the Cython binary protocol, as fast as thriftpy2 goes;
nothing is validated, stored or synced. Runs until killed.
"""

from __future__ import annotations

from thriftpy2.protocol import TCyBinaryProtocolFactory
from thriftpy2.rpc import make_server
from thriftpy2.transport import TCyFramedTransportFactory

from bench.workers import config
from logwire.idl import log_thrift


class NoopHandler:
    def Log(self, messages: list[object]) -> int:
        return log_thrift.ResultCode.OK


def main() -> None:
    cfg = config()
    server = make_server(
        log_thrift.LogService,
        NoopHandler(),
        host="127.0.0.1",
        port=int(cfg["port"]),
        proto_factory=TCyBinaryProtocolFactory(),
        trans_factory=TCyFramedTransportFactory(),
        client_timeout=600_000,
    )
    server.serve()


if __name__ == "__main__":
    main()
