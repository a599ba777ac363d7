#!/usr/bin/env bash
# Runs the whole test suite: builds the wasm guests (installing the Debian
# packages the build needs when missing), then every Rust test in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-guests.sh >&2
scripts/build-components.sh >&2
# The nats-server the cluster tests start (tests/cluster.rs).
scripts/install-nats.sh >/dev/null
cargo test --profile ci --workspace "$@"
