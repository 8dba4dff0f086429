#!/usr/bin/env bash
# The PKCS#12 reader's fixtures (edge-agent certs::pkcs12 tests, the pkcs12 fuzz seeds), made
# with OpenSSL on demand and never committed: they hold private keys, throwaway ones.
#   scripts/pkcs12-fixtures.sh DIR   writes into DIR every scheme tools write (README there:
#                                    edge-agent/src/certs/testdata/README.md); does nothing when
#                                    they are all there already
set -euo pipefail
dir=${1:?the folder to write the fixtures into}
names=(aes256-sha256 legacy-rc2-3des 3des-sha1 plain-certs no-mac empty-password)
missing=0
for name in "${names[@]}"; do [ -s "$dir/$name.p12" ] || missing=1; done
[ "$missing" -eq 0 ] && exit 0
command -v openssl >/dev/null || { echo "openssl was not found: run scripts/ensure-deps.sh (make deps)" >&2; exit 1; }
mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
password='テスト-pass'
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/ca.key" \
  -out "$work/ca.pem" -days 3650 -subj "/CN=pkcs12 fixture CA" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/leaf.key" \
  -out "$work/leaf.csr" -subj "/CN=pkcs12 fixture" 2>/dev/null
openssl x509 -req -in "$work/leaf.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
  -CAcreateserial -out "$work/leaf.pem" -days 3650 2>/dev/null
export_p12() { # name, then openssl pkcs12 options
  local name=$1; shift
  openssl pkcs12 -export -in "$work/leaf.pem" -inkey "$work/leaf.key" -certfile "$work/ca.pem" \
    "$@" -out "$work/$name.p12"
}
export_p12 aes256-sha256 -passout "pass:$password"
export_p12 legacy-rc2-3des -passout "pass:$password" -legacy
export_p12 3des-sha1 -passout "pass:$password" -certpbe PBE-SHA1-3DES -keypbe PBE-SHA1-3DES -macalg sha1
export_p12 plain-certs -passout "pass:$password" -certpbe NONE
export_p12 no-mac -passout "pass:$password" -nomac -certpbe AES-256-CBC
export_p12 empty-password -passout pass:
# Each file renamed into place whole: a test reading at the same time sees a whole file.
for name in "${names[@]}"; do
  chmod 644 "$work/$name.p12"
  mv -f "$work/$name.p12" "$dir/$name.p12"
done
