"""Keystone unreachable: the filter must fail closed (503) without touching Prometheus.

The test stops the stack's Keystone and starts it again on the same port and database (`stack.sh
ks-start` waits until it answers), so it may run in any order: tokens issued before stay valid.
"""
import re

import requests

from conftest import new_token, stack_cmd

CPU = "cloud_cpu_seconds_total"


def prom_upstream_requests(stack):
    r = requests.get(stack["ENVOY_ADMIN_URL"] + "/stats",
                     params={"filter": r"^cluster\.prometheus\.upstream_rq_total$"}, timeout=5)
    r.raise_for_status()
    m = re.search(r"cluster\.prometheus\.upstream_rq_total: (\d+)", r.text)
    assert m, r.text
    return int(m.group(1))


def test_keystone_down_503(envoy, stack):
    # tokens must be issued while Keystone is still up; neither has been seen by the filter
    tok = new_token(stack, "rita", "rita-secret", stack["TEAM_B_ID"])
    params = {"query": CPU, "time": stack["SEED_END"]}
    before = prom_upstream_requests(stack)
    r = stack_cmd("ks-stop", stack["STACK_DIR"])
    assert r.returncode == 0, r.stderr
    try:
        resp = envoy.get("/api/v1/query", tok, params=params)
        assert resp.status_code == 503, "HTTP %d: %s" % (resp.status_code, resp.text[:300])
        body = resp.json()
        assert body.get("status") == "error" and body.get("errorType"), body
        resp = envoy.post("/api/v1/query", tok, data=params)
        assert resp.status_code == 503, "HTTP %d: %s" % (resp.status_code, resp.text[:300])
        assert prom_upstream_requests(stack) == before, "a request reached Prometheus while Keystone was down"
    finally:
        r = stack_cmd("ks-start", stack["STACK_DIR"])
        assert r.returncode == 0, r.stderr
    # Keystone is back: a fresh token works again (and the 503 was not cached as a failure)
    tok2 = new_token(stack, "rita", "rita-secret", stack["TEAM_B_ID"])
    resp = envoy.get("/api/v1/query", tok2, params=params)
    assert resp.status_code == 200, resp.text[:300]
    assert [s["metric"]["project"] for s in resp.json()["data"]["result"]] == [stack["TEAM_B_ID"]]
    resp = envoy.get("/api/v1/query", tok, params=params)
    assert resp.status_code == 200, "token that got 503 while Keystone was down: HTTP %d %s" % (
        resp.status_code, resp.text[:300])
