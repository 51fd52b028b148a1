#!/usr/bin/env bash
# The main job: builds the workspace, then runs the demo on the simulator.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --release --locked
exec target/release/coordinatool-demo "$@"
