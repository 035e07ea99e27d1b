#!/usr/bin/env bash
# Mutation testing of a chapter's bad and good versions: does a change to the
# code make a test fail? `scripts/mutants.sh ch3-cache [more chapters…]`.
# Needs cargo-mutants (cargo install --locked cargo-mutants). Takes minutes
# per chapter, so it is not part of CI; the reports land in
# target/mutants/<chapter>/mutants.out.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -eq 0 ]; then
    echo "usage: $0 CHAPTER…  (e.g. $0 ch1-tasks ch3-cache)" >&2
    exit 2
fi
if ! cargo mutants --version >/dev/null 2>&1; then
    echo "cargo-mutants is not installed: cargo install --locked cargo-mutants" >&2
    exit 1
fi

status=0
for chapter in "$@"; do
    if [ ! -f "chapters/$chapter/Cargo.toml" ]; then
        echo "unknown chapter '$chapter'" >&2
        exit 2
    fi
    out="target/mutants/$chapter"
    mkdir -p "$out"
    echo "==> $chapter: mutating src/bad.rs and src/good.rs"
    # cargo-mutants exits non-zero when mutants survive; the summary says how many.
    cargo mutants --package "$chapter" \
        --file "chapters/$chapter/src/bad.rs" --file "chapters/$chapter/src/good.rs" \
        --output "$out" --no-shuffle || status=$?
    outcomes="$out/mutants.out/outcomes.json"
    if [ -f "$outcomes" ]; then
        python3 - "$outcomes" "$chapter" <<'PY'
import json, sys
outcomes = json.load(open(sys.argv[1]))
counts = {key: outcomes.get(key, 0) for key in ("caught", "missed", "timeout", "unviable")}
viable = counts["caught"] + counts["missed"] + counts["timeout"]
score = 100 * (counts["caught"] + counts["timeout"]) / viable if viable else 100
print(f"{sys.argv[2]}: caught {counts['caught']}, timeout {counts['timeout']}, missed {counts['missed']}, "
      f"unviable {counts['unviable']}: {score:.0f} % of viable mutants noticed")
PY
        if [ -s "$out/mutants.out/missed.txt" ]; then
            echo "missed (each needs an assertion, or a reason it cannot matter):"
            sed 's/^/  /' "$out/mutants.out/missed.txt"
        fi
    fi
done
exit "$status"
