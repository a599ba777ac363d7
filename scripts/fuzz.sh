#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/) for a bounded time each.
#
#   scripts/fuzz.sh                 # every target, 30 s each
#   FUZZ_SECONDS=300 scripts/fuzz.sh module
#
# Installs cargo-fuzz when missing. libFuzzer needs nightly compiler flags;
# RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them, and `-s none`
# skips AddressSanitizer (sandpool's unsafe code is small; coverage-guided
# search is what finds the bugs here). Corpora start from seeds written by
# the smoke test's generators (tests/fuzz_smoke.rs writes nothing; the seeds
# come from sandpool::fuzzing and tests/hostile/*.wat). A crash stops the
# run with a non-zero exit and leaves its input in fuzz/artifacts/TARGET/;
# add it to tests/fuzz_regressions.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-30}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked >&2
fi
export RUSTC_BOOTSTRAP=1

# Seed corpora: the hostile modules for `module`; the library's seed inputs
# for the decoders (written by a tiny example program would need a build of
# its own, so the decoders start from libFuzzer's own search plus these).
mkdir -p fuzz/corpus/module fuzz/corpus/guest_output fuzz/corpus/worker_frames
cp tests/hostile/*.wat fuzz/corpus/module/
printf '\000\002ok' > fuzz/corpus/guest_output/ok_string
printf '\001failed' > fuzz/corpus/guest_output/guest_error
printf '\004\000\000\000\001\002\003\004' > fuzz/corpus/worker_frames/one_frame

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
