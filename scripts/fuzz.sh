#!/usr/bin/env bash
# Builds and runs the cargo-fuzz targets: the parsers that face files and bytes from outside
# (README, "Fuzzing").
#
#   scripts/fuzz.sh build            build every fuzz crate
#   scripts/fuzz.sh run [TARGET...]  run each target FUZZ_SECONDS (default 1800), FUZZ_PARALLEL
#                                    at a time (default: the number of cores), at nice 19
#   scripts/fuzz.sh smoke            each target replays its seeds and fuzzes FUZZ_SMOKE_SECONDS
#                                    (default 5) from a throwaway corpus: the CI check
#   scripts/fuzz.sh list             the targets, one "fuzz-dir target" a line
#
# One fuzz crate per crate under test (<crate>/fuzz), each its own workspace so the main
# workspace never builds it; all share one target directory (target/fuzz). cargo-fuzz is
# installed when missing (pinned, with `cargo install` into Cargo's own bin folder rather than
# .local/tools: it takes minutes to build, and every checkout and worktree of the machine then
# finds it).
#
# Targets are built without a sanitizer by default (FUZZ_SANITIZER=none): the project's code
# has no `unsafe` (workspace lint), and on a small machine the executions matter more; debug
# assertions and overflow checks stay on (cargo fuzz's default). Without a sanitizer cargo fuzz
# passes only stable -C flags; FUZZ_SANITIZER=address makes it pass -Zsanitizer, which the
# machine's stable toolchain accepts with RUSTC_BOOTSTRAP=1 (set here). A different sanitizer
# rebuilds everything.
#
# FUZZ_DIRS (space-separated) limits build, run and smoke to some fuzz crates; `make test`
# smokes the two that build in a few minutes from cold (README, "Fuzzing").
#
# Corpora: the committed seeds are <crate>/fuzz/corpus/<target> (read, never written; pkcs12's
# are made by scripts/pkcs12-fixtures.sh, as they hold keys); `run`
# keeps what libFuzzer finds in target/fuzz-corpus/<target> (not committed). A crash is written
# to <crate>/fuzz/artifacts/<target>/ and fails the script; minimise it with
# `cargo fuzz tmin --fuzz-dir <crate>/fuzz -s none <target> <file>`, fix, add a regression test
# to the crate's own tests. Logs: target/fuzz-logs/<target>.log for `run` (a smoke's are thrown
# away with its corpus unless it fails: the failing lines are printed).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

read -r -a FUZZ_DIRS <<<"${FUZZ_DIRS:-crates/onshi-domain/fuzz crates/card-reader/fuzz proto/fuzz edge-agent/fuzz}"
FUZZ_SANITIZER=${FUZZ_SANITIZER:-none}
CARGO_FUZZ_VERSION=0.13.2
FUZZ_SECONDS=${FUZZ_SECONDS:-1800}
FUZZ_SMOKE_SECONDS=${FUZZ_SMOKE_SECONDS:-5}
FUZZ_PARALLEL=${FUZZ_PARALLEL:-$(nproc)}
target_dir="$root/target/fuzz"
logs="$root/target/fuzz-logs"
export RUSTC_BOOTSTRAP=1

say() { echo "fuzz: $*" >&2; }

ensure_cargo_fuzz() {
  export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
  cargo fuzz --version >/dev/null 2>&1 && return
  say "installing cargo-fuzz $CARGO_FUZZ_VERSION (cargo install, a few minutes, once a machine)"
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
}

list() {
  local dir
  for dir in "${FUZZ_DIRS[@]}"; do
    cargo fuzz list --fuzz-dir "$dir" | sed "s|^|$dir |"
  done
}

build() {
  local dir
  for dir in "${FUZZ_DIRS[@]}"; do
    say "building $dir"
    cargo fuzz build -s "$FUZZ_SANITIZER" --fuzz-dir "$dir" --target-dir "$target_dir"
  done
}

binary() {
  echo "$target_dir/$(rustc -vV | sed -n 's/^host: //p')/release/$1"
}

# run_one DIR TARGET SECONDS WORK_CORPUS: libFuzzer on the working corpus (written) and the
# seeds (read). Prints the target's final stats; the exit status is libFuzzer's.
run_one() {
  local dir=$1 target=$2 seconds=$3 work=$4 status=0
  mkdir -p "$work" "$dir/artifacts/$target" "$logs"
  if [ "$target" = pkcs12 ]; then
    # Its seeds hold throwaway private keys: made here (git-ignored), never committed.
    "$root/scripts/pkcs12-fixtures.sh" "$dir/corpus/$target"
  fi
  local log="$logs/$target.log" started
  started=$(date +%s)
  # -timeout: one input taking 10 s is a hang, reported like a crash. -rss_limit_mb: the
  # readers have size limits; a target growing past 1 GiB is a finding, not a machine problem.
  nice -n 19 "$(binary "$target")" "$work" "$dir/corpus/$target" \
    -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=1024 \
    -artifact_prefix="$dir/artifacts/$target/" >"$log" 2>&1 || status=$?
  local executed
  executed=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  say "$target: status $status, $(($(date +%s) - started)) s wall, ${executed:-?} executions, log $log"
  if [ "$status" -ne 0 ]; then
    grep -E '^(==[0-9]+== ?ERROR|thread .* panicked|SUMMARY|Test unit written)' "$log" >&2 || tail -20 "$log" >&2
  fi
  return "$status"
}

# run_all SECONDS WORK_ROOT [TARGET...]: every (or the named) target, FUZZ_PARALLEL at a time.
run_all() {
  local seconds=$1 work_root=$2
  shift 2
  local wanted=" $* " failed=0 running=0 dir target
  while read -r dir target; do
    if [ "$wanted" != "  " ] && [[ "$wanted" != *" $target "* ]]; then
      continue
    fi
    if [ "$running" -ge "$FUZZ_PARALLEL" ]; then
      wait -n || failed=1
      running=$((running - 1))
    fi
    run_one "$dir" "$target" "$seconds" "$work_root/$target" &
    running=$((running + 1))
  done < <(list)
  while [ "$running" -gt 0 ]; do
    wait -n || failed=1
    running=$((running - 1))
  done
  if [ "$failed" -ne 0 ]; then
    say "a target failed: see its artifacts folder and log above"
    return 1
  fi
}

ensure_cargo_fuzz
case "${1:-run}" in
  build) build ;;
  list) list ;;
  run)
    shift || true
    build
    run_all "$FUZZ_SECONDS" "$root/target/fuzz-corpus" "$@"
    ;;
  smoke)
    build
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    # Its own logs: a smoke beside a long run must not write over the run's.
    logs="$scratch/logs"
    run_all "$FUZZ_SMOKE_SECONDS" "$scratch"
    ;;
  *)
    echo "usage: scripts/fuzz.sh build|list|run [TARGET...]|smoke" >&2
    exit 2
    ;;
esac
