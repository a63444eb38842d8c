#!/usr/bin/env bash
# Cross-instance delivery latency: two release instances on one PostgreSQL and one Redis, a
# sender on the first and a receiver on the second. Needs PostgreSQL and Redis running.
#   DATABASE_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres)
#   REDIS_URL          (default redis://127.0.0.1:6379)
set -euo pipefail
cd "$(dirname "$0")/../.."
ADMIN=${DATABASE_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
REDIS=${REDIS_URL:-redis://127.0.0.1:6379}
DB=sb_bench_$$
cargo build --release -q
(cd examples/bench && npm install --no-audit --no-fund --silent)
psql "$ADMIN" -qc "CREATE DATABASE $DB"
BASE=${ADMIN%/*}
export DATABASE_URL="$BASE/$DB" REDIS_URL="$REDIS" REDIS_PREFIX="bench-$$:" JWT_SECRET=bench-secret \
  LOG_LEVEL=${LOG_LEVEL:-warn} RATE_LIMIT_MESSAGE_NEW=1000000/60s
cleanup() { kill $A $B 2>/dev/null || true; wait 2>/dev/null || true; psql "$ADMIN" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)"; }
trap cleanup EXIT
PORT=3101 INSTANCE_ID=a ./target/release/switchboard & A=$!
sleep 1
PORT=3102 INSTANCE_ID=b ./target/release/switchboard & B=$!
for port in 3101 3102; do
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.2; done
done
SENDER=$(./target/release/switchboard token bench-sender-$$)
RECEIVER=$(./target/release/switchboard token bench-receiver-$$)
for mode in "--rate 0 --messages 2000" "--rate 1000 --messages 5000"; do
  # shellcheck disable=SC2086
  node examples/bench/cross-instance-latency.mjs http://127.0.0.1:3101 http://127.0.0.1:3102 \
    "$SENDER" "$RECEIVER" "bench-receiver-$$" $mode
done
