"""Endpoints whose answer (not the request) is filtered, and request-shape rules, on the real stack."""
import gzip
import http.client
import json
import time
import urllib.parse
import zlib

import pytest
import requests


def get(stack, path, token, **kw):
    headers = kw.pop("headers", {})
    headers.setdefault("Connection", "close")
    if token:
        headers["X-Auth-Token"] = token
    return requests.get(stack["ENVOY_URL"] + path, headers=headers, timeout=20, **kw)


def test_rules_only_the_tenants(stack):
    for user, own, other in (("ALICE", "TEAM_A_ID", "TEAM_B_ID"), ("RITA", "TEAM_B_ID", "TEAM_A_ID")):
        r = get(stack, "/api/v1/rules", stack[user + "_TOKEN"])
        assert r.status_code == 200, r.text
        groups = r.json()["data"]["groups"]
        assert [g["name"] for g in groups] == ["project-" + stack[own]]
        rules = groups[0]["rules"]
        assert {ru["name"] for ru in rules} == {"project:cloud_cpu_seconds:rate5m", "ProjectHasInstances"}
        assert stack[other] not in r.text
        assert "AnyInstances" not in r.text, "a rule without the tenant label is not shown"


def test_rules_with_gzip_requested(stack):
    # The filter drops Accept-Encoding so it can read the answer; the client still gets valid JSON.
    r = get(stack, "/api/v1/rules", stack["ALICE_TOKEN"], headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200
    body = r.content
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    assert stack["TEAM_B_ID"] not in body.decode()
    assert json.loads(body)["status"] == "success"


def test_rules_with_deflate_requested(stack):
    # Prometheus also answers deflate: the filter asks for identity (overwriting the client's
    # Accept-Encoding where it lies) and can read a deflate answer all the same.
    r = get(stack, "/api/v1/rules", stack["ALICE_TOKEN"], headers={"Accept-Encoding": "deflate"})
    assert r.status_code == 200, r.text
    body = r.content
    if r.headers.get("Content-Encoding") == "deflate":
        body = zlib.decompress(body)
    doc = json.loads(body)
    assert doc["status"] == "success"
    assert [g["name"] for g in doc["data"]["groups"]] == ["project-" + stack["TEAM_A_ID"]]
    assert stack["TEAM_B_ID"] not in body.decode()


@pytest.mark.parametrize("name", ["X-Auth-Token", "X-Project-Id", "X-Scope-OrgID", "X-Service-Token"])
def test_a_header_the_filter_strips_may_come_only_once(stack, name):
    # A host that only marks a removed header (NGINX) can overwrite one copy, not two: refused on every host.
    u = urllib.parse.urlsplit(stack["ENVOY_URL"])
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=20)
    try:
        c.putrequest("GET", "/api/v1/query?query=up&time=" + stack["SEED_END"])
        if name != "X-Auth-Token":
            c.putheader("X-Auth-Token", stack["ALICE_TOKEN"])
        for value in (stack["ALICE_TOKEN"] if name == "X-Auth-Token" else stack["TEAM_B_ID"], stack["TEAM_B_ID"]):
            c.putheader(name, value)
        c.endheaders()
        r = c.getresponse()
        body = json.loads(r.read())
    finally:
        c.close()
    assert r.status == 400, body
    assert body["errorType"] == "bad_data" and "more than once" in body["error"], body


def test_alerts_only_the_tenants(stack):
    deadline = time.time() + 15
    while True:
        r = get(stack, "/api/v1/alerts", stack["ALICE_TOKEN"])
        assert r.status_code == 200, r.text
        alerts = r.json()["data"]["alerts"]
        if alerts or time.time() > deadline:
            break
        time.sleep(0.5)
    assert alerts, "the tenant's own alert fires (cloud_instances > 0)"
    assert {a["labels"]["project"] for a in alerts} == {stack["TEAM_A_ID"]}
    assert stack["TEAM_B_ID"] not in r.text
    assert "AnyInstances" not in r.text


def test_rules_need_a_token_and_get(stack):
    assert get(stack, "/api/v1/rules", None).status_code == 401
    r = requests.post(stack["ENVOY_URL"] + "/api/v1/rules", timeout=20,
                      headers={"X-Auth-Token": stack["ALICE_TOKEN"], "Connection": "close"})
    assert r.status_code == 405
    assert r.json()["status"] == "error"


def test_format_query_passes_with_a_token(stack):
    r = get(stack, "/api/v1/format_query", stack["ALICE_TOKEN"], params={"query": "sum(up)"})
    assert r.status_code == 200, r.text
    assert get(stack, "/api/v1/format_query", None, params={"query": "up"}).status_code == 401


def test_post_without_body_needs_no_content_type(stack):
    r = requests.post(stack["ENVOY_URL"] + "/api/v1/labels", timeout=20,
                      headers={"X-Auth-Token": stack["ALICE_TOKEN"], "Connection": "close"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "success"


def test_query_exemplars_is_enforced(stack):
    # Prometheus 2.42 answers an empty list without exemplar storage; what matters is that the
    # request is authenticated, rewritten (a foreign project is refused) and answered.
    params = {"query": "http_requests_total", "start": stack["SEED_START"], "end": stack["SEED_END"]}
    r = get(stack, "/api/v1/query_exemplars", stack["ALICE_TOKEN"], params=params)
    assert r.status_code == 200 and r.json()["status"] == "success", r.text
    params["query"] = 'http_requests_total{project="%s"}' % stack["TEAM_B_ID"]
    r = get(stack, "/api/v1/query_exemplars", stack["ALICE_TOKEN"], params=params)
    assert r.status_code == 403 and r.json()["errorType"] == "forbidden", r.text
    assert get(stack, "/api/v1/query_exemplars", None, params=params).status_code == 401
