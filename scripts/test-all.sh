#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (see README.md).
#
# Integration tests start real processes built from other workspace packages
# (lustre-simd, the fake liblustreapi.so, coordinatoold, the preload shim), so
# the whole workspace is built first; cargo does not build other packages'
# binaries and cdylibs for a package's tests on its own.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
if ! need cc && ! need gcc; then
    echo "test-all: a C compiler (gcc) is required" >&2
    exit 1
fi

cargo build --workspace --all-targets --locked
if cargo nextest --version >/dev/null 2>&1; then
    # Doc tests first: nextest's summary line is then the run's last word.
    cargo test --workspace --doc --locked
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast
fi
