#!/usr/bin/env bash
# Runs the bundled example: document statistics over inputs/, outputs in output/.
# Installs what it needs (Debian packages for the wasm guest build) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-guests.sh >&2
cargo build --release -p sandpool --bin sandpool >&2
./target/release/sandpool run target/guest/wasm32-wasip1/release/examples/doc_stats.wasm inputs -o output "$@"
echo "demo: one JSON file per input is in $(pwd)/output/"
