# Leak Lab: `just` lists the recipes, `just list` the chapters.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Show the recipes.
default:
    @just --list --unsorted

# List the chapters with a one-line description each.
list:
    #!/usr/bin/env bash
    set -euo pipefail
    for manifest in chapters/*/Cargo.toml; do
        chapter=$(basename "$(dirname "$manifest")")
        description=$(sed -n 's/^description = "\(.*\)"$/\1/p' "$manifest")
        printf '%-16s %s\n' "$chapter" "$description"
    done

# Run a chapter's scenario: `just run ch1-tasks`, or only one side: `just run ch1-tasks bad`.
run chapter *args: (_known chapter)
    @cargo run --quiet -p {{chapter}} -- {{args}}

# Run every test in the workspace (the README's test command).
test:
    cargo test --workspace

# Build the book and open it in a browser, rebuilding on change.
serve:
    mdbook serve --open

# Build the book into target/book.
book:
    mdbook build

# Run the criterion benches: all, or one chapter's (`just bench ch3-cache`).
bench chapter="":
    #!/usr/bin/env bash
    set -euo pipefail
    if [ -z "{{chapter}}" ]; then cargo bench --workspace; else just _known "{{chapter}}"; cargo bench -p "{{chapter}}"; fi

# Regenerate the captured outputs the book includes: every chapter, or one.
capture chapter="":
    #!/usr/bin/env bash
    set -euo pipefail
    if [ -n "{{chapter}}" ]; then just _known "{{chapter}}"; chapters=("{{chapter}}"); else chapters=($(ls chapters)); fi
    for chapter in "${chapters[@]}"; do
        mkdir -p "chapters/$chapter/output"
        echo "capturing $chapter → chapters/$chapter/output/run.txt"
        cargo run --quiet -p "$chapter" > "chapters/$chapter/output/run.txt"
        # A chapter with more to capture (charts, profiles) has its own script.
        if [ -x "chapters/$chapter/capture.sh" ]; then "chapters/$chapter/capture.sh"; fi
    done

# Check a chapter with tools the project did not write (valgrind, LeakSanitizer, …).
verify chapter: (_known chapter)
    #!/usr/bin/env bash
    set -euo pipefail
    if [ -x "chapters/{{chapter}}/verify.sh" ]; then
        "chapters/{{chapter}}/verify.sh"
    else
        echo "{{chapter}} has no external verification; its claims are checked by: cargo test -p {{chapter}}"
    fi

# Fails with the list of chapters unless CHAPTER is one of them.
[private]
_known chapter:
    #!/usr/bin/env bash
    if [ ! -f "chapters/{{chapter}}/Cargo.toml" ]; then
        echo "unknown chapter '{{chapter}}'. The chapters are:" >&2
        just list >&2
        exit 2
    fi

# Chapter 5's demo (the seed's demo.sh): leak, take two heap profiles, show what grew, for the leaky then the fixed service.
demo:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo run --quiet -p ch5-pprof -- demo --out target/ch5-demo
    # With Go installed, the same diff as Go users read it.
    if command -v go >/dev/null; then
        for service in leaky fixed; do
            echo "=== go tool pprof -top -base (${service}) ==="
            go tool pprof -top -base "target/ch5-demo/${service}-heap1.pb.gz" "target/ch5-demo/${service}-heap2.pb.gz" 2>/dev/null | head -12
        done
    fi

# Serve chapter 5's leaky service on 127.0.0.1:6060 until Ctrl-C (`just serve-leaky --cap 64 --no-load`).
serve-leaky *args:
    cargo run --quiet -p ch5-pprof -- serve bad {{args}}

# Serve chapter 5's fixed service on 127.0.0.1:6060 until Ctrl-C.
serve-fixed *args:
    cargo run --quiet -p ch5-pprof -- serve good {{args}}
