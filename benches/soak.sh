#!/usr/bin/env bash
# A bounded soak: mixed traffic against one release instance behind Redis for MINUTES (5),
# to show flat memory and no errors:
#
#   benches/soak.sh
#   MINUTES=10 CLIENTS=16 STREAMS=100 USERS=200 benches/soak.sh
#   SOAK_SECONDS=60 SOAK_REDIS=off benches/soak.sh     # shorter, without Redis
#
# rt-load soak drives native gRPC (sends, history, profile, typing; STREAMS event streams
# open, every send fanned out to them through Redis), while a curl loop reads a REST route
# with the same users' tokens. Every EVERY seconds (30) it prints the calls, errors and
# events so far and the server's resident memory; at the end the RSS after the first
# interval (warm) against the last, the REST failures, and the server's own error counts
# from /metrics. Exits non-zero on any failed call.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
MINUTES=${MINUTES:-5}
CLIENTS=${CLIENTS:-16}
STREAMS=${STREAMS:-100}
USERS=${USERS:-200}
EVERY=${EVERY:-30}
target=${CARGO_TARGET_DIR:-target}
cargo build --release --locked --quiet --bin epop --bin rt-load

bench_setup epop_soak
ensure_redis "${BENCH_REDIS_URL:-redis://127.0.0.1:6379}" 56380

url=http://127.0.0.1:18131
# SOAK_REDIS=off: the in-process broker instead (to tell the two apart).
redis_env=(REDIS_URL="$REDIS")
[ "${SOAK_REDIS:-on}" = off ] && redis_env=()
env "${redis_env[@]}" DATABASE_URL="$db_url" EPOP_REDIS_CHANNEL=epop:soak:$$ \
  EPOP_LISTEN=127.0.0.1:18131 EPOP_DATA_DIR="$work/data" EPOP_ADMIN_PASSWORD=soak-admin-password \
  EPOP_ACCESS_TOKEN_TTL=6h EPOP_AUTH_RATE_LIMIT=off EPOP_WRITE_RATE_LIMIT=off RUST_LOG=warn \
  "$target/release/epop" >"$work/server.log" 2>&1 &
server=$!
pids+=($server)
for _ in $(seq 1 120); do curl -sf "$url/readyz" >/dev/null 2>&1 && break; sleep 0.5; done
"$target/release/rt-load" setup --url "$url" --admin-password soak-admin-password --users "$USERS" \
  --big-group 20 --state "$work/state.json"
token=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["users"][0][1])' "$work/state.json")

rss() { awk '/VmRSS/ {print $2}' "/proc/$server/status"; }
seconds=${SOAK_SECONDS:-$((MINUTES * 60))}
( end=$((SECONDS + seconds)); ok=0; bad=0
  while [ $SECONDS -lt $end ]; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $token" "$url/api/conversations")
    if [ "$code" = 200 ]; then ok=$((ok + 1)); else bad=$((bad + 1)); fi
  done
  echo "$ok $bad" >"$work/rest" ) &
rest=$!
( for _ in $(seq 1 $((seconds / EVERY))); do sleep "$EVERY"; echo "$(rss)" >>"$work/rss"; done ) &
sampler=$!
echo "soak: $MINUTES min, $CLIENTS gRPC workers, $STREAMS open streams, $USERS users, a REST loop; $(nproc) cores shared"
status=0
"$target/release/rt-load" soak --url "$url" --state "$work/state.json" --clients "$CLIENTS" \
  --streams "$STREAMS" --seconds "$seconds" --every "$EVERY" || status=$?
wait $rest $sampler || true
read -r rest_ok rest_bad <"$work/rest"
mapfile -t samples <"$work/rss"
echo "server RSS (KiB) every ${EVERY}s: ${samples[*]}"
first=${samples[0]}; last=${samples[-1]}; max=$(printf '%s\n' "${samples[@]}" | sort -n | tail -1)
python3 -c "import sys; f,l,m=map(int,sys.argv[1:4]); print(f'RSS after {sys.argv[4]}s {f/1024:.1f} MiB, at the end {l/1024:.1f} MiB (x{l/f:.2f}), highest {m/1024:.1f} MiB')" \
  "$first" "$last" "$max" "$EVERY"
echo "REST: $rest_ok answered 200, $rest_bad did not"
echo "server-side non-OK calls (/metrics):"
curl -s "$url/metrics" | grep '^epop_rpc_requests_total' | grep -v 'code="OK"' || echo "  none"
[ "$rest_bad" = 0 ] || status=1
exit $status
