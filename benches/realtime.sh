#!/usr/bin/env bash
# Real-time delivery across two instances behind Redis, and send throughput against the raw
# PostgreSQL ceiling, with group commit on and off, in one run:
#
#   benches/realtime.sh
#   RATES=50,100,200,400,800 SECONDS_PER_RATE=10 CLIENT_COUNTS=16,64 ROUNDS=3 benches/realtime.sh
#
# 1. Starts three release instances on one fresh database, sharing a Redis channel
#    (PostgreSQL and Redis as scripts/test finds or starts them): A (group commit, the
#    default), A1 (EPOP_SEND_BATCH_MAX=1: every send its own transaction, as before group
#    commit) and B, where the streams are.
# 2. rt-load setup: USERS users (1,000) in groups of 10, plus one group of 200.
# 3. rt-load latency, first with sends on A1, then on A: every user's event stream open on
#    B, messages sent at each of RATES (messages/s; 1 in 10 to the group of 200), so every
#    delivery crosses instances through Redis: p50/p99 send->receive, lost, duplicated, the
#    highest delivered rate with p99 < 50 ms, and the batch sizes at each rate (the
#    server's epop_send_batch_size histogram).
# 4. Send throughput for each of CLIENT_COUNTS (16, 64), interleaved ROUNDS times with the
#    same client count and duration: pgbench (prepared statements, as the server uses)
#    running benches/send.pgbench (the raw ceiling: the sequence update + message insert,
#    one message per transaction) and benches/send-full.pgbench (every statement of a lone
#    send), and rt-load throughput (SendMessage, closed loop) through A1 and through A;
#    medians and the ratios, and per round where the machine's CPU went per message (from /proc: the
#    instance sent to, PostgreSQL, the load generator, the rest) and how idle it was.
# 5. MarkRead throughput (rt-load reads), through A1 (EPOP_READ_BATCH_MAX=1: a transaction
#    per mark) and A (read positions batched), ROUNDS interleaved rounds at READ_CLIENTS (64)
#    clients while one member sends 100 messages/s into the same conversations: once with
#    every client in the group of 200 (the fan-in of read receipts on one conversation), once
#    spread over the groups of 10.
# 6. Chat (rt-load chat): CHAT_RATE (200) operations/s sent on A, every stream on B, three
#    phases of SECONDS_PER_RATE each: plain messages (the baseline), a mix with one
#    operation in four a thread reply and one in four a reaction, and plain messages with a
#    reaction storm (every member of the group of 200 reacting to one message within a
#    second): p50/p99 of message, reaction-event and AddReaction-call latency per phase.
# 7. STREAMS (10,000) idle streams on a fresh instance C (so that no earlier load sits in
#    its heap): server memory per stream (stream-rss).
#
# PARTS (latency,throughput,reads,chat,memory by default) picks the parts to run. BASELINE_BIN, an
# epop binary built from another commit, adds A0 (that binary, group commit on) to the
# throughput rounds: a change measured against the code before it, in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
RATES=${RATES:-50,100,200,400,600,800,1000,1200,1400,1600,2000,2400,2800,3200,3600,4000,4800}
SECS=${SECONDS_PER_RATE:-10}
CLIENT_COUNTS=${CLIENT_COUNTS:-16,64}
ROUNDS=${ROUNDS:-3}
USERS=${USERS:-1000}
STREAMS=${STREAMS:-10000}
READ_CLIENTS=${READ_CLIENTS:-64}
PARTS=${PARTS:-latency,throughput,reads,chat,memory}
CHAT_RATE=${CHAT_RATE:-200}
part() { [[ ",$PARTS," == *",$1,"* ]]; }
target=${CARGO_TARGET_DIR:-target}
cargo build --release --locked --quiet --bin epop --bin rt-load --bin stream-rss

bench_setup epop_bench
ensure_redis "${BENCH_REDIS_URL:-redis://127.0.0.1:6379}" 56380

start() {
  local port=$1 batch=${2:-256} pool=${3:-6} bin=${4:-$target/release/epop}
  EPOP_SEND_BATCH_MAX=$batch EPOP_READ_BATCH_MAX=$batch EPOP_DB_POOL_SIZE=$pool EPOP_MAX_STREAMS_PER_USER=100000 DATABASE_URL=$db_url REDIS_URL=$REDIS EPOP_REDIS_CHANNEL=epop:bench:$$ \
    EPOP_JWT_SECRET=a-benchmark-signing-key-of-32-bytes-or-more EPOP_LISTEN=127.0.0.1:$port \
    EPOP_DATA_DIR="$work/data-$port" EPOP_ADMIN_PASSWORD=bench-admin-password \
    EPOP_ACCESS_TOKEN_TTL=6h EPOP_AUTH_RATE_LIMIT=off EPOP_WRITE_RATE_LIMIT=off RUST_LOG=warn "$bin" >"$work/server-$port.log" 2>&1 &
  pids+=($!)
  pid_of[$port]=$!
  for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return; sleep 0.5; done
  echo "instance on $port did not start:"; cat "$work/server-$port.log"; exit 1
}
A=http://127.0.0.1:18111
B=http://127.0.0.1:18112
A1=http://127.0.0.1:18114
declare -A pid_of
start 18111
start 18112
# A transaction per send needs the default pool (16); the others use few connections, and
# pgbench's 64 must fit in PostgreSQL's default max_connections (100) beside them.
start 18114 1 16
A0=http://127.0.0.1:18115
[ -n "${BASELINE_BIN:-}" ] && start 18115 256 6 "$BASELINE_BIN"
echo "instances: A=$A (group commit) A1=$A1 (a transaction per send) B=$B (streams), PostgreSQL $PG_URL, Redis $REDIS; $(nproc) cores shared by everything"

"$target/release/rt-load" setup --url "$A" --admin-password bench-admin-password --users "$USERS" \
  --state "$work/state.json"
echo
for sender in A1 A; do
  part latency || continue
  echo "== send -> receive latency across instances (sent on $sender, delivered on B) =="
  "$target/release/rt-load" latency --send-url "${!sender}" --recv-url "$B" --state "$work/state.json" \
    --rates "$RATES" --seconds "$SECS" | tee "$work/latency-$sender.txt"
  echo
done
part latency && python3 - "$work/latency-A1.txt" "$work/latency-A.txt" <<'PY'
import re, sys
def read(path):
    text = open(path).read()
    best = re.search(r"nothing lost: (\d+) deliveries/s", text)
    at200 = re.search(r"^\s+200\s+\d+\s+[\d.]+\s+([\d.]+)", text, re.M)
    return (float(best.group(1)) if best else 0.0), (float(at200.group(1)) if at200 else float("nan"))
(b1, p1), (b, p) = read(sys.argv[1]), read(sys.argv[2])
print("latency summary, same run:")
print(f"  highest delivered rate with p99 < 50 ms: A1 {b1:.0f}, A {b:.0f} deliveries/s (A/A1 = {b / b1 if b1 else float('nan'):.2f}x)")
print(f"  p99 at 200 sends/s: A1 {p1:.1f} ms, A {p:.1f} ms")
PY
echo
part throughput && echo "== send throughput: SendMessage through A vs the raw PostgreSQL ceiling (pgbench) =="
"$PG_BIN/psql" "$db_url" -qc "CREATE TABLE bench_targets AS
  SELECT row_number() OVER (ORDER BY c.id) AS n, c.id AS conversation_id,
         (SELECT m.user_id FROM conversation_members m WHERE m.conversation_id = c.id LIMIT 1) AS sender_id
  FROM conversations c WHERE c.title LIKE 'bench ten %' ORDER BY c.id LIMIT 100" >/dev/null
groups=$("$PG_BIN/psql" "$db_url" -qAtc "SELECT count(*) FROM bench_targets")
bench_pg() {
  "$PG_BIN/pgbench" -n -M prepared -c "$clients" -j 2 -T "$SECS" -D groups="$groups" -f "$1" \
    "$db_url" >"$work/pgbench.txt" 2>&1 || { cat "$work/pgbench.txt" >&2; exit 1; }
  sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$work/pgbench.txt"
}
# CPU time (ticks) of each live process of a list, a "pid ticks" line each; the ticks spent
# between two such readings (a process that started between them counts whole, one that
# ended counts nothing); the machine's busy and idle ticks.
ticks() { local p; for p in "$@"; do awk '{print $1, $14 + $15}' "/proc/$p/stat" 2>/dev/null || true; done; }
spent() { awk 'NR == FNR { t[$1] = $2; next } { d += $2 - t[$1] } END { print d + 0 }' <(echo "$1") <(echo "$2"); }
machine() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8, $5 + $6}' /proc/stat; }
# bench_app NAME: closed-loop sends through instance NAME; prints messages/s, and appends
# where the machine's CPU went per message to cpu-$clients.txt.
bench_app() {
  local url=${!1} port
  port=${url##*:}
  "$target/release/rt-load" throughput --url "$url" --state "$work/state.json" \
    --clients "$clients" --seconds "$SECS" >"$work/app.txt" &
  local load=$! s0 p0 l0 o0 m0 s1 p1 l1 o1 m1
  others=$(for p in "${pids[@]}"; do [ "$p" != "${pid_of[$port]}" ] && echo "$p"; done; pgrep -x redis-server)
  l0=$(ticks $load) s0=$(ticks "${pid_of[$port]}") p0=$(ticks $(pgrep -x postgres)) o0=$(ticks $others) m0=$(machine)
  sleep "$((SECS - 1))"
  l1=$(ticks $load) s1=$(ticks "${pid_of[$port]}") p1=$(ticks $(pgrep -x postgres)) o1=$(ticks $others) m1=$(machine)
  wait "$load"
  sed -n 's/.*batches, mean \([0-9.]*\) sends.*/\1/p' "$work/app.txt" >>"$work/batch-$1-$clients.txt"
  local rate; rate=$(sed -n 's/^\([0-9.]*\) messages\/s.*/\1/p' "$work/app.txt")
  python3 - "$1" "$rate" "$((SECS - 1))" "$(spent "$s0" "$s1")" "$(spent "$p0" "$p1")" "$(spent "$l0" "$l1")" "$(spent "$o0" "$o1")" $m0 $m1 >>"$work/cpu-$clients.txt" <<'PY'
import sys
name, rate, secs = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
server, pg, load, others, b0, i0, b1, i1 = (int(x) for x in sys.argv[4:])
per = lambda t: t * 1e4 / (rate * secs)  # ticks are 1/100 s
print(f"  {name:2} {rate:6.0f} msg/s: CPU per message: server {per(server):3.0f} us, PostgreSQL {per(pg):3.0f} us, "
      f"load generator {per(load):3.0f} us, other instances and Redis {per(others):3.0f} us; machine idle {100 * (i1 - i0) / (b1 - b0 + i1 - i0):.0f}%")
PY
  echo "$rate"
}
for clients in ${CLIENT_COUNTS//,/ }; do
  part throughput || continue
  pg=() full=() one=() app=() base=()
  for _ in $(seq 1 "$ROUNDS"); do
    pg+=("$(bench_pg benches/send.pgbench)")
    one+=("$(bench_app A1)")
    [ -n "${BASELINE_BIN:-}" ] && base+=("$(bench_app A0)")
    app+=("$(bench_app A)")
    full+=("$(bench_pg benches/send-full.pgbench)")
  done
  python3 - "$clients" "$SECS" "${pg[*]}" "${full[*]}" "${one[*]}" "${app[*]}" "$(cat "$work/batch-A-$clients.txt")" <<'PY'
import statistics, sys
clients, secs = sys.argv[1], sys.argv[2]
runs = [[float(x) for x in a.split()] for a in sys.argv[3:7]]
batch = [float(x) for x in sys.argv[7].split()]
pm, fm, om, am = (statistics.median(r) for r in runs)
fmt = lambda r: " ".join(f"{x:.0f}" for x in r)
print(f"{clients} clients, {secs} s rounds, medians of {len(runs[0])} interleaved rounds")
print(f"pgbench, sequence update + insert:   {pm:8.0f} tx/s   ({fmt(runs[0])})")
print(f"pgbench, every statement of a send:  {fm:8.0f} tx/s   ({fmt(runs[1])})")
print(f"SendMessage, a transaction each (A1): {om:7.0f} msg/s  ({fmt(runs[2])})")
print(f"SendMessage, group commit (A):       {am:8.0f} msg/s  ({fmt(runs[3])}); mean batch {statistics.median(batch) if batch else 0:.1f} sends")
print(f"group commit / raw ceiling: {100 * am / pm:.0f}%;  a transaction each / raw ceiling: {100 * om / pm:.0f}%;  group commit / a transaction each: {am / om:.2f}x")
PY
  [ -n "${BASELINE_BIN:-}" ] && python3 - "${base[*]}" "${app[*]}" "$(cat "$work/batch-A0-$clients.txt")" <<'PY'
import statistics, sys
base, app = ([float(x) for x in a.split()] for a in sys.argv[1:3])
batch = [float(x) for x in sys.argv[3].split()]
bm, am = statistics.median(base), statistics.median(app)
print(f"SendMessage, BASELINE_BIN (A0):      {bm:8.0f} msg/s  ({' '.join(f'{x:.0f}' for x in base)}); mean batch {statistics.median(batch) if batch else 0:.1f} sends")
print(f"group commit, this build / BASELINE_BIN: {am / bm:.2f}x")
PY
  echo "where the CPU went, per round (server: the instance sent to; 2 cores = 200% busy):"
  cat "$work/cpu-$clients.txt"
  echo
done

if part reads; then
  echo "== MarkRead throughput: a transaction per mark (A1) vs read positions batched (A) =="
  echo "$READ_CLIENTS clients, $SECS s rounds, 100 sends/s into the same conversations, medians of $ROUNDS interleaved rounds"
  for where in big groups; do
    flag=(); [ "$where" = big ] && flag=(--big)
    for _ in $(seq 1 "$ROUNDS"); do
      for inst in A1 A; do
        "$target/release/rt-load" reads --url "${!inst}" --state "$work/state.json" "${flag[@]}" \
          --clients "$READ_CLIENTS" --seconds "$SECS" | tee -a "$work/reads-$where-$inst.txt" >&2
      done
    done
    python3 - "$where" "$work/reads-$where-A1.txt" "$work/reads-$where-A.txt" <<'PY'
import re, statistics, sys
where, paths = sys.argv[1], sys.argv[2:]
def rounds(path):
    return [(float(m.group(1)), m.group(2)) for m in re.finditer(r"^([\d.]+) marks/s .*?p99 ([\d.]+\w+);", open(path).read(), re.M)]
(one, app) = (rounds(p) for p in paths)
om, am = (statistics.median(r for r, _ in x) for x in (one, app))
label = "every client in the group of 200" if where == "big" else "clients spread over the groups of 10"
print(f"{label}:")
print(f"  a transaction per mark (A1): {om:7.0f} marks/s  ({' '.join(f'{r:.0f}' for r, _ in one)}); p99 {', '.join(p for _, p in one)}")
print(f"  batched (A):                 {am:7.0f} marks/s  ({' '.join(f'{r:.0f}' for r, _ in app)}); p99 {', '.join(p for _, p in app)}")
print(f"  batched / a transaction each: {am / om:.2f}x")
PY
  done
  echo
fi

if part chat; then
  echo "== chat: threads and reactions mixed in, and a reaction storm, against plain messages =="
  "$target/release/rt-load" chat --send-url "$A" --recv-url "$B" --state "$work/state.json" \
    --rate "$CHAT_RATE" --seconds "$SECS" | tee "$work/chat.txt"
  echo
fi

part memory || exit 0
echo
echo "== memory per idle event stream on a fresh instance C =="
start 18113 256 16
"$target/release/stream-rss" --url http://127.0.0.1:18113 --pid "${pids[${#pids[@]}-1]}" \
  --password bench-admin-password --streams "$STREAMS"
