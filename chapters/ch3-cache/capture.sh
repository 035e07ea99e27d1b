#!/usr/bin/env bash
# Captures what the chapter 3 page shows beyond output/run.txt.
#
#   capture.sh          draws book/img/ch3-cache-heap.svg (live heap under
#                       steady traffic, bad vs good) from a real run;
#                       `just capture ch3-cache` calls it this way.
#   capture.sh bench    runs `cargo bench -p ch3-cache` and keeps its results
#                       (heap per entry, and criterion's time lines) in
#                       output/bench.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."

case "${1:-chart}" in
    chart)
        cargo run --quiet -p ch3-cache -- chart book/img
        ;;
    bench)
        cargo bench --quiet -p ch3-cache --bench cache 2>/dev/null |
            grep -E '^(heap per entry|  |[a-z].*/|\s+time:)' |
            grep -vE '^Gnuplot|^Benchmarking|outliers|(high|low) (mild|severe)|change:|[Pp]erformance|noise threshold' \
            > chapters/ch3-cache/output/bench.txt
        cat chapters/ch3-cache/output/bench.txt
        ;;
    *)
        echo "usage: capture.sh [chart|bench]" >&2
        exit 2
        ;;
esac
