#!/usr/bin/env bash
# Captures what the chapter 7 page shows beyond output/run.txt: the
# resource manager's heap chart, and the buffer bench (the allocation lines
# it prints, and criterion's time and throughput per request, without the
# run-to-run comparison lines).
set -euo pipefail
chapter_dir="$(cd "$(dirname "$0")" && pwd)"
cd "$chapter_dir/../.."

cargo run --quiet -p ch7-practices --example heap_chart -- book/img/ch7-practices-heap.svg \
    > "$chapter_dir/output/heap_chart.txt"
echo "wrote book/img/ch7-practices-heap.svg and $chapter_dir/output/heap_chart.txt"

cargo bench --quiet -p ch7-practices --bench buffer_pool -- --noplot 2>/dev/null |
    # Drop criterion's comparison with the previous run (a `change:` line
    # and the two lines after it) and its progress and outlier lines.
    awk '/change:/ { skip = 3 } skip > 0 { skip--; next } { print }' |
    grep -E '^(jemalloc|bytes allocated|  [ 0-9]+ KiB response|request_buffer/)|time:|thrpt:' \
        > "$chapter_dir/output/bench.txt"
echo "captured $chapter_dir/output/bench.txt"
