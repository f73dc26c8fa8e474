#!/usr/bin/env bash
# File transfer through the local backend's signed URLs against a plain static file server,
# in one run:
#
#   benches/files.sh
#   SIZE_MIB=200 ROUNDS=3 benches/files.sh
#
# 1. Starts a release `epop` on its defaults (local file backend) on a fresh database, and
#    nginx (Debian's, installed when missing) serving and accepting (WebDAV PUT) files from a
#    directory on the same disk.
# 2. Each round: curl PUTs a SIZE_MIB file (random bytes) through a presigned upload URL,
#    then GETs it back through a presigned download URL (checked byte for byte once), and
#    does the same PUT and GET against nginx. Throughput is the file size over curl's
#    total time; the figures are medians over ROUNDS, and ratios epop/nginx. The default
#    server fsyncs an upload before it answers; nginx does not, so its baseline also gets
#    the time `sync FILE` then takes; a second server with EPOP_FILES_FSYNC=false is
#    compared with nginx as it is.
# 3. While each upload runs, the server's RSS is sampled every 20 ms: the growth over its
#    RSS before the upload (target < 32 MiB: the upload streams to disk).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
SIZE_MIB=${SIZE_MIB:-200}
ROUNDS=${ROUNDS:-3}
target=${CARGO_TARGET_DIR:-target}
cargo build --release --locked --quiet --bin epop
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

bench_setup epop_files_bench

port=18191
nofsync_port=18193
nginx_port=18192
# Two servers on the one database: the default (uploads fsynced before they are acknowledged)
# and EPOP_FILES_FSYNC=false.
start_epop() {
  DATABASE_URL="$db_url" EPOP_LISTEN=127.0.0.1:$1 EPOP_DATA_DIR="$work/data-$1" \
    EPOP_ADMIN_PASSWORD=bench-admin-password EPOP_FILES_MAX_BYTES=$(((SIZE_MIB + 1) << 20)) \
    EPOP_JWT_SECRET=bench-signing-key-of-at-least-32-bytes EPOP_FILES_FSYNC=$2 EPOP_WRITE_RATE_LIMIT=off EPOP_FILES_MAX_PENDING=0 EPOP_FILES_MAX_PENDING_BYTES=0 "$target/release/epop" >"$work/epop-$1.log" 2>&1 &
  pids+=("$!")
}
start_epop "$port" true
epop_pid=$!
start_epop "$nofsync_port" false

mkdir -p "$work/www" "$work/nginx"
cat >"$work/nginx/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
error_log $work/nginx/error.log;
pid $work/nginx/nginx.pid;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  sendfile on;
  server {
    listen 127.0.0.1:$nginx_port;
    root $work/www;
    client_max_body_size 0;
    dav_methods PUT;
    create_full_put_path on;
  }
}
EOF
"$NGINX" -c "$work/nginx/nginx.conf" -p "$work/nginx" &
pids+=("$!")

base=http://127.0.0.1:$port
for p in "$port" "$nofsync_port"; do
  for _ in $(seq 1 120); do
    curl -sf "http://127.0.0.1:$p/readyz" >/dev/null 2>&1 && break
    sleep 0.5
  done
  curl -sf "http://127.0.0.1:$p/readyz" >/dev/null
done
token=$(curl -sf -X POST "$base/api/auth/login" -d '{"email":"admin@epop.local","password":"bench-admin-password"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])')

file=$work/upload.bin
head -c $((SIZE_MIB << 20)) /dev/urandom >"$file"
size=$(stat -c %s "$file")
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$epop_pid/status"; }

# The peak RSS growth (KiB) while process $1 runs.
watch_rss() {
  local before peak now
  before=$(rss_kib); peak=$before
  while kill -0 "$1" 2>/dev/null; do
    now=$(rss_kib); [ "$now" -gt "$peak" ] && peak=$now
    sleep 0.02
  done
  echo $((peak - before))
}

# Seconds curl took for a transfer: `timed <curl args>`.
timed() { curl -sf -o /dev/null -w '%{time_total}' "$@"; }

# A presigned upload of the file on the server at port $1: "put_url id".
presign() {
  curl -sf -H "authorization: Bearer $token" \
    "http://127.0.0.1:$1/api/files/presign-upload?fileName=bench.bin&contentType=application/octet-stream&size=$size" \
    | json 'd["uploadUrl"] + " " + d["file"]["id"]'
}

results=()
for round in $(seq 1 "$ROUNDS"); do
  read -r put_url id < <(presign "$port")
  curl -sf -o /dev/null -w '%{time_total}\n' -X PUT -T "$file" \
    -H 'content-type: application/octet-stream' "$put_url" >"$work/put.t" &
  curl_pid=$!
  growth=$(watch_rss "$curl_pid")
  wait "$curl_pid"
  epop_put=$(cat "$work/put.t")
  get_url=$(curl -sf -H "authorization: Bearer $token" "$base/api/files/presign-download?id=$id" \
    | json 'd["downloadUrl"]')
  if [ "$round" = 1 ]; then
    curl -sf -o "$work/back.bin" "$get_url"
    cmp -s "$file" "$work/back.bin" || { echo "files: the download differs from the upload" >&2; exit 1; }
    rm -f "$work/back.bin"
  fi
  epop_get=$(timed "$get_url")
  read -r put_url id < <(presign "$nofsync_port")
  nofsync_put=$(timed -X PUT -T "$file" -H 'content-type: application/octet-stream' "$put_url")
  nginx_put=$(timed -X PUT -T "$file" "http://127.0.0.1:$nginx_port/bench-$round.bin")
  nginx_get=$(timed "http://127.0.0.1:$nginx_port/bench-$round.bin")
  # nginx's PUT returns before the bytes reach the disk: the same flush, timed apart.
  flush=$( { TIMEFORMAT=%R; time sync "$work/www/bench-$round.bin"; } 2>&1 )
  rm -f "$work/www/bench-$round.bin"
  results+=("$epop_put $epop_get $nginx_put $nginx_get $growth $nofsync_put $flush")
  echo "round $round: epop PUT ${epop_put}s (no fsync ${nofsync_put}s) GET ${epop_get}s; nginx PUT ${nginx_put}s (+ fsync ${flush}s) GET ${nginx_get}s; RSS growth during the upload ${growth} KiB"
done

printf '%s\n' "${results[@]}" | python3 -c '
import statistics, sys
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
mib = '"$size"' / 2**20
med = lambda i: statistics.median(r[i] for r in rows)
ep, eg, np_, ng, growth, nf = (med(i) for i in range(6))
nsync = statistics.median(r[2] + r[6] for r in rows)
print(f"files ({mib:.0f} MiB, median of {len(rows)} rounds):")
print(f"  upload   epop {mib/ep:8.1f} MiB/s   nginx + fsync {mib/nsync:8.1f} MiB/s   ratio {nsync/ep:6.1%}   (the default: durable before 200)")
print(f"  upload   epop {mib/nf:8.1f} MiB/s   nginx         {mib/np_:8.1f} MiB/s   ratio {np_/nf:6.1%}   (EPOP_FILES_FSYNC=false)")
print(f"  upload   epop (fsync) against nginx without: ratio {np_/ep:6.1%}")
print(f"  download epop {mib/eg:8.1f} MiB/s   nginx {mib/ng:8.1f} MiB/s   ratio {ng/eg:6.1%}")
print(f"  server RSS growth during the upload: {max(r[4] for r in rows)/1024:.1f} MiB at most")
'
