#!/usr/bin/env bash
# Runs the workspace's tests, with cargo-nextest when it is installed (parallel per test,
# clearer output), else with cargo test. The end-to-end tests start the binaries built by
# `make build`.
set -euo pipefail
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --locked --no-fail-fast "$@"
fi
exec cargo test --workspace --locked --no-fail-fast "$@"
