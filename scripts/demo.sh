#!/usr/bin/env bash
# The local stack: PostgreSQL (throwaway unless DATABASE_URL is set), the dev PKI, onshi-sim
# (the national system over its HTTPS protocol, and a qualification terminal's folders), central
# and two agents: the Tokyo pharmacy works as a real site does, through the terminal's file
# interface; the Hiroshima clinic through onshi-sim's direct protocol. A few lookups (one for a
# medical-aid recipient), a patient at the face reader, the rest of the chain simulated
# (`fleet-bench fleet`, FLEET_SITES sites), then a tour of where to look.
# Ctrl-C stops everything this script started. DEMO_ONCE=1 stops after the tour.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/target/debug"
state="$root/.local/demo"
mkdir -p "$state/logs"

CLINIC=3410712362     # a clinic in Hiroshima (医科, 34): direct mode (onshi-sim's HTTPS)
PHARMACY=1340123455   # a pharmacy in Tokyo (薬局, 13): terminal mode (the terminal's folders)
TERMINAL="$state/terminal/$PHARMACY"  # the pharmacy's qualification terminal (req/ res/ face/)
RECEIPT="$state/receipt/$PHARMACY"    # the pharmacy's receipt computer's folders (relay mode)
SIM_PORT=${SIM_PORT:-9443}
GRPC_PORT=${GRPC_PORT:-7443}
HTTP_PORT=${HTTP_PORT:-8443}
WEB_PORT=${WEB_PORT:-8444}
HOOK_PORT=${HOOK_PORT:-8445}   # the demo's webhook receiver (prints what central sends)
PG_PORT=${PG_PORT:-55432}

pids=()
started_pg=""
stop_all() {
  trap - EXIT INT TERM
  echo
  echo "stopping the demo..."
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$started_pg" ]; then "$root/scripts/pg.sh" stop "$state/pg" || true; fi
  echo "stopped. Data stays in .local/demo (make clean-local removes it)."
}
trap stop_all EXIT
trap 'exit 130' INT TERM

for port in "$SIM_PORT" "$GRPC_PORT" "$HTTP_PORT" "$WEB_PORT" "$HOOK_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use; set SIM_PORT, GRPC_PORT, HTTP_PORT, WEB_PORT or HOOK_PORT to free ones" >&2
    exit 1
  fi
done

if [ -z "${DATABASE_URL:-}" ]; then
  DATABASE_URL=$("$root/scripts/pg.sh" start "$state/pg" "$PG_PORT")
  started_pg=1
  echo "PostgreSQL (throwaway) on 127.0.0.1:$PG_PORT"
fi
export DATABASE_URL

pki="$state/pki"
# A demo PKI made before agents had their own sub-CA cannot serve central's agent listener.
if [ -f "$pki/chain-ca.pem" ] && [ ! -f "$pki/agent-ca.pem" ]; then
  echo "the demo PKI predates the agent sub-CA; making a new one (the old one moves to $pki.old)" >&2
  rm -rf "$pki.old" && mv "$pki" "$pki.old"
fi
if [ ! -f "$pki/chain-ca.pem" ]; then
  "$bin/central" pki init --out "$pki" --site "$CLINIC" --site "$PHARMACY" \
    --terminal "$CLINIC:T01" --terminal "$PHARMACY:T01" --operator demo
fi

# Starts a process whose first stdout line announces readiness; waits for that line.
start() {
  local name=$1; shift
  "$@" >"$state/logs/$name.out" 2>"$state/logs/$name.log" &
  pids+=($!)
  echo "$!" >"$state/logs/$name.pid"
  local waited=0
  until [ -s "$state/logs/$name.out" ]; do
    if ! kill -0 "${pids[-1]}" 2>/dev/null; then
      echo "$name failed to start; its log:" >&2; tail -20 "$state/logs/$name.log" >&2; exit 1
    fi
    waited=$((waited + 1))
    [ "$waited" -lt 600 ] || { echo "$name did not start within 60 s" >&2; exit 1; }
    sleep 0.1
  done
  echo "started $name: $(head -1 "$state/logs/$name.out")"
}

start onshi-sim "$bin/onshi-sim" serve --listen "127.0.0.1:$SIM_PORT" \
  --tls-cert "$pki/onshi-sim.pem" --tls-key "$pki/onshi-sim.key" --client-ca "$pki/common-ca.pem" \
  --seed 42 --population 1000 --jlis-ca "$pki/jlis-ca.pem"
start onshi-terminal "$bin/onshi-sim" terminal --folder "$TERMINAL" --institution "$PHARMACY" \
  --seed 42 --population 1000
# Least privilege, as in production: the migrations run as the schema owner, and central serves
# as a login role that has only the application role onshi_app (no UPDATE or DELETE on audit
# rows); central refuses to serve as the owner. With a DATABASE_URL given from outside (the
# owner's), CENTRAL_DATABASE_URL names central's own login role; without one, central is told
# explicitly that it serves as the owner (--allow-schema-owner, a development flag).
"$bin/central" migrate >/dev/null
central_url=${CENTRAL_DATABASE_URL:-$DATABASE_URL}
owner_flag=()
if [ -n "${started_pg:-}" ]; then
  psql "$DATABASE_URL" -qtAc "DO \$\$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'onshi_central') THEN
      CREATE ROLE onshi_central LOGIN IN ROLE onshi_app;
    END IF; END \$\$" >/dev/null
  central_url=${DATABASE_URL/postgres@/onshi_central@}
elif [ -z "${CENTRAL_DATABASE_URL:-}" ]; then
  echo "CENTRAL_DATABASE_URL is not set: central serves as DATABASE_URL's role (--allow-schema-owner)" >&2
  owner_flag=(--allow-schema-owner)
fi
# The key that signs each stream's daily seal; its public key is what auditors check seals with.
[ -f "$state/seal.key" ] || "$bin/central" seal-key init --out "$state/seal.key" >/dev/null 2>&1
# The key webhook secrets are sealed with (owner-only, never printed).
[ -f "$state/notification.key" ] ||
  (umask 077; python3 -c 'import secrets; print(secrets.token_hex(32))' >"$state/notification.key")
start central env DATABASE_URL="$central_url" "$bin/central" serve --no-migrate "${owner_flag[@]}" \
  --notification-key-file "$state/notification.key" --dashboard-url "https://localhost:$WEB_PORT" \
  --seal-key "$state/seal.key" --agent-ca-key "$pki/agent-ca.key" \
  --grpc-listen "127.0.0.1:$GRPC_PORT" \
  --http-listen "127.0.0.1:$HTTP_PORT" --web-listen "127.0.0.1:$WEB_PORT" \
  --tls-cert "$pki/central.pem" --tls-key "$pki/central.key" --client-ca "$pki/chain-ca.pem" \
  --agent-ca "$pki/agent-ca.pem" --database-pooler "${CENTRAL_DATABASE_POOLER:-none}"

# A chain administrator for the dashboard. Its password is generated once into an owner-only
# file (never printed); the tour says where it is.
if [ ! -f "$state/dashboard-admin.password" ]; then
  (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$state/dashboard-admin.password")
fi
# grep reads the whole list (-q would close the pipe early, and central fail on it).
if ! "$bin/central" account list | grep '"login": "demo-admin"' >/dev/null; then
  "$bin/central" account add --login demo-admin --name "デモ管理者" --role chain_admin \
    --by demo <"$state/dashboard-admin.password" 2>/dev/null
fi

agent_config() { # site kind transport
  local site=$1 kind=$2 transport=$3 dir="$state/agents/$1"
  mkdir -p "$dir"
  cat >"$dir/agent.toml" <<TOML
version = 1
site_code = "$site"
site_kind = "$kind"
prefecture = "${site:0:2}"
terminal_id = "T01"
data_dir = "data"
patient_hash_key_file = "$pki/patient-hash.key"

[central]
endpoint = "https://localhost:$GRPC_PORT"
ca = "$pki/chain-ca.pem"
cert = "$pki/agents/$site.pem"
key = "$pki/agents/$site.key"

# The certificate inventory: the agent's own certificate, the terminal's and the CA bundles,
# reported to central for expiry alerts.
[certificates]

TOML
  if [ "$transport" = terminal ]; then
    # Relay mode: the receipt computer's req/ and res/ are the agent's, every request passed on
    # to the terminal and its answer back byte for byte. The terminal's health is the link.
    mkdir -p "$RECEIPT"
    cat >>"$dir/agent.toml" <<TOML
[onshi]
transport = "terminal"
folder = "$TERMINAL"

[file_exchange]
folder = "$RECEIPT"
TOML
  else
    cat >>"$dir/agent.toml" <<TOML
[onshi]
transport = "direct"
endpoint = "https://localhost:$SIM_PORT"
ca = "$pki/common-ca.pem"
cert = "$pki/terminals/$site-T01.pem"
key = "$pki/terminals/$site-T01.key"

# Link probes of the national system (here onshi-sim) and central, every 10 s: state changes
# are events, and central's availability view reads them.
[link]
probe_interval_ms = 10000
TOML
  fi
  echo "$dir/agent.toml"
}
# Alerts that reach people: a webhook endpoint for chain IT, made through the API as an operator
# would (its secret is shown once: kept owner-only for the receiver), and the receiver itself.
if [ ! -s "$state/webhook.secret" ]; then
  endpoint=$(printf '{"name": "デモ受信 / demo receiver", "channel": "webhook", "target": "http://127.0.0.1:%s/", "quiet_hours": false}' "$HOOK_PORT")
  (umask 077; curl -sS --fail-with-body --cacert "$pki/chain-ca.pem" --cert "$pki/operators/demo.pem" \
    --key "$pki/operators/demo.key" -H 'Content-Type: application/json' -d "$endpoint" \
    "https://localhost:$HTTP_PORT/api/v1/notifications/endpoints" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["secret"])' >"$state/webhook.secret")
fi
start webhook python3 "$root/scripts/demo-webhook-receiver.py" "$HOOK_PORT" "$state/webhook.secret"

clinic_cfg=$(agent_config "$CLINIC" clinic direct)
pharmacy_cfg=$(agent_config "$PHARMACY" pharmacy terminal)
start "agent-$CLINIC" "$bin/edge-agent" --config "$clinic_cfg" run
start "agent-$PHARMACY" "$bin/edge-agent" --config "$pharmacy_cfg" run

echo
echo "== a few lookups at the counter =="
lookup() { # config insurer symbol number branch birthdate
  echo "\$ edge-agent lookup --insurer '$2' --symbol '$3' --number '$4' --branch '$5' --birthdate '$6'"
  "$bin/edge-agent" --config "$1" lookup --insurer "$2" --symbol "$3" --number "$4" \
    --branch "$5" --birthdate "$6" || true
  echo
}
i=0
# '|' rather than a tab: read collapses consecutive tabs, and empty fields (no symbol) are common.
while IFS='|' read -r insurer symbol number branch birthdate; do
  if [ $((i % 2)) -eq 0 ]; then cfg=$clinic_cfg; else cfg=$pharmacy_cfg; fi
  lookup "$cfg" "$insurer" "$symbol" "$number" "$branch" "$birthdate"
  i=$((i + 1))
done < <("$bin/onshi-sim" population --seed 42 --count 1000 --show 4 --kind any |
  python3 -c 'import json,sys
for line in sys.stdin:
    p = json.loads(line)
    print("|".join(p.get(k) or "" for k in ("insurer_number","symbol","number","branch","birthdate")))')
echo "A medical-aid recipient at the Tokyo pharmacy (through the terminal's folders): the"
echo "tickets the national system returns are shown to the clerk:"
IFS='|' read -r insurer symbol number branch birthdate < <("$bin/onshi-sim" population --seed 42 \
  --count 1000 --show 5 --kind medical-aid | python3 -c 'import json,sys
people = [json.loads(line) for line in sys.stdin]
p = next((p for p in people if p["qualification_validity"] == "1"), people[0])
print("|".join(p.get(k) or "" for k in ("insurer_number","symbol","number","branch","birthdate")))')
lookup "$pharmacy_cfg" "$insurer" "$symbol" "$number" "$branch" "$birthdate"
echo "A typo in the insurer number is caught before any network call:"
lookup "$pharmacy_cfg" 06139157 "" 1234 "" 19800101

echo "== a patient at the Tokyo pharmacy's face reader =="
echo "\$ onshi-sim terminal present --folder $TERMINAL --holder 0 --consent drug,checkup"
"$bin/onshi-sim" terminal present --folder "$TERMINAL" --holder 0 --consent drug,checkup
echo "(the terminal wrote the result into face/; the agent records it as a lookup and a consent,"
echo " leaving the file for the receipt computer)"
echo

for cfg in "$clinic_cfg" "$pharmacy_cfg"; do
  for _ in $(seq 1 100); do
    depth=$("$bin/edge-agent" --config "$cfg" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["outbox_depth"])')
    [ "$depth" = 0 ] && break
    sleep 0.1
  done
done

echo "== central now holds =="
"$bin/central" sites
# The face reader's lookup reaches central like any other (bounded wait: 10 s).
summary() {
  "$bin/central" events --site "$PHARMACY" 2>/dev/null | python3 -c 'import json,sys
for e in reversed(json.load(sys.stdin)):
    b = e["body"]
    print("  #%d %-8s %s" % (e["sequence"], e["kind"], " ".join(str(b[k]) for k in ("route", "identity_verification", "outcome", "drug", "checkup") if b.get(k))))'
}
for _ in $(seq 1 100); do
  summary | grep "my_number_card face" >/dev/null && break
  sleep 0.1
done
echo "the Tokyo pharmacy's events (the last two: the face reader's lookup and the consent):"
summary

# The rest of the chain: simulated sites over the real uplink, each with its own certificate
# from the chain CA, a day of history (lookups, outages, an unplugged reader, certificates about
# to expire, stopped agents) and live traffic while open; named through the API, a few sites
# still adopting (one late). The demo's chain is open around the clock, so that availability and
# its alerts show whatever the hour.
FLEET_SITES=${FLEET_SITES:-200}
once_flag=()
[ -n "${DEMO_ONCE:-}" ] && once_flag=(--once)
start fleet "$bin/fleet-bench" fleet --grpc "https://localhost:$GRPC_PORT" \
  --api "localhost:$HTTP_PORT" --pki "$pki" --operator demo --state "$state/fleet" \
  --sites "$FLEET_SITES" "${once_flag[@]}" --always-open \
  --name "$PHARMACY=さくら薬局 銀座本店" --name "$CLINIC=さくら広島駅前クリニック"
cat <<TOUR

== where to look ==
  events per site (CLI):  DATABASE_URL='$DATABASE_URL' target/debug/central events --site $CLINIC
  hash chains and seals:  DATABASE_URL='$DATABASE_URL' target/debug/central verify --site $CLINIC
  dashboard:              https://localhost:$WEB_PORT/ (login demo-admin; the password is in
                          .local/demo/dashboard-admin.password; the browser will not know the
                          dev CA: import $pki/chain-ca.pem or accept the warning)
  JSON API (mTLS):        curl --cacert $pki/chain-ca.pem --cert $pki/operators/demo.pem \\
                            --key $pki/operators/demo.key https://localhost:$HTTP_PORT/api/v1/sites
                          .../api/v1/sites/$PHARMACY/events
  agent status:           target/debug/edge-agent --config $pharmacy_cfg status
  the terminal's folders: $TERMINAL/{req,res,face}
  the face reader:        target/debug/onshi-sim terminal present --folder $TERMINAL --holder 3 --consent drug
  another lookup:         target/debug/edge-agent --config $clinic_cfg lookup --insurer ... --number ... --birthdate yyyyMMdd
  people to look up:      target/debug/onshi-sim population --seed 42 --count 1000 --show 10
  the simulated chain:    $FLEET_SITES sites (FLEET_SITES=…), .local/demo/logs/fleet.{out,log}
  notifications:          .local/demo/logs/webhook.out: every alert central opens or resolves,
                          as the demo's webhook receiver got it (signature checked); endpoints
                          and the delivery log at https://localhost:$WEB_PORT/notifications
  logs:                   .local/demo/logs/
TOUR

if [ -n "${DEMO_ONCE:-}" ]; then
  exit 0
fi
echo "Running. Press Ctrl-C to stop everything."
wait
