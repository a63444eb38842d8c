#!/usr/bin/env bash
# The CPU budget of one reconnect, or of one persisted message, in instructions (valgrind's
# callgrind): repeatable on a busy machine, where wall-clock figures are not. Runs the release
# server on a fresh SQLite file under callgrind, drives the scenario, and folds the profile
# into stages (examples/bench/callgrind_stages.py).
#
# Scenarios (CALLGRIND_SCENARIO):
#   connect         (default) N reconnect cycles of one authenticated user who has three
#                   conversations and owes nothing (examples/bench/connect-cycles.mjs)
#   message         M persisted messages: C connections in a closed loop, each sending
#                   `message:new` with an ack into its own note-to-self conversation, like the
#                   benchmark's ack-closed in miniature, so that the writer forms batches
#                   (examples/bench/message-cycles.mjs)
#   message-direct  the same, each sender in a direct chat with a connected partner: every
#                   message is also delivered to one other socket and marked delivered
#
# The driver zeroes the counters after its set-up and warm-up, dumps them after the N cycles
# (M messages), then dumps an idle stretch of the same length: per reconnect (per message) =
# (dump - idle) / N (M).
#
# Settings (environment):
#   CALLGRIND_SCENARIO     connect, message or message-direct (connect)
#   CALLGRIND_CYCLES       reconnects measured (100)
#   CALLGRIND_MESSAGES     messages measured (2000)
#   CALLGRIND_CONNECTIONS  sending connections of the message scenarios (50)
#   CALLGRIND_OUT          where the profiles and the report go (target/callgrind)
#   CALLGRIND_BUILD        0 to use target/release/switchboard as it is (default: build it, with
#                          line tables: CARGO_PROFILE_RELEASE_DEBUG=line-tables-only, which
#                          changes no code generation, only what callgrind can name)
#   CALLGRIND_PORT         the server's port (3499)
#   CALLGRIND_BIN          the server binary to measure (target/release/switchboard)
# Prints the stage table (Markdown) and writes $CALLGRIND_OUT/stages.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
SCENARIO=${CALLGRIND_SCENARIO:-connect}
CYCLES=${CALLGRIND_CYCLES:-100}
MESSAGES=${CALLGRIND_MESSAGES:-2000}
CONNECTIONS=${CALLGRIND_CONNECTIONS:-50}
OUT=${CALLGRIND_OUT:-$ROOT/target/callgrind}
PORT=${CALLGRIND_PORT:-3499}
SECRET=callgrind-secret

die() { echo "callgrind.sh: $*" >&2; exit 1; }
case "$SCENARIO" in
  connect) EXTRA_ENV=() ;;
  # The per-user message bucket must not be what is measured (as in run.sh).
  message | message-direct) EXTRA_ENV=(RATE_LIMIT_MESSAGE_NEW=100000000/1s) ;;
  *) die "CALLGRIND_SCENARIO must be connect, message or message-direct, not $SCENARIO" ;;
esac
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
  RATE_LIMIT_MAX_CONNECTIONS=100000000 RATE_LIMIT_CONNECTION_WINDOW=1000 ${EXTRA_ENV[@]+"${EXTRA_ENV[@]}"} \
  valgrind --tool=callgrind --fair-sched=try --dump-instr=no \
  --callgrind-out-file="$OUT/callgrind.out" "$BIN") >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1200); do
  kill -0 "$SERVER_PID" 2>/dev/null || die "the server died; see $OUT/server.log"
  curl -sf -o /dev/null "http://127.0.0.1:$PORT/socket.io/?EIO=4&transport=polling" && break
  sleep 0.25
done
curl -sf -o /dev/null "http://127.0.0.1:$PORT/health" || die "the server did not start; see $OUT/server.log"

COMMIT="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo '+')"
if [ "$SCENARIO" = connect ]; then
  echo "== $CYCLES reconnect cycles" >&2
  RESULT=$(cd examples/bench && HOST=127.0.0.1 node connect-cycles.mjs "http://127.0.0.1:$PORT" "$SECRET" \
    --cycles "$CYCLES" --pid "$SERVER_PID")
  echo "$RESULT" >"$OUT/cycles.json"
else
  VARIANT=self
  [ "$SCENARIO" = message-direct ] && VARIANT=direct
  echo "== $MESSAGES messages ($VARIANT, $CONNECTIONS connections in a closed loop)" >&2
  RESULT=$(cd examples/bench && HOST=127.0.0.1 node message-cycles.mjs "http://127.0.0.1:$PORT" "$SECRET" \
    --messages "$MESSAGES" --connections "$CONNECTIONS" --variant "$VARIANT" --pid "$SERVER_PID")
  echo "$RESULT" >"$OUT/messages.json"
  echo "$RESULT" >&2
fi
kill "$SERVER_PID" 2>/dev/null || true
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=

DUMP_FILE=$OUT/callgrind.out.1
IDLE_FILE=$OUT/callgrind.out.2
[ -f "$DUMP_FILE" ] && [ -f "$IDLE_FILE" ] || die "no dumps in $OUT (callgrind_control failed?)"
if [ "$SCENARIO" = connect ]; then
  python3 examples/bench/callgrind_stages.py --cycles "$CYCLES" --idle "$IDLE_FILE" "$DUMP_FILE" \
    --json "$OUT/stages.json" --commit "$COMMIT"
else
  # The batches of the measured messages, from the database: a batch stamps all its messages
  # with one created_at (store::messages::append), and the measured tempIds start with RUN-m-.
  RUN=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["run"])' "$RESULT")
  BATCHES=$(python3 - "$WORK/cg.db" "$RUN" <<'PY'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
n, batches = db.execute("SELECT count(*), count(DISTINCT created_at) FROM messages WHERE temp_id LIKE ?",
                        (sys.argv[2] + "-m-%",)).fetchone()
print(batches if n else 0)
PY
  )
  python3 examples/bench/callgrind_stages.py --stages message --cycles "$MESSAGES" --idle "$IDLE_FILE" "$DUMP_FILE" \
    --batches "$BATCHES" --json "$OUT/stages.json" --commit "$COMMIT ($SCENARIO)"
fi
