#!/usr/bin/env bash
# Draws the slow-client scenario over time into book/img/ (run by `just capture ch9-http`).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo run --quiet -p ch9-http --example chart -- book/img
