#!/usr/bin/env bash
# Captures what the chapter 5 page shows beyond output/run.txt.
#
#   capture.sh          (run by `just capture ch5-pprof`)
#                       output/demo.txt    the demo: two heap profiles per service and their diff
#                       book/img/ch5-pprof-flamegraph-{leaky,fixed}.svg   the demo's flamegraphs
#                       output/dhat.txt    the same workload under dhat (examples/dhat_heap.rs)
#                       output/go-pprof-*.txt   `go tool pprof` (-top, -cum, -lines, -list,
#                                          -traces, -seconds) and the debug=1 text views
#                                          against the running leaky server, when Go is
#                                          installed; go-pprof-cited-lines.txt: the source
#                                          lines they cite (checked by tests/go_pprof.rs)
#   capture.sh go       only the go-pprof captures.
#   capture.sh features output/feature-deps.txt: crates each leakscope feature builds.
#   capture.sh bench    runs the profiling-cost benches into output/bench.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=chapters/ch5-pprof/output
demo_dir=target/ch5-demo
mkdir -p "$out" "$demo_dir"

server=""
# `go tool pprof ARGS` against the running server, from its "Type:" line on,
# without the date and cut to LINES lines, under a "$ command" header.
pprof_capture() {
    local lines=$1 file=$2
    shift 2
    {
        echo "\$ go tool pprof $*"
        go tool pprof "$@" 2>&1 | sed -n '/^\(Type\|Total\):/,$p' | sed '/^Time:/d' | sed -n "1,${lines}p"
    } | sed "s|$PWD/||g" > "$out/$file"
}

capture_go() {
    local addr=127.0.0.1:6060 url=http://127.0.0.1:6060/debug/pprof
    cargo build --quiet -p ch5-pprof
    # Run a copy: the build directory may be rebuilt while the server runs.
    cp "${CARGO_TARGET_DIR:-target}/debug/ch5-pprof" "$demo_dir/ch5-pprof"
    "$demo_dir/ch5-pprof" serve bad --no-load --addr "$addr" > "$demo_dir/serve.log" 2>&1 &
    server=$!
    trap 'kill -INT "$server" 2>/dev/null || true' EXIT
    for _ in $(seq 50); do curl -sf "http://$addr/status" > /dev/null && break; sleep 0.1; done
    for i in $(seq 0 1999); do curl -sf -o /dev/null "http://$addr/leak?id=key-$i"; done
    # pprof keeps fetched profiles under PPROF_TMPDIR.
    export PPROF_TMPDIR="$demo_dir/pprof"
    go version | cut -d' ' -f3 > "$out/go-version.txt"
    pprof_capture 8 go-pprof-top-raw.txt -top "$url/heap?raw=1"
    pprof_capture 8 go-pprof-top.txt -top "$url/heap"
    pprof_capture 14 go-pprof-top10.txt -top -nodecount=10 "$url/heap"
    pprof_capture 14 go-pprof-cum.txt -top -cum -nodecount=10 "$url/heap"
    pprof_capture 8 go-pprof-lines.txt -top -lines -nodecount=4 "$url/heap"
    pprof_capture 16 go-pprof-list.txt -list 'cache_data' "$url/heap"
    pprof_capture 24 go-pprof-traces.txt -traces "$url/heap"
    {
        echo "\$ curl $url/heap?debug=1"
        curl -sf "$url/heap?debug=1" | sed -n '1,3p;/^#/p' | sed -n '1,8p' | cut -c1-160
    } | sed "s|$PWD/||g" > "$out/go-pprof-debug1.txt"
    # Before -seconds, whose requests start more workers.
    {
        echo "\$ go tool pprof -top $url/goroutine"
        go tool pprof -top "$url/goroutine" 2>&1 | sed -n '/^Type:/,$p' | sed '/^Time:/d' | sed -n '1,8p'
        echo
        echo "\$ curl $url/goroutine?debug=1"
        curl -sf "$url/goroutine?debug=1"
    } | sed "s|$PWD/||g" > "$out/go-pprof-goroutine.txt"
    # -seconds: leak 64 KiB every 20 ms while pprof waits for the delta.
    (for i in $(seq 5000 5249); do
        curl -sf -o /dev/null "http://$addr/leak?id=key-$i&size=65536"; sleep 0.02
    done) &
    local leaker=$!
    pprof_capture 9 go-pprof-seconds.txt -seconds 5 -top "$url/heap"
    wait "$leaker"
    # Each source line the captures cite, as it read then: the claims check
    # it against the live source, so a capture left stale after an edit fails.
    grep -ohE 'chapters/ch5-pprof/src/[a-z_]+\.rs:[0-9]+' "$out"/go-pprof-*.txt | sort -u |
        while IFS=: read -r file line; do
            printf '%s:%s\t%s\n' "$file" "$line" "$(sed -n "${line}p" "$file")"
        done > "$out/go-pprof-cited-lines.txt"
    kill -INT "$server"
    wait "$server" || true
    trap - EXIT
}

# How many crates each leakscope feature brings into a build (normal
# dependencies, leakscope included): what the page says each costs.
capture_features() {
    {
        echo "features        crates built"
        for features in "" http pprof http,pprof; do
            printf '%-15s %s\n' "${features:-(default)}" "$(
                cargo tree -e normal -p leakscope ${features:+--features "$features"} --prefix none |
                    sed 's/ (\*)$//' | sort -u | wc -l)"
        done
    } > "$out/feature-deps.txt"
}

case "${1:-all}" in
    all)
        cargo run --quiet -p ch5-pprof -- demo --out "$demo_dir" > "$out/demo.txt"
        cp "$demo_dir/leaky-heap.svg" book/img/ch5-pprof-flamegraph-leaky.svg
        cp "$demo_dir/fixed-heap.svg" book/img/ch5-pprof-flamegraph-fixed.svg
        cargo build --quiet -p ch5-pprof --example dhat_heap
        # dhat writes dhat-heap.json into the working directory.
        (cd "$demo_dir" && for side in bad good; do "${CARGO_TARGET_DIR:-..}/debug/examples/dhat_heap" "$side"; done) > "$out/dhat.txt" 2>&1
        capture_features
        if command -v go > /dev/null; then
            capture_go
        else
            echo "Go is not installed: output/go-pprof-*.txt keep their last capture" >&2
        fi
        ;;
    go)
        capture_go
        ;;
    features)
        capture_features
        ;;
    bench)
        for bench in cost_plain cost_jemalloc_prof cost_dhat; do
            cargo bench --quiet -p ch5-pprof --bench "$bench" 2>/dev/null
        done | grep -E '^(1000 |\s+time:)' > "$out/bench.txt"
        cat "$out/bench.txt"
        ;;
    *)
        echo "usage: capture.sh [go|features|bench]" >&2
        exit 2
        ;;
esac
