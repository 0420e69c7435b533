"""End-to-end tests of the keystone_prom filter in a real Envoy, against real Keystone and Prometheus.

Seed data (scripts/stack.sh): cloud_cpu_seconds_total has 2 series for team-a (alice) and 1 for
team-b (rita); cloud_instances has 1 series per project. Every query uses an explicit time inside
the seeded window (SEED_END, or SEED_START..SEED_END for ranges).
"""
import base64
import os
import time

import pytest
import requests

from conftest import new_token, wait_for

USERS = ["alice", "rita"]
CPU = "cloud_cpu_seconds_total"


def result(resp):
    assert resp.status_code == 200, "HTTP %d: %s" % (resp.status_code, resp.text[:500])
    body = resp.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def assert_only_project(series, project, count=None):
    got = [s["metric"].get("project") for s in series]
    assert all(p == project for p in got), "foreign series leaked: %r (own project %s)" % (got, project)
    if count is not None:
        assert len(series) == count, "expected %d series, got %d: %r" % (count, len(series), series)


def assert_prom_error(resp, status, error_type=None):
    assert resp.status_code == status, "HTTP %d (want %d): %s" % (resp.status_code, status, resp.text[:500])
    assert resp.headers.get("Content-Type", "").startswith("application/json"), resp.headers
    body = resp.json()
    assert body.get("status") == "error", body
    assert isinstance(body.get("errorType"), str) and body["errorType"], body
    assert isinstance(body.get("error"), str) and body["error"], body
    if error_type is not None:
        assert body["errorType"] == error_type, body
    return body


# ------------------------------------------------------------------ enforced query endpoints
@pytest.mark.parametrize("user", USERS)
def test_instant_query_get(envoy, stack, tokens, user):
    t = tokens[user]
    r = envoy.get("/api/v1/query", t["token"], params={"query": CPU, "time": stack["SEED_END"]})
    assert_only_project(result(r), t["project"], t["cpu_series"])


@pytest.mark.parametrize("user", USERS)
def test_range_query_get(envoy, stack, tokens, user):
    t = tokens[user]
    r = envoy.get("/api/v1/query_range", t["token"], params={
        "query": CPU, "start": stack["SEED_START"], "end": stack["SEED_END"], "step": 60})
    series = result(r)
    assert_only_project(series, t["project"], t["cpu_series"])
    assert all(len(s["values"]) == 61 for s in series), [len(s["values"]) for s in series]


@pytest.mark.parametrize("user", USERS)
def test_instant_query_post_form(envoy, stack, tokens, user):
    t = tokens[user]
    r = envoy.post("/api/v1/query", t["token"], data={"query": CPU, "time": stack["SEED_END"]})
    assert_only_project(result(r), t["project"], t["cpu_series"])


@pytest.mark.parametrize("user", USERS)
def test_range_query_post_form(envoy, stack, tokens, user):
    t = tokens[user]
    r = envoy.post("/api/v1/query_range", t["token"], data={
        "query": CPU, "start": stack["SEED_START"], "end": stack["SEED_END"], "step": "60"})
    assert_only_project(result(r), t["project"], t["cpu_series"])


@pytest.mark.parametrize("user", USERS)
def test_post_query_in_body_and_url_both_enforced(envoy, stack, tokens, user):
    """Prometheus merges the form body and the URL query (body first): both must be filtered."""
    t = tokens[user]
    r = envoy.post("/api/v1/query?query=cloud_instances&time=%s" % stack["SEED_END"], t["token"],
                   data={"query": CPU, "time": stack["SEED_END"]})
    # Prometheus evaluates the body's query (cloud_cpu_seconds_total)
    assert_only_project(result(r), t["project"], t["cpu_series"])


@pytest.mark.parametrize("user", USERS)
def test_post_query_only_in_url(envoy, stack, tokens, user):
    """A POST form whose body lacks `query`: the URL's query is what Prometheus runs."""
    t = tokens[user]
    r = envoy.post("/api/v1/query?query=%s" % CPU, t["token"], data={"time": stack["SEED_END"]})
    assert_only_project(result(r), t["project"], t["cpu_series"])


@pytest.mark.parametrize("user", USERS)
def test_post_repeated_query_param(envoy, stack, tokens, user):
    """Two `query` fields in one body: either refused, or every one of them enforced."""
    t = tokens[user]
    body = "query=cloud_instances&query=%s&time=%s" % (CPU, stack["SEED_END"])
    r = envoy.post("/api/v1/query", t["token"], data=body,
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    if r.status_code in (400, 403):
        assert_prom_error(r, r.status_code)
    else:
        assert_only_project(result(r), t["project"])


@pytest.mark.parametrize("user", USERS)
def test_post_body_grows_content_length(envoy, stack, tokens, user):
    """The rewritten body is longer; `time` comes last, so a stale Content-Length would cut it off
    (Prometheus would then query at 'now' and find nothing) or make the upstream request fail."""
    t = tokens[user]
    body = "query=%s&time=%s" % (CPU, stack["SEED_END"])
    r = envoy.post("/api/v1/query", t["token"], data=body,
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_only_project(result(r), t["project"], t["cpu_series"])
    # a bigger body with a longer query and a parameter after it
    q = "sum by (instance) (rate(%s[5m])) + on(instance) group_left() (0 * %s)" % (CPU, CPU)
    r = envoy.post("/api/v1/query", t["token"], data={"query": q, "time": stack["SEED_END"]})
    assert len(result(r)) == t["cpu_series"]


@pytest.mark.parametrize("user", USERS)
def test_aggregation_by_project(envoy, stack, tokens, user):
    t = tokens[user]
    r = envoy.get("/api/v1/query", t["token"], params={
        "query": "sum by (project) (rate(%s[5m]))" % CPU, "time": stack["SEED_END"]})
    assert_only_project(result(r), t["project"], 1)


@pytest.mark.parametrize("user", USERS)
def test_other_project_explicitly_named(envoy, stack, tokens, user):
    t = tokens[user]
    r = envoy.get("/api/v1/query", t["token"], params={
        "query": '%s{project="%s"}' % (CPU, t["other"]), "time": stack["SEED_END"]})
    assert r.status_code in (200, 403), r.text
    if r.status_code == 200:
        series = result(r)
        assert not any(s["metric"].get("project") == t["other"] for s in series), series
        assert_only_project(series, t["project"])
    else:
        assert_prom_error(r, 403)


@pytest.mark.parametrize("user", USERS)
def test_other_project_regex(envoy, stack, tokens, user):
    t = tokens[user]
    r = envoy.get("/api/v1/query", t["token"], params={
        "query": '%s{project=~".+"}' % CPU, "time": stack["SEED_END"]})
    assert r.status_code in (200, 403), r.text
    if r.status_code == 200:
        assert_only_project(result(r), t["project"])


@pytest.mark.parametrize("user", USERS)
def test_all_series_selector(envoy, stack, tokens, user):
    t = tokens[user]
    r = envoy.get("/api/v1/query", t["token"], params={"query": '{__name__=~".+"}', "time": stack["SEED_END"]})
    # every series of the own project: cpu + cloud_instances + the richer seed_rich series
    assert_only_project(result(r), t["project"], t["all_series"])


# ------------------------------------------------------------------ authentication
def test_no_token_401(envoy, stack):
    r = envoy.get("/api/v1/query", params={"query": CPU, "time": stack["SEED_END"]})
    assert_prom_error(r, 401)
    assert r.headers.get("WWW-Authenticate") == 'Keystone uri="http://127.0.0.1:%s/v3"' % stack["KEYSTONE_PORT"]


def test_no_token_post_401(envoy, stack):
    r = envoy.post("/api/v1/query", data={"query": CPU, "time": stack["SEED_END"]})
    assert_prom_error(r, 401)


@pytest.mark.parametrize("bad", [
    "garbage",
    # looks like a fernet token (same alphabet and length) but is not one
    "gAAAAAB" + base64.urlsafe_b64encode(os.urandom(135)).decode().rstrip("="),
])
def test_invalid_token_401(envoy, stack, bad):
    r = envoy.get("/api/v1/query", bad, params={"query": CPU, "time": stack["SEED_END"]})
    assert_prom_error(r, 401)


def test_unparseable_promql_400(envoy, stack, tokens):
    r = envoy.get("/api/v1/query", tokens["alice"]["token"], params={"query": "sum(", "time": stack["SEED_END"]})
    assert_prom_error(r, 400, "bad_data")


# ------------------------------------------------------------------ path policy
@pytest.mark.parametrize("method,path", [
    ("GET", "/api/v1/status/config"),
    ("POST", "/api/v1/admin/tsdb/snapshot"),
    ("GET", "/api/v1/targets"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/status/flags"),
    ("GET", "/api/v1/targets/metadata"),
])
def test_unknown_paths_403(envoy, tokens, method, path):
    r = envoy.request(method, path, tokens["alice"]["token"])
    assert_prom_error(r, 403)


@pytest.mark.parametrize("path", ["/-/healthy", "/-/ready", "/api/v1/status/buildinfo"])
def test_allowed_without_token(envoy, path):
    r = envoy.get(path)
    assert r.status_code == 200, "HTTP %d: %s" % (r.status_code, r.text[:300])


# ------------------------------------------------------------------ token cache
def _validations(stack):
    with open(stack["KEYSTONE_ACCESS_LOG"], errors="replace") as f:
        lines = [l for l in f if "/auth/tokens" in l]
    return len(lines), sum(1 for l in lines if '"GET /v3/auth/tokens' in l)


def test_token_cache_shared_across_workers(envoy, stack):
    tok = new_token(stack, "alice", "alice-secret", stack["TEAM_A_ID"])
    # the POST that created the token must be in the log before we take the baseline
    time.sleep(0.2)
    before, before_get = _validations(stack)
    params = {"query": CPU, "time": stack["SEED_END"]}
    assert_only_project(result(envoy.get("/api/v1/query", tok, params=params)), stack["TEAM_A_ID"], 2)
    after1 = wait_for(lambda: _validations(stack)[0] > before and _validations(stack), timeout=5)
    assert after1, "no token validation reached Keystone"
    assert after1[0] == before + 1, "expected exactly one validation, log grew by %d" % (after1[0] - before)
    assert after1[1] == before_get + 1, "the validation should be a GET /v3/auth/tokens"
    # 10 more requests, each on a new connection (spread over Envoy's 2 workers): all cached
    for _ in range(10):
        assert_only_project(result(envoy.get("/api/v1/query", tok, params=params)), stack["TEAM_A_ID"], 2)
    time.sleep(0.5)
    after = _validations(stack)[0]
    assert after == after1[0], "cache miss: %d extra validations for 10 requests" % (after - after1[0])
