#!/usr/bin/env bash
# demo.sh - start the demo stack on the well-known ports and print ready-to-paste commands.
#   Keystone :5000   Prometheus :9090 (behind Envoy)   Envoy with the filter :10000 (admin :9901)
#   the exporter :9150 (Ceilometer-style live data), scraped by one Prometheus agent per project,
#   each remote-writing through Envoy and the filter
#   Alertmanager :9093 (Prometheus' alerts; behind Envoy under /alertmanager/)
# Stop it with Ctrl-C here, or `make demo-down` from another terminal.
# DEMO_DIR (default .demo) holds its state and logs; DEMO_NO_WAIT=1 prints and returns (for tests).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DEMO=${DEMO_DIR:-.demo}
STACK="bash scripts/stack.sh"

if [ -e "$DEMO" ]; then
  running=0
  for f in "$DEMO"/envoy/envoy.pid "$DEMO"/keystone/server.pid "$DEMO"/prometheus/prometheus.pid; do
    [ -s "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && running=1
  done
  if [ $running = 1 ]; then echo "A demo stack is already running in $DEMO: stopping it first."; else echo "Removing stale $DEMO."; fi
  $STACK down "$DEMO"
fi

# Every port must be free before anything is installed or started.
STACK_DEMO=1 /usr/bin/python3 -m harness.stack check-ports
$STACK install
bash tests/e2e/clients/install.sh "$ROOT/.venv-clients" >/dev/null   # `openstack metric`

cleanup() { trap - INT TERM EXIT; echo; echo "Stopping the demo stack..."; $STACK down "$DEMO"; exit 0; }
STACK_PORTS=fixed STACK_DEMO=1 $STACK up "$DEMO" >/dev/null || { echo "stack.sh up failed; logs (if any) are in $DEMO" >&2; exit 1; }
[ "${DEMO_NO_WAIT:-}" = 1 ] || trap cleanup INT TERM
# shellcheck disable=SC1091
. "$DEMO/stack.env"

E=$ENVOY_URL
OS=$ROOT/.venv-clients/bin/openstack
cat <<TXT

====================================================================================================
 keystone-prom-wasm demo is running. What it started (all on 127.0.0.1):
   Keystone     $KEYSTONE_URL   the identity service; the filter validates credentials with it
   Envoy        $E   with the filter: the only way to Prometheus for tenants
                (admin $ENVOY_ADMIN_URL, try /stats/prometheus for the filter's counters)
   Prometheus   $PROM_URL   holds every project's series; tenants must not reach it directly
   Alertmanager $ALERTMANAGER_URL   gets Prometheus' alerts (ProjectHasInstances, one per project);
                tenants reach it through Envoy only, at $E/alertmanager/
   exporter     $EXPORTER_URL   live Ceilometer-style samples (ceilometer_cpu, ceilometer_memory_usage,
                ...) for team-a and team-b, at /metrics/<project id>
   agents       $AGENT_TEAM_A_URL (team-a), $AGENT_TEAM_B_URL (team-b): Prometheus agents that
                scrape their project's exporter path every 15 s and remote-write to $E/api/v1/write
                with Basic auth (the project's application credential); the filter stamps every
                series with project=<the writer's Keystone project id>, whatever the agent claims
 Keystone holds (domain "tenants"):
   team-a = $TEAM_A_ID   user alice, password alice-secret (role member)
   team-b = $TEAM_B_ID   user rita,  password rita-secret  (role reader: reads, can't write)
            user dave, password dave-secret (role member: team-b's agent writes with his credential)
   admin (domain Default, project admin), password $ADMIN_PASSWORD: a project like any other here
     (give a role of unrestricted_roles to see every project; see the README's configuration reference)
 Keystone's catalog has Envoy as service type metric-storage, so 'openstack metric' finds it.
 Besides the live data, an hour of seeded series (cloud_cpu_seconds_total, http_requests_total, ...)
 ends at $SEED_END: query those with time=\$SEED_END.
====================================================================================================

# Tokens (paste first). Tokens last an hour; get new ones with the last command below.
export ALICE_TOKEN='$ALICE_TOKEN'
export RITA_TOKEN='$RITA_TOKEN'
export SEED_START=$SEED_START SEED_END=$SEED_END

# alice (team-a), live data: her servers only
curl -s -H "X-Auth-Token: \$ALICE_TOKEN" "$E/api/v1/query" --data-urlencode 'query=ceilometer_memory_usage' | jq

# rita (team-b): only team-b's series, even when asking for everything
curl -s -H "X-Auth-Token: \$RITA_TOKEN" "$E/api/v1/query" --data-urlencode 'query=count by (project) ({__name__=~"ceilometer_.+"})' | jq

# Basic auth with a password instead of a token (Maia's form: user@domain|project@domain)
curl -s -u 'alice@tenants|team-a@tenants:alice-secret' "$E/api/v1/query" --data-urlencode 'query=sum by (resource_name) (ceilometer_memory_usage)' | jq

# federation, as a federating Prometheus scrapes it (see the README's "Clients" for its scrape_config)
curl -s -u 'rita@tenants|team-b@tenants:rita-secret' "$E/federate" --data-urlencode 'match[]={__name__=~"ceilometer_.+"}' -G

# remote write: the live data above came from the agents through the filter, each series stamped with
# its writer's project (rita sees team-b's agent only); rita (reader) may read but not write: 403
curl -s -H "X-Auth-Token: \$RITA_TOKEN" "$E/api/v1/query" --data-urlencode 'query=count by (project, agent) (up{job="ceilometer"})' | jq
printf '\0' | curl -s -u 'rita@tenants|team-b@tenants:rita-secret' -H 'Content-Type: application/x-protobuf' -H 'Content-Encoding: snappy' --data-binary @- "$E/api/v1/write" | jq

# a range query over the seeded hour (alice)
curl -s -H "X-Auth-Token: \$ALICE_TOKEN" "$E/api/v1/query_range" --data-urlencode 'query=sum by (project) (rate(cloud_cpu_seconds_total[5m]))' --data-urlencode "start=\$SEED_START" --data-urlencode "end=\$SEED_END" --data-urlencode 'step=300' -G | jq

# POST form (what Grafana sends), rita
curl -s -H "X-Auth-Token: \$RITA_TOKEN" "$E/api/v1/query" --data-urlencode 'query=cloud_cpu_seconds_total' --data-urlencode "time=\$SEED_END" | jq

# the series and label APIs (alice): team-a's series and label values only
curl -s -H "X-Auth-Token: \$ALICE_TOKEN" "$E/api/v1/series" --data-urlencode 'match[]=ceilometer_cpu' -G | jq
curl -s -H "X-Auth-Token: \$ALICE_TOKEN" "$E/api/v1/label/project/values" -G | jq

# no credentials: 401 (see the WWW-Authenticate header); naming team-b's project: 403;
# a path the filter does not enforce (here Prometheus' configuration): 403
curl -s -i "$E/api/v1/query" --data-urlencode 'query=ceilometer_cpu' -G
curl -s -H "X-Auth-Token: \$ALICE_TOKEN" "$E/api/v1/query" --data-urlencode 'query=ceilometer_cpu{project="$TEAM_B_ID"}' | jq
curl -s -H "X-Auth-Token: \$ALICE_TOKEN" "$E/api/v1/status/config" | jq

# Alertmanager through the filter: alice sees only team-a's alerts and silences. amtool with Basic auth
# in the URL; a silence gets project=<team-a> whatever it names (one with only that matcher is refused)
curl -s -H "X-Auth-Token: \$ALICE_TOKEN" "$E/alertmanager/api/v2/alerts" | jq '.[].labels'
amtool --alertmanager.url='http://alice%40tenants%7Cteam-a%40tenants:alice-secret@${E#http://}/alertmanager' alert query
amtool --alertmanager.url='http://alice%40tenants%7Cteam-a%40tenants:alice-secret@${E#http://}/alertmanager' silence add alertname=ProjectHasInstances --comment='maintenance' --duration=2h
amtool --alertmanager.url='http://rita%40tenants%7Cteam-b%40tenants:rita-secret@${E#http://}/alertmanager' silence query

# metric metadata (Grafana's metric browser asks for it): only metrics alice's project has series of
curl -s -H "X-Auth-Token: \$ALICE_TOKEN" "$E/api/v1/metadata" | jq '.data | keys'

# promtool (Debian's prometheus 2.42): Basic auth in the URL (user and password percent-encoded);
# only 'query range' takes --header
promtool query instant 'http://alice%40tenants%7Cteam-a%40tenants:alice-secret@${E#http://}' 'ceilometer_memory_usage'
promtool query range --header="X-Auth-Token: \$RITA_TOKEN" --start=\$SEED_START --end=\$SEED_END --step=5m $E 'sum(cloud_instances)'

# openstack metric (python-observabilityclient), as each tenant: it finds Envoy in Keystone's catalog
export OS_AUTH_URL=$KEYSTONE_URL OS_IDENTITY_API_VERSION=3 OS_INTERFACE=public OS_REGION_NAME=RegionOne
OS_USERNAME=alice OS_PASSWORD=alice-secret OS_USER_DOMAIN_NAME=tenants OS_PROJECT_NAME=team-a OS_PROJECT_DOMAIN_NAME=tenants $OS metric list
OS_USERNAME=alice OS_PASSWORD=alice-secret OS_USER_DOMAIN_NAME=tenants OS_PROJECT_NAME=team-a OS_PROJECT_DOMAIN_NAME=tenants $OS metric show ceilometer_memory_usage
OS_USERNAME=rita OS_PASSWORD=rita-secret OS_USER_DOMAIN_NAME=tenants OS_PROJECT_NAME=team-b OS_PROJECT_DOMAIN_NAME=tenants $OS metric query 'sum by (resource_name) (ceilometer_memory_usage)'

# a new token for alice
curl -si -H 'Content-Type: application/json' "$KEYSTONE_URL/auth/tokens" -d '{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"alice","domain":{"name":"tenants"},"password":"alice-secret"}}},"scope":{"project":{"name":"team-a","domain":{"name":"tenants"}}}}}' | grep -i x-subject-token

Logs: $DEMO/envoy/envoy.log  $DEMO/keystone/access.log  $DEMO/prometheus/prometheus.log  $DEMO/alertmanager/alertmanager.log
TXT
[ "${DEMO_NO_WAIT:-}" = 1 ] && exit 0
echo "Press Ctrl-C to stop (or run 'make demo-down' from another terminal)."

# wait until interrupted, or until the stack was stopped from elsewhere (make demo-down)
while [ -s "$DEMO/envoy/envoy.pid" ] && kill -0 "$(cat "$DEMO/envoy/envoy.pid")" 2>/dev/null; do
  sleep 1 & wait $! || true
done
echo "The demo stack is gone (stopped elsewhere?)."
