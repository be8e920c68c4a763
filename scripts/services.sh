#!/usr/bin/env bash
# Real Redis and PostgreSQL on loopback for tests and CI (Debian packages; installed when missing),
# promtool (Debian's prometheus package) for the test that checks the /metrics exposition, and
# nats-server for the NATS event sink's tests (they start their own on a free port).
#
#   scripts/services.sh [start]   start both (or reuse running ones), wait until they answer, and print
#                                 `export ...` lines on stdout:  eval "$(scripts/services.sh)"
#   scripts/services.sh stop      stop both
#   scripts/services.sh status    exit 0 when both answer
#
# Idempotent and safe to run concurrently (one flock). Everything lives under $FLUXWAY_SERVICES_DIR
# (default /tmp/fluxway-services). Ports: FLUXWAY_REDIS_PORT (6390), FLUXWAY_PG_PORT (5440).
# Logs go to stderr and to files in that directory; stdout carries only the export lines.
set -euo pipefail

BASE=${FLUXWAY_SERVICES_DIR:-/tmp/fluxway-services}
REDIS_PORT=${FLUXWAY_REDIS_PORT:-6390}
PG_PORT=${FLUXWAY_PG_PORT:-5440}
PG_DB=fluxway_test
PG_USER=postgres
HOST=127.0.0.1

log() { echo "services: $*" >&2; }
die() { log "error: $*"; exit 1; }

pg_bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
  d=$(command -v initdb 2>/dev/null || true)
  if [ -n "$d" ]; then dirname "$(readlink -f "$d")"; return 0; fi
  return 1
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
  else die "need root (or sudo) to run: $*"
  fi
}

install_missing() {
  local pkgs=()
  command -v redis-server >/dev/null 2>&1 || pkgs+=(redis-server)
  pg_bindir >/dev/null || pkgs+=(postgresql)
  command -v promtool >/dev/null 2>&1 || pkgs+=(prometheus)  # only for promtool; its server is never started
  command -v nats-server >/dev/null 2>&1 || pkgs+=(nats-server)  # the NATS event sink's tests start their own
  [ ${#pkgs[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null 2>&1 || die "missing ${pkgs[*]} and no apt-get to install them"
  log "installing ${pkgs[*]} (apt-get)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  # The packages' own services may fail to start in a container without init; that is fine.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2 \
    || log "apt-get install reported an error (often only the packages' own service start); checking binaries"
  command -v redis-server >/dev/null 2>&1 || die "redis-server is still missing after apt-get install"
  pg_bindir >/dev/null || die "PostgreSQL is still missing after apt-get install"
  command -v promtool >/dev/null 2>&1 || die "promtool is still missing after apt-get install prometheus"
  command -v nats-server >/dev/null 2>&1 || die "nats-server is still missing after apt-get install nats-server"
}

# PostgreSQL refuses to run as root: run its tools as the 'postgres' user then.
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    id "$PG_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER"
    if command -v runuser >/dev/null 2>&1; then runuser -u "$PG_USER" -- "$@"
    else su -s /bin/sh "$PG_USER" -c "$(printf '%q ' "$@")"
    fi
  else
    "$@"
  fi
}

redis_up() { [ "$(redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null || true)" = PONG ]; }

pg_up() {
  local bin
  bin=$(pg_bindir) || return 1
  "$bin/pg_isready" -q -h "$HOST" -p "$PG_PORT" 2>/dev/null
}

wait_for() {  # wait_for <name> <check-fn> <seconds>
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    "$2" && return 0
    sleep 0.1
  done
  return 1
}

start_redis() {
  if redis_up; then log "redis already answering on $HOST:$REDIS_PORT"; return 0; fi
  mkdir -p "$BASE/redis"
  # 256 databases: each test session takes its own (tests/support/services.py), so parallel runs don't collide.
  redis-server --bind "$HOST" --port "$REDIS_PORT" --daemonize yes --protected-mode no \
    --dir "$BASE/redis" --pidfile "$BASE/redis.pid" --logfile "$BASE/redis.log" \
    --save '' --appendonly no --databases 256 >&2 9>&-
  wait_for redis redis_up 15 || die "redis did not answer on $HOST:$REDIS_PORT (see $BASE/redis.log)"
  log "redis started on $HOST:$REDIS_PORT"
}

start_postgres() {
  local bin data="$BASE/pg" sock="$BASE/pgsock"
  bin=$(pg_bindir) || die "PostgreSQL binaries not found"
  if ! pg_up; then
    mkdir -p "$data" "$sock"
    chmod 755 "$BASE"
    if [ "$(id -u)" = 0 ]; then
      id "$PG_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER"
      chown "$PG_USER" "$data" "$sock"
    fi
    chmod 700 "$data"
    if [ ! -s "$data/PG_VERSION" ]; then
      log "initdb $data"
      as_pg "$bin/initdb" -D "$data" -U "$PG_USER" --auth=trust --encoding=UTF8 --locale=C >"$BASE/initdb.log" 2>&1 \
        || die "initdb failed (see $BASE/initdb.log)"
    fi
    touch "$BASE/pg.log"
    [ "$(id -u)" = 0 ] && chown "$PG_USER" "$BASE/pg.log"
    # Test settings: loopback only, no durability cost, room for concurrency tests.
    as_pg "$bin/pg_ctl" -D "$data" -l "$BASE/pg.log" -w -t 60 start \
      -o "-p $PG_PORT -k $sock -c listen_addresses=$HOST -c max_connections=300 -c fsync=off \
          -c synchronous_commit=off -c full_page_writes=off" >&2 9>&- \
      || die "postgres did not start (see $BASE/pg.log)"
    wait_for postgres pg_up 30 || die "postgres did not answer on $HOST:$PG_PORT (see $BASE/pg.log)"
    log "postgres started on $HOST:$PG_PORT"
  else
    log "postgres already answering on $HOST:$PG_PORT"
  fi
  if [ "$("$bin/psql" -h "$HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]; then
    "$bin/psql" -h "$HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -qc "CREATE DATABASE $PG_DB" >&2 \
      || "$bin/psql" -h "$HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -tAc \
           "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" | grep -q 1 \
      || die "cannot create database $PG_DB"
  fi
}

print_env() {
  local r="redis://$HOST:$REDIS_PORT/0" p="postgresql://$PG_USER@$HOST:$PG_PORT/$PG_DB"
  echo "export REDIS_URL=$r POSTGRES_URL=$p"
  echo "export FLUXWAY_TEST_REDIS_URL=$r FLUXWAY_TEST_POSTGRES_URL=$p"
}

stop_all() {
  local bin
  if redis_up; then redis-cli -h "$HOST" -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true; log "redis stopped"; fi
  if bin=$(pg_bindir) && [ -s "$BASE/pg/postmaster.pid" ]; then
    as_pg "$bin/pg_ctl" -D "$BASE/pg" -m fast -w stop >&2 || true
    log "postgres stopped"
  fi
}

mkdir -p "$BASE"
# The daemons are started with fd 9 closed, so they never inherit (and hold) the lock.
exec 9>"$BASE/start.lock"
command -v flock >/dev/null 2>&1 && flock -w 600 9

case "${1:-start}" in
  start)
    install_missing
    start_redis
    start_postgres
    print_env
    ;;
  stop) stop_all ;;
  status) redis_up && pg_up ;;
  env) print_env ;;
  *) die "usage: $0 [start|stop|status|env]" ;;
esac
