#!/usr/bin/env bash
# Start the servers the storage tests need, idempotently:
#   * InfluxDB 1.x (Debian's `influxdb` package, installed when missing) with its own config and data
#     folder, on 127.0.0.1:${ROTATION_CI_INFLUX_PORT:-18086} (HTTP) and :${ROTATION_CI_INFLUX_RPC_PORT:-18088};
#   * MariaDB on 127.0.0.1:3306, Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 when they are
#     not answering already;
#   * nginx (Debian package) installed when missing, not started: the proxy test runs its own;
#   * Prometheus (Debian's `prometheus` package, installed when missing) with its own config and data
#     folder on 127.0.0.1:${ROTATION_CI_PROMETHEUS_PORT:-19090}, loading deploy/prometheus/rules.yml and
#     scraping the targets tests write into its targets/ folder (file_sd; tests/api/test_prometheus.py).
# Usage: .ci/services.sh [start|stop|status]   (default: start). Exits non-zero when a server is not up.
set -euo pipefail

STATE_DIR="${ROTATION_CI_STATE:-${TMPDIR:-/tmp}/rotation-ci-services}"
INFLUX_PORT="${ROTATION_CI_INFLUX_PORT:-18086}"
INFLUX_RPC_PORT="${ROTATION_CI_INFLUX_RPC_PORT:-18088}"
INFLUX_DIR="$STATE_DIR/influxdb-$INFLUX_PORT"
INFLUX_URL="http://127.0.0.1:$INFLUX_PORT"
PROM_PORT="${ROTATION_CI_PROMETHEUS_PORT:-19090}"
PROM_DIR="$STATE_DIR/prometheus-$PROM_PORT"
PROM_URL="http://127.0.0.1:$PROM_PORT"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf '[services] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"; else
    log "need root to run: $*"; return 1; fi
}

wait_for() {  # $1: description, $2: seconds, rest: probe command
  local what="$1" secs="$2"; shift 2
  for _ in $(seq 1 "$((secs * 4))"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.25
  done
  log "$what did not answer within ${secs}s"
  return 1
}

# ------------------------------------------------------------------------------------------ InfluxDB
influx_ping() { curl -fsS -o /dev/null -m 2 "$INFLUX_URL/ping" 2>/dev/null; }

install_influx() {
  command -v influxd >/dev/null 2>&1 && return 0
  log "installing influxdb (Debian package)"
  # keep the package's own service from starting on the default port
  local policy=/usr/sbin/policy-rc.d created=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod +x "$policy"; created=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq influxdb >/dev/null
  [ "$created" = 1 ] && as_root rm -f "$policy"
  command -v influxd >/dev/null 2>&1
}

write_influx_config() {
  mkdir -p "$INFLUX_DIR/meta" "$INFLUX_DIR/data" "$INFLUX_DIR/wal"
  cat >"$INFLUX_DIR/influxdb.conf" <<EOF
reporting-enabled = false
bind-address = "127.0.0.1:$INFLUX_RPC_PORT"
[meta]
  dir = "$INFLUX_DIR/meta"
[data]
  dir = "$INFLUX_DIR/data"
  wal-dir = "$INFLUX_DIR/wal"
  query-log-enabled = false
  trace-logging-enabled = false
  # move idle data from the WAL into compressed TSM files soon, so on-disk sizes are comparable
  cache-snapshot-write-cold-duration = "5s"
  compact-full-write-cold-duration = "30s"
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:$INFLUX_PORT"
  auth-enabled = false
  log-enabled = false
  max-body-size = 0
[continuous_queries]
  enabled = false
[logging]
  level = "warn"
EOF
}

start_influx() {
  if influx_ping; then log "influxdb already answering at $INFLUX_URL"; return 0; fi
  install_influx
  write_influx_config
  log "starting influxd at $INFLUX_URL (data in $INFLUX_DIR)"
  nohup influxd -config "$INFLUX_DIR/influxdb.conf" >"$INFLUX_DIR/influxd.log" 2>&1 &
  echo $! >"$INFLUX_DIR/influxd.pid"
  if ! wait_for "influxd at $INFLUX_URL" 60 influx_ping; then
    tail -20 "$INFLUX_DIR/influxd.log" >&2 || true
    return 1
  fi
}

stop_influx() {
  local pid
  [ -f "$INFLUX_DIR/influxd.pid" ] || { log "no influxd started by this script"; return 0; }
  pid="$(cat "$INFLUX_DIR/influxd.pid")"
  if kill -0 "$pid" 2>/dev/null; then kill "$pid"; log "stopped influxd (pid $pid)"; fi
  rm -f "$INFLUX_DIR/influxd.pid"
}

# ----------------------------------------------------------------------------------------- Prometheus
prom_ping() { curl -fsS -o /dev/null -m 2 "$PROM_URL/-/ready" 2>/dev/null; }

install_prometheus() {
  command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 && return 0
  log "installing prometheus (Debian package)"
  # keep the package's own service from starting on the default port
  local policy=/usr/sbin/policy-rc.d created=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod +x "$policy"; created=1; fi
  if [ -z "${_APT_UPDATED:-}" ]; then as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq; _APT_UPDATED=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
  [ "$created" = 1 ] && as_root rm -f "$policy"
  command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1
}

write_prometheus_config() {
  mkdir -p "$PROM_DIR/data" "$PROM_DIR/targets"
  cp "$REPO_ROOT/deploy/prometheus/rules.yml" "$PROM_DIR/rules.yml"
  cat >"$PROM_DIR/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $PROM_DIR/rules.yml
scrape_configs:
  - job_name: rotation-api
    scrape_interval: 1s
    scrape_timeout: 1s
    file_sd_configs:
      - files: ["$PROM_DIR/targets/*.json"]
        refresh_interval: 1s
EOF
}

start_prometheus() {
  if prom_ping; then log "prometheus already answering at $PROM_URL"; return 0; fi
  install_prometheus
  write_prometheus_config
  log "starting prometheus at $PROM_URL (data in $PROM_DIR)"
  nohup prometheus --config.file="$PROM_DIR/prometheus.yml" --storage.tsdb.path="$PROM_DIR/data" \
    --storage.tsdb.retention.time=1d --web.listen-address="127.0.0.1:$PROM_PORT" \
    >"$PROM_DIR/prometheus.log" 2>&1 &
  echo $! >"$PROM_DIR/prometheus.pid"
  if ! wait_for "prometheus at $PROM_URL" 60 prom_ping; then
    tail -20 "$PROM_DIR/prometheus.log" >&2 || true
    return 1
  fi
}

stop_prometheus() {
  local pid
  [ -f "$PROM_DIR/prometheus.pid" ] || { log "no prometheus started by this script"; return 0; }
  pid="$(cat "$PROM_DIR/prometheus.pid")"
  if kill -0 "$pid" 2>/dev/null; then kill "$pid"; log "stopped prometheus (pid $pid)"; fi
  rm -f "$PROM_DIR/prometheus.pid"
}

# ---------------------------------------------------------------------------------------------- nginx
# only installed: tests/deploy/test_nginx_auth.py starts its own nginx on a free loopback port
install_nginx() {
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] && return 0
  log "installing nginx (Debian package)"
  # keep the package's own service from starting on port 80
  local policy=/usr/sbin/policy-rc.d created=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod +x "$policy"; created=1; fi
  if [ -z "${_APT_UPDATED:-}" ]; then as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq; _APT_UPDATED=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
  [ "$created" = 1 ] && as_root rm -f "$policy"
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]
}

# ------------------------------------------------------------------------------ MariaDB / Redis / PG
mariadb_ping() { mariadb-admin --protocol=tcp -h 127.0.0.1 -P 3306 -uroot ping >/dev/null 2>&1; }
redis_ping() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]; }
postgres_ping() { pg_isready -q -h 127.0.0.1 -p 5432; }

start_service() {  # $1: name, $2: init script, $3: ping function, $4: fallback command
  local name="$1" script="$2" ping="$3" fallback="$4"
  if "$ping"; then log "$name already answering"; return 0; fi
  log "starting $name"
  if [ -x "/etc/init.d/$script" ]; then as_root service "$script" start >/dev/null 2>&1 || true; fi
  if ! wait_for "$name" 10 "$ping" && [ -n "$fallback" ]; then
    log "starting $name directly: $fallback"
    as_root sh -c "$fallback" || true
  fi
  wait_for "$name" 60 "$ping"
}

case "${1:-start}" in
  start)
    mkdir -p "$STATE_DIR"
    status=0
    start_influx || status=1
    install_nginx || status=1
    start_prometheus || status=1
    start_service mariadb mariadb mariadb_ping "" || status=1
    start_service redis redis-server redis_ping "redis-server --bind 127.0.0.1 --port 6379 --daemonize yes" || status=1
    start_service postgresql postgresql postgres_ping "" || status=1
    if [ "$status" != 0 ]; then log "some servers are not up (see above)"; exit 1; fi
    log "ready: influxdb $INFLUX_URL, prometheus $PROM_URL, mariadb 127.0.0.1:3306, redis 127.0.0.1:6379, postgresql 127.0.0.1:5432"
    ;;
  stop)
    stop_influx
    stop_prometheus
    ;;
  status)
    status=0
    for probe in influx_ping prom_ping mariadb_ping redis_ping postgres_ping; do
      if "$probe" >/dev/null 2>&1; then log "${probe%_ping}: up"; else log "${probe%_ping}: DOWN"; status=1; fi
    done
    exit "$status"
    ;;
  *)
    echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac
