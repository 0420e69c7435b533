"""Audit: who sent each request, in the filter's log lines and in Envoy's access log.

An extra Envoy of the stack's rendered envoy/envoy.yaml (whose access log writes one line per request to
stdout, i.e. the Envoy's log) runs the filter, with the `wasm` logger at debug (the filter's "allowed" line
is a debug line, see docs/audit.md). An allowed request names the user and the tenant in the access log
(the filter state `wasm.kpw_user` and `wasm.kpw_tenant` the filter sets) and in the filter's "allowed"
line; a request refused after Keystone said who sent it names them in the refusal line (info); one refused
before (401) names no one. No line holds the token (conftest checks every log for every secret at the end
of the session as well).
"""
import re
import uuid

import pytest

from conftest import prom_error, wait_for

CPU = "cloud_cpu_seconds_total"


@pytest.fixture(scope="module")
def audited(envoy_variants):
    e = envoy_variants("audit", log_args=("--component-log-level", "wasm:debug"))
    with open(envoy_variants.rendered) as f:
        assert "wasm.kpw_tenant:PLAIN" in f.read(), "envoy/envoy.yaml has no access log with kpw_tenant"
    return e


def marked(stack, **extra):
    """Query parameters with a marker of their own, which the access log line carries (its path)."""
    mark = uuid.uuid4().hex
    params = {"query": CPU, "time": stack["SEED_END"], "kpw_mark": mark}
    params.update(extra)
    return mark, params


def access_line(e, mark):
    """The access log line of the request whose path carries `mark` (the log is flushed within ~1 s)."""
    def find():
        lines = [l for l in e.log().splitlines() if "kpw_mark=%s" % mark in l and "user=" in l]
        return lines[0] if lines else None
    line = wait_for(find, timeout=10, interval=0.2)
    assert line, "no access log line for kpw_mark=%s; log tail:\n%s" % (mark, e.log()[-3000:])
    return line


def filter_lines(e, rid):
    return [l for l in e.log().splitlines() if "[%s]" % rid in l and "wasm log" in l]


def fields(line):
    """user=…, tenant=… and the status of an access log line of envoy/envoy.yaml's format."""
    m = re.search(r'" (\d{3}) .* user=(\S+) tenant=(\S+)$', line)
    assert m, line
    return {"status": int(m.group(1)), "user": m.group(2), "tenant": m.group(3)}


def test_an_allowed_request_names_user_and_tenant(audited, stack):
    rid = "kpw-audit-%s" % uuid.uuid4().hex
    mark, params = marked(stack)
    r = audited.get("/api/v1/query", stack["ALICE_TOKEN"], params=params, headers={"X-Request-Id": rid})
    assert r.status_code == 200, r.text[:300]
    line = access_line(audited, mark)
    assert fields(line) == {"status": 200, "user": stack["ALICE_ID"], "tenant": stack["TEAM_A_ID"]}, line
    assert stack["ALICE_TOKEN"] not in line
    assert wait_for(lambda: filter_lines(audited, rid), timeout=5)
    # The filter's own line (debug): request id, method, endpoint path, user and project.
    lines = filter_lines(audited, rid)
    want = "[%s] allowed GET /api/v1/query user_id=%s project_id=%s" % (rid, stack["ALICE_ID"], stack["TEAM_A_ID"])
    allowed = [l for l in lines if l.endswith(want)]
    assert allowed, "%r not in %r" % (want, lines)
    assert "][debug][wasm]" in allowed[0], allowed[0]


def test_a_refusal_after_keystone_names_user_and_project(audited, stack):
    rid = "kpw-audit-%s" % uuid.uuid4().hex
    mark, params = marked(stack, query='%s{project="%s"}' % (CPU, stack["TEAM_B_ID"]))
    r = audited.get("/api/v1/query", stack["ALICE_TOKEN"], params=params, headers={"X-Request-Id": rid})
    prom_error(r, 403, "forbidden")
    found = wait_for(lambda: filter_lines(audited, rid), timeout=5)
    assert found, "no filter line names %s" % rid
    lines = filter_lines(audited, rid)
    assert len(lines) == 1, lines
    prefix = "[%s] refused with 403 user_id=%s project_id=%s: " % (rid, stack["ALICE_ID"], stack["TEAM_A_ID"])
    assert prefix in lines[0] and "][info][wasm]" in lines[0], lines[0]
    assert stack["TEAM_B_ID"] in lines[0], "the reason stays: %s" % lines[0]
    assert stack["ALICE_TOKEN"] not in lines[0]
    # The access log names the sender of a request refused after validation as well.
    assert fields(access_line(audited, mark)) == {"status": 403, "user": stack["ALICE_ID"], "tenant": stack["TEAM_A_ID"]}


def test_a_denied_path_names_a_known_sender(audited, stack):
    # alice's token is known to this Envoy by now (the tests above); a denied path asks no Keystone.
    audited.get("/api/v1/query", stack["ALICE_TOKEN"], params={"query": "up", "time": stack["SEED_END"]})
    rid = "kpw-audit-%s" % uuid.uuid4().hex
    r = audited.post("/api/v1/admin/tsdb/snapshot", stack["ALICE_TOKEN"], headers={"X-Request-Id": rid})
    prom_error(r, 403)
    assert wait_for(lambda: filter_lines(audited, rid), timeout=5)
    line = filter_lines(audited, rid)[0]
    assert "refused with 403 user_id=%s project_id=%s: /api/v1/admin/tsdb/snapshot" % (
        stack["ALICE_ID"], stack["TEAM_A_ID"]) in line, line


def test_a_refusal_before_keystone_names_no_one(audited, stack):
    rid = "kpw-audit-%s" % uuid.uuid4().hex
    mark, params = marked(stack)
    bad = "kpw-not-a-token-%s" % uuid.uuid4().hex
    r = audited.get("/api/v1/query", bad, params=params, headers={"X-Request-Id": rid})
    body = prom_error(r, 401, "unauthorized")
    assert "openstack token issue" in body["error"], body
    assert fields(access_line(audited, mark)) == {"status": 401, "user": "-", "tenant": "-"}
    assert wait_for(lambda: filter_lines(audited, rid), timeout=5)
    line = filter_lines(audited, rid)[0]
    assert "[%s] refused with 401: Keystone refused the token in X-Auth-Token: " % rid in line, line
    assert "user_id=" not in line and bad not in line, line
