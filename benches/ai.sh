#!/usr/bin/env bash
# Streamed AI answers: the latency EPOP adds between a provider's chunk and its arrival at
# the client, and server memory per open answer stream, in one run:
#
#   benches/ai.sh
#   STREAMS=1,100,200,500 SECONDS_PER_RUN=10 EVERY_MS=2 benches/ai.sh
#
# 1. Starts the fake provider of `ai-load fake` (a delta every EVERY_MS ms, 200 per answer,
#    each carrying the time it was written) and a release `epop` on a fresh database pointed
#    at it (limits raised so that the load is not refused).
# 2. For each stream count: `ai-load run` reads that many answers at once, asking again
#    when one ends, for SECONDS_PER_RUN: straight from the fake (`direct`, the baseline),
#    then through EPOP over gRPC and over SSE. Each delta's delay is its read time minus
#    its write time; EPOP's addition is its p50/p99 minus the baseline's.
# 3. Memory, measured first on the fresh server: its RSS with no stream, then while
#    MEM_STREAMS (500) answers stream (sampled mid-run): the growth per open answer stream.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
STREAMS=${STREAMS:-1,100,200,500}
SECS=${SECONDS_PER_RUN:-10}
EVERY_MS=${EVERY_MS:-2}
MEM_STREAMS=${MEM_STREAMS:-500}
target=${CARGO_TARGET_DIR:-target}
cargo build --release --locked --quiet --bin epop --bin ai-load

bench_setup epop_ai_bench
ulimit -n 65536 2>/dev/null || true

fake_port=18291
port=18290
"$target/release/ai-load" fake --port "$fake_port" --every "$EVERY_MS" &
pids+=("$!")
DATABASE_URL="$db_url" EPOP_LISTEN=127.0.0.1:$port EPOP_DATA_DIR="$work/data" \
  EPOP_ADMIN_PASSWORD=bench-admin-password EPOP_AI_BASE_URL="http://127.0.0.1:$fake_port/v1" \
  EPOP_AI_MODEL=fake EPOP_AI_REQUESTS_PER_MINUTE=1000000 EPOP_AI_MAX_CONCURRENT=100000 \
  EPOP_DB_POOL_SIZE=32 EPOP_AUTH_RATE_LIMIT=off EPOP_WRITE_RATE_LIMIT=off "$target/release/epop" >"$work/epop.log" 2>&1 &
epop_pid=$!
pids+=("$epop_pid")
base=http://127.0.0.1:$port
for _ in $(seq 1 120); do
  curl -sf "$base/readyz" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -sf "$base/readyz" >/dev/null
token=$(curl -sf -X POST "$base/api/auth/login" -d '{"email":"admin@epop.local","password":"bench-admin-password"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])')
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$epop_pid/status"; }

# Memory per open answer stream, first (on a fresh server, whose heap no earlier run grew):
# RSS idle, then mid-way through MEM_STREAMS answers.
idle=$(rss_kib)
"$target/release/ai-load" run --url "$base" --token "$token" --mode grpc --streams "$MEM_STREAMS" \
  --seconds "$SECS" >/dev/null &
load=$!
sleep $((SECS / 2))
busy=$(rss_kib)
wait "$load"
python3 -c "import sys; idle, busy, n = map(int, sys.argv[1:]); print(f'server RSS: {idle/1024:.1f} MiB idle, {busy/1024:.1f} MiB with {n} answers streaming: {(busy-idle)/n:.1f} KiB per open answer stream')" \
  "$idle" "$busy" "$MEM_STREAMS"

echo "AI answer streams: a delta every ${EVERY_MS} ms per stream, ${SECS} s per run"
IFS=, read -ra counts <<<"$STREAMS"
for n in "${counts[@]}"; do
  direct=$("$target/release/ai-load" run --url "http://127.0.0.1:$fake_port" --mode direct --streams "$n" --seconds "$SECS")
  grpc=$("$target/release/ai-load" run --url "$base" --token "$token" --mode grpc --streams "$n" --seconds "$SECS")
  sse=$("$target/release/ai-load" run --url "$base" --token "$token" --mode sse --streams "$n" --seconds "$SECS")
  printf '%s\n%s\n%s\n' "$direct" "$grpc" "$sse" | python3 -c '
import re, sys
n = sys.argv[1]
rows = [re.search(r"deltas (\d+) \((\d+)/s\) p50 ([\d.]+) ms p99 ([\d.]+) ms", l).groups() for l in sys.stdin]
(dn, drate, d50, d99), *rest = rows
print(f"{n:>4} streams  direct (no EPOP): p50 {float(d50):6.2f} ms  p99 {float(d99):6.2f} ms  {drate}/s deltas")
for name, (cnt, rate, p50, p99) in zip(["gRPC", "SSE "], rest):
    print(f"{n:>4} streams  {name} via EPOP:    p50 {float(p50):6.2f} ms  p99 {float(p99):6.2f} ms  {rate}/s deltas;"
          f"  added p50 {float(p50) - float(d50):6.2f} ms  p99 {float(p99) - float(d99):6.2f} ms")
' "$n"
done

