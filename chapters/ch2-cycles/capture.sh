#!/usr/bin/env bash
# Run by `just capture ch2-cycles` after output/run.txt: captures what
# valgrind and LeakSanitizer say about the referee binary (output/referees.txt).
set -euo pipefail
"$(dirname "$0")/verify.sh" --save
