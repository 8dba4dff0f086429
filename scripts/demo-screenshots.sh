#!/usr/bin/env bash
# Saves a screenshot of every dashboard page of the running demo (`make demo` in another
# terminal, or DEMO_KEEP=1) into docs/screenshots/ (or $1), signed in as the demo's chain
# administrator, in Debian's headless Chromium (scripts/ensure-deps.sh installs it and the
# browser tests' npm packages).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
state="$root/.local/demo"
out=${1:-"$root/docs/screenshots"}
WEB_PORT=${WEB_PORT:-8444}
[ -f "$state/dashboard-admin.password" ] ||
  { echo "no demo here: start it with make demo first" >&2; exit 1; }
(exec 3<>"/dev/tcp/127.0.0.1/$WEB_PORT") 2>/dev/null ||
  { echo "the demo's dashboard does not answer on port $WEB_PORT: is make demo running?" >&2; exit 1; }
ONSHI_BASE="https://localhost:$WEB_PORT" \
ONSHI_SERVER_CERT="$state/pki/central.pem" \
ONSHI_SCREENSHOTS="$out" \
ONSHI_ADMIN=demo-admin \
ONSHI_ADMIN_PASSWORD="$(cat "$state/dashboard-admin.password")" \
ONSHI_SITE=1340123455 \
  node "$root/tests/browser/demo-screenshots.mjs"
