#!/usr/bin/env bash
# Makes sure the services and tools Sundial's tests need are installed and running:
#   PostgreSQL on 127.0.0.1:5432 (database `test`), NATS with JetStream on 127.0.0.1:4222,
#   etcd 3.4 binaries (tests start their own clusters; `--etcd` also starts a
#   development member on 127.0.0.1:2379), protoc (for the etcd client), Python's
#   cronsim (the cron differential test's reference), Chromium and Node.js (the Countly
#   web SDK test drives the SDK in headless Chromium; its npm packages: `npm ci --prefix e2e`).
#
# Idempotent and quick when everything is already up: it checks before it installs,
# and runs `apt-get update` at most once, only when something is missing.
# Usage: scripts/services.sh [--etcd]      (run as root, or with sudo available)
set -euo pipefail

start_dev_etcd=0
for arg in "$@"; do
  case "$arg" in
    --etcd) start_dev_etcd=1 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "services.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

log() { printf 'services: %s\n' "$*"; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    log "apt-get update"
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 name=$2
  for _ in $(seq 1 100); do
    if port_open "$port"; then return 0; fi
    sleep 0.1
  done
  echo "services: $name did not start listening on 127.0.0.1:$port" >&2
  return 1
}

# --- PostgreSQL --------------------------------------------------------------------
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  apt_install postgresql postgresql-client
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  hba="/etc/postgresql/$version/main/pg_hba.conf"
  # A machine set up for tests: trust local TCP connections (loopback only).
  if ! grep -q 'sundial-tests' "$hba"; then
    log "allowing trust auth on 127.0.0.1 for tests ($hba)"
    $SUDO sed -i '1i host all all 127.0.0.1/32 trust # sundial-tests\nhost all all ::1/128 trust # sundial-tests' "$hba"
  fi
  log "starting PostgreSQL $version"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 100); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.1; done
  pg_isready -h 127.0.0.1 -p 5432 >/dev/null || { echo "services: PostgreSQL is not ready" >&2; exit 1; }
fi
if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc "select 1 from pg_database where datname='test'" 2>/dev/null | grep -q 1; then
  log "creating database test"
  psql -h 127.0.0.1 -U postgres -d postgres -qc 'create database test' \
    || $SUDO -u postgres psql -qc 'create database test'
fi

# --- NATS with JetStream -------------------------------------------------------------
if ! port_open 4222; then
  if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
    apt_install nats-server
  fi
  nats_bin=$(command -v nats-server || echo /usr/sbin/nats-server)
  $SUDO mkdir -p /var/lib/nats-server /var/log
  log "starting NATS with JetStream"
  $SUDO start-stop-daemon --start --oknodo --background --exec "$nats_bin" -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_port 4222 NATS
fi

# --- etcd and protoc -------------------------------------------------------------------
missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
if [ "${#missing[@]}" -gt 0 ]; then apt_install "${missing[@]}"; fi
if [ "$start_dev_etcd" -eq 1 ] && ! port_open 2379; then
  data=/var/lib/sundial-dev-etcd
  $SUDO mkdir -p "$data"
  log "starting a development etcd member on 127.0.0.1:2379 (data in $data)"
  $SUDO start-stop-daemon --start --oknodo --background --exec "$(command -v etcd)" -- \
    --name dev --data-dir "$data" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster dev=http://127.0.0.1:2380
  wait_port 2379 etcd
fi

# --- Python reference for the cron differential test --------------------------------
if command -v python3 >/dev/null 2>&1; then
  if ! python3 -c 'import cronsim' 2>/dev/null; then
    log "installing Python package cronsim"
    python3 -m pip install -q cronsim 2>/dev/null \
      || python3 -m pip install -q --break-system-packages cronsim
  fi
else
  apt_install python3 python3-pip
  python3 -m pip install -q --break-system-packages cronsim
fi

# --- Chromium and Node.js for the Countly web SDK test --------------------------------
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then apt_install "${missing[@]}"; fi

log "all services ready (PostgreSQL 127.0.0.1:5432/test, NATS 127.0.0.1:4222, etcd $(etcd --version | head -n 1 | awk '{print $3}'))"
