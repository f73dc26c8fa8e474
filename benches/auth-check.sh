#!/usr/bin/env bash
# What the per-call session check costs: the same authenticated unary RPCs against this
# build and against a baseline binary (BASELINE_BIN, e.g. a build of the commit before the
# check), each server on its own embedded PostgreSQL, in interleaved rounds with one load
# generator (h2load over HTTP/2 cleartext), so machine noise hits both alike.
#
#   BASELINE_BIN=/path/to/old/epop benches/auth-check.sh      # needs h2load (nghttp2-client)
#   SECONDS_PER_RUN=10 CONNECTIONS=8 STREAMS=8 ROUNDS=5 BASELINE_BIN=... benches/auth-check.sh
#
# Cases: ConversationService.OpenEventsSession (authenticated, touches no database: the
# token check, the session check and the protocol alone) and UserService.GetMe (the same
# plus two queries), over native gRPC; and unary latency (h2load's mean and max of one
# connection, one stream) for GetMe. Prints the median of the rounds for each server and
# the ratio this/baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${BASELINE_BIN:?set BASELINE_BIN to the epop binary to compare with}"
SECS=${SECONDS_PER_RUN:-10}
CONN=${CONNECTIONS:-8}
STREAMS=${STREAMS:-8}
ROUNDS=${ROUNDS:-5}
target=${CARGO_TARGET_DIR:-target}
cargo build --release --locked --quiet --bin epop
work=$(mktemp -d)
chmod 755 "$work"
pids=()
trap 'for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait; rm -rf "$work"' EXIT

start() { # name binary port
  mkdir -p "$work/$1"
  EPOP_LISTEN=127.0.0.1:$3 EPOP_DATA_DIR="$work/$1/data" EPOP_ADMIN_PASSWORD=bench-admin-password \
    EPOP_ACCESS_TOKEN_TTL=2h EPOP_AUTH_RATE_LIMIT=off EPOP_WRITE_RATE_LIMIT=off RUST_LOG=warn \
    "$2" >"$work/$1/server.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$3/readyz" >/dev/null 2>&1 && break; sleep 0.5; done
  curl -sf -X POST "http://127.0.0.1:$3/api/auth/login" -H 'content-type: application/json' \
    -d '{"email":"admin@epop.local","password":"bench-admin-password"}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])' >"$work/$1/token"
}
start this "$target/release/epop" 18097
start base "$BASELINE_BIN" 18098
printf '\x00\x00\x00\x00\x00' >"$work/empty.grpc"

rate() { sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' "$1"; }
# h2load's "time for request:  min max mean sd" line: mean and max, in microseconds.
latency() {
  python3 - "$1" <<'PY'
import re, sys
line = next(l for l in open(sys.argv[1]) if l.startswith("time for request:"))
def us(v):
    n, unit = re.match(r"([0-9.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]
parts = line.split()[3:]
print(f"{us(parts[2]):.0f} {us(parts[1]):.0f}")
PY
}
h2() { # server port path conns streams out
  h2load -D "$SECS" -c "$4" -m "$5" -H "authorization: Bearer $(cat "$work/$1/token")" \
    -d "$work/empty.grpc" -H 'content-type: application/grpc' -H 'te: trailers' \
    "http://127.0.0.1:$2$3" >"$6"
  grep -q "status codes: [1-9][0-9]* 2xx" "$6" || { cat "$6"; exit 1; }
}

declare -A results
for round in $(seq 1 "$ROUNDS"); do
  for server in this base; do
    port=$([ $server = this ] && echo 18097 || echo 18098)
    h2 $server $port /epop.v1.ConversationService/OpenEventsSession "$CONN" "$STREAMS" "$work/o.txt"
    results[$server,open]+="$(rate "$work/o.txt") "
    h2 $server $port /epop.v1.UserService/GetMe "$CONN" "$STREAMS" "$work/g.txt"
    results[$server,getme]+="$(rate "$work/g.txt") "
    h2 $server $port /epop.v1.UserService/GetMe 1 1 "$work/l.txt"
    results[$server,lat]+="$(latency "$work/l.txt" | tr ' ' ,) "
  done
  echo "round $round done" >&2
done

python3 - "${results[this,open]}" "${results[base,open]}" "${results[this,getme]}" \
  "${results[base,getme]}" "${results[this,lat]}" "${results[base,lat]}" <<'PY'
import statistics, sys
a = sys.argv[1:]
f = lambda s: [float(x) for x in s.split()]
pairs = lambda s: [tuple(float(v) for v in x.split(",")) for x in s.split()]
print(f"{'case':<52} {'this':>10} {'baseline':>10} {'ratio':>7}")
for name, this, base in [
    ("OpenEventsSession req/s (no DB)", f(a[0]), f(a[1])),
    ("GetMe req/s", f(a[2]), f(a[3])),
]:
    t, b = statistics.median(this), statistics.median(base)
    print(f"{name:<52} {t:>10.0f} {b:>10.0f} {t/b:>7.2f}   (this {' '.join(f'{x:.0f}' for x in this)}; base {' '.join(f'{x:.0f}' for x in base)})")
lt, lb = pairs(a[4]), pairs(a[5])
for i, what in [(0, "mean"), (1, "max")]:
    t, b = statistics.median(x[i] for x in lt), statistics.median(x[i] for x in lb)
    print(f"{'GetMe latency, 1 connection, ' + what + ' (us)':<52} {t:>10.0f} {b:>10.0f} {t/b:>7.2f}")
PY
