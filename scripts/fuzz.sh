#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/) for a bounded time each.
#
#   scripts/fuzz.sh                 # every target, 30 s each
#   FUZZ_SECONDS=300 scripts/fuzz.sh module
#
# Installs cargo-fuzz when missing. libFuzzer needs nightly compiler flags;
# RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them, and `-s none`
# skips AddressSanitizer (sandpool's unsafe code is small; coverage-guided
# search is what finds the bugs here). Corpora (fuzz/corpus/TARGET) start
# from the seeds of tests/fuzz_smoke.rs and grow across runs. A crash stops
# that target with a non-zero exit and leaves its input in
# fuzz/artifacts/TARGET/; keep it in tests/fuzz_regressions.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-30}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked >&2
fi
# Seed corpora: well-formed guest outputs, worker frame streams and the
# hostile modules (binary and text), written by the smoke test's seeders.
mkdir -p fuzz/corpus
SANDPOOL_FUZZ_SEEDS="$(pwd)/fuzz/corpus" \
    cargo test --release -p sandpool --test fuzz_smoke -- --ignored --exact seeds_are_written_for_cargo_fuzz >&2

# Only for cargo-fuzz's own build (fuzz/target): set for the workspace build
# above it would change every fingerprint and rebuild target/ from scratch.
export RUSTC_BOOTSTRAP=1

targets=("$@")
if ((${#targets[@]} == 0)); then
    mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi
status=0
for target in "${targets[@]}"; do
    echo "fuzz: $target for ${seconds}s" >&2
    if ! cargo fuzz run --fuzz-dir fuzz -s none "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=60 -rss_limit_mb=4096 -print_final_stats=1; then
        echo "fuzz: $target FAILED; the crashing input is in fuzz/artifacts/$target/" >&2
        status=1
    fi
done
exit $status
