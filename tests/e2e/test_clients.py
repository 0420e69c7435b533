"""End-to-end tests with client programs nobody here wrote, used unchanged against the real stack.

* `openstack metric` (python-openstackclient with the python-observabilityclient 1.4 plugin, installed in
  ./.venv-clients by tests/e2e/clients/install.sh): it finds the filter's listener in Keystone's catalog
  (service type `metric-storage`, registered by the `metric_storage_endpoint` fixture), logs in with a
  password on every call (a brand-new token each time: the filter's cache-miss path), and sends only
  X-Auth-Token, with no `time` (queries pin it with `@`).
* Grafana's Prometheus data source: the calls it makes (tests/e2e/clients/grafana_calls.json), replayed with
  each credential Grafana can send: Basic auth in Maia's `user@domain|project@domain` form, a custom
  X-Auth-Token header, a forwarded `Authorization: Bearer`.
* A second, real Prometheus federating `/federate` through the filter with Basic auth.
* promtool (Debian's 2.42): query instant, range, series and labels.

Fresh samples: `openstack metric show` asks for `last_over_time(N[5m])` at "now" and federation exports
only series with a sample in the last 5 minutes, while the seeded hour may be older than that. The
`fresh_samples` fixture therefore writes one sample stamped "now" to series that already exist (same
labels, same value as the seed's last sample), for both projects, and team-a's also to PROM_A, so that
PROM_A still holds exactly team-a's samples (tests/e2e/test_equivalence.py compares them). No series is
added, and no query pinned inside the seeded window sees a difference.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse

import pytest
import requests

from conftest import REPO, _tail, basic_auth, free_port, keystone_calls, new_token, remember_secret

CLIENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clients")
CLIENT_VENV = os.path.join(REPO, ".venv-clients")
OPENSTACK = os.path.join(CLIENT_VENV, "bin", "openstack")
PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
SERVICE_NAME = "prometheus"         # the metric-storage service harness/stack.py registers

# What the seed (scripts/stack.sh) gives each user's project.
USERS = {
    "alice": {"password": "alice-secret", "project": "team-a", "own": "TEAM_A_ID", "other": "TEAM_B_ID",
              "instances": "2", "cpu_series": 2},
    "rita": {"password": "rita-secret", "project": "team-b", "own": "TEAM_B_ID", "other": "TEAM_A_ID",
             "instances": "1", "cpu_series": 1},
}
TEAM_B_ONLY_METRIC = "batch_jobs_failed_total"


def maia_user(user):
    return "%s@tenants|%s@tenants" % (user, USERS[user]["project"])


def ids(stack, user):
    u = USERS[user]
    return stack[u["own"]], stack[u["other"]]


def prom_direct(stack, path, **params):
    """Straight to the main Prometheus (no filter): the truth to compare with."""
    r = requests.get(stack["PROM_URL"] + path, params=params, timeout=10)
    r.raise_for_status()
    return r.json()["data"]


# ====================================================================== shared fixtures
@pytest.fixture(scope="module")
def fresh_samples(stack):
    """One sample stamped now on existing series of both projects (see the module docstring)."""
    now_ms = int(time.time() * 1000)
    a, b = stack["TEAM_A_ID"], stack["TEAM_B_ID"]
    lines_a = ['cloud_instances{project="%s"} 2 %d' % (a, now_ms)]
    lines_b = ['cloud_instances{project="%s"} 1 %d' % (b, now_ms),
               '%s{project="%s",job="batch",instance="node-3"} 6 %d' % (TEAM_B_ONLY_METRIC, b, now_ms)]
    for url, lines in ((stack["PROM_URL"], lines_a + lines_b), (stack["PROM_A_URL"], lines_a)):
        r = subprocess.run([sys.executable, stack["PROMWRITE"], url + "/api/v1/write"], input="\n".join(lines),
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, "remote write to %s failed: %s %s" % (url, r.stdout, r.stderr)
    return now_ms // 1000


# ====================================================================== openstack metric
@pytest.fixture(scope="module")
def client_venv():
    """./.venv-clients with `openstack` and the `metric` plugin; install.sh returns at once when complete."""
    try:
        r = subprocess.run(["bash", os.path.join(CLIENTS, "install.sh"), CLIENT_VENV], cwd=REPO,
                           capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as e:
        pytest.fail("tests/e2e/clients/install.sh timed out:\n%s\n%s" % (e.stdout, e.stderr), pytrace=False)
    if r.returncode != 0 or not os.access(OPENSTACK, os.X_OK):
        pytest.fail("tests/e2e/clients/install.sh failed (rc=%d):\n%s\n%s" % (r.returncode, r.stdout, r.stderr),
                    pytrace=False)
    return CLIENT_VENV


@pytest.fixture(scope="module")
def metric_storage_endpoint(stack):
    """The filter's listener in Keystone's catalog, as the stack registers it (harness/stack.py
    ks_register_metric_storage): service type metric-storage, public endpoint ENVOY_URL in RegionOne. The
    CLI takes the first metric-storage endpoint of its token's catalog: it must be the only one."""
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "alice", "domain": {"name": "tenants"}, "password": USERS["alice"]["password"]}}},
        "scope": {"project": {"name": "team-a", "domain": {"name": "tenants"}}}}}
    r = requests.post(stack["KEYSTONE_URL"] + "/auth/tokens", json=body, timeout=15)
    assert r.status_code == 201, r.text
    found = [(svc.get("name"), ep["url"]) for svc in r.json()["token"]["catalog"]
             if svc["type"] == "metric-storage" for ep in svc["endpoints"] if ep["interface"] == "public"]
    assert found == [(SERVICE_NAME, stack["ENVOY_URL"])], found
    return found[0]


def openstack(stack, user, *args):
    """One `openstack` call as USER (a password login of its own: a new token every time)."""
    u = USERS[user]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(OS_AUTH_URL=stack["KEYSTONE_URL"], OS_USERNAME=user, OS_PASSWORD=u["password"],
               OS_USER_DOMAIN_NAME="tenants", OS_PROJECT_NAME=u["project"], OS_PROJECT_DOMAIN_NAME="tenants",
               OS_IDENTITY_API_VERSION="3", OS_INTERFACE="public", OS_REGION_NAME="RegionOne",
               PYTHONWARNINGS="ignore")
    remember_secret(u["password"])
    return subprocess.run([OPENSTACK, *args], env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def _cli_calls(stack):
    """The `openstack metric` calls the tests below look at (a CLI call costs ~1.4 s of Python start-up
    and a Keystone login, so each is made once and the tests share the results)."""
    end = stack["SEED_END"]
    calls = {}
    for user in USERS:
        calls[(user, "query_instances")] = ("metric", "query", "cloud_instances @ %s" % end, "-f", "json")
        calls[(user, "query")] = ("metric", "query", '{__name__=~".+"} @ %s' % end, "-f", "json")
        calls[(user, "show_team_b_only")] = ("metric", "show", TEAM_B_ONLY_METRIC, "-f", "json")
        calls[(user, "list")] = ("metric", "list", "-f", "json")
    calls[("alice", "query_other")] = ("metric", "query", 'cloud_instances{project="%s"} @ %s' % (
        stack["TEAM_B_ID"], end), "-f", "json")
    calls[("alice", "show")] = ("metric", "show", "cloud_instances", "-f", "json")
    # (a selector of no series: were the filter ever to let it through, no other test would lose data)
    calls[("alice", "delete")] = ("metric", "delete", "kpw_e2e_clients_no_such_metric")
    calls[("alice", "snapshot")] = ("metric", "snapshot")
    return calls


ADMIN_CALLS = {"delete", "snapshot"}   # refused by path, before any token validation


@pytest.fixture(scope="module")
def cli(stack, client_venv, metric_storage_endpoint, fresh_samples):
    """Every `openstack metric` call of the tests below, run up front: {(user, name): CompletedProcess},
    plus "since" (Keystone access log lines before them). One at a time: the test Keystone keeps its
    data in sqlite, and concurrent password logins can fail there with `database is locked` (HTTP 500),
    which says nothing about the filter."""
    calls = _cli_calls(stack)
    with open(stack["KEYSTONE_ACCESS_LOG"], errors="replace") as f:
        since = len(f.readlines())
    out = {key: openstack(stack, key[0], *args) for key, args in calls.items()}
    out["since"] = since
    return out


def cli_json(r):
    assert r.returncode == 0, "openstack %s -> rc %d\nstdout:\n%s\nstderr:\n%s" % (
        " ".join(r.args[1:]), r.returncode, r.stdout, r.stderr[-3000:])
    return json.loads(r.stdout)


def assert_rows_of(rows, project, other):
    got = [row.get("project") for row in rows]
    assert all(p == project for p in got), "foreign rows: %r (own project %s)" % (rows, project)
    assert other not in json.dumps(rows)


@pytest.mark.parametrize("user", list(USERS))
def test_openstack_metric_query(stack, cli, user):
    """`metric query 'cloud_instances @ END'` (the CLI sends no time: @ pins it in the seeded hour)."""
    own, other = ids(stack, user)
    rows = cli_json(cli[(user, "query_instances")])
    assert_rows_of(rows, own, other)
    assert [(r["__name__"], r["project"], r["value"]) for r in rows] == [
        ("cloud_instances", own, USERS[user]["instances"])], rows


@pytest.mark.parametrize("user", list(USERS))
def test_openstack_metric_query_every_series(stack, cli, user):
    """`metric query '{__name__=~".+"} @ END'`: exactly the tenant's series, as Prometheus has them."""
    own, other = ids(stack, user)
    rows = cli_json(cli[(user, "query")])
    assert_rows_of(rows, own, other)
    truth = prom_direct(stack, "/api/v1/query", query='{__name__=~".+",project="%s"}' % own,
                        time=stack["SEED_END"])["result"]
    assert len(rows) == len(truth) > 0, (len(rows), len(truth))
    assert sorted(r["__name__"] for r in rows) == sorted(s["metric"]["__name__"] for s in truth)
    assert [r["value"] for r in rows if r["__name__"] == "cloud_instances"] == [USERS[user]["instances"]], rows
    assert len([r for r in rows if r["__name__"] == "cloud_cpu_seconds_total"]) == USERS[user]["cpu_series"]
    assert (TEAM_B_ONLY_METRIC in {r["__name__"] for r in rows}) == (user == "rita"), rows


def test_openstack_metric_query_naming_the_other_project_is_refused(stack, cli):
    r = cli[("alice", "query_other")]
    assert r.returncode != 0 and "HTTP 403" in r.stderr, (r.returncode, r.stdout, r.stderr[-2000:])
    assert stack["TEAM_B_ID"] not in r.stdout


def test_openstack_metric_show(stack, cli):
    """`metric show N` = last_over_time(N[5m]) at now: the fresh sample of the tenant's own series."""
    rows = cli_json(cli[("alice", "show")])
    assert_rows_of(rows, stack["TEAM_A_ID"], stack["TEAM_B_ID"])
    assert [(r["__name__"], r["value"]) for r in rows] == [("cloud_instances", "2")], rows


@pytest.mark.parametrize("user", list(USERS))
def test_openstack_metric_show_team_b_only_metric(stack, cli, user):
    own, other = ids(stack, user)
    rows = cli_json(cli[(user, "show_team_b_only")])
    assert_rows_of(rows, own, other)
    if user == "alice":
        assert rows == [], "team-b's metric shown to team-a: %r" % rows
    else:
        assert [(r["__name__"], r["value"]) for r in rows] == [(TEAM_B_ONLY_METRIC, "6")], rows


@pytest.mark.parametrize("user", list(USERS))
def test_openstack_metric_list(stack, cli, user):
    """`metric list` = label/__name__/values: the names of the tenant's series, as Prometheus has them."""
    own, _ = ids(stack, user)
    names = [row["metric_name"] for row in cli_json(cli[(user, "list")])]
    truth = prom_direct(stack, "/api/v1/label/__name__/values", **{"match[]": '{project="%s"}' % own})
    assert sorted(names) == sorted(truth), (names, truth)
    assert {"cloud_instances", "cloud_cpu_seconds_total", "http_requests_total"} <= set(names), names
    if user == "alice":
        assert TEAM_B_ONLY_METRIC not in names, names
    else:
        assert TEAM_B_ONLY_METRIC in names, names


@pytest.mark.parametrize("command", sorted(ADMIN_CALLS))
def test_openstack_metric_admin_commands_refused(stack, cli, command):
    """delete / snapshot (POST /api/v1/admin/tsdb/...) get the filter's 403, and the CLI shows the
    filter's reason: the error body carries it in the API-SIG `errors` form that keystoneauth reads,
    beside Prometheus' `error` string."""
    r = cli[("alice", command)]
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-3000:]
    assert "(HTTP 403)" in out, out[-3000:]
    assert re.search(r"/api/v1/admin/tsdb/[a-z_]+ is not available through the Keystone filter", out), out[-3000:]


def test_openstack_metric_every_call_is_a_new_token(stack, cli):
    """Each CLI call logs in (POST /v3/auth/tokens) and the filter validates that new token
    (GET /v3/auth/tokens): one validation per call at least, nothing served from the cache. (The admin
    calls are refused by their path before any validation.)"""
    n_calls = len([k for k in cli if isinstance(k, tuple) and k[1] not in ADMIN_CALLS])
    logins = keystone_calls(stack, cli["since"], "POST")
    validations = keystone_calls(stack, cli["since"], "GET")
    assert logins >= n_calls + len(ADMIN_CALLS), (logins, n_calls)
    assert validations >= n_calls, (validations, n_calls)



# ====================================================================== Grafana's data source
with open(os.path.join(CLIENTS, "grafana_calls.json")) as _f:
    GRAFANA = json.load(_f)

# (name, user, kind): Basic in Maia's form, a static X-Auth-Token header, a forwarded Bearer token
GRAFANA_CREDENTIALS = [("alice-basic", "alice", "basic"), ("alice-x-auth-token", "alice", "x-auth-token"),
                       ("alice-bearer", "alice", "bearer"), ("rita-basic", "rita", "basic")]


@pytest.fixture(scope="module")
def grafana_headers(stack):
    out = {}
    for name, user, kind in GRAFANA_CREDENTIALS:
        if kind == "basic":
            out[name] = basic_auth(maia_user(user), USERS[user]["password"])
        else:
            tok = new_token(stack, user, USERS[user]["password"], ids(stack, user)[0])
            remember_secret(tok)
            out[name] = {"X-Auth-Token": tok} if kind == "x-auth-token" else {"Authorization": "Bearer " + tok}
    return out


def _grafana_request(stack, call, auth_headers, user):
    own, other = ids(stack, user)
    values = {"SEED_START": stack["SEED_START"], "SEED_END": stack["SEED_END"], "NOW": str(int(time.time())),
              "OTHER_ID": other}

    def sub(s):
        return re.sub(r"\$\{([A-Z_]+)\}", lambda m: values[m.group(1)], s)
    headers = dict(GRAFANA["headers"], Connection="close", **auth_headers)
    url = stack["ENVOY_URL"] + call["path"]
    params = [(k, sub(v)) for k, v in call.get("params", [])]
    if call["method"] == "POST":
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        body = urllib.parse.urlencode([(k, sub(v)) for k, v in call.get("form", [])])
        return requests.post(url, params=params or None, data=body, headers=headers, timeout=20)
    return requests.request(call["method"], url, params=params or None, headers=headers, timeout=20)


@pytest.mark.parametrize("cred", [c[0] for c in GRAFANA_CREDENTIALS])
@pytest.mark.parametrize("call", GRAFANA["calls"], ids=[c["name"] for c in GRAFANA["calls"]])
def test_grafana_call(stack, grafana_headers, call, cred):
    user = cred.split("-")[0]
    own, other = ids(stack, user)
    r = _grafana_request(stack, call, grafana_headers[cred], user)
    ctx = "%s %s as %s -> HTTP %d %s" % (call["method"], call["path"], cred, r.status_code, r.text[:800])
    assert r.headers.get("Content-Type", "").startswith("application/json"), ctx
    body = r.json()
    if "${OTHER_ID}" in json.dumps(call):
        # the request names the other project itself (and a refusal may quote it): no data at all
        assert "data" not in body, ctx
    else:
        assert other not in r.text, "another project's id in the answer: " + ctx
    if call["expect"] == "success":
        assert r.status_code == 200 and body["status"] == "success", ctx
        if "result_type" in call:
            assert body["data"]["resultType"] == call["result_type"], ctx
        if call.get("own_data"):
            assert own in r.text, "the tenant's own data is missing: " + ctx
        for name in call.get("team_b_only", []):
            assert (name in r.text) == (user == "rita"), ctx
    else:
        assert r.status_code == call["status"], ctx
        assert body.get("status") == "error" and body.get("errorType") and body.get("error"), ctx


# ====================================================================== Prometheus federation
FEDERATE_JOB = "federate-team-a"
SCRAPE_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling",
                 "scrape_series_added"}


def _start_prometheus(workdir, config_text):
    """A real Prometheus on a random loopback port (our own process group); retried on a port race."""
    cfg = os.path.join(workdir, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write(config_text)
    for attempt in range(3):
        port = free_port()
        log_path = os.path.join(workdir, "prometheus-%d.log" % attempt)
        log = open(log_path, "w")
        proc = subprocess.Popen(
            [PROMETHEUS, "--config.file=" + cfg, "--storage.tsdb.path=" + os.path.join(workdir, "data"),
             "--web.listen-address=127.0.0.1:%d" % port],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        url = "http://127.0.0.1:%d" % port
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if requests.get(url + "/-/ready", timeout=1).status_code == 200:
                    return proc, url, log_path
            except requests.RequestException:
                pass
            time.sleep(0.1)
        _stop(proc)
        if "address already in use" not in _tail(log_path).lower():
            break
    pytest.fail("the federating Prometheus did not start:\n" + _tail(log_path), pytrace=False)


def _stop(proc):
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@pytest.fixture(scope="module")
def federating_prometheus(stack, fresh_samples, tmp_path_factory):
    import yaml  # pyyaml: installed by scripts/stack.sh install
    workdir = str(tmp_path_factory.mktemp("federating-prometheus"))
    remember_secret("alice-secret")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [{
            "job_name": FEDERATE_JOB,
            "scrape_interval": "1s",
            "scrape_timeout": "1s",
            "honor_labels": True,
            "metrics_path": "/federate",
            "params": {"match[]": ['{__name__=~".+"}']},
            "basic_auth": {"username": maia_user("alice"), "password": "alice-secret"},
            "static_configs": [{"targets": [urllib.parse.urlsplit(stack["ENVOY_URL"]).netloc]}],
        }],
    }
    proc, url, log_path = _start_prometheus(workdir, yaml.safe_dump(config, sort_keys=False))
    try:
        yield url
    finally:
        _stop(proc)


def _query(url, q):
    r = requests.get(url + "/api/v1/query", params={"query": q}, timeout=10)
    r.raise_for_status()
    return r.json()["data"]["result"]


def test_prometheus_federation_only_the_tenant(stack, federating_prometheus):
    url = federating_prometheus
    a, b = stack["TEAM_A_ID"], stack["TEAM_B_ID"]
    # what the filter exports: the fresh samples are there, and nothing of team-b's
    r = requests.get(stack["ENVOY_URL"] + "/federate", params={"match[]": '{__name__=~".+"}'},
                     headers=basic_auth(maia_user("alice"), "alice-secret"), timeout=10)
    assert r.status_code == 200 and 'cloud_instances{project="%s"' % a in r.text, r.text[:1000]
    assert b not in r.text and TEAM_B_ONLY_METRIC not in r.text

    # wait until it has scraped
    deadline = time.monotonic() + 20
    while True:
        scrapes = _query(url, 'count_over_time(up{job="%s"}[1m])' % FEDERATE_JOB)
        up = _query(url, 'up{job="%s"}' % FEDERATE_JOB)
        got = _query(url, 'cloud_instances{project="%s"}' % a)
        if got and scrapes and float(scrapes[0]["value"][1]) >= 1:
            break
        if time.monotonic() > deadline:
            pytest.fail("the federating Prometheus did not get team-a's series within 20 s: up=%r scrapes=%r got=%r"
                        % (up, scrapes, got), pytrace=False)
        time.sleep(0.25)
    assert up and up[0]["value"][1] == "1", "federation scrape failing (Basic auth refused?): %r" % up

    per_project = _query(url, 'count by (project) ({__name__=~".+", project!=""})')
    assert [s["metric"].get("project") for s in per_project] == [a], per_project

    r = requests.get(url + "/api/v1/series", params={"match[]": '{__name__=~".+"}'}, timeout=10)
    r.raise_for_status()
    series = r.json()["data"]
    assert b not in r.text, "team-b's id in the federating Prometheus"
    for s in series:
        if s["__name__"] in SCRAPE_SERIES and "project" not in s:
            continue          # the federating Prometheus' own series about the scrape
        assert s.get("project") == a, "a series that is not team-a's was federated: %r" % s
    names = {s["__name__"] for s in series}
    assert "cloud_instances" in names and TEAM_B_ONLY_METRIC not in names, names


# ====================================================================== promtool
@pytest.fixture(scope="module")
def promtool_auth(tmp_path_factory):
    """How promtool gets Basic auth: --http.config.file where promtool has it (Prometheus >= 2.4x
    upstream); Debian's 2.42 has no such flag, so there the user and password go in the server URL
    (Go's HTTP client sends them as Basic auth)."""
    r = subprocess.run([PROMTOOL, "query", "instant", "--help"], capture_output=True, text=True, timeout=30)
    has_http_config = "http.config.file" in (r.stdout + r.stderr)
    d = str(tmp_path_factory.mktemp("promtool"))

    def server_and_flags(stack, user, password=None):
        password = password or USERS[user]["password"]
        remember_secret(password)
        if has_http_config:
            path = os.path.join(d, "%s-%s.yml" % (user, len(os.listdir(d))))
            with open(path, "w") as f:
                f.write("basic_auth:\n  username: '%s'\n  password: '%s'\n" % (maia_user(user), password))
            return stack["ENVOY_URL"], ["--http.config.file=" + path]
        u = urllib.parse.urlsplit(stack["ENVOY_URL"])
        userinfo = "%s:%s" % (urllib.parse.quote(maia_user(user), safe=""), urllib.parse.quote(password, safe=""))
        return "%s://%s@%s" % (u.scheme, userinfo, u.netloc), []
    return server_and_flags


def promtool(*args):
    r = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    return r


def promtool_json(*args):
    r = promtool(*args)
    assert r.returncode == 0, "promtool %s -> rc %d\n%s\n%s" % (args[:2], r.returncode, r.stdout, r.stderr)
    return json.loads(r.stdout)


@pytest.mark.parametrize("user", list(USERS))
def test_promtool_query_instant(stack, promtool_auth, user):
    own, other = ids(stack, user)
    server, flags = promtool_auth(stack, user)
    res = promtool_json("query", "instant", "-o", "json", *flags, "--time=" + stack["SEED_END"], server,
                        "cloud_instances")
    assert [(s["metric"]["project"], s["value"][1]) for s in res] == [(own, USERS[user]["instances"])], res
    # the default (promql) output format too
    r = promtool("query", "instant", *flags, "--time=" + stack["SEED_END"], server, "cloud_cpu_seconds_total")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == USERS[user]["cpu_series"] and all(own in l for l in lines), r.stdout
    assert other not in r.stdout


@pytest.mark.parametrize("user", list(USERS))
def test_promtool_query_range(stack, promtool_auth, user):
    own, other = ids(stack, user)
    server, flags = promtool_auth(stack, user)
    res = promtool_json("query", "range", "-o", "json", *flags, "--start=" + stack["SEED_START"],
                        "--end=" + stack["SEED_END"], "--step=60s", server, "cloud_cpu_seconds_total")
    assert sorted(s["metric"]["project"] for s in res) == [own] * USERS[user]["cpu_series"], res
    assert all(len(s["values"]) == 61 for s in res), [len(s["values"]) for s in res]
    assert other not in json.dumps(res)


@pytest.mark.parametrize("user", list(USERS))
def test_promtool_query_range_with_x_auth_token_header(stack, user):
    """`query range --header` (2.42's only way to send a header): a Keystone token in X-Auth-Token."""
    own, other = ids(stack, user)
    tok = remember_secret(new_token(stack, user, USERS[user]["password"], own))
    res = promtool_json("query", "range", "-o", "json", "--header=X-Auth-Token=" + tok,
                        "--start=" + stack["SEED_START"], "--end=" + stack["SEED_END"], "--step=60s",
                        stack["ENVOY_URL"], '{__name__=~"cloud_.*"}')
    assert sorted(s["metric"]["project"] for s in res) == [own] * (USERS[user]["cpu_series"] + 1), res
    assert other not in json.dumps(res)


@pytest.mark.parametrize("user", list(USERS))
def test_promtool_series_and_labels(stack, promtool_auth, user):
    own, other = ids(stack, user)
    server, flags = promtool_auth(stack, user)
    series = promtool_json("query", "series", "-o", "json", *flags, "--match=cloud_instances",
                           "--start=" + stack["SEED_START"], "--end=" + stack["SEED_END"], server)
    assert series == [{"__name__": "cloud_instances", "project": own}], series
    values = promtool_json("query", "labels", "-o", "json", *flags, server, "project")
    assert values == [own], values
    names = promtool_json("query", "labels", "-o", "json", *flags, server, "__name__")
    assert (TEAM_B_ONLY_METRIC in names) == (user == "rita"), names


def test_promtool_refusals_are_shown(stack, promtool_auth):
    """promtool prints the filter's JSON error: a wrong password (401) and another project named (403)."""
    server, flags = promtool_auth(stack, "alice", password="not-alice-secret-%d" % time.time_ns())
    r = promtool("query", "instant", *flags, "--time=" + stack["SEED_END"], server, "cloud_instances")
    assert r.returncode != 0 and "401" in r.stderr and "unauthorized" in r.stderr, (r.stdout, r.stderr)
    server, flags = promtool_auth(stack, "alice")
    r = promtool("query", "instant", *flags, "--time=" + stack["SEED_END"], server,
                 'cloud_instances{project="%s"}' % stack["TEAM_B_ID"])
    assert r.returncode != 0 and "403" in r.stderr and "forbidden" in r.stderr, (r.stdout, r.stderr)
