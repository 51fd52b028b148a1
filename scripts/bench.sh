#!/usr/bin/env bash
# The benchmark (issue 8): builds the workspace in release, then runs
# coordinatool-bench on the simulator. Arguments are passed through:
#   scripts/bench.sh                       # everything (~10 min on 2 cores)
#   scripts/bench.sh --json                # the same, as JSON on stdout
#   scripts/bench.sh --only sched replay   # some sections
#   scripts/bench.sh --requests 20000 --replay 100000   # a quick run
# See docs/performance.md for what each figure means.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${BENCH_NO_BUILD:-}" != 1 ]; then
    cargo build --workspace --release --locked >&2
fi
exec target/release/coordinatool-bench "$@"
