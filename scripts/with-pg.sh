#!/usr/bin/env bash
# Runs a command with DATABASE_URL pointing at PostgreSQL: the one given, or a fresh throwaway
# cluster under .local/ that is stopped and deleted afterwards.
set -euo pipefail
if [ -n "${DATABASE_URL:-}" ]; then
  exec "$@"
fi
root=$(cd "$(dirname "$0")/.." && pwd)
dir="$root/.local/pg-$$"
port=${PGPORT_TEST:-$((40000 + $$ % 20000))}
cleanup() { "$root/scripts/pg.sh" stop "$dir" || true; rm -rf "$dir"; }
trap cleanup EXIT
DATABASE_URL=$("$root/scripts/pg.sh" start "$dir" "$port")
export DATABASE_URL
echo "throwaway PostgreSQL on 127.0.0.1:$port ($dir)" >&2
"$@"
