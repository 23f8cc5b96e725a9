"""Read one category back from one server as fast as it can: records/s.

``method``: ``blocks`` (``ReadBlocks``, the records decoded from stored blocks),
``records`` (``Read``: today's path, one Thrift struct per record), both through
:func:`logserver.reader.read_server`, which makes one ``Record`` per record
either way, so the figures compare what a reader program gets.
"""

from __future__ import annotations

import time

from bench.workers import config, emit
from logserver.reader import read_server
from logwire.serverset import Endpoint


def main() -> None:
    cfg = config()
    endpoint = Endpoint.parse(str(cfg["endpoint"]))
    started = time.monotonic()
    records = 0
    message_bytes = 0
    for record in read_server(endpoint, str(cfg["category"]), method=str(cfg["method"])):
        records += 1
        message_bytes += len(record.message)
    seconds = time.monotonic() - started
    emit(
        {
            "records": records,
            "message_bytes": message_bytes,
            "seconds": seconds,
            "rate": records / seconds,
        }
    )


if __name__ == "__main__":
    main()
