# sandpool recipes. `just` itself: cargo install just --locked
# (the README's two commands work without it).

# List recipes.
default:
    @just --list

# Build every example guest (Rust and C) to wasm32-wasip1.
guests:
    scripts/build-guests.sh

# Build the Python and JavaScript component guests (installs componentize-py
# and componentize-js under target/guest/tools on first use).
components:
    scripts/build-components.sh

# Run the bundled example: document statistics over inputs/ into output/.
demo:
    scripts/demo.sh

# Run the whole test suite.
test:
    scripts/test.sh

# Formatting and lints, as CI would want them.
lint:
    cargo fmt --all -- --check
    cargo clippy --release --all-targets --workspace -- -D warnings

# Benchmarks: criterion micro-benchmarks and the printed throughput table.
bench: guests
    cargo bench -p sandpool

# The macro benchmark: every isolation level and Python's two executors on
# the same workloads; prints the report and writes target/bench-report/
# (report.md, throughput.svg).
bench-report: guests
    cargo bench -p sandpool --bench levels

# `sandpool run` vs the file-system floor (benches/floor) and the Python
# pattern, on tmpfs and on the repository's file system, with the issue-11
# target lines. SANDPOOL_BENCH_SIZES, SANDPOOL_BENCH_REPEATS,
# SANDPOOL_BENCH_THREADS, SANDPOOL_BENCH_1M=1 (1M-input peak RSS, slow).
bench-floor: guests
    cargo build --release
    cargo bench -p sandpool --bench cli

# Every printed benchmark in a smoke configuration (tiny sizes): proves
# each runs and prints every line; the figures mean nothing.
bench-smoke: guests
    cargo build --release
    SANDPOOL_BENCH_SIZES=300 SANDPOOL_BENCH_REPEATS=1 cargo bench -p sandpool --bench cli
    SANDPOOL_BENCH_QUICK=1 cargo bench -p sandpool --bench throughput
    SANDPOOL_BENCH_QUICK=1 cargo bench -p sandpool --bench process
    SANDPOOL_BENCH_SIZES=500,1000 cargo bench -p sandpool --bench pipeline
    SANDPOOL_BENCH_QUICK=1 cargo bench -p sandpool --bench levels

# Fuzz every untrusted-input entry point (guest output, worker frames, modules) for a bounded time; FUZZ_SECONDS=30 per target.
fuzz *targets:
    scripts/fuzz.sh {{targets}}

# Soak: 1,000,000 tiny tasks through the instance executor, RSS sampled (SOAK_TASKS to change the count).
soak: guests
    cargo bench -p sandpool --bench soak
