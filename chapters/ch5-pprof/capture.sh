#!/usr/bin/env bash
# Captures what the chapter 5 page shows beyond output/run.txt.
#
#   capture.sh          (run by `just capture ch5-pprof`)
#                       output/demo.txt    the demo: two heap profiles per service and their diff
#                       book/img/ch5-pprof-flamegraph-{leaky,fixed}.svg   the demo's flamegraphs
#                       output/dhat.txt    the same workload under dhat (examples/dhat_heap.rs)
#                       output/go-pprof-*.txt   `go tool pprof -top` against the running leaky
#                                          server, when Go is installed (CI has no Go)
#   capture.sh bench    runs the profiling-cost benches into output/bench.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=chapters/ch5-pprof/output
demo_dir=target/ch5-demo
mkdir -p "$out" "$demo_dir"

server=""
capture_go() {
    local addr=127.0.0.1:6060
    cargo build --quiet -p ch5-pprof
    target/debug/ch5-pprof serve bad --no-load --addr "$addr" > "$demo_dir/serve.log" 2>&1 &
    server=$!
    trap 'kill -INT "$server" 2>/dev/null || true' EXIT
    for _ in $(seq 50); do curl -sf "http://$addr/status" > /dev/null && break; sleep 0.1; done
    for i in $(seq 0 1999); do curl -sf -o /dev/null "http://$addr/leak?id=key-$i"; done
    # pprof keeps fetched profiles under PPROF_TMPDIR; the table starts at "Type:".
    export PPROF_TMPDIR="$demo_dir/pprof"
    local version
    version=$(go version | cut -d' ' -f3)
    {
        echo "\$ go tool pprof -top http://$addr/debug/pprof/heap?raw=1    # $version, untrimmed"
        go tool pprof -top "http://$addr/debug/pprof/heap?raw=1" 2>&1 | sed -n '/^Type:/,$p' | grep -v '^Time:' | sed -n '1,8p'
    } > "$out/go-pprof-top-raw.txt"
    {
        echo "\$ go tool pprof -top http://$addr/debug/pprof/heap    # $version"
        go tool pprof -top "http://$addr/debug/pprof/heap" 2>&1 | sed -n '/^Type:/,$p' | grep -v '^Time:' | sed -n '1,8p'
    } > "$out/go-pprof-top.txt"
    {
        echo "\$ go tool pprof -top http://$addr/debug/pprof/goroutine    # $version"
        go tool pprof -top "http://$addr/debug/pprof/goroutine" 2>&1 | sed -n '/^Type:/,$p' | grep -v '^Time:' | sed -n '1,8p'
        echo
        echo "\$ curl http://$addr/debug/pprof/tasks"
        curl -sf "http://$addr/debug/pprof/tasks"
    } > "$out/go-pprof-goroutine.txt"
    kill -INT "$server"
    wait "$server" || true
    trap - EXIT
}

case "${1:-all}" in
    all)
        cargo run --quiet -p ch5-pprof -- demo --out "$demo_dir" > "$out/demo.txt"
        cp "$demo_dir/leaky-heap.svg" book/img/ch5-pprof-flamegraph-leaky.svg
        cp "$demo_dir/fixed-heap.svg" book/img/ch5-pprof-flamegraph-fixed.svg
        cargo build --quiet -p ch5-pprof --example dhat_heap
        # dhat writes dhat-heap.json into the working directory.
        (cd "$demo_dir" && for side in bad good; do ../debug/examples/dhat_heap "$side"; done) > "$out/dhat.txt" 2>&1
        if command -v go > /dev/null; then
            capture_go
        else
            echo "Go is not installed: output/go-pprof-*.txt keep their last capture" >&2
        fi
        ;;
    bench)
        for bench in cost_plain cost_jemalloc_prof cost_dhat; do
            cargo bench --quiet -p ch5-pprof --bench "$bench" 2>/dev/null
        done | grep -E '^(1000 |\s+time:)' > "$out/bench.txt"
        cat "$out/bench.txt"
        ;;
    *)
        echo "usage: capture.sh [bench]" >&2
        exit 2
        ;;
esac
