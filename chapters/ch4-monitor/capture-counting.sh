#!/usr/bin/env bash
# Captures output/counting.txt: what leakscope's counting allocator costs, side by side
# in one run with Go's runtime/metrics.Read and ReadMemStats (benches/counting_cost.rs and
# go/readmemstats_test.go). Ratios, not absolute times: both sides saw the same machine.
# Needs jq and Go (.ci/install-go).
set -euo pipefail
cd "$(dirname "$0")/../.."
chapter=chapters/ch4-monitor
for tool in jq go; do
    command -v "$tool" >/dev/null || { echo "capture-counting.sh needs $tool" >&2; exit 1; }
done

started=$(mktemp)
trap 'rm -f "$started"' EXIT
echo "benchmarking (about a minute)…" >&2
cargo bench --quiet -p ch4-monitor --bench counting_cost >/dev/null 2>&1
go_log=$(cd "$chapter/go" && go test -run '^$' -bench 'MetricsRead|ReadMemStats' -benchtime 1s -count 5 .)

# "group<TAB>bench<TAB>median ns" for this run's criterion results.
medians() {
    find "${CARGO_TARGET_DIR:-target}/criterion" -path '*/new/benchmark.json' -newer "$started" | while read -r benchmark; do
        estimates="$(dirname "$benchmark")/estimates.json"
        jq -r --slurpfile e "$estimates" '[.group_id, .function_id, $e[0].median.point_estimate] | @tsv' "$benchmark"
    done
}
# The median over five Go runs of a benchmark's cpu-ns/op.
go_median() {
    echo "$go_log" | grep "^Benchmark$1" | awk '{print $5}' | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'
}
rust=$(medians)
ns() { echo "$rust" | awk -F'\t' -v g="$1" -v b="$2" '$1 == g && $2 == b {print $3}'; }

read_ns=$(ns "ch4 counting read" "live bytes + live allocations + alive tasks")
rss_ns=$(ns "ch4 counting read" "rss: pread of /proc/self/statm")
metrics_ns=$(go_median MetricsRead)
memstats_ns=$(go_median ReadMemStats)

{
    echo "Reading live bytes, live allocations and alive tasks (CPU time per call, one run)"
    echo
    awk -v r="$read_ns" -v m="$metrics_ns" -v s="$memstats_ns" -v rss="$rss_ns" 'BEGIN {
        printf "  %-52s %s\n", "", "× Go runtime/metrics.Read"
        printf "  %-52s %6.2f\n", "leakscope: alloc::process_counters + alive_tasks", r / m
        printf "  %-52s %6.2f\n", "Go: runtime/metrics.Read of the same three", 1
        printf "  %-52s %6.2f\n", "Go: runtime.ReadMemStats", s / m
        printf "  %-52s %6.2f\n", "RSS: pread of /proc/self/statm (separately)", rss / m
    }'
    echo
    echo "What counting adds to an allocation-heavy workload (4 threads, small allocations)"
    echo
    printf "  %-12s %s\n" "allocator" "counted ÷ bare"
    for allocator in System jemalloc mimalloc; do
        bare=$(ns "ch4 counting overhead" "$allocator, bare")
        counted=$(ns "ch4 counting overhead" "$allocator, counted")
        awk -v a="$allocator" -v b="$bare" -v c="$counted" 'BEGIN { printf "  %-12s %6.3f\n", a, c / b }'
    done
} > "$chapter/output/counting.txt"
cat "$chapter/output/counting.txt"
