#!/usr/bin/env bash
# Notifications under a burst (issue 37): a 200-member group where every member has a Web
# Push subscription at the fake push service (tests/push/fake_push.py, which verifies VAPID
# and decrypts each push); one member sends a burst of @all mentions while another sends
# plain messages every 20 ms to a small group, as in a window before the burst (the same
# run's baseline). Prints those sends' latencies with and without the burst, the mentions'
# own, and the time until the last push reached the fake. EPOP_PUSH_DELAY is 0 here (the
# default 5 s delay would be most of the figure): the worker's own time is what is measured.
#   MEMBERS=200 MESSAGES=20 benches/notifications.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
MEMBERS=${MEMBERS:-200}
MESSAGES=${MESSAGES:-20}
target=${CARGO_TARGET_DIR:-target}
cargo build --release --locked --quiet --bin epop
ensure_push_venv

bench_setup epop_notify_bench
"$EPOP_TEST_PYTHON" tests/push/fake_push.py >"$work/fake.out" &
pids+=("$!")
for _ in $(seq 1 50); do grep -q listening "$work/fake.out" 2>/dev/null && break; sleep 0.1; done
fake=http://127.0.0.1:$(awk '{print $2}' "$work/fake.out")
port=18390
DATABASE_URL="$db_url" EPOP_LISTEN=127.0.0.1:$port EPOP_DATA_DIR="$work/data" \
  EPOP_ADMIN_PASSWORD=bench-admin-password EPOP_PUSH_DELAY=0s EPOP_PUSH_ALLOW_INSECURE=true EPOP_DB_POOL_SIZE=16 \
  EPOP_AUTH_RATE_LIMIT=off EPOP_WRITE_RATE_LIMIT=off "$target/release/epop" >"$work/epop.log" 2>&1 &
pids+=("$!")
base=http://127.0.0.1:$port
for _ in $(seq 1 120); do
  curl -sf "$base/readyz" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -sf "$base/readyz" >/dev/null
python3 benches/notify_burst.py "$base" bench-admin-password "$fake" "$MEMBERS" "$MESSAGES"
