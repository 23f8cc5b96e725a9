#!/usr/bin/env bash
# Set everything up, then run the kill-a-node failover demo: a local ZooKeeper,
# three logservers and an app logging through LogClient while servers are
# killed. Extra arguments go to `logserver demo` (e.g. --duration 60).
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/setup.sh
exec .venv/bin/logserver demo --out demo-out "$@"
