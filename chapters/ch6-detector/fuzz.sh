#!/usr/bin/env bash
# Fuzzes leakscope's trace parser (and the detector on every trace it
# accepts) with cargo-fuzz on the nightly toolchain:
#   cargo install cargo-fuzz; rustup toolchain install nightly
#   chapters/ch6-detector/fuzz.sh [SECONDS]   (default 60)
# A crash leaves its input in fuzz/artifacts/parse_trace/: keep it as a
# regression test next to `trace_round_trips_and_errors_name_line_and_column`
# in crates/leakscope/src/detect.rs.
set -euo pipefail
cd "$(dirname "$0")/fuzz"
seconds=${1:-60}
mkdir -p corpus/parse_trace
# Seeds: the shipped recording and a few malformed rows.
cp ../traces/seed-scenario.csv corpus/parse_trace/
printf 't_ms,heap_bytes,objects,tasks\n0,1,2,3\n0,1,2,3\n' > corpus/parse_trace/unsorted.csv
printf '\xef\xbb\xbftasks,objects,heap_bytes,t_ms\n3,2,1,0\n' > corpus/parse_trace/bom-reordered.csv
printf 't_ms,heap_bytes,objects,tasks\n18446744073709551615,18446744073709551615,1,1\n' > corpus/parse_trace/max.csv
cargo +nightly fuzz run parse_trace -- -max_total_time="$seconds" -max_len=4096
