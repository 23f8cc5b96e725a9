#!/usr/bin/env bash
# Set up a fresh Debian machine for logservice: system packages, then a Python
# virtualenv in .venv with the project installed (editable) and its test tools.
# Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

need_apt=()
dpkg -s zookeeper >/dev/null 2>&1 || need_apt+=(zookeeper)
command -v java >/dev/null 2>&1 || need_apt+=(default-jre-headless)
command -v thrift >/dev/null 2>&1 || need_apt+=(thrift-compiler)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc python3-dev)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)        # network-namespace fault tests
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)    # TLS tests make certificates
command -v strace >/dev/null 2>&1 || need_apt+=(strace)      # durability tests watch a server's syscalls
[ -x /usr/sbin/rsyslogd ] || need_apt+=(rsyslog)             # the benchmark's syslog comparison
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.logservice-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  # Everything: the client (the plain install), the server, the demo and the test tools.
  .venv/bin/python -m pip install -q -e '.[server,demo,test]' 2>&1 | grep -v '^WARNING: Location' || true
  # Fail loudly if the install did not work.
  .venv/bin/python -c 'import logclient, logserver.server, logserver.tools.demo, thriftpy2, kazoo, structlog, prometheus_client, rich, matplotlib, pytest'
  touch "$stamp"
fi
echo "setup: ready (.venv, ZooKeeper jars in /usr/share/java)" >&2
