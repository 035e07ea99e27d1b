#!/usr/bin/env bash
# `just verify ch2-cycles`: leak checkers this project did not write must
# agree with its claims. Runs ch2-cycles-referee (system allocator) under
# valgrind and, when a nightly toolchain is installed, LeakSanitizer:
#   bad    → leaks reported      good   → no leak reported
#   zombie → no leak reported either: a task still running at exit keeps its
#            memory reachable, and these tools only report the unreachable.
# With --save, also writes the summary lines to output/referees.txt for the book.
set -euo pipefail

chapter_dir=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$chapter_dir/../.." && pwd)
cd "$root"

save=false
case "${1:-}" in
    "") ;;
    --save) save=true ;;
    *) echo "usage: $0 [--save]" >&2; exit 2 ;;
esac

failures=0
summary=$(mktemp)
trap 'rm -f "$summary"' EXIT

pass() { echo "  ok: $*"; }
fail() { echo "  FAILED: $*"; failures=$((failures + 1)); }
# What the page shows: the command, then the summary lines without the PID prefix.
record() { printf '%s\n' "$@" >> "$summary"; }

echo "building ch2-cycles-referee (system allocator)"
cargo build --quiet -p ch2-cycles --bin ch2-cycles-referee
referee=target/debug/ch2-cycles-referee
# jemalloc, when linked, defines `malloc` itself; then valgrind would see nothing.
if nm --defined-only "$referee" | grep -qE ' T (malloc|_rjem_malloc)$'; then
    echo "ch2-cycles-referee links jemalloc; the referees need the system allocator" >&2
    exit 1
fi

# Prints one number from valgrind's summary, e.g. `lost_bytes "definitely lost" "$log"`.
lost_bytes() {
    local kind=$1 log=$2
    local line
    line=$(grep -E "$kind: " "$log" || true)
    if [ -z "$line" ]; then echo 0; return; fi # "All heap blocks were freed"
    sed -E "s/.*$kind: ([0-9,]+) bytes.*/\1/" <<<"$line" | tr -d ,
}

echo
echo "valgrind --leak-check=full"
if ! command -v valgrind >/dev/null; then
    fail "valgrind is not installed"
else
    for scenario in bad good zombie; do
        log=$(mktemp)
        valgrind --leak-check=full "$referee" "$scenario" >/dev/null 2>"$log"
        definitely=$(lost_bytes "definitely lost" "$log")
        indirectly=$(lost_bytes "indirectly lost" "$log")
        reachable=$(lost_bytes "still reachable" "$log")
        record "\$ valgrind --leak-check=full ch2-cycles-referee $scenario"
        record "$(grep -E '(definitely|indirectly|possibly) lost:|still reachable:' "$log" | sed -E 's/^==[0-9]+== +//')"
        record ""
        case "$scenario" in
            bad)
                valgrind_lost_bytes=$((definitely + indirectly))
                if [ "$definitely" -gt 0 ]; then
                    pass "bad: $definitely bytes definitely lost, $indirectly indirectly"
                else
                    fail "bad: valgrind found no leak"
                fi ;;
            good)
                if [ "$definitely" -eq 0 ] && [ "$indirectly" -eq 0 ]; then
                    pass "good: 0 bytes definitely or indirectly lost"
                else
                    fail "good: $definitely bytes definitely, $indirectly indirectly lost"
                fi ;;
            zombie)
                if [ "$definitely" -eq 0 ] && [ "$indirectly" -eq 0 ] && [ "$reachable" -ge $((1 << 20)) ]; then
                    pass "zombie: no leak reported, $reachable bytes still reachable"
                else
                    fail "zombie: expected no leak and ≥ 1 MiB reachable, got $definitely/$indirectly lost, $reachable reachable"
                fi ;;
        esac
        rm -f "$log"
    done
fi

echo
echo "LeakSanitizer (nightly, -Zsanitizer=leak)"
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "  skipped: no nightly toolchain (rustup toolchain install nightly)"
else
    host=$(rustc -vV | sed -n 's/^host: //p')
    # RUSTFLAGS replaces .cargo/config.toml's flags, so tokio_unstable is kept
    # here; its own target dir keeps the main build's artifacts valid.
    RUSTFLAGS="--cfg tokio_unstable -Zsanitizer=leak" CARGO_TARGET_DIR=target/lsan \
        cargo +nightly build --quiet -p ch2-cycles --bin ch2-cycles-referee --target "$host"
    lsan_referee=target/lsan/$host/debug/ch2-cycles-referee
    for scenario in bad good zombie; do
        log=$(mktemp)
        status=0
        "$lsan_referee" "$scenario" >/dev/null 2>"$log" || status=$?
        leak_line=$(grep -E '^SUMMARY: LeakSanitizer' "$log" || true)
        record "\$ ch2-cycles-referee $scenario   # built with -Zsanitizer=leak"
        record "${leak_line:-(no leak reported, exit status $status)}"
        record ""
        if [ "$scenario" = bad ]; then
            if [ -n "$leak_line" ] && [ "$status" -ne 0 ]; then
                pass "bad: ${leak_line#SUMMARY: }"
                lsan_bytes=$(sed -E 's/.*: ([0-9]+) byte.*/\1/' <<<"$leak_line")
                # The same allocations leak under both tools, so the totals match.
                if [ "${valgrind_lost_bytes:-}" = "$lsan_bytes" ]; then
                    pass "bad: LeakSanitizer's total equals valgrind's definitely + indirectly lost"
                else
                    fail "bad: LeakSanitizer counts $lsan_bytes bytes, valgrind ${valgrind_lost_bytes:-nothing}"
                fi
            else
                fail "bad: LeakSanitizer found no leak (exit status $status)"
            fi
        elif [ -z "$leak_line" ] && [ "$status" -eq 0 ]; then
            pass "$scenario: no leak reported"
        else
            fail "$scenario: ${leak_line:-exit status $status}"
        fi
        rm -f "$log"
    done
fi

if $save; then
    mkdir -p "$chapter_dir/output"
    sed -e '$ { /^$/d }' "$summary" > "$chapter_dir/output/referees.txt"
    echo
    echo "saved the summaries to chapters/ch2-cycles/output/referees.txt"
fi

echo
if [ "$failures" -eq 0 ]; then
    echo "valgrind and LeakSanitizer agree with the claims"
else
    echo "$failures check(s) disagree with the claims" >&2
    exit 1
fi
