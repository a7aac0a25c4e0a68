#!/usr/bin/env bash
# Start the local services the test suite needs and print the variables that point at them.
#
#   eval "$(deploy/test-services.sh start)"   # as `make test` does
#
# PostgreSQL: the Debian cluster (pg_ctlcluster) when run as root, else a private cluster under
# var/pg owned by the current user. Redis: redis-server on 127.0.0.1:${ENGAGEMENT_TEST_REDIS_PORT}.
# Missing Debian packages (postgresql, redis-server, chromium) are installed with apt-get when run
# as root; otherwise the script says which ones to install and exits 1.
# Only stdout carries the `export` lines; messages go to stderr.
set -euo pipefail

cmd=${1:-start}
root=$(cd "$(dirname "$0")/.." && pwd)
var="$root/var"
pg_port=${ENGAGEMENT_TEST_PG_PORT:-5432}
redis_port=${ENGAGEMENT_TEST_REDIS_PORT:-6379}
db_user=engagement
db_pass=engagement
db_name=engagement
say() { echo "test-services: $*" >&2; }

need_pkgs=()
command -v pg_ctlcluster >/dev/null 2>&1 || [ -x /usr/lib/postgresql/15/bin/pg_ctl ] || need_pkgs+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need_pkgs+=(redis-server)
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing ${need_pkgs[*]} from Debian packages"
    mkdir -p "$root/var"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"; } >"$root/var/apt.log" 2>&1; then
      cat "$root/var/apt.log" >&2; exit 1
    fi
  else
    say "missing packages: ${need_pkgs[*]} (sudo apt-get install ${need_pkgs[*]})"
    exit 1
  fi
fi

if [ "$cmd" = stop ]; then
  redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
  if [ "$(id -u)" = 0 ]; then pg_ctlcluster 15 main stop >&2 || true
  else /usr/lib/postgresql/15/bin/pg_ctl -D "$var/pg" stop >&2 || true; fi
  exit 0
fi

mkdir -p "$var"

# --- Redis ----------------------------------------------------------------------------------
if ! redis-cli -p "$redis_port" ping >/dev/null 2>&1; then
  say "starting redis-server on 127.0.0.1:$redis_port"
  redis-server --bind 127.0.0.1 --port "$redis_port" --daemonize yes --save "" --appendonly no \
    --dir "$var" --logfile "$var/redis.log" >&2
  for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

# --- PostgreSQL -----------------------------------------------------------------------------
if [ "$(id -u)" = 0 ]; then
  if ! pg_lsclusters -h 2>/dev/null | grep -q .; then
    pg_createcluster 15 main >&2
  fi
  if ! pg_lsclusters -h | awk '$1==15 && $2=="main"{print $4}' | grep -q online; then
    say "starting PostgreSQL 15 (Debian cluster 15/main)"
    pg_ctlcluster 15 main start >&2
  fi
  pg_port=$(pg_lsclusters -h | awk '$1==15 && $2=="main"{print $3}')
  psql_admin() { su postgres -c "psql -p $pg_port -v ON_ERROR_STOP=1 -qAt $*"; }
else
  pgbin=/usr/lib/postgresql/15/bin
  pg_port=${ENGAGEMENT_TEST_PG_PORT:-5433}
  if [ ! -d "$var/pg" ]; then
    say "creating a private PostgreSQL cluster in $var/pg"
    "$pgbin/initdb" -D "$var/pg" -U postgres --auth=trust >&2
  fi
  if ! "$pgbin/pg_ctl" -D "$var/pg" status >/dev/null 2>&1; then
    "$pgbin/pg_ctl" -D "$var/pg" -l "$var/pg.log" -o "-p $pg_port -k $var -h 127.0.0.1" -w start >&2
  fi
  psql_admin() { eval "psql -h 127.0.0.1 -p $pg_port -U postgres -v ON_ERROR_STOP=1 -qAt $*"; }
fi
for _ in $(seq 50); do pg_isready -h 127.0.0.1 -p "$pg_port" -q && break; sleep 0.2; done
if [ "$(psql_admin "-c \"SELECT 1 FROM pg_roles WHERE rolname='$db_user'\"")" != 1 ]; then
  psql_admin "-c \"CREATE ROLE $db_user LOGIN CREATEDB PASSWORD '$db_pass'\"" >&2
fi
if [ "$(psql_admin "-c \"SELECT 1 FROM pg_database WHERE datname='$db_name'\"")" != 1 ]; then
  psql_admin "-c \"CREATE DATABASE $db_name OWNER $db_user\"" >&2
fi

echo "export DATABASE_URL=postgres://$db_user:$db_pass@127.0.0.1:$pg_port/$db_name"
echo "export REDIS_URL=redis://127.0.0.1:$redis_port/0"
