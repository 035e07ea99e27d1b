#!/usr/bin/env bash
# Captures what the chapter 8 page shows beyond `output/run.txt`: the
# allocated-vs-resident chart (and its samples), the glibc run, and what
# returning pages costs (the bench).
set -euo pipefail
cd "$(dirname "$0")/../.."

cargo run --quiet -p ch8-retention --example resident_chart -- book/img/ch8-retention-resident.svg \
    > chapters/ch8-retention/output/resident.txt
echo "wrote book/img/ch8-retention-resident.svg and chapters/ch8-retention/output/resident.txt"

cargo run --quiet -p ch8-retention --example glibc_trim > chapters/ch8-retention/output/glibc.txt
echo "wrote chapters/ch8-retention/output/glibc.txt"

# The cost of giving pages back (criterion, release build): each benchmark's
# name and its time, without the comparison with an earlier run.
cargo bench --quiet -p ch8-retention --bench page_return -- --noplot 2>/dev/null \
    | awk '/^burst_and_free\// { print; timed = 0; next } /^ +time:/ && !timed { print; timed = 1 }' \
    > chapters/ch8-retention/output/bench.txt
echo "wrote chapters/ch8-retention/output/bench.txt"
