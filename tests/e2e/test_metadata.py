"""Metric metadata per tenant, end to end: GET /api/v1/metadata through the stack's Envoy, with the
filter's `metadata` section on (envoy/envoy.yaml).

Prometheus keeps metadata (type, help, unit) per metric name, from the targets it scrapes. The stack's
main Prometheus has a scrape job for this test, `e2e-metadata` (harness/stack.py): it scrapes the
targets listed in prometheus/targets/*.json, keeps their metadata and drops every sample, so the stored
series stay the seeded ones. This module serves an exporter (in-process, random port) in OpenMetrics with
the metadata of seeded metrics both projects have, of team-b's only metric (batch_jobs_failed, whose
series is batch_jobs_failed_total), and of metrics nobody has a series of; it lists the exporter in
targets/, and takes it out again at the end (and the exporter's up/scrape_* series with it).

The filter keeps an entry when the tenant has a series of its family (the name itself, or the name with
its type's suffixes: a histogram's _bucket/_sum/_count, a counter's _total), and applies `limit` after
filtering.
"""
import http.server
import json
import os
import threading
import time

import pytest
import requests

from conftest import basic_auth

JOB = "e2e-metadata"
B_ONLY_HELP = "KPW-B-ONLY-HELP failed batch jobs of team-b"
UNOWNED_HELP = "KPW-UNOWNED-HELP a metric no tenant has a series of"
UNOWNED = ["kpw_unowned_%02d" % i for i in range(24)]
# (family, type, help, samples); <A> and <B> are the projects' ids. Samples are dropped at scrape.
FAMILIES = [
    ("request_duration_seconds", "histogram", "Request duration, a histogram both projects have.",
     ['request_duration_seconds_bucket{project="<A>",le="+Inf"} 3', 'request_duration_seconds_count{project="<A>"} 3',
      'request_duration_seconds_sum{project="<A>"} 1.5']),
    ("http_requests", "counter", "HTTP requests, a counter both projects have.", ['http_requests_total{project="<A>"} 7']),
    ("memory_bytes", "gauge", "Memory in use.", ['memory_bytes{project="<A>"} 1e9', 'memory_bytes{project="<B>"} 2e9']),
    ("cloud_instances", "gauge", "Instances per project.", ['cloud_instances{project="<B>"} 1']),
    ("batch_jobs_failed", "counter", B_ONLY_HELP, ['batch_jobs_failed_total{project="<B>"} 3']),
] + [(n, "gauge", UNOWNED_HELP, ["%s 1" % n]) for n in UNOWNED]
SHARED = {"request_duration_seconds", "http_requests", "memory_bytes", "cloud_instances"}
EXPECTED = {"alice": SHARED, "rita": SHARED | {"batch_jobs_failed"}}


def exposition(a, b):
    out = []
    for name, typ, help_, samples in FAMILIES:
        out += ["# TYPE %s %s" % (name, typ), "# HELP %s %s" % (name, help_)]
        out += [s.replace("<A>", a).replace("<B>", b) for s in samples]
    return ("\n".join(out) + "\n# EOF\n").encode()


class _Exporter(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        body = self.server.body
        self.send_response(200)
        self.send_header("Content-Type", "application/openmetrics-text; version=1.0.0; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def direct_metadata(stack, **params):
    r = requests.get(stack["PROM_URL"] + "/api/v1/metadata", params=params, timeout=20)
    r.raise_for_status()
    return r.json()["data"]


@pytest.fixture(scope="module")
def scraped(stack):
    targets_dir = os.path.join(stack["STACK_DIR"], "prometheus", "targets")
    if not os.path.isdir(targets_dir):
        pytest.fail("the stack has no e2e-metadata scrape job (%s missing): restart it with the current "
                    "harness/stack.py" % targets_dir, pytrace=False)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Exporter)
    srv.body = exposition(stack["TEAM_A_ID"], stack["TEAM_B_ID"])
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    target = "127.0.0.1:%d" % srv.server_address[1]
    path = os.path.join(targets_dir, "metadata-test.json")
    with open(path + ".tmp", "w") as f:
        json.dump([{"targets": [target]}], f)
    os.replace(path + ".tmp", path)
    try:
        deadline = time.monotonic() + 120
        want = {n for n, _, _, _ in FAMILIES}
        have = set()
        while time.monotonic() < deadline:
            have = set(direct_metadata(stack))
            if want <= have:
                break
            time.sleep(1)
        else:
            pytest.fail("Prometheus has not scraped the metadata within 2 minutes (has %s)" % sorted(have),
                        pytrace=False)
        yield target
    finally:
        os.remove(path)
        srv.shutdown()
        srv.server_close()
        # the target's own series (up, scrape_*; it has no project): deleted, as the stack had none
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = requests.get(stack["PROM_URL"] + "/api/v1/targets", params={"state": "active"}, timeout=20)
            if not any(t["labels"].get("job") == JOB for t in r.json()["data"]["activeTargets"]):
                break
            time.sleep(1)
        requests.post(stack["PROM_URL"] + "/api/v1/admin/tsdb/delete_series", params={"match[]": '{job="%s"}' % JOB},
                      timeout=20)
        requests.post(stack["PROM_URL"] + "/api/v1/admin/tsdb/clean_tombstones", timeout=60)


@pytest.fixture(scope="module")
def users(stack):
    return {"alice": ({"X-Auth-Token": stack["ALICE_TOKEN"]}, stack["TEAM_A_ID"], stack["TEAM_B_ID"]),
            "rita": ({"X-Auth-Token": stack["RITA_TOKEN"]}, stack["TEAM_B_ID"], stack["TEAM_A_ID"])}


def get(stack, headers, params=None):
    return requests.get(stack["ENVOY_URL"] + "/api/v1/metadata", params=params,
                        headers=dict(headers, Connection="close"), timeout=20)


def data(resp):
    assert resp.status_code == 200, "HTTP %d %s" % (resp.status_code, resp.text[:500])
    assert resp.headers.get("Content-Type", "").startswith("application/json"), resp.headers
    body = resp.json()
    assert body["status"] == "success", body
    return body["data"]


@pytest.mark.parametrize("user", ["alice", "rita"])
def test_only_the_tenants_metrics(stack, scraped, users, user):
    headers, own, other = users[user]
    r = get(stack, headers)
    got = data(r)
    assert set(got) == EXPECTED[user], sorted(got)
    direct = direct_metadata(stack)
    for name in got:
        assert got[name] == direct[name], name          # the entries themselves pass as they are
    assert "kpw_unowned" not in r.text and UNOWNED_HELP not in r.text
    assert other not in r.text and own not in r.text
    if user == "alice":
        assert "batch_jobs_failed" not in r.text and B_ONLY_HELP not in r.text
    else:
        assert got["batch_jobs_failed"] == [{"type": "counter", "help": B_ONLY_HELP, "unit": ""}], got


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_limit_is_applied_after_filtering(stack, scraped, users, limit):
    """Prometheus' own limit would mostly pick metrics of nobody's (24 of 29 are): the tenant still gets
    `limit` of its own."""
    for user in ("alice", "rita"):
        got = data(get(stack, users[user][0], {"limit": str(limit)}))
        assert len(got) == limit and set(got) <= EXPECTED[user], (user, got)


@pytest.mark.parametrize("limit,want", [("0", 0), ("-1", None), ("", None), ("100", None)])
def test_limit_edges(stack, scraped, users, limit, want):
    got = data(get(stack, users["alice"][0], {"limit": limit}))
    assert set(got) <= EXPECTED["alice"]
    assert len(got) == (len(EXPECTED["alice"]) if want is None else want), got


def test_bad_limit_400(stack, scraped, users):
    r = get(stack, users["alice"][0], {"limit": "ten"})
    assert r.status_code == 400, r.text
    assert r.json()["status"] == "error" and r.json()["errorType"] == "bad_data", r.text


@pytest.mark.parametrize("metric,alice,rita", [
    ("memory_bytes", True, True),
    ("request_duration_seconds", True, True),
    ("http_requests", True, True),
    ("batch_jobs_failed", False, True),
    ("kpw_unowned_00", False, False),
    ("no_such_metric", False, False),
])
def test_metric_parameter(stack, scraped, users, metric, alice, rita):
    for user, visible in (("alice", alice), ("rita", rita)):
        r = get(stack, users[user][0], {"metric": metric})
        got = data(r)
        assert list(got) == ([metric] if visible else []), (user, got)
        if visible:
            assert got[metric] == direct_metadata(stack, metric=metric)[metric]
        else:
            assert metric not in r.text, (user, r.text)
    # with a limit too
    got = data(get(stack, users["rita"][0], {"metric": metric, "limit": "1"}))
    assert list(got) == ([metric] if rita else [])


def test_tenants_do_not_share_a_cache(stack, scraped, users):
    """The names are cached per tenant: alternating tenants each get their own answer."""
    for _ in range(3):
        for user in ("alice", "rita", "alice"):
            assert set(data(get(stack, users[user][0]))) == EXPECTED[user], user


def test_grafana_metadata_call(stack, scraped):
    """Grafana's metric browser: GET /api/v1/metadata, no parameters, Basic auth in Maia's form."""
    headers = dict(basic_auth("alice@tenants|team-a@tenants", "alice-secret"),
                   **{"User-Agent": "Grafana/10.4.0", "Accept-Encoding": "gzip", "X-Grafana-Org-Id": "1"})
    got = data(get(stack, headers))
    assert set(got) == EXPECTED["alice"]


def test_refusals(stack, scraped, users):
    r = requests.get(stack["ENVOY_URL"] + "/api/v1/metadata", timeout=20, headers={"Connection": "close"})
    assert r.status_code == 401, r.text
    r = requests.post(stack["ENVOY_URL"] + "/api/v1/metadata", timeout=20, data=b"",
                      headers=dict(users["alice"][0], Connection="close"))
    assert r.status_code == 405, r.text
    # Prometheus' other metadata endpoint (per target, with the target's labels) stays closed
    r = requests.get(stack["ENVOY_URL"] + "/api/v1/targets/metadata", timeout=20,
                     headers=dict(users["alice"][0], Connection="close"))
    assert r.status_code == 403, r.text
