#!/usr/bin/env bash
# Captures what the chapter 11 page shows beyond output/run.txt.
#
#   capture.sh   (run by `just capture ch11-channels`)
#                output/match.txt   `ch11-channels match` on heap profiles saved from chapter 5's
#                                   leaky and fixed services, and on a file that is not a profile
set -euo pipefail
cd "$(dirname "$0")/../.."
out=chapters/ch11-channels/output
work=target/ch11-capture
mkdir -p "$out" "$work" "${CARGO_TARGET_DIR:-target}"
bin="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug"
cargo build --quiet -p ch5-pprof -p ch11-channels

server=""
stop_server() { if [ -n "$server" ]; then kill -INT "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; server=""; fi; }
trap stop_server EXIT

save_heap() { # side file
    local addr=127.0.0.1:6071
    "$bin/ch5-pprof" serve "$1" --no-load --addr "$addr" > "$work/serve-$1.log" 2>&1 &
    server=$!
    for _ in $(seq 50); do curl -sf "http://$addr/status" > /dev/null && break; sleep 0.1; done
    for i in $(seq 0 1999); do curl -sf -o /dev/null "http://$addr/leak?id=key-$i"; done
    curl -sf -o "$2" "http://$addr/debug/pprof/heap"
    stop_server
}

save_heap bad "$work/leaky-heap.pb.gz"
save_heap good "$work/fixed-heap.pb.gz"
echo "not a profile" > "$work/notes.txt"
{
    for file in leaky-heap.pb.gz fixed-heap.pb.gz notes.txt; do
        echo "\$ cargo run -p ch11-channels -- match $file"
        (cd "$work" && "$bin/ch11-channels" match "$file" 2>&1) || echo "(exit code $?)"
        echo
    done
} > "$out/match.txt"
cat "$out/match.txt"
