#!/usr/bin/env bash
# Throughput of the same unary RPCs over native gRPC and over the REST edge, on one server,
# in one run, with one load generator for both (h2load, over HTTP/2 cleartext with the same
# connections and concurrency), so the difference is the server's protocol handling alone.
#
#   benches/rest-vs-grpc.sh            # needs h2load (Debian: nghttp2-client)
#   SECONDS_PER_RUN=10 CONNECTIONS=8 STREAMS=8 ROUNDS=3 benches/rest-vs-grpc.sh
#
# Runs are interleaved (gRPC, REST, gRPC, REST, ...) so machine noise hits both alike; the
# report gives the median of the rounds. The server is the release build on its embedded
# PostgreSQL in a fresh data directory.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECONDS_PER_RUN:-10}
CONN=${CONNECTIONS:-8}
STREAMS=${STREAMS:-8}
ROUNDS=${ROUNDS:-3}
target=${CARGO_TARGET_DIR:-target}
cargo build --release --locked --quiet --bin epop
work=$(mktemp -d)
chmod 755 "$work"
port=18095
base="http://127.0.0.1:$port"
EPOP_LISTEN=127.0.0.1:$port EPOP_DATA_DIR="$work/data" EPOP_ADMIN_PASSWORD=bench-admin-password \
  EPOP_ACCESS_TOKEN_TTL=2h EPOP_AUTH_RATE_LIMIT=off EPOP_WRITE_RATE_LIMIT=off RUST_LOG=warn "$target/release/epop" >"$work/server.log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 60); do curl -sf "$base/readyz" >/dev/null 2>&1 && break; sleep 0.5; done
token=$(curl -sf -X POST "$base/api/auth/login" -d '{"email":"admin@epop.local","password":"bench-admin-password"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])')
# An empty protobuf message in a gRPC frame: flag 0, length 0.
printf '\x00\x00\x00\x00\x00' >"$work/empty.grpc"
printf '{}' >"$work/empty.json"

# h2load counts HTTP statuses only, and gRPC errors are HTTP 200: check once that the gRPC
# call really succeeds (grpc-status 0 in its trailers).
grpc_ok() {
  curl -s --http2-prior-knowledge -o /dev/null -D "$work/trailers" -H 'content-type: application/grpc' \
    -H 'te: trailers' -H "authorization: Bearer $token" --data-binary @"$work/empty.grpc" "$base$1"
  grep -qi '^grpc-status: *0' "$work/trailers" || { echo "gRPC $1 fails:"; cat "$work/trailers"; exit 1; }
}
rate() { sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' "$1"; }
ok2xx() { sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' "$1"; }
h2() { h2load -D "$SECS" -c "$CONN" -m "$STREAMS" -H "authorization: Bearer $token" "$@"; }

run_case() {
  local name=$1 grpc_path=$2 rest_method=$3 rest_path=$4
  grpc_ok "$grpc_path"
  local g=() r=()
  for _ in $(seq 1 "$ROUNDS"); do
    h2 -d "$work/empty.grpc" -H 'content-type: application/grpc' -H 'te: trailers' "$base$grpc_path" >"$work/g.txt"
    if [ "$rest_method" = GET ]; then h2 "$base$rest_path" >"$work/r.txt"
    else h2 -d "$work/empty.json" -H 'content-type: application/json' "$base$rest_path" >"$work/r.txt"; fi
    if [ "$(ok2xx "$work/g.txt")" -eq 0 ] || [ "$(ok2xx "$work/r.txt")" -eq 0 ]; then
      cat "$work/g.txt" "$work/r.txt"; exit 1
    fi
    g+=("$(rate "$work/g.txt")"); r+=("$(rate "$work/r.txt")")
  done
  python3 - "$name" "${g[*]}" "${r[*]}" <<'PY'
import statistics, sys
name, g, r = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
gm, rm = statistics.median(g), statistics.median(r)
print(f"{name:<44} {gm:>10.0f} {rm:>10.0f} {100*rm/gm:>8.0f}%   "
      f"(gRPC {' '.join(f'{x:.0f}' for x in g)}; REST {' '.join(f'{x:.0f}' for x in r)})")
PY
}

echo "h2load -D $SECS -c $CONN -m $STREAMS, median of $ROUNDS interleaved rounds, $(nproc) cores shared by load generator and server"
printf '%-44s %10s %10s %9s\n' "RPC" "gRPC req/s" "REST req/s" "REST/gRPC"
run_case "UserService.GetMe (GET /api/users/me)" /epop.v1.UserService/GetMe GET /api/users/me
run_case "AuthService.Logout (POST /api/auth/logout)" /epop.v1.AuthService/Logout POST /api/auth/logout
