# Sourced by scripts/test and the benches: makes sure a real PostgreSQL and a real Redis are
# reachable, starting throwaway ones under the target directory when they are not.
#
#   ensure_postgres URL PORT   -> sets PG_URL (URL when it accepts connections, otherwise a
#                                 throwaway cluster on 127.0.0.1:PORT) and PG_BIN
#   ensure_redis URL PORT      -> sets REDIS (URL when it answers PING, otherwise a throwaway
#                                 redis-server on 127.0.0.1:PORT)
#   ensure_packages cmd:pkg... -> installs the Debian packages of missing commands
#   ensure_browser             -> installs chromium, node and playwright-core when missing,
#                                 sets EPOP_BROWSER_NODE_PATH
# What they start is stopped by stop_services (call it from an EXIT trap).

services_cleanup=()
stop_services() {
  for c in "${services_cleanup[@]}"; do $c >/dev/null 2>&1 || true; done
}

pg_bin() {
  local d
  d=$(pg_config --bindir 2>/dev/null || true)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return; fi
  if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return; fi
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return; fi
  echo "PostgreSQL server binaries not found: install them (apt-get install postgresql)" >&2
  return 1
}

ensure_postgres() {
  local url=$1 port=$2 target pgdir as_pg=()
  PG_BIN=$(pg_bin)
  PG_URL=$url
  if "$PG_BIN/psql" "$url" -qAtc 'select 1' >/dev/null 2>&1; then return; fi
  target=${CARGO_TARGET_DIR:-target}
  mkdir -p "$target"
  pgdir=$(cd "$target" && pwd)/postgres-$port
  if [ "$(id -u)" = 0 ]; then as_pg=(runuser -u postgres --); fi
  rm -rf "$pgdir" && mkdir -p "$pgdir"
  [ "$(id -u)" = 0 ] && chown postgres: "$pgdir"
  "${as_pg[@]}" "$PG_BIN/initdb" -D "$pgdir/data" -U postgres --auth=trust --no-locale -E UTF8 >/dev/null
  "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$pgdir/data" -l "$pgdir/log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $pgdir -c max_connections=300 -c fsync=off" start >/dev/null
  services_cleanup+=("${as_pg[*]} $PG_BIN/pg_ctl -D $pgdir/data -m immediate stop")
  PG_URL=postgres://postgres@127.0.0.1:$port/postgres
  echo "started a throwaway PostgreSQL at $PG_URL"
}

redis_ok() {
  local hostport=${1#redis://}
  hostport=${hostport%%/*}
  (exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}" && printf 'PING\r\n' >&3 && read -r -t 2 line <&3 \
    && [[ $line == +PONG* ]]) 2>/dev/null
}

ensure_redis() {
  local url=$1 port=$2 target rdir
  command -v redis-server >/dev/null || { echo "redis-server not found: install it (apt-get install redis-server)" >&2; return 1; }
  REDIS=$url
  if redis_ok "$url"; then return; fi
  target=${CARGO_TARGET_DIR:-target}
  mkdir -p "$target/redis-$port"
  rdir=$(cd "$target/redis-$port" && pwd)
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --dir "$rdir" --pidfile "$rdir/redis.pid" --logfile "$rdir/redis.log"
  for _ in $(seq 1 50); do redis_ok "redis://127.0.0.1:$port" && [ -s "$rdir/redis.pid" ] && break; sleep 0.1; done
  redis_ok "redis://127.0.0.1:$port" || { echo "the throwaway Redis did not start" >&2; return 1; }
  services_cleanup+=("kill $(cat "$rdir/redis.pid")")
  REDIS=redis://127.0.0.1:$port
  echo "started a throwaway Redis at $REDIS"
}

# Installs, from Debian, the packages of the commands that are missing (as root):
#   ensure_packages command:package ...
ensure_packages() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# Makes sure chromium, node and playwright-core (tests/browser/package.json) are there;
# exports EPOP_BROWSER_NODE_PATH.
ensure_browser() {
  ensure_packages chromium:chromium node:nodejs npm:npm
  local dir=$HOME/.cache/epop/browser
  export EPOP_BROWSER_NODE_PATH=$dir/node_modules
  if ! cmp -s tests/browser/package.json "$dir/package.json" \
    || [ ! -d "$EPOP_BROWSER_NODE_PATH/playwright-core" ]; then
    mkdir -p "$dir"
    cp tests/browser/package.json "$dir/package.json"
    (cd "$dir" && npm install --no-package-lock --no-audit --no-fund --loglevel=error >/dev/null)
  fi
}

# Makes sure the OpenID Provider of the single sign-on tests (tests/oidc/provider.mjs runs
# the npm package oidc-provider, the version of tests/oidc/package.json) is installed under
# ~/.cache/epop/oidc; exports EPOP_OIDC_MODULES.
ensure_oidc() {
  ensure_packages node:nodejs npm:npm
  local dir=$HOME/.cache/epop/oidc
  export EPOP_OIDC_MODULES=$dir/node_modules
  if ! cmp -s tests/oidc/package.json "$dir/package.json" \
    || [ ! -d "$EPOP_OIDC_MODULES/oidc-provider" ]; then
    mkdir -p "$dir"
    cp tests/oidc/package.json "$dir/package.json"
    (cd "$dir" && npm install --no-package-lock --no-audit --no-fund --loglevel=error >/dev/null)
  fi
}

# Makes sure the S3 server of the file tests (s3s-fs, which checks SigV4 signatures) is
# installed under ~/.cache/epop/s3s-fs (built once by cargo); exports EPOP_TEST_S3FS.
S3S_FS_VERSION=0.14.1
ensure_s3fs() {
  local root=$HOME/.cache/epop/s3s-fs
  export EPOP_TEST_S3FS=$root/bin/s3s-fs
  if [ ! -x "$EPOP_TEST_S3FS" ] || [ "$(cat "$root/version" 2>/dev/null)" != "$S3S_FS_VERSION" ]; then
    echo "installing s3s-fs $S3S_FS_VERSION for the file tests (once)"
    # Its own target directory: the project's build cache stays as it is.
    CARGO_TARGET_DIR=$root/target cargo install --quiet --locked "s3s-fs@$S3S_FS_VERSION" \
      --features binary --root "$root"
    rm -rf "$root/target"
    echo "$S3S_FS_VERSION" > "$root/version"
  fi
}

# Makes sure the fake Web Push service of the push tests (tests/push/fake_push.py) has the
# third-party RFC 8291 decryption it checks pushes with (http_ece, cryptography), and the
# two-factor tests their third-party TOTP generator (pyotp), in a virtualenv under
# ~/.cache/epop/push-venv; exports EPOP_TEST_PYTHON.
ensure_push_venv() {
  local venv=$HOME/.cache/epop/push-venv
  export EPOP_TEST_PYTHON=$venv/bin/python
  [ -x "$EPOP_TEST_PYTHON" ] || python3 -m venv "$venv"
  if ! "$EPOP_TEST_PYTHON" -c 'import http_ece, cryptography, pyotp' 2>/dev/null; then
    "$venv/bin/pip" install --quiet http_ece cryptography pyotp
  fi
}

# For the benchmarks: a work directory ($work), the processes to stop on exit ($pids, which
# the caller appends to), a fresh database named <prefix>_<pid> ($db, URL $db_url) on the
# PostgreSQL ensure_postgres finds or starts, and a trap that stops and removes all of it.
bench_setup() {
  work=$(mktemp -d)
  chmod 755 "$work"
  pids=()
  trap bench_cleanup EXIT
  ensure_postgres "${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}" 55433
  db=$1_$$
  "$PG_BIN/psql" "$PG_URL" -qc "CREATE DATABASE $db" >/dev/null
  db_url="${PG_URL%/*}/$db"
}

bench_cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -n "${db:-}" ] && "$PG_BIN/psql" "$PG_URL" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1
  stop_services
  rm -rf "$work"
}
