#!/usr/bin/env bash
# A throwaway PostgreSQL cluster in a folder of the repo, on a private loopback port and socket.
#   scripts/pg.sh start DIR PORT   initdb (first time) and start; prints the DATABASE_URL
#   scripts/pg.sh stop DIR         stop it (the folder stays; delete it for a fresh cluster)
#   scripts/pg.sh standby DIR PORT PRIMARY_PORT
#                                  a streaming standby of the cluster on PRIMARY_PORT
#                                  (pg_basebackup -R), started; prints its DATABASE_URL
#   scripts/pg.sh promote DIR      promote a standby to primary (waits until it is)
#   scripts/pg.sh kill DIR         SIGKILL the postmaster, as a machine dying would (the failover
#                                  tests); its backends notice and exit
#   scripts/pg.sh bouncer DIR PORT SERVER_PORT [MODE [RESET]]
#                                  PgBouncer on PORT in front of the cluster on SERVER_PORT, pool
#                                  mode MODE (transaction by default), in the foreground: the
#                                  process is PgBouncer itself (exec), so killing it stops it.
#                                  RESET=always: DISCARD ALL on every server connection after
#                                  every transaction, so anything a client left on a server
#                                  connection (a named statement) is gone at once (the tests)
# PostgreSQL refuses to run as root, so as root the cluster runs as the `postgres` user.
set -euo pipefail
cmd=${1:?start|stop}
dir=${2:?folder}
port=${3:-55439}

find_bin() {
  local candidate
  for candidate in "$(command -v "$1" 2>/dev/null || true)" /usr/lib/postgresql/*/bin/"$1"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then echo "$candidate"; return; fi
  done
  echo "PostgreSQL's $1 was not found: run scripts/ensure-deps.sh (make deps) to install it" >&2
  exit 1
}

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  chown postgres "$dir"
fi

case "$cmd" in
  start)
    # max_wal_size as docs/scale.md advises for a central ingesting tens of thousands of events
    # a second (fleet-bench): at 1 GB a WAL-forced checkpoint came every 15 s of the bench.
    initdb=$(find_bin initdb)
    pg_ctl=$(find_bin pg_ctl)
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      as_owner "$initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --no-locale \
        --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    as_owner "$pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c max_wal_size=8GB" start >/dev/null \
      || { tail -20 "$dir/server.log" >&2; exit 1; }
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
  standby)
    primary=${4:?PRIMARY_PORT}
    pg_basebackup=$(find_bin pg_basebackup)
    pg_ctl=$(find_bin pg_ctl)
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      as_owner "$pg_basebackup" -h 127.0.0.1 -p "$primary" -U postgres -D "$dir/data" -R \
        -X stream --checkpoint=fast --no-sync >"$dir/basebackup.log" 2>&1 \
        || { cat "$dir/basebackup.log" >&2; exit 1; }
    fi
    as_owner "$pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null \
      || { tail -20 "$dir/server.log" >&2; exit 1; }
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
  promote)
    pg_ctl=$(find_bin pg_ctl)
    as_owner "$pg_ctl" -D "$dir/data" -w -t 60 promote >/dev/null \
      || { tail -20 "$dir/server.log" >&2; exit 1; }
    ;;
  kill)
    if [ -f "$dir/data/postmaster.pid" ]; then
      kill -KILL "$(head -1 "$dir/data/postmaster.pid")" 2>/dev/null || true
    fi
    ;;
  stop)
    pg_ctl=$(find_bin pg_ctl)
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_owner "$pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    fi
    ;;
  bouncer)
    server=${4:?the PostgreSQL port PgBouncer connects to}
    mode=${5:-transaction}
    reset_always=0
    [ "${6:-}" = always ] && reset_always=1
    pgbouncer=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
    [ -x "$pgbouncer" ] || { echo "pgbouncer was not found: run scripts/ensure-deps.sh (make deps) to install it" >&2; exit 1; }
    # Trust on loopback, as the throwaway clusters themselves; `options` (central's
    # `-c jit=off`) is a startup parameter PgBouncer does not pass on: accepted and dropped.
    : > "$dir/userlist.txt"
    cat > "$dir/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=$server auth_user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
auth_query = SELECT usename, passwd FROM pg_shadow WHERE usename = \$1
pool_mode = $mode
max_client_conn = 2000
default_pool_size = 20
ignore_startup_parameters = options,extra_float_digits
server_reset_query = DISCARD ALL
server_reset_query_always = $reset_always
logfile = $dir/pgbouncer.log
pidfile =
INI
    # PgBouncer refuses to run as root too; setpriv execs (runuser would stay as the parent,
    # and killing it would orphan PgBouncer).
    if [ "$(id -u)" -eq 0 ]; then
      exec setpriv --reuid postgres --regid postgres --init-groups "$pgbouncer" "$dir/pgbouncer.ini"
    fi
    exec "$pgbouncer" "$dir/pgbouncer.ini"
    ;;
  *)
    echo "usage: $0 start|stop|standby|promote|kill|bouncer DIR [PORT [PRIMARY_PORT|SERVER_PORT [MODE]]]" >&2
    exit 2
    ;;
esac
