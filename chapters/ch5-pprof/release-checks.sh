#!/usr/bin/env bash
# The claims that only a release build (`debug = "line-tables-only"`, inlined
# frames with short names) can check: the profiler's own memory stays out of
# the heap profiles (tests/profiler_memory.rs). Not in the normal test run:
# the release build of the chapter and its dependencies takes minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo test --release -p ch5-pprof --test profiler_memory
