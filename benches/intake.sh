#!/usr/bin/env bash
# What strangers can make the server hold (issue 34, item 1): 40 connections without a token
# each send all but 1 KB of a body and stall, against this build and a baseline binary
# (BASELINE_BIN, e.g. a build of the commit before the fix), one server at a time, each on its
# own embedded PostgreSQL. Two attacks: gRPC-Web over HTTP/1.1 (22 MB bodies, GetMe) and REST
# (4 MB bodies, POST /api/conversations).
#
#   BASELINE_BIN=/path/to/old/epop benches/intake.sh
#   CONNECTIONS=40 HOLD=15 BASELINE_BIN=... benches/intake.sh
#
# For each server and attack (a fresh server each time): RSS before, during (HOLD seconds in)
# and 3 s after the attack connections closed; how many attack connections the server still held open at HOLD; and
# the latency of an authenticated REST GetMe (median and max of 20 sequential calls) before
# and during the attack, and of /healthz during it.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${BASELINE_BIN:?set BASELINE_BIN to the epop binary to compare with}"
CONN=${CONNECTIONS:-40}
HOLD=${HOLD:-15}
target=${CARGO_TARGET_DIR:-target}
cargo build --release --locked --quiet --bin epop
work=$(mktemp -d)
chmod 755 "$work"
pid=
trap '[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; wait; rm -rf "$work"' EXIT

rss() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }

run() { # name binary port attack: a fresh server (and cluster) for each attack
  rm -rf "${work:?}/$1"
  mkdir -p "$work/$1"
  EPOP_LISTEN=127.0.0.1:$3 EPOP_DATA_DIR="$work/$1/data" EPOP_ADMIN_PASSWORD=bench-admin-password \
    EPOP_ACCESS_TOKEN_TTL=2h EPOP_AUTH_RATE_LIMIT=off EPOP_WRITE_RATE_LIMIT=off RUST_LOG=warn \
    "$2" >"$work/$1/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$3/readyz" >/dev/null 2>&1 && break; sleep 0.5; done
  token=$(curl -sf -X POST "http://127.0.0.1:$3/api/auth/login" -H 'content-type: application/json' \
    -d '{"email":"admin@epop.local","password":"bench-admin-password"}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])')
  python3 - "$1" "$4" "$3" "$pid" "$token" "$CONN" "$HOLD" <<'PY'
import http.client, socket, statistics, sys, threading, time
name, attack, port, pid, token, conns, hold = sys.argv[1:8]
port, conns, hold = int(port), int(conns), float(hold)

def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024

def timed(path, auth=True, n=20):
    took = []
    for _ in range(n):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        t = time.perf_counter()
        c.request("GET", path, headers={"authorization": f"Bearer {token}"} if auth else {})
        r = c.getresponse(); r.read(); c.close()
        assert r.status == 200, r.status
        took.append((time.perf_counter() - t) * 1000)
    return statistics.median(took), max(took)

if attack == "grpc-web":
    size = 22_000_000
    head = (f"POST /epop.v1.UserService/GetMe HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\n"
            f"Content-Length: {size}\r\n\r\n")
else:
    size = 4_000_000
    head = (f"POST /api/conversations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size}\r\n\r\n")
before = rss()
me_before = timed("/api/users/me")
socks, piece = [], b"x" * 65536
def attack_one():
    s = socket.create_connection(("127.0.0.1", port))
    socks.append(s)
    try:
        s.sendall(head.encode())
        left = size - 1024
        while left > 0:
            n = min(left, len(piece)); s.sendall(piece[:n]); left -= n
    except OSError:
        pass
threads = [threading.Thread(target=attack_one, daemon=True) for _ in range(conns)]
for t in threads: t.start()
time.sleep(hold)
during = rss()
me_during = timed("/api/users/me")
health = timed("/healthz", auth=False)
def still_open(s):
    # Reads what the server sent (an answer, then maybe its close) without waiting.
    s.setblocking(False)
    try:
        while True:
            if s.recv(65536) == b"":
                return False
    except BlockingIOError:
        return True
    except OSError:
        return False
open_ = sum(still_open(s) for s in socks)
for s in socks: s.close()
time.sleep(3)
after = rss()
print(f"{name:5} {attack:8} RSS MiB before {before:5} during {during:5} after {after:5} | "
      f"held open {open_:3}/{conns} | GetMe ms before {me_before[0]:6.1f} (max {me_before[1]:6.1f}) "
      f"during {me_during[0]:6.1f} (max {me_during[1]:6.1f}) | healthz ms during {health[0]:5.1f}")
PY
  kill -TERM "$pid"; wait "$pid" || true; pid=
}
for attack in grpc-web rest; do
  run this "$target/release/epop" 18197 $attack
  run base "$BASELINE_BIN" 18198 $attack
done
