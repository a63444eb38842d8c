#!/usr/bin/env bash
# The benchmark, in one command: builds the release binaries, runs every scenario of
# examples/loadgen against
#   switchboard-sqlite    Switchboard on a fresh SQLite file
#   switchboard-postgres  Switchboard on a fresh PostgreSQL database (created, then dropped)
#   socketioxide          the bare socketioxide server (examples/reference/socketioxide)
#   node                  the Node Socket.IO 4.8 server (examples/reference/node)
# with the server pinned to core 0 and the load generator to core 1, and writes BENCHMARKS.md.
#
# Settings (environment):
#   DATABASE_ADMIN_URL  PostgreSQL to create the database in (postgres://postgres@127.0.0.1:5432/postgres)
#   BENCH_DURATION      measured seconds per scenario (12); BENCH_WARMUP (2)
#   BENCH_IDLE          idle connections (19000)
#   BENCH_WAVE          clients of the reconnect wave, Switchboard only (19000); BENCH_WAVE_BACKLOG
#                       messages owed to each (3)
#   BENCH_TARGETS       which servers, space-separated (all four)
#   BENCH_PORT          first of four ports (3401)
#   BENCH_OUT           results and logs (target/bench); BENCH_REPORT the report (BENCHMARKS.md)
# `run.sh --report-only` writes BENCHMARKS.md again from the last run's results (after the
# analysis text changed, say) without running anything.
# Loopback only: every server listens on 127.0.0.1 and the load generator refuses anything else.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

ADMIN=${DATABASE_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DURATION=${BENCH_DURATION:-12}
WARMUP=${BENCH_WARMUP:-2}
IDLE=${BENCH_IDLE:-19000}
WAVE=${BENCH_WAVE:-19000}
WAVE_BACKLOG=${BENCH_WAVE_BACKLOG:-3}
TARGETS=${BENCH_TARGETS:-switchboard-sqlite switchboard-postgres socketioxide node}
PORT=${BENCH_PORT:-3401}
OUT=${BENCH_OUT:-$ROOT/target/bench}
REPORT=${BENCH_REPORT:-$ROOT/BENCHMARKS.md}
SERVER_CORE=0
LOADGEN_CORE=1
SECRET=bench-secret
# Generous limits so that the server's protection does not become what is measured: the
# per-user message bucket and the per-IP connection bucket are both far beyond any rate here.
SWITCHBOARD_ENV=(
  HOST=127.0.0.1
  JWT_SECRET=$SECRET
  LOG_LEVEL=warn
  INSTANCE_ID=bench
  RATE_LIMIT_MESSAGE_NEW=100000000/1s
  RATE_LIMIT_MAX_CONNECTIONS=100000000
  RATE_LIMIT_CONNECTION_WINDOW=1000
  MAX_GROUP_SIZE=2000
)

die() { echo "run.sh: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

for tool in taskset curl psql node npm cargo ss; do
  command -v "$tool" >/dev/null || die "$tool is required"
done
[ "$(nproc)" -ge 2 ] || die "needs two cores (server on core $SERVER_CORE, load generator on core $LOADGEN_CORE)"

# As many descriptors as allowed: 19,000 idle connections need as many on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if [ "$NOFILE" != unlimited ] && [ "$NOFILE" -lt $((IDLE + 200)) ]; then
  log "file limit $NOFILE is too low for $IDLE idle connections; using $((NOFILE - 200))"
  IDLE=$((NOFILE - 200))
fi
if [ "$NOFILE" != unlimited ] && [ "$NOFILE" -lt $((WAVE + 200)) ]; then
  log "file limit $NOFILE is too low for a wave of $WAVE clients; using $((NOFILE - 200))"
  WAVE=$((NOFILE - 200))
fi

mkdir -p "$OUT/logs"
RESULTS=$OUT/results.jsonl
WORK=$(mktemp -d /tmp/switchboard-bench.XXXXXX)
DB=sb_bench_$$
DB_CREATED=0
SERVER_PID=
FAILED=0

stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=
}

cleanup() {
  local status=$?
  stop_server
  if [ "$DB_CREATED" = 1 ]; then
    psql "$ADMIN" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 \
      || echo "run.sh: could not drop database $DB; drop it by hand" >&2
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { [ -z "$(ss -Htln "sport = :$1")" ]; }

# Waits until the server answers an Engine.IO handshake over polling (all three kinds do).
wait_ready() {
  local port=$1
  for _ in $(seq 300); do
    kill -0 "$SERVER_PID" 2>/dev/null || return 1
    curl -sf -o /dev/null "http://127.0.0.1:$port/socket.io/?EIO=4&transport=polling" && return 0
    sleep 0.1
  done
  return 1
}

# utime + stime of a process, in ticks.
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# Waits (up to 30 s) until the server used under 5% of a core for a second: work left over
# from one scenario (closing thousands of connections, delivery marks) must not count
# against the next.
wait_quiet() {
  local a b
  for _ in $(seq 30); do
    a=$(cpu_ticks "$SERVER_PID"); sleep 1; b=$(cpu_ticks "$SERVER_PID")
    [ $((b - a)) -lt 5 ] && return 0
  done
  log "server still busy after 30 s; going on"
}

start_server() {
  local label=$1 port=$2
  port_free "$port" || die "port $port is taken (set BENCH_PORT)"
  local logfile=$OUT/logs/$label.log
  case $label in
    switchboard-*)
      # From the scratch directory, so that no .env of the checkout is read.
      (cd "$WORK" && exec env "${SWITCHBOARD_ENV[@]}" PORT="$port" DATABASE_URL="$DATABASE_URL" \
        taskset -c $SERVER_CORE "$ROOT/target/release/switchboard") >>"$logfile" 2>&1 &
      ;;
    socketioxide)
      (exec env HOST=127.0.0.1 PORT="$port" taskset -c $SERVER_CORE "$ROOT/target/release/bare-socketioxide") \
        >>"$logfile" 2>&1 &
      ;;
    node)
      (cd "$ROOT/examples/reference/node" && exec env HOST=127.0.0.1 PORT="$port" \
        taskset -c $SERVER_CORE node server.mjs) >>"$logfile" 2>&1 &
      ;;
  esac
  SERVER_PID=$!
  wait_ready "$port" || die "$label did not start on port $port; see $logfile"
}

# Runs one scenario; its summary line goes to the results. A scenario that fails leaves its
# line (with "error") and the run goes on; the script fails at the end. Once the server has
# died, the remaining scenarios of that server are recorded as not run.
scenario() {
  local label=$1 port=$2 target=$3; shift 3
  if [ -z "$SERVER_PID" ]; then
    echo "{\"scenario\":\"$1\",\"label\":\"$label\",\"error\":\"not run: the server had died\"}" >>"$RESULTS"
    return 0
  fi
  log "$label: $*"
  local line
  if line=$(taskset -c $LOADGEN_CORE "$ROOT/target/release/loadgen" "$@" --target "$target" \
      --server "127.0.0.1:$port" --server-pid "$SERVER_PID" --label "$label" --jwt-secret "$SECRET" \
      2>>"$OUT/logs/loadgen-$label.log"); then
    :
  else
    FAILED=1
    log "$label: $1 failed (see $OUT/logs/loadgen-$label.log)"
  fi
  if [ -n "$line" ]; then
    echo "$line" >>"$RESULTS"
    echo "   ${line:0:300}" >&2
  fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    FAILED=1
    log "$label DIED during $1; see $OUT/logs/$label.log"
    echo "{\"scenario\":\"$1\",\"label\":\"$label\",\"error\":\"the server died during this scenario\"}" >>"$RESULTS"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
    return 0
  fi
  wait_quiet
}

run_target() {
  local label=$1 port=$2 target=switchboard
  case $label in socketioxide | node) target=bare ;; esac
  local timing=(--duration "$DURATION" --warmup "$WARMUP")
  # Idle first, on a fresh process, so that its memory reading is not inflated by what the
  # other scenarios leave in the allocator.
  start_server "$label" "$port"
  scenario "$label" "$port" "$target" idle --connections "$IDLE"
  stop_server
  start_server "$label" "$port"
  scenario "$label" "$port" "$target" ack-closed --connections 1000 "${timing[@]}"
  scenario "$label" "$port" "$target" ack-open --connections 1000 --rate 20000 "${timing[@]}" --drain 30
  scenario "$label" "$port" "$target" fanout --members 256 --senders 2 --window 16 "${timing[@]}"
  scenario "$label" "$port" "$target" fanout --members 1500 --senders 2 --window 16 "${timing[@]}"
  scenario "$label" "$port" "$target" reconnect-storm --workers 50 "${timing[@]}"
  # A reference server keeps no backlog to catch up: the wave is Switchboard's alone.
  if [ "$target" = switchboard ]; then
    scenario "$label" "$port" "$target" reconnect-wave --clients "$WAVE" --backlog "$WAVE_BACKLOG" \
      --connect-timeout 30
  fi
  stop_server
}

# Writes BENCHMARKS.md from $OUT/results.jsonl and $OUT/run.env.
write_report() {
  # shellcheck disable=SC1091
  . "$OUT/run.env"
  log "writing $REPORT"
  local tables
  tables=$("$ROOT/target/release/loadgen" report "$OUT/results.jsonl") || die "report failed"
  {
    cat <<EOF
# Benchmarks

Written by \`examples/bench/run.sh\` on $STARTED (commit $COMMIT), in $((ELAPSED / 60)) min $((ELAPSED % 60)) s.
Raw summaries: \`target/bench/results.jsonl\` (one JSON line per scenario and server).

## Machine and conditions

* $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') — $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r).
* Server pinned to core $SERVER_CORE, load generator to core $LOADGEN_CORE (\`taskset -c\`); one load-generator
  process per scenario, on one thread. Loopback only; clients spread over 16 source addresses
  (127.0.0.2–17). File limit: $NOFILE descriptors per process.
* PostgreSQL $PG_VERSION is the machine's own service (not pinned: its backends run on
  either core, beside the server or the load generator, so work Switchboard hands to
  PostgreSQL partly escapes the server's core); SQLite is a file in /tmp. Switchboard stores
  with \`synchronous=FULL\` (SQLite) and commits every message before acking it.
* Load average $LOAD_BEFORE at the start, $LOAD_AFTER at the end (2 means both cores busy; the
  release build that precedes the run counts in the first figure). The "cores" figures in each
  table show how busy each core was, by anyone; where a core is busier than the server or the
  load generator alone explains, something else ran there. Read ratios rather than absolute
  figures, and treat small differences as noise.
* Each scenario: ${WARMUP} s of warm-up, ${DURATION} s measured (reconnect storm included), then up to 10 s
  for what is still outstanding (open loop: up to 30 s, for as long as acks keep coming); idle:
  $IDLE connections, memory read 3 s after the last one. Latencies are exact percentiles over
  every message sent in the measured window; the open loop measures from when each message
  was *due*, not when it went out. The server is restarted after the idle scenario, and each
  scenario starts once the server has been quiet (under 5 % of a core) for a second.
* Switchboard's bench settings (everything else default): \`RATE_LIMIT_MESSAGE_NEW=100000000/1s\`,
  \`RATE_LIMIT_MAX_CONNECTIONS=100000000\` per \`RATE_LIMIT_CONNECTION_WINDOW=1000\` ms (both far
  above any rate here, so the limits are not what is measured), \`MAX_GROUP_SIZE=2000\`,
  \`LOG_LEVEL=warn\`. The reference servers run with their libraries' defaults (ping 25 s / 20 s,
  buffer 128 packets per socket) plus \`TCP_NODELAY\` (Node's HTTP server sets it by default; the
  bare socketioxide server sets it explicitly).
* Scenarios (\`examples/loadgen\`): **idle** N authenticated connections, server RSS per
  connection, then one acked probe per connection; **ack-closed** 1,000 connections, each
  sending \`message:new\` (100 bytes of content) into its own chat (Switchboard: a note-to-self
  conversation; reference servers: a room nobody joined) and waiting for the ack;
  **ack-open** the same at a fixed 20,000 messages/s, skipping (and counting) sends while
  20,000 are unacked; **fan-out** a group of 256 / 1,500 members all connected, 2 senders, at
  most 16 messages in flight (sent, not yet acked and received by everyone); **reconnect
  storm** 50 clients that connect, send one message at once, wait for its ack and disconnect,
  over and over; **reconnect wave** (Switchboard only) $WAVE clients, each in a direct chat
  with one sender, all disconnect, the sender writes $WAVE_BACKLOG messages into every chat,
  then all reconnect at once (a failed attempt retries after 200 ms): the time until every
  client is connected and has its whole backlog. Every message is counted by its tempId:
  *lost* = never acked / never delivered, *dup* = acked or delivered twice.

EOF
    echo "$tables"
    if [ -f "$ROOT/examples/bench/analysis.md" ]; then
      echo
      cat "$ROOT/examples/bench/analysis.md"
    fi
  } >"$REPORT"
}

if [ "${1:-}" = --report-only ]; then
  { [ -f "$OUT/results.jsonl" ] && [ -f "$OUT/run.env" ]; } || die "no results in $OUT to report"
  [ -x "$ROOT/target/release/loadgen" ] || cargo build --release -q -p loadgen
  write_report
  exit 0
fi

: >"$RESULTS"
log "building release binaries"
cargo build --release -q -p switchboard -p loadgen
# The bare reference server is a workspace of its own: it builds engineioxide as published, not
# the copy Switchboard patches (vendor/README.md). Same target directory, so its binary sits
# beside the others.
cargo build --release -q --manifest-path examples/reference/socketioxide/Cargo.toml --target-dir "$ROOT/target"
(cd examples/reference/node && npm ci --no-audit --no-fund --silent)

STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
COMMIT="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src entity migration 2>/dev/null || echo ', server code modified')"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$SECONDS
i=0
for label in $TARGETS; do
  port=$((PORT + i)); i=$((i + 1))
  case $label in
    switchboard-sqlite)
      DATABASE_URL="sqlite://$WORK/bench.db?mode=rwc"
      ;;
    switchboard-postgres)
      psql "$ADMIN" -qc "CREATE DATABASE $DB" || die "cannot create database $DB at $ADMIN"
      DB_CREATED=1
      DATABASE_URL="${ADMIN%/*}/$DB"
      ;;
    socketioxide | node) DATABASE_URL= ;;
    *) die "unknown target $label" ;;
  esac
  run_target "$label" "$port"
  if [ "$label" = switchboard-postgres ]; then
    psql "$ADMIN" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" || die "cannot drop database $DB"
    DB_CREATED=0
  fi
done
ELAPSED=$((SECONDS - T0))
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# What the report needs to know about the run, so that --report-only can write it again.
cat >"$OUT/run.env" <<EOF
STARTED='$STARTED'
ELAPSED='$ELAPSED'
LOAD_BEFORE='$LOAD_BEFORE'
LOAD_AFTER='$LOAD_AFTER'
NOFILE='$NOFILE'
IDLE='$IDLE'
WAVE='$WAVE'
WAVE_BACKLOG='$WAVE_BACKLOG'
DURATION='$DURATION'
WARMUP='$WARMUP'
COMMIT='$COMMIT'
PG_VERSION='$(psql "$ADMIN" -Atc 'SHOW server_version' 2>/dev/null || echo '?')'
EOF
write_report
log "done in ${ELAPSED}s: $REPORT"
[ "$FAILED" = 0 ] || die "some scenarios failed; see $OUT/logs"
