#!/usr/bin/env bash
# Fuzzes leakscope's profile decoder (cargo-fuzz, nightly toolchain) for a while:
#   crates/leakscope/fuzz/fuzz.sh [SECONDS]   (default 60)
# Any crash it finds lands in artifacts/decode_profile/: copy it into
# crates/leakscope/tests/fuzz_regressions/ so that `cargo test` keeps checking it.
set -euo pipefail
cd "$(dirname "$0")/.."  # cargo-fuzz runs from the fuzzed crate
seconds=${1:-60}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
rustup toolchain list | grep -q nightly || { echo "fuzz.sh needs the nightly toolchain (rustup toolchain install nightly)" >&2; exit 1; }
# The -rss_limit keeps a gzip bomb from taking the machine.
RUSTFLAGS="--cfg tokio_unstable" cargo +nightly fuzz run decode_profile -- \
    -max_total_time="$seconds" -rss_limit_mb=1024 -max_len=65536
