#!/usr/bin/env bash
# install.sh - the real client programs of tests/e2e/test_clients.py, in a venv of their own:
#   ./.venv-clients with `openstack` (python-openstackclient) and its `openstack metric` plugin
#   (python-observabilityclient 1.4), from tests/e2e/clients/requirements.txt.
# Idempotent: does nothing when the venv already matches the requirements file (a stamp holds its
# hash). The venv is made with the same python3 that made ./.venv (scripts/stack.sh install), or
# Debian's /usr/bin/python3 when there is none yet. promtool and prometheus come from Debian's
# `prometheus` package (scripts/stack.sh install); nothing is needed for the Grafana replay.
#
#   bash tests/e2e/clients/install.sh [VENV_DIR]
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
VENV=${1:-$REPO/.venv-clients}
REQ="$HERE/requirements.txt"
log() { printf '[clients %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ -x "$VENV/bin/openstack" ] && [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" = "$want" ] \
   && "$VENV/bin/python" -c 'import observabilityclient, openstackclient' 2>/dev/null; then
  log "client venv already complete ($VENV)"; exit 0
fi

base_python() {  # the interpreter that created ./.venv, else Debian's python3
  local cfg="$REPO/.venv/pyvenv.cfg" exe home
  if [ -f "$cfg" ]; then
    exe=$(sed -n 's/^executable *= *//p' "$cfg" | head -1)
    [ -n "$exe" ] && [ -x "$exe" ] && { echo "$exe"; return; }
    home=$(sed -n 's/^home *= *//p' "$cfg" | head -1)
    [ -n "$home" ] && [ -x "$home/python3" ] && { echo "$home/python3"; return; }
  fi
  if [ -x /usr/bin/python3 ]; then echo /usr/bin/python3; else command -v python3; fi
}
PY=$(base_python)
t0=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV with $PY"
  "$PY" -m venv "$VENV"
fi
# keep the venv out of git without touching the repository's .gitignore
[ -f "$VENV/.gitignore" ] || echo '*' > "$VENV/.gitignore"
log "pip install -r $REQ"
for try in 1 2 3; do
  if "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ"; then break; fi
  [ "$try" = 3 ] && { log "pip install failed"; exit 1; }
  log "pip install failed, retry $try/3 in 5s"; sleep 5
done
"$VENV/bin/openstack" metric --help >/dev/null || { log "'openstack metric' does not run"; exit 1; }
echo "$want" > "$VENV/.requirements.sha256"
log "client venv ready in $(( $(date +%s) - t0 ))s"
