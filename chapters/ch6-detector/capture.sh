#!/usr/bin/env bash
# Captures what the chapter 6 page shows besides output/run.txt: charts of
# two traces with each detector's alerts marked, the command line on a
# shipped trace and on a bad one, what detection costs, and the message of
# a failing test-time leak check.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=chapters/ch6-detector/output

cargo run --quiet -p ch6-detector -- chart book/img

{
    echo "\$ cargo run -p ch6-detector -- eval chapters/ch6-detector/traces/slow-leak.csv"
    cargo run --quiet -p ch6-detector -- eval chapters/ch6-detector/traces/slow-leak.csv
} > "$out/eval-slow-leak.txt"
echo "wrote $out/eval-slow-leak.txt"

bad_trace=$(mktemp --suffix=.csv)
trap 'rm -f "$bad_trace"' EXIT
printf 't_ms,heap_bytes,objects,tasks\n0,50331648,150000,24\n1000,48MB,150000,24\n' > "$bad_trace"
{
    echo "\$ cat my-trace.csv"
    cat "$bad_trace"
    echo "\$ cargo run -p ch6-detector -- eval my-trace.csv"
    cargo run --quiet -p ch6-detector -- eval "$bad_trace" 2>&1 | sed "s|$bad_trace|my-trace.csv|" || true
} > "$out/bad-trace.txt"
echo "wrote $out/bad-trace.txt"

# What detection costs (criterion, release build).
# Criterion's comparisons with an earlier run (lines with a %) are left out.
cargo bench --quiet -p ch6-detector 2>&1 | grep -E '^(detector|sampling)/|time:|thrpt:' \
    | grep -v '%' > "$out/bench.txt"
test -s "$out/bench.txt"
echo "wrote $out/bench.txt"

# The panic message of a leak check on chapter 1's leaking workers.
cargo test --quiet -p ch6-detector --test leak_check -- --exact \
    leak_check_names_the_leaked_tasks_and_their_heap --nocapture 2>&1 \
    | sed -n '/panicked at/{n;p;}' > "$out/leak-check.txt"
test -s "$out/leak-check.txt"
echo "wrote $out/leak-check.txt"
