#!/usr/bin/env bash
# Set everything up, then run the whole test suite against real ZooKeeper and
# real logserver processes. Extra arguments go to pytest (e.g. -k failover).
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/setup.sh
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" = 5 ]; then
  echo "run-tests: pytest collected no tests: that is a broken suite, not a pass" >&2
fi
exit "$status"
