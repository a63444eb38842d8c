#!/usr/bin/env bash
# The Redis bus's cost, on one instance: REDIS_URL set, so every event also crosses the bus and
# every ack waits for it; SQLite; closed-loop acks (1,000 connections) and fan-out to 256.
#   examples/bench/bus.sh <switchboard binary> <label>
# Needs Redis on 127.0.0.1:6379 (a prefix of its own) and target/release/loadgen
# (`cargo build --release -p loadgen`). Prints loadgen's summary lines and how often an ack
# went out without the bus's confirmation.
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=$1; LABEL=$2; PORT=${PORT:-3471}
LOADGEN=${LOADGEN:-$PWD/target/release/loadgen}
DIR=$(mktemp -d)
env HOST=127.0.0.1 PORT=$PORT JWT_SECRET=bench-secret LOG_LEVEL=warn INSTANCE_ID=busbench \
  RATE_LIMIT_MESSAGE_NEW=100000000/1s RATE_LIMIT_MAX_CONNECTIONS=100000000 RATE_LIMIT_CONNECTION_WINDOW=1000 \
  MAX_GROUP_SIZE=2000 DATABASE_URL="sqlite://$DIR/db.sqlite?mode=rwc" REDIS_URL=redis://127.0.0.1:6379 \
  REDIS_PREFIX="busbench-$$-$LABEL:" "$BIN" > "$DIR/server.log" 2>&1 &
PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
for scen in "ack-closed --connections 1000" "fanout --members 256 --senders 2"; do
  "$LOADGEN" $scen --duration ${DUR:-10} --warmup 2 --drain 10 --server 127.0.0.1:$PORT --server-pid $PID --label "$LABEL" --jwt-secret bench-secret 2>>"$DIR/loadgen.log"
done
grep -c "did not confirm" "$DIR/server.log" | sed "s/^/$LABEL bus-timeouts: /"
kill $PID; wait $PID 2>/dev/null; rm -rf "$DIR"
