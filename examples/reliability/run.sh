#!/usr/bin/env bash
# The reliability run, in one command: builds the release binary, starts its own Redis
# (port 6391) and its own PostgreSQL cluster (port 5441, a fresh initdb under
# target/reliability), so that restarting them never touches the machine's services, starts
# nginx in front of two Switchboard instances, runs examples/reliability/harness.mjs (clients
# of several dialects, forced disconnects, a SIGKILL, a graceful restart, a Redis and a
# PostgreSQL restart), stops everything it started, and writes RELIABILITY.md through
# report.mjs. analysis.md explains the accounting.
#
# Settings (environment):
#   RELIABILITY_CLIENTS    clients, one user and one device each (2000)
#   RELIABILITY_DURATION   seconds of load (120); the faults come at equal steps within it
#   RELIABILITY_RATE       messages per second, all clients together (50)
#   RELIABILITY_GROUP_SIZE members per group conversation (10)
#   RELIABILITY_MIX        dialect shares (sup:40,spark:30,mrezhen:20,socialink:10)
#   RELIABILITY_FAULTS     faults in order (sigkill,graceful,redis,postgres); empty: none
#   RELIABILITY_DRAIN      seconds of quiet after the load, before the final reconnect (15)
#   RELIABILITY_WORKERS    harness processes (one per 700 clients)
#   RELIABILITY_SUP_RECEIPTS  0: SUP clients send no message:delivered receipts (they do by default)
#   RELIABILITY_OUT        results, logs and the databases' files (target/reliability)
#   RELIABILITY_REPORT     the report (RELIABILITY.md)
# `run.sh --report-only` writes RELIABILITY.md again from the last results.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${RELIABILITY_OUT:-$ROOT/target/reliability}
REPORT=${RELIABILITY_REPORT:-$ROOT/RELIABILITY.md}
HERE=$ROOT/examples/reliability
REDIS_PORT=6391
PG_PORT=5441
NGINX_PORT=8441
PORT_A=3441
PORT_B=3442
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}

die() { echo "run.sh: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

if [ "${1:-}" = --report-only ]; then
  [ -f "$OUT/results.json" ] || die "no results in $OUT to report"
  node "$HERE/report.mjs" "$OUT/results.json" "$REPORT"
  exit 0
fi

for tool in cargo node npm nginx redis-server redis-cli psql curl ss; do
  command -v "$tool" >/dev/null || die "$tool is required"
done
[ -x "$PG_BIN/initdb" ] || die "no PostgreSQL server binaries (set PG_BIN)"
for p in $REDIS_PORT $PG_PORT $NGINX_PORT $PORT_A $PORT_B; do
  [ -z "$(ss -Htln "sport = :$p")" ] || die "port $p is taken"
done
# Every client holds a descriptor in the harness and two in nginx.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# PostgreSQL refuses to run as root: as root, run its tools as the postgres user.
as_pg() {
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi
}

# The same as a command line for the harness.
pg_cmd() {
  if [ "$(id -u)" = 0 ]; then printf 'su postgres -s /bin/sh -c %q' "$1"; else printf '%s' "$1"; fi
}

mkdir -p "$OUT/logs" "$OUT/nginx" "$OUT/redis"
rm -f "$OUT"/worker-*.json "$OUT"/i*.pid "$OUT"/results.json "$OUT"/logs/*.log
PGDATA=$OUT/pgdata

cleanup() {
  local status=$?
  set +e
  for f in "$OUT"/i*.pid; do
    [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null
    rm -f "$f"
  done
  [ -n "${HARNESS_PID:-}" ] && kill "$HARNESS_PID" 2>/dev/null
  [ -f "$OUT/nginx/nginx.pid" ] && kill -QUIT "$(cat "$OUT/nginx/nginx.pid")" 2>/dev/null
  redis-cli -p $REDIS_PORT shutdown nosave >/dev/null 2>&1
  [ -f "$PGDATA/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl -D '$PGDATA' -m immediate -w stop" >/dev/null 2>&1
  rm -rf "$PGDATA" "$OUT/redis"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "building the release binary"
CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0} cargo build --release -q -p switchboard
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')
BIN=$TARGET_DIR/release/switchboard
[ -x "$BIN" ] || die "no binary at $BIN"
(cd "$HERE" && npm ci --no-audit --no-fund --silent)

log "starting Redis on $REDIS_PORT"
mkdir -p "$OUT/redis"
REDIS_START="redis-server --port $REDIS_PORT --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --dir '$OUT/redis' --logfile '$OUT/logs/redis.log'"
sh -c "$REDIS_START"
for _ in $(seq 50); do redis-cli -p $REDIS_PORT ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done

log "starting PostgreSQL on $PG_PORT (fresh cluster in $PGDATA)"
rm -rf "$PGDATA"
mkdir -p "$PGDATA"
[ "$(id -u)" = 0 ] && chown postgres "$PGDATA" "$OUT/logs"
as_pg "$PG_BIN/initdb -D '$PGDATA' -U postgres --auth=trust -E UTF8 --locale=C.UTF-8" >"$OUT/logs/initdb.log" 2>&1 \
  || die "initdb failed; see $OUT/logs/initdb.log"
PG_START="$PG_BIN/pg_ctl -D '$PGDATA' -l '$OUT/logs/postgres.log' -w -o '-p $PG_PORT -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=200' start"
as_pg "$PG_START" >/dev/null
psql -h 127.0.0.1 -p $PG_PORT -U postgres -qc 'CREATE DATABASE switchboard' postgres
PG_VERSION=$(psql -h 127.0.0.1 -p $PG_PORT -U postgres -Atc 'SHOW server_version' postgres)

log "starting nginx on $NGINX_PORT"
sed -e "s/server 127.0.0.1:3001/server 127.0.0.1:$PORT_A/" -e "s/server 127.0.0.1:3002/server 127.0.0.1:$PORT_B/" \
    -e "s/listen 8080;/listen 127.0.0.1:$NGINX_PORT;/" -e 's/worker_connections 8192;/worker_connections 16384;/' \
    -e 's/^worker_processes 1;/worker_processes 1;\nworker_rlimit_nofile 20000;/' \
    "$ROOT/examples/nginx/nginx.conf" >"$OUT/nginx/nginx.conf"
nginx -p "$OUT/nginx" -c "$OUT/nginx/nginx.conf" -e "$OUT/logs/nginx.log" 2>>"$OUT/logs/nginx.log" \
  || die "nginx did not start; see $OUT/logs/nginx.log"

STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
COMMIT="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src entity migration 2>/dev/null || echo ', server code modified')"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$SECONDS
log "running the harness"
REL_OUT=$OUT REL_BIN=$BIN REL_URL="http://127.0.0.1:$NGINX_PORT" \
  REL_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/switchboard" \
  REL_REDIS_URL="redis://127.0.0.1:$REDIS_PORT" REL_REDIS_PORT=$REDIS_PORT REL_REDIS_START="$REDIS_START" \
  REL_PG_STOP="$(pg_cmd "$PG_BIN/pg_ctl -D '$PGDATA' -m fast -w stop")" \
  REL_PG_START="$(pg_cmd "$PG_START")" \
  REL_PORT_A=$PORT_A REL_PORT_B=$PORT_B \
  node "$HERE/harness.mjs" 2> >(tee "$OUT/logs/harness.log" >&2) &
HARNESS_PID=$!
wait $HARNESS_PID
HARNESS_PID=

cat >"$OUT/run.json" <<EOF
{"started": "$STARTED", "elapsedS": $((SECONDS - T0)), "commit": "$COMMIT", "loadBefore": "$LOAD_BEFORE",
 "loadAfter": "$(cut -d' ' -f1-3 /proc/loadavg)", "postgres": "$PG_VERSION", "redis": "$(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')",
 "nginx": "$(nginx -v 2>&1 | sed 's/.*nginx\///')", "node": "$(node --version)", "nofile": "$(ulimit -n)",
 "cpu": "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')", "cores": $(nproc),
 "memGiB": $(awk '/MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo), "kernel": "$(uname -r)"}
EOF
node "$HERE/report.mjs" "$OUT/results.json" "$REPORT"
log "done: $REPORT"
