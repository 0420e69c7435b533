#!/usr/bin/env bash
# demo.sh - start the whole stack on the well-known ports and print ready-to-paste curl commands.
#   Keystone :5000   Prometheus :9090   Envoy (with the keystone_prom filter) :10000   Envoy admin :9901
# Stop it with Ctrl-C here, or `make demo-down` from another terminal.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DEMO=.demo
STACK="bash scripts/stack.sh"

$STACK install

if [ -e "$DEMO" ]; then
  running=0
  for f in "$DEMO"/envoy/envoy.pid "$DEMO"/keystone/server.pid "$DEMO"/prometheus/prometheus.pid; do
    [ -s "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && running=1
  done
  if [ $running = 1 ]; then echo "A demo stack is already running in $DEMO: stopping it first."; else echo "Removing stale $DEMO."; fi
  $STACK down "$DEMO"
fi

cleanup() { trap - INT TERM EXIT; echo; echo "Stopping the demo stack..."; $STACK down "$DEMO"; exit 0; }
STACK_PORTS=fixed $STACK up "$DEMO" >/dev/null || { echo "stack.sh up failed; logs (if any) are in $DEMO" >&2; exit 1; }
trap cleanup INT TERM
# shellcheck disable=SC1091
. "$DEMO/stack.env"

E=$ENVOY_URL
cat <<TXT

================================================================================================
 keystone-prom-wasm demo is running
   Keystone    $KEYSTONE_URL
   Prometheus  $PROM_URL   (behind Envoy; tenants must not reach it directly)
   Envoy       $E   (the filter)      admin: $ENVOY_ADMIN_URL  (try /stats/prometheus)
   team-a = $TEAM_A_ID (user alice, role member)
   team-b = $TEAM_B_ID (user rita, role reader)
   Seeded data: one sample a minute from $SEED_START to $SEED_END (query at time=\$SEED_END).
================================================================================================

# Tokens and times (paste these first):
export ALICE_TOKEN='$ALICE_TOKEN'
export RITA_TOKEN='$RITA_TOKEN'
export SEED_START=$SEED_START SEED_END=$SEED_END

# alice (team-a): 2 series, all with project_id=$TEAM_A_ID
curl -s -H "X-Auth-Token: \$ALICE_TOKEN" "$E/api/v1/query" --data-urlencode 'query=cloud_cpu_seconds_total' --data-urlencode "time=\$SEED_END" -G | jq

# rita (team-b): 1 series, project_id=$TEAM_B_ID, even when asking for everything
curl -s -H "X-Auth-Token: \$RITA_TOKEN" "$E/api/v1/query" --data-urlencode 'query=cloud_cpu_seconds_total' --data-urlencode "time=\$SEED_END" -G | jq
curl -s -H "X-Auth-Token: \$RITA_TOKEN" "$E/api/v1/query" --data-urlencode 'query={__name__=~".+"}' --data-urlencode "time=\$SEED_END" -G | jq

# a range query (alice)
curl -s -H "X-Auth-Token: \$ALICE_TOKEN" "$E/api/v1/query_range" --data-urlencode 'query=sum by (project_id) (rate(cloud_cpu_seconds_total[5m]))' --data-urlencode "start=\$SEED_START" --data-urlencode "end=\$SEED_END" --data-urlencode 'step=300' -G | jq

# POST form (what Grafana sends), rita
curl -s -H "X-Auth-Token: \$RITA_TOKEN" "$E/api/v1/query" --data-urlencode 'query=cloud_cpu_seconds_total' --data-urlencode "time=\$SEED_END" | jq

# no token: 401 (see the WWW-Authenticate header)
curl -s -i "$E/api/v1/query" --data-urlencode 'query=cloud_cpu_seconds_total' -G

# the series and label APIs (alice): team-a's series and label values only
curl -s -H "X-Auth-Token: \$ALICE_TOKEN" "$E/api/v1/series" --data-urlencode 'match[]=cloud_instances' --data-urlencode "start=\$SEED_START" --data-urlencode "end=\$SEED_END" -G | jq
curl -s -H "X-Auth-Token: \$ALICE_TOKEN" "$E/api/v1/label/project_id/values" --data-urlencode "start=\$SEED_START" --data-urlencode "end=\$SEED_END" -G | jq

# a path the filter does not enforce (here Prometheus' configuration): 403
curl -s -H "X-Auth-Token: \$ALICE_TOKEN" "$E/api/v1/status/config" | jq

# get a fresh token yourself
curl -si -H 'Content-Type: application/json' "$KEYSTONE_URL/auth/tokens" -d '{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"alice","domain":{"name":"tenants"},"password":"alice-secret"}}},"scope":{"project":{"name":"team-a","domain":{"name":"tenants"}}}}}' | grep -i x-subject-token

Logs: $DEMO/envoy/envoy.log  $DEMO/keystone/access.log  $DEMO/prometheus/prometheus.log
Press Ctrl-C to stop (or run 'make demo-down' from another terminal).
TXT

# wait until interrupted, or until the stack was stopped from elsewhere (make demo-down)
while [ -s "$DEMO/envoy/envoy.pid" ] && kill -0 "$(cat "$DEMO/envoy/envoy.pid")" 2>/dev/null; do
  sleep 1 & wait $! || true
done
echo "The demo stack is gone (stopped elsewhere?)."
trap - INT TERM
[ -d "$DEMO" ] && $STACK down "$DEMO" || true
