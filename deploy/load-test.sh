#!/usr/bin/env bash
# Production-mode load test on this machine (issue #4, item 6):
#
#   deploy/load-test.sh [--workers N] [--pool prefork|threads] [--threads K] \
#       --students 30 --fps 1 --seconds 60 [--json] [other load_test options]
#   make loadtest ARGS="--workers 2 --students 30 --fps 1 --seconds 60"
#
# Worker options (read here, the rest go to `manage.py load_test`):
#   --workers N     inference worker processes (default 1): N prefork children of one Celery
#                   worker, or N thread-pool workers (one process each) with --pool threads.
#   --pool P        prefork (default: one frame at a time per process) or threads (K frames at
#                   once per process, their faces classified in shared batches:
#                   ENGAGEMENT_BATCH_MAX_SIZE=32, ENGAGEMENT_BATCH_MAX_WAIT_MS=5 unless set).
#   --threads K     threads per thread-pool worker process (default 4).
#
# Starts, on loopback only: PostgreSQL and Redis (deploy/test-services.sh, left running if they
# already were), a database of its own (LOADTEST_DB, default engagement_loadtest, migrated) and a
# Redis database of its own (LOADTEST_REDIS_DB, default 14, flushed), Daphne with
# engagement.settings.production (static files collected under var/loadtest/), and the Celery
# worker(s) (`-Q inference,default`, models warmed in every process before the run). Then runs
# `manage.py load_test --url http://127.0.0.1:PORT ...` (a throwaway teacher is created in the
# load-test database), prints where the CPU time went (deploy/cpu_split.py: web, workers,
# PostgreSQL, Redis, the rest; the workers' CPU ms per analysed frame) and stops what it started.
# Logs: var/loadtest/{web,worker}.log.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
py=${PYTHON:-$root/.venv/bin/python}
var="$root/var/loadtest"
mkdir -p "$var"
say() { echo "load-test: $*" >&2; }

workers=1 pool=prefork threads=4
load_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --workers) workers=${2:?--workers needs a number}; shift 2 ;;
    --pool) pool=${2:?--pool needs prefork or threads}; shift 2 ;;
    --threads) threads=${2:?--threads needs a number}; shift 2 ;;
    *) load_args+=("$1"); shift ;;
  esac
done
case "$workers$threads" in *[!0-9]*) say "--workers and --threads take positive integers"; exit 2 ;; esac
[ "$workers" -ge 1 ] && [ "$threads" -ge 1 ] || { say "--workers and --threads must be >= 1"; exit 2; }
case "$pool" in prefork | threads) ;; *) say "--pool must be prefork or threads, got '$pool'"; exit 2 ;; esac

redis_port=${ENGAGEMENT_TEST_REDIS_PORT:-6379}
services_were_up=false
if redis-cli -p "$redis_port" ping >/dev/null 2>&1 && pg_isready -h 127.0.0.1 -q 2>/dev/null; then
  services_were_up=true
fi
eval "$(deploy/test-services.sh start)"

db_name=${LOADTEST_DB:-engagement_loadtest}
redis_db=${LOADTEST_REDIS_DB:-14}
export DATABASE_URL="${DATABASE_URL%/*}/$db_name"
export REDIS_URL="${REDIS_URL%/*}/$redis_db"
export DJANGO_SETTINGS_MODULE=engagement.settings.production
export DJANGO_SECRET_KEY=${DJANGO_SECRET_KEY:-"load-test-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"}
export DJANGO_ALLOWED_HOSTS=127.0.0.1,localhost
# Plain http on loopback: Secure cookies would never be sent, HTTPS redirects and HSTS are off.
export DJANGO_SECURE_COOKIES=false DJANGO_SECURE_SSL_REDIRECT=false DJANGO_SECURE_HSTS_SECONDS=0
export DJANGO_STATIC_ROOT="$var/static"
export ENGAGEMENT_EMBEDDED_WORKER=false ENGAGEMENT_WARM_MODELS=true PYTHONUNBUFFERED=1
# Every simulated student joins from the loopback address: lift the per-address join limit.
export ENGAGEMENT_JOINS_PER_10_MINUTES=${ENGAGEMENT_JOINS_PER_10_MINUTES:-1000000}

"$py" - <<'EOF'
import os
import urllib.parse

import psycopg2

url = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
name = url.path.lstrip("/")
conn = psycopg2.connect(
    host=url.hostname, port=url.port, user=url.username, password=url.password, dbname="postgres"
)
conn.autocommit = True
with conn.cursor() as cur:
    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
    if cur.fetchone() is None:
        cur.execute(f'CREATE DATABASE "{name}"')
conn.close()
EOF
redis-cli -p "$redis_port" -n "$redis_db" flushdb >/dev/null
say "migrating $db_name and collecting static files"
"$py" manage.py migrate --noinput >"$var/migrate.log" 2>&1 || { cat "$var/migrate.log" >&2; exit 1; }
"$py" manage.py collectstatic --noinput >"$var/collectstatic.log" 2>&1 ||
  { cat "$var/collectstatic.log" >&2; exit 1; }

port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
web_pid="" worker_pid=""
: >"$var/worker.log"
cleanup() {
  for pid in $web_pid $worker_pid; do kill "$pid" 2>/dev/null || true; done
  for pid in $web_pid $worker_pid; do wait "$pid" 2>/dev/null || true; done
  if [ "$services_were_up" = false ]; then deploy/test-services.sh stop >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT INT TERM

"$py" -m daphne -b 127.0.0.1 -p "$port" engagement.asgi:application >"$var/web.log" 2>&1 &
web_pid=$!
worker_opts=(--without-gossip --without-mingle --without-heartbeat -l INFO -Q inference,default)
if [ "$pool" = prefork ]; then
  "$py" -m celery -A engagement worker -P prefork -c "$workers" -n "loadtest@%h" "${worker_opts[@]}" \
    >"$var/worker.log" 2>&1 &
  worker_pid=$!
else
  export ENGAGEMENT_BATCH_MAX_SIZE=${ENGAGEMENT_BATCH_MAX_SIZE:-32}
  export ENGAGEMENT_BATCH_MAX_WAIT_MS=${ENGAGEMENT_BATCH_MAX_WAIT_MS:-5}
  for i in $(seq "$workers"); do
    "$py" -m celery -A engagement worker -P threads -c "$threads" -n "loadtest$i@%h" \
      "${worker_opts[@]}" >>"$var/worker.log" 2>&1 &
    worker_pid="$worker_pid $!"
  done
fi
ready=$workers  # "models warmed" lines to wait for: one per prefork child or thread-pool process
say "waiting for Daphne on 127.0.0.1:$port and the worker's models"
for _ in $(seq 240); do
  kill -0 "$web_pid" 2>/dev/null || { cat "$var/web.log" >&2; say "Daphne exited"; exit 1; }
  for pid in $worker_pid; do
    kill -0 "$pid" 2>/dev/null || { cat "$var/worker.log" >&2; say "worker exited"; exit 1; }
  done
  if "$py" -c "import socket,sys; sys.exit(socket.socket().connect_ex(('127.0.0.1', $port)))" &&
    [ "$(grep -c "models warmed" "$var/worker.log")" -ge "$ready" ]; then
    break
  fi
  sleep 0.5
done
[ "$(grep -c "models warmed" "$var/worker.log")" -ge "$ready" ] ||
  { cat "$var/worker.log" >&2; say "worker not ready"; exit 1; }

say "$workers worker process(es), pool $pool$([ "$pool" = threads ] && echo " x $threads threads"); CPU: $(
  "$py" -c 'from ml.complexity import cpu_description; print(cpu_description())' 2>/dev/null || nproc)"
snap() { "$py" deploy/cpu_split.py snapshot --web $web_pid --workers $worker_pid; }
snap >"$var/cpu-before.json"
set +e
"$py" manage.py load_test --url "http://127.0.0.1:$port" "${load_args[@]}" | tee "$var/load_test.out"
status=${PIPESTATUS[0]}
set -e
snap >"$var/cpu-after.json"
frames=$(sed -n 's/^ *frames analysed *\([0-9][0-9]*\) (server).*/\1/p' "$var/load_test.out")
echo
"$py" deploy/cpu_split.py report "$var/cpu-before.json" "$var/cpu-after.json" ${frames:+--frames "$frames"}
exit "$status"
