#!/usr/bin/env bash
# The CPU budget of one reconnect, in instructions (valgrind's callgrind): repeatable on a busy
# machine, where wall-clock figures are not. Runs the release server on a fresh SQLite file
# under callgrind, drives N reconnect cycles of one authenticated user who has three
# conversations and owes nothing (examples/bench/connect-cycles.mjs), and folds the profile
# into stages (examples/bench/callgrind_stages.py).
#
# The driver zeroes the counters after its set-up and warm-up, dumps them after the N cycles,
# then dumps an idle stretch of the same length: per reconnect = (cycles - idle) / N.
#
# Settings (environment):
#   CALLGRIND_CYCLES  reconnects measured (100)
#   CALLGRIND_OUT     where the profiles and the report go (target/callgrind)
#   CALLGRIND_BUILD   0 to use target/release/switchboard as it is (default: build it, with
#                     line tables: CARGO_PROFILE_RELEASE_DEBUG=line-tables-only, which changes
#                     no code generation, only what callgrind can name)
#   CALLGRIND_PORT    the server's port (3499)
#   CALLGRIND_BIN     the server binary to measure (target/release/switchboard)
# Prints the stage table (Markdown) and writes $CALLGRIND_OUT/stages.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
CYCLES=${CALLGRIND_CYCLES:-100}
OUT=${CALLGRIND_OUT:-$ROOT/target/callgrind}
PORT=${CALLGRIND_PORT:-3499}
SECRET=callgrind-secret

die() { echo "callgrind.sh: $*" >&2; exit 1; }
for tool in valgrind callgrind_annotate callgrind_control node npm curl python3; do
  command -v "$tool" >/dev/null || die "$tool is required"
done

if [ "${CALLGRIND_BUILD:-1}" != 0 ] && [ -z "${CALLGRIND_BIN:-}" ]; then
  echo "== building the release server with line tables" >&2
  CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release -q -p switchboard
fi
BIN=${CALLGRIND_BIN:-$ROOT/target/release/switchboard}
[ -x "$BIN" ] || die "no $BIN"
[ -d examples/bench/node_modules ] || (cd examples/bench && npm ci --no-audit --no-fund --silent)

mkdir -p "$OUT"
rm -f "$OUT"/callgrind.out*
WORK=$(mktemp -d /tmp/switchboard-callgrind.XXXXXX)
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== starting the server under callgrind (port $PORT)" >&2
# From the scratch directory, so that no .env of the checkout is read. Generous limits: the
# per-IP connection limiter must not be what is measured.
(cd "$WORK" && exec env HOST=127.0.0.1 PORT="$PORT" JWT_SECRET=$SECRET LOG_LEVEL=warn \
  DATABASE_URL="sqlite://$WORK/cg.db?mode=rwc" INSTANCE_ID=callgrind SOCKETIO_PING_INTERVAL=1000 \
  RATE_LIMIT_MAX_CONNECTIONS=100000000 RATE_LIMIT_CONNECTION_WINDOW=1000 \
  valgrind --tool=callgrind --fair-sched=try --dump-instr=no \
  --callgrind-out-file="$OUT/callgrind.out" "$BIN") >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1200); do
  kill -0 "$SERVER_PID" 2>/dev/null || die "the server died; see $OUT/server.log"
  curl -sf -o /dev/null "http://127.0.0.1:$PORT/socket.io/?EIO=4&transport=polling" && break
  sleep 0.25
done
curl -sf -o /dev/null "http://127.0.0.1:$PORT/health" || die "the server did not start; see $OUT/server.log"

echo "== $CYCLES reconnect cycles" >&2
RESULT=$(cd examples/bench && HOST=127.0.0.1 node connect-cycles.mjs "http://127.0.0.1:$PORT" "$SECRET" \
  --cycles "$CYCLES" --pid "$SERVER_PID")
echo "$RESULT" >"$OUT/cycles.json"
kill "$SERVER_PID" 2>/dev/null || true
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=

CYCLES_FILE=$OUT/callgrind.out.1
IDLE_FILE=$OUT/callgrind.out.2
[ -f "$CYCLES_FILE" ] && [ -f "$IDLE_FILE" ] || die "no dumps in $OUT (callgrind_control failed?)"
python3 examples/bench/callgrind_stages.py --cycles "$CYCLES" --idle "$IDLE_FILE" "$CYCLES_FILE" \
  --json "$OUT/stages.json" --commit "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo '+')"
