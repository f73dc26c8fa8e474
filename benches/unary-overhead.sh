#!/usr/bin/env bash
# Per-call overhead: an authenticated unary RPC that touches no database
# (ConversationService.OpenEventsSession), over native gRPC and over the REST edge
# (POST /api/events/session), against tonic's hello world (src/bin/greeter.rs: the Greeter
# of tonic's examples on `tonic::transport::Server`). Each server runs pinned to one core
# (SERVER_CPU) with one tokio worker; h2load runs pinned to the other (LOAD_CPU), one thread.
# Rounds are interleaved (greeter, EPOP gRPC, EPOP REST[, baseline gRPC, baseline REST]) so
# machine noise hits all alike; the report gives medians and ratios against the greeter.
#
#   benches/unary-overhead.sh                      # needs h2load (Debian: nghttp2-client)
#   BASELINE_BIN=/tmp/epop-before ROUNDS=5 SECONDS_PER_RUN=10 benches/unary-overhead.sh
#
# EPOP runs on its embedded PostgreSQL in a fresh data directory (DATABASE_URL, when set, is
# used instead), without Redis, with its default log level and the rate limits off (the
# load is one user far past any per-user limit).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECONDS_PER_RUN:-8}
ROUNDS=${ROUNDS:-5}
CONN=${CONNECTIONS:-8}
STREAMS=${STREAMS:-16}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
target=${CARGO_TARGET_DIR:-target}
cargo build --release --locked --quiet --bin epop --bin greeter
command -v h2load >/dev/null || { echo "h2load is missing (Debian: nghttp2-client)"; exit 1; }
work=$(mktemp -d)
chmod 755 "$work"
pids=()
trap 'for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"' EXIT

start_epop() { # name binary port
  mkdir -p "$work/$1"
  EPOP_LISTEN=127.0.0.1:$3 EPOP_DATA_DIR="$work/$1/data" EPOP_ADMIN_PASSWORD=bench-admin-password \
    EPOP_ACCESS_TOKEN_TTL=2h EPOP_AUTH_RATE_LIMIT=off EPOP_WRITE_RATE_LIMIT=off TOKIO_WORKER_THREADS=1 \
    taskset -c "$SERVER_CPU" "$2" >"$work/$1/server.log" 2>&1 &
  pids+=($!)
}
start_epop this "$target/release/epop" 18121
[ -n "${BASELINE_BIN:-}" ] && start_epop base "$BASELINE_BIN" 18122
TOKIO_WORKER_THREADS=1 taskset -c "$SERVER_CPU" "$target/release/greeter" 127.0.0.1:18120 >"$work/greeter.log" 2>&1 &
pids+=($!)

ready() { for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return; sleep 0.5; done; echo "server on $1 not ready"; exit 1; }
ready 18121
[ -n "${BASELINE_BIN:-}" ] && ready 18122
token=$(curl -sf -X POST http://127.0.0.1:18121/api/auth/login -H 'content-type: application/json' \
  -d '{"email":"admin@epop.local","password":"bench-admin-password"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])')
[ -n "${BASELINE_BIN:-}" ] && base_token=$(curl -sf -X POST http://127.0.0.1:18122/api/auth/login -H 'content-type: application/json' \
  -d '{"email":"admin@epop.local","password":"bench-admin-password"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])')

printf '\x00\x00\x00\x00\x00' >"$work/empty.grpc"            # an empty message, framed
printf '\x00\x00\x00\x00\x07\x0a\x05world' >"$work/hello.grpc" # HelloRequest { name: "world" }
printf '{}' >"$work/empty.json"

# h2load counts HTTP statuses, and gRPC errors are HTTP 200: check each gRPC call once.
grpc_ok() { # url body [token]
  curl -s --http2-prior-knowledge -o /dev/null -D "$work/trailers" -H 'content-type: application/grpc' \
    -H 'te: trailers' ${3:+-H "authorization: Bearer $3"} --data-binary @"$2" "$1"
  grep -qi '^grpc-status: *0' "$work/trailers" || { echo "gRPC $1 fails:"; cat "$work/trailers"; exit 1; }
}
grpc_ok http://127.0.0.1:18120/helloworld.Greeter/SayHello "$work/hello.grpc"
grpc_ok http://127.0.0.1:18121/epop.v1.ConversationService/OpenEventsSession "$work/empty.grpc" "$token"
[ -n "${BASELINE_BIN:-}" ] && grpc_ok http://127.0.0.1:18122/epop.v1.ConversationService/OpenEventsSession "$work/empty.grpc" "$base_token"

rate() { sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' "$1"; }
load() { # out url [h2load options]
  local out=$1 url=$2; shift 2
  taskset -c "$LOAD_CPU" h2load -t 1 -D "$SECS" -c "$CONN" -m "$STREAMS" "$@" "$url" >"$out"
  grep -q "status codes: [1-9][0-9]* 2xx" "$out" || { cat "$out"; exit 1; }
  rate "$out"
}
grpc() { load "$work/out.txt" "$1" -d "$2" -H 'content-type: application/grpc' -H 'te: trailers' ${3:+-H "authorization: Bearer $3"}; }
rest() { load "$work/out.txt" "$1" -d "$work/empty.json" -H 'content-type: application/json' -H "authorization: Bearer $2"; }

declare -A r
for round in $(seq 1 "$ROUNDS"); do
  r[greeter]+="$(grpc http://127.0.0.1:18120/helloworld.Greeter/SayHello "$work/hello.grpc") "
  r[grpc]+="$(grpc http://127.0.0.1:18121/epop.v1.ConversationService/OpenEventsSession "$work/empty.grpc" "$token") "
  r[rest]+="$(rest http://127.0.0.1:18121/api/events/session "$token") "
  if [ -n "${BASELINE_BIN:-}" ]; then
    r[base_grpc]+="$(grpc http://127.0.0.1:18122/epop.v1.ConversationService/OpenEventsSession "$work/empty.grpc" "$base_token") "
    r[base_rest]+="$(rest http://127.0.0.1:18122/api/events/session "$base_token") "
  fi
  echo "round $round done" >&2
done

python3 - "${r[greeter]}" "${r[grpc]}" "${r[rest]}" "${r[base_grpc]:-}" "${r[base_rest]:-}" "$CONN" "$STREAMS" "$SECS" <<'PY'
import statistics, sys
greeter, grpc, rest, base_grpc, base_rest = ([float(x) for x in s.split()] for s in sys.argv[1:6])
conn, streams, secs = sys.argv[6:9]
print(f"one core per server, one tokio worker; h2load -t 1 -c {conn} -m {streams}, {secs} s runs; medians of {len(greeter)} interleaved rounds")
rows = [("tonic hello world (greeter), SayHello", greeter), ("EPOP gRPC, OpenEventsSession", grpc),
        ("EPOP REST, POST /api/events/session", rest)]
if base_grpc:
    rows += [("baseline gRPC, OpenEventsSession", base_grpc), ("baseline REST, POST /api/events/session", base_rest)]
g = statistics.median(greeter)
print(f"{'case':<44} {'req/s':>9} {'/greeter':>9}   rounds")
for name, xs in rows:
    m = statistics.median(xs)
    print(f"{name:<44} {m:>9.0f} {m/g:>8.0%}   {' '.join(f'{x:.0f}' for x in xs)}")
print(f"EPOP REST / EPOP gRPC: {statistics.median(rest)/statistics.median(grpc):.0%}")
if base_grpc:
    print(f"EPOP gRPC / baseline gRPC: {statistics.median(grpc)/statistics.median(base_grpc):.2f}x; "
          f"REST: {statistics.median(rest)/statistics.median(base_rest):.2f}x")
PY
