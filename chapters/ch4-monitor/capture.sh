#!/usr/bin/env bash
# Captures what the chapter 4 page shows besides output/run.txt:
#   book/img/ch4-monitor-{phases,tasks,footprint}.svg  from real runs (examples/chart.rs)
#   output/bench.txt  what one sample costs (criterion; Go's ReadMemStats beside it when
#                     `go` is installed) and what a running monitor costs a busy workload.
set -euo pipefail
cd "$(dirname "$0")/../.."
chapter=chapters/ch4-monitor

if ! command -v jq >/dev/null; then
    echo "capture.sh needs jq to read criterion's estimates: apt-get install jq" >&2
    exit 1
fi

cargo run --quiet --release -p ch4-monitor --example chart -- book/img

echo "benchmarking (about three minutes)…" >&2
# Only this run's results count: criterion keeps older ones beside them.
started=$(mktemp)
trap 'rm -f "$started"' EXIT
cargo bench --quiet -p ch4-monitor --bench sample_cost >/dev/null 2>&1
MALLOC_CONF=narenas:1 cargo bench --quiet -p ch4-monitor --bench sample_cost >/dev/null 2>&1
overhead_log=$(cargo bench --quiet -p ch4-monitor --bench overhead 2>&1)

# Median time of every ch4 benchmark, from criterion's own files: "group<TAB>bench<TAB>ns".
medians() {
    find target/criterion -path '*/new/benchmark.json' -newer "$started" | while read -r benchmark; do
        estimates="$(dirname "$benchmark")/estimates.json"
        jq -r --slurpfile e "$estimates" '[.group_id, .function_id, $e[0].median.point_estimate] | @tsv' "$benchmark"
    done
}

{
    echo "One sample: process CPU time per call (criterion median, release build)"
    echo
    medians | grep "^ch4 sample cost" | sort -t$'\t' -k1,1 -k3,3n |
        awk -F'\t' '{ if ($1 != group) { print "  " $1; group = $1 } printf "    %-42s %9.2f µs\n", $2, $3 / 1000 }'
    echo
    if command -v go >/dev/null; then
        go_version=$(go version | awk '{print $3}')
        # Five runs of the Go benchmark; the median of their CPU time per call.
        (cd "$chapter/go" && go test -run '^$' -bench ReadMemStats -benchtime 1s -count 5 .) |
            grep '^BenchmarkReadMemStats' | sort -k5,5n | awk -v version="$go_version" '
            { cpu[NR] = $5; wall[NR] = $3; goroutines = $7; heap = $9 }
            END {
                middle = int((NR + 1) / 2)
                printf "  Go %s, same machine, same run (heap %.1f MB, %d goroutines)\n", version, heap / 1e6, goroutines
                printf "    %-42s %9.2f µs   (median of %d runs, from %.2f to %.2f;\n", "runtime.ReadMemStats", cpu[middle] / 1000, NR, cpu[1] / 1000, cpu[NR] / 1000
                printf "    %-42s %9s      wall time of the median run %.2f µs)\n", "", "", wall[middle] / 1000 }'
    else
        echo "  (Go is not installed: runtime.ReadMemStats not measured in this run)"
    fi
    echo
    echo "A busy workload (4 tasks building and dropping 2 000-string maps, 2 workers),"
    echo "process CPU time per iteration, monitor included:"
    medians | grep "^ch4 busy workload" | awk -F'\t' '
        { ns[$2] = $3 }
        END {
            split("no monitor|monitor at 1 Hz|monitor at 100 Hz", order, "|")
            for (i = 1; i <= 3; i++)
                printf "    %-22s %9.1f µs per iteration   %.3f × no monitor\n", order[i], ns[order[i]] / 1000, ns[order[i]] / ns["no monitor"]
        }'
    echo "$overhead_log" | grep 'samples taken' | sed 's/^/    /'
} > "$chapter/output/bench.txt"
cat "$chapter/output/bench.txt"
