#!/usr/bin/env bash
# Captures what the chapter 6 page shows besides output/run.txt: the
# held-out table as Markdown, the tuning part's table, the charts of the
# method, the command line on a corpus trace and on a bad one, what
# detection costs, and the message of a failing test-time leak check.
# Needs promtool (Debian's `prometheus` package) for the alerts.yml column.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=chapters/ch6-detector/output
run() { cargo run --quiet -p ch6-detector -- "$@"; }

run chart book/img
run markdown legend > "$out/families.md"
run markdown held-out > "$out/held-out.md"
run tuning > "$out/tuning.txt"
echo "wrote $out/families.md, $out/held-out.md and $out/tuning.txt"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
run write-traces "$scratch" > /dev/null
leak_s=$(awk -F, '$1 == "slow-leak-3" { print $4 }' "$scratch/labels.csv")
cp "$scratch/slow-leak-3.csv" "$scratch/my-trace.csv"
{
    echo "\$ cargo run -p ch6-detector -- eval my-trace.csv@$leak_s"
    (cd "$scratch" && cargo run --quiet --manifest-path "$OLDPWD/Cargo.toml" -p ch6-detector -- \
        eval "my-trace.csv@$leak_s")
} > "$out/eval-slow-leak.txt"
echo "wrote $out/eval-slow-leak.txt"

printf 't_ms,heap_bytes,objects,tasks\n0,50331648,150000,24\n1000,48MB,150000,24\n' > "$scratch/bad.csv"
{
    echo "\$ cat my-trace.csv"
    cat "$scratch/bad.csv"
    echo "\$ cargo run -p ch6-detector -- eval my-trace.csv"
    run eval "$scratch/bad.csv" 2>&1 | sed "s|$scratch/bad.csv|my-trace.csv|" || true
} > "$out/bad-trace.txt"
echo "wrote $out/bad-trace.txt"

# What detection costs (criterion, release build).
# Criterion's comparisons with an earlier run (lines with a %) are left out.
cargo bench --quiet -p ch6-detector 2>&1 | grep -E '^(per observation|sampling)/|time:|thrpt:' \
    | grep -v '%' > "$out/bench.txt"
test -s "$out/bench.txt"
chapters/ch6-detector/bench_summary.py < "$out/bench.txt" > "$out/bench-summary.txt"
echo "wrote $out/bench.txt and $out/bench-summary.txt"

# The panic message of a leak check on chapter 1's leaking workers.
cargo test --quiet -p ch6-detector --test leak_check -- --exact \
    leak_check_names_the_leaked_tasks_and_their_heap --nocapture 2>&1 \
    | sed -n '/panicked at/,/^\(note:\|stack backtrace:\)/p' | sed '1d;$d' > "$out/leak-check.txt"
test -s "$out/leak-check.txt"
echo "wrote $out/leak-check.txt"
