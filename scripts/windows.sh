#!/usr/bin/env bash
# The Windows agent, built and tested from this Linux machine with Debian's packages
# (deploy/windows/README.md):
#   scripts/windows.sh build   edge-agent.exe (x86_64-pc-windows-gnu) and its MSI into
#                              target/windows/dist, with the time each took
#   scripts/windows.sh lint    clippy -D warnings on the agent's Windows code (its code under
#                              cfg(windows) is never compiled by the Linux clippy)
#   scripts/windows.sh unit|e2e  one part of `test` (after `build tests`)
#   scripts/windows.sh test    build, lint, the agent's unit tests under Wine, then the Windows
#                              end-to-end tests (tests/tests/windows.rs: edge-agent.exe under
#                              Wine against onshi-sim and central on Linux, the MSI checked with
#                              msiinfo); `make test` runs it
# All install the packages they need first (scripts/ensure-deps.sh windows). Each step prints
# its wall time, and `test` ends with the CPU time all of it took (for the README's figures).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
. scripts/windows-env.sh
DIST="$CARGO_TARGET_DIR/dist"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"

scripts/ensure-deps.sh windows

elapsed() { echo $(( $(date +%s) - $1 )); }

cross_cargo() {
  "$WIN_CARGO" "$@" -Zbuild-std=std,panic_abort --target "$WIN_TARGET" --locked -p edge-agent
}

# `build` the binaries; `build tests` with the unit tests in the same cargo run: dev-dependencies
# change the features of shared dependencies (serde, rand, ...), so built apart the binary and
# the tests would each compile their own copy of much of the dependency tree.
build() {
  local start targets=(--bins)
  [ "${1:-}" = tests ] && targets+=(--lib --tests)
  start=$(date +%s)
  cross_cargo build "${targets[@]}"
  mkdir -p "$DIST"
  cp "$WIN_OUT/edge-agent.exe" "$DIST/edge-agent.exe"
  echo "windows: built $DIST/edge-agent.exe in $(elapsed "$start") s" >&2
  start=$(date +%s)
  # wixl takes the file's path relative to where it runs.
  (cd "$DIST" && wixl --arch x64 -D Version="$VERSION" -D Exe=edge-agent.exe \
    -o "onshi-fleet-agent-$VERSION.msi" "$ROOT/deploy/windows/edge-agent.wxs")
  echo "windows: built $DIST/onshi-fleet-agent-$VERSION.msi in $(elapsed "$start") s" >&2
}

# Clippy for the Windows target: Debian's cargo-clippy and clippy-driver (rust-web-clippy) of
# the same compiler, so the standard library built with -Zbuild-std is the one it checks against.
lint() {
  local start
  start=$(date +%s)
  CARGO="$WIN_CARGO" /usr/bin/cargo-clippy clippy -Zbuild-std=std,panic_abort --target "$WIN_TARGET" \
    --locked -p edge-agent --all-targets -- -D warnings
  echo "windows: clippy -D warnings for $WIN_TARGET in $(elapsed "$start") s" >&2
}

# The test fixtures in tests/windows, built here into $FIXTURES, never into $DIST:
# bcryptprimitives.dll (ProcessPrng, which Wine 8 lacks), copied beside the test executables
# only, and certstore-add.exe (imports a certificate into a Windows store for the end-to-end
# test of the certificate inventory; Wine 8 has no certutil).
FIXTURES="$CARGO_TARGET_DIR/fixtures"
fixture() {
  local out="$FIXTURES/$1" source="$2"
  shift 2
  if [ ! -f "$out" ] || [ "$source" -nt "$out" ]; then
    mkdir -p "$FIXTURES"
    x86_64-w64-mingw32-gcc-posix -O2 -s -o "$out" "$source" "$@"
  fi
}
shim() {
  fixture bcryptprimitives.dll tests/windows/processprng.c -shared -ladvapi32
  fixture certstore-add.exe tests/windows/certstore-add.c -lcrypt32
  for dir in "$@"; do cp "$FIXTURES/bcryptprimitives.dll" "$dir/"; done
}

# Wine 8 emulates a file's DACL from its unix mode and maps any DACL set through the API to a
# mode others can read, so the agent's own files are kept private by the mode Wine creates them
# with: the wineserver (which creates files) runs with umask 077, restarted to be sure of it.
wine_prefix() {
  umask 077
  wineserver -k 2>/dev/null || true
  if [ ! -f "$WINEPREFIX/system.reg" ]; then
    echo "windows: creating the Wine prefix $WINEPREFIX" >&2
    mkdir -p "$WINEPREFIX"
    wine wineboot -i </dev/null >/dev/null 2>&1
  fi
  # One persistent wineserver for the whole run, started here with its output closed: one a
  # test's wine process started would outlive the test holding its output pipes.
  wineserver -k 2>/dev/null || true
  wineserver -p </dev/null >/dev/null 2>&1
  trap 'wineserver -k 2>/dev/null || true' EXIT
  # Likewise Wine's session helpers (services.exe, explorer.exe, ...), which the first program
  # starts: started here, they never hold a test's pipes.
  wine cmd.exe /c exit 0 </dev/null >/dev/null 2>&1
}

unit_tests() {
  local start exes
  start=$(date +%s)
  # The test executables cargo built, from its JSON messages.
  # The library's tests (main.rs has none); after `build tests` nothing is left to compile.
  exes=$(cross_cargo test --no-run --lib --message-format=json \
    | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-message":
        print(m["message"].get("rendered", ""), file=sys.stderr)
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        print(m["executable"])')
  echo "windows: built the unit tests in $(elapsed "$start") s" >&2
  shim "$WIN_OUT/deps"
  wine_prefix
  # The PKCS#12 reader's fixtures hold throwaway private keys: made here, never committed
  # (the Wine tests cannot run OpenSSL themselves).
  "$ROOT/scripts/pkcs12-fixtures.sh" "$ROOT/edge-agent/src/certs/testdata"
  start=$(date +%s)
  local exe
  for exe in $exes; do
    echo "windows: running $(basename "$exe") under Wine" >&2
    # Wine's own temp folder (C:\users\...\Temp) is inside the prefix: tests' folders land there.
    wine "$exe" --test-threads=2
  done
  echo "windows: ran the unit tests under Wine in $(elapsed "$start") s" >&2
}

e2e_tests() {
  local start
  start=$(date +%s)
  shim "$WIN_OUT"
  wine_prefix
  # A Wine program starts in seconds on a busy machine: more patience than for native ones.
  export E2E_PATIENCE_SECS="${E2E_PATIENCE_SECS:-120}"
  EDGE_AGENT_WINDOWS_EXE="$WIN_OUT/edge-agent.exe" EDGE_AGENT_WINDOWS_MSI="$DIST/onshi-fleet-agent-$VERSION.msi" \
    EDGE_AGENT_WINDOWS_CERTSTORE_ADD="$FIXTURES/certstore-add.exe" \
    CARGO_TARGET_DIR="$ROOT/target" env -u RUSTC -u RUSTDOC -u RUSTC_BOOTSTRAP \
    scripts/with-pg.sh cargo nextest run --locked -p e2e --features windows --test windows --no-fail-fast
  echo "windows: ran the end-to-end tests under Wine in $(elapsed "$start") s" >&2
}

case "${1:-}" in
  build) build ;;
  lint) lint ;;
  test)
    all=$(date +%s)
    build tests; lint; unit_tests; e2e_tests
    echo "windows: all of it in $(elapsed "$all") s; CPU time (user, system) of this shell, then of its children:" >&2
    times >&2
    ;;
  unit) unit_tests ;;
  e2e) e2e_tests ;;
  *) echo "usage: $0 build|lint|test|unit|e2e" >&2; exit 2 ;;
esac
