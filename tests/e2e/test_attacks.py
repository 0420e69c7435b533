"""Attack corpus: nothing alice (team-a) sends may return team-b's data.

Every response is checked the same way (`assert_safe`):
  * never a 5xx (the filter must not crash or be crashed; a refusal is a 4xx),
  * a success contains only team-a data: every series carrying project has team-a's id, and no
    string in the data equals or contains team-b's project id, a team-b-only metric name
    (batch_jobs_failed_total) or a team-b-only label value (node-3, vm-b1, m1.xlarge, m1.tiny, batch),
  * for the query endpoints a success must moreover equal what PROM_A (the Prometheus holding only
    team-a's samples) answers to the very same raw request (same path, query string, body and
    Content-Type), so Prometheus' own parameter-picking rules apply identically on both sides.
Requests are sent with http.client so that paths, keys and encodings go out byte for byte.
"""
import gzip
import http.client
import json
import urllib.parse

import pytest

from conftest import without_rule_output
import requests

from test_equivalence import canon

B_ONLY_METRICS = ["batch_jobs_failed_total"]
B_ONLY_VALUES = ["node-3", "vm-b1", "m1.xlarge", "m1.tiny", "batch"]
FORM = "application/x-www-form-urlencoded"
ALL = '{__name__=~".+"}'


class Resp:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body
        self.text = body.decode("utf-8", "replace")

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def __repr__(self):
        return "HTTP %d %s" % (self.status, self.text[:1200])


def raw(base, method, path, headers=None, body=None):
    """One request, byte for byte (no path normalisation, no re-encoding)."""
    u = urllib.parse.urlsplit(base)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        c.putrequest(method, path, skip_accept_encoding=True)
        h = dict(headers or {})
        if body is not None:
            h.setdefault("Content-Length", str(len(body)))
        for k, v in h.items():
            c.putheader(k, v)
        c.endheaders(body)
        r = c.getresponse()
        return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        c.close()


def q(s):
    """Percent-encode a parameter value (like a browser / requests would)."""
    return urllib.parse.quote(s, safe="")


def sub(s, st):
    return s.replace("<A>", st["TEAM_A_ID"]).replace("<B>", st["TEAM_B_ID"]).replace(
        "<E>", st["SEED_END"]).replace("<S>", st["SEED_START"])


@pytest.fixture(scope="module")
def st(stack):
    return stack


def send(st, method, path, headers=None, body=None, token=True):
    h = dict(headers or {})
    if token:
        h["X-Auth-Token"] = st["ALICE_TOKEN"]
    return raw(st["ENVOY_URL"], method, path, h, body)


def direct(st, method, path, headers=None, body=None):
    return raw(st["PROM_A_URL"], method, path, headers, body)


def _strings(x):
    if isinstance(x, str):
        yield x
    elif isinstance(x, dict):
        for k, v in x.items():
            yield k
            yield from _strings(v)
    elif isinstance(x, list):
        for v in x:
            yield from _strings(v)


def _series_dicts(data):
    """Every label set in a query/series answer."""
    if isinstance(data, dict) and "result" in data and isinstance(data["result"], list):
        for s in data["result"]:
            if isinstance(s, dict) and isinstance(s.get("metric"), dict):
                yield s["metric"]
    elif isinstance(data, list):
        for s in data:
            if isinstance(s, dict):
                yield s


def leaks_in(strings, st, request_text=""):
    bad = []
    for s in strings:
        if st["TEAM_B_ID"] in s and st["TEAM_B_ID"] not in request_text:
            bad.append(s)
        elif any(m in s for m in B_ONLY_METRICS if m not in request_text):
            bad.append(s)
        elif s in B_ONLY_VALUES:
            bad.append(s)
    return bad


def assert_safe(st, r, request_text=""):
    """The common check. `request_text`: what the request itself carried (an error message may
    quote the query back; that is not a leak)."""
    assert r.status < 500, "filter answered 5xx (crash / fail?): %r" % r
    body = r.json()
    if r.status >= 300:
        if isinstance(body, dict):
            assert not leaks_in(_strings(body.get("data")), st), r
        else:
            assert not leaks_in([r.text], st, request_text), r
        return
    if isinstance(body, dict):
        data = body.get("data")
        leaked = leaks_in(_strings(data), st)
        assert not leaked, "team-b data in the answer: %r\n%r" % (leaked, r)
        foreign = [m for m in _series_dicts(data) if "project" in m and m["project"] != st["TEAM_A_ID"]]
        assert not foreign, "foreign series: %r" % foreign
    else:  # federate (text exposition format) and anything else
        assert not leaks_in([r.text], st), "team-b data in the answer: %r" % r
        for line in r.text.splitlines():
            if line and not line.startswith("#"):
                assert 'project="%s"' % st["TEAM_A_ID"] in line, "sample without team-a's id: %r" % line


def _ok(r):
    b = r.json()
    return r.status == 200 and isinstance(b, dict) and b.get("status") == "success"


def assert_enforced(st, method, path, headers=None, body=None, request_text="", allow=(400, 403, 405, 413, 415)):
    """Query endpoints: a refusal (one of `allow`, or the very status PROM_A answers, e.g. 422 for an
    execution error) or a success identical to PROM_A's answer to the same raw request."""
    r = send(st, method, path, headers, body)
    assert_safe(st, r, request_text or urllib.parse.unquote_plus(path + (body or b"").decode("latin-1")))
    d = direct(st, method, path, headers, body)
    if r.status >= 300:
        assert r.status in allow or r.status == d.status, "filtered: %r\nPROM_A: %r" % (r, d)
        return r
    assert _ok(r), r
    if _ok(d):
        assert canon(r.json(), _query_of(path, body), st["TEAM_A_ID"]) == canon(d.json(), _query_of(path, body)), \
            "filtered answer differs from PROM_A\n  filtered: %r\n  PROM_A:   %r" % (r, d)
    return r


def _query_of(path, body):
    qs = urllib.parse.parse_qs(path.partition("?")[2]) if "?" in path else {}
    bq = urllib.parse.parse_qs((body or b"").decode("latin-1"))
    v = (bq.get("query") or qs.get("query") or [""])[0]
    return v


# ------------------------------------------------------------------ hostile PromQL (GET /api/v1/query)
EVIL = [
    "up or " + ALL,
    ALL,
    '{project=~".+"}',
    '{project!="<A>"}',
    '{project!~"<A>"}',
    '{project=~"<B>|<A>"}',
    '{project=~"(?i)<B>"}',
    '{__name__=~".+",project=""}',
    '{project=""}',
    '{__name__=~"batch.*"}',
    'batch_jobs_failed_total',
    '{__name__="batch_jobs_failed_total"}',
    '{__name__=~".+"} offset -1h',
    '{__name__=~".+"} offset 1h',
    '{__name__=~".+"}[1h:5m]',
    '{__name__=~".+"}[10m]',
    'sum by (project) ({__name__=~".+"})',
    'count by (project, __name__) ({__name__=~".+"})',
    'topk(1000, {__name__=~".+"})',
    'count_values("v", {__name__=~".+"})',
    'label_replace({__name__=~".+"}, "x", "$1", "project", "(.*)")',
    'label_replace({project=~".+"}, "project", "", "", "")',
    'sum without (project) (label_replace(memory_bytes, "project", "", "", ""))',
    'label_join({__name__=~".+"}, "stolen", ",", "project", "instance", "__name__")',
    'memory_bytes * on(instance) group_left(project) memory_bytes',
    'memory_bytes or on() {__name__=~".+"}',
    'vector(1) and on() {__name__=~"batch.*"}',
    'absent(nonexistent_metric)',
    'absent({__name__=~"batch.*"})',
    'memory_bytes @ -1',
    'memory_bytes @ -100000',
    '{__name__=~".+"} @ -1',
    'rate({__name__=~".+"}[5m] @ <E>)',
    '{job="\\"}"}',                                  # value `"}`: escaping must survive the rewrite
    '{job="x\\",project=\\"<B>"}',                 # a naive rewriter would break out of the string
    '{job=~"x\\"} or {project=~\\".+"}',
    "{job='x\",project=\"<B>'}",                   # single-quoted string holding double quotes
    '{job=`x"}`}',                                    # raw string
    '{a="1" or b="2"}',                              # 3.x syntax: refused by 2.42 (or carries the matcher)
    '{"memory_bytes"}',                               # 3.x quoted metric name
    '{__name__=~".+"} # comment {project="<B>"}',
    'memory_bytes\n or {__name__=~".+"}',
    '{__name__=~".+", __name__=~".+"}',
    '{__name__=~".*", project=~".*"}',
    '{__name__=~".+"} unless {project="<A>"}',
    'sum({__name__=~".+"}) by (instance)',
    'max_over_time({__name__=~".+"}[1h:])',
    'last_over_time({__name__=~".+"}[30m] @ end())',
    'group by (instance, flavor) ({__name__=~".+"})',
    'count(count by (project) ({__name__=~".+"}))',
]


@pytest.mark.parametrize("expr", EVIL, ids=["%02d:%s" % (i, e[:50]) for i, e in enumerate(EVIL)])
def test_evil_query_get(st, expr):
    e = sub(expr, st)
    assert_enforced(st, "GET", "/api/v1/query?query=%s&time=%s" % (q(e), st["SEED_END"]), request_text=e)


@pytest.mark.parametrize("expr", EVIL[::2], ids=["%02d:%s" % (i, e[:50]) for i, e in enumerate(EVIL[::2])])
def test_evil_query_range_post(st, expr):
    e = sub(expr, st)
    body = ("query=%s&start=%d&end=%s&step=60" % (q(e), int(st["SEED_START"]) + 600, st["SEED_END"])).encode()
    assert_enforced(st, "POST", "/api/v1/query_range", {"Content-Type": FORM}, body, request_text=e)


@pytest.mark.parametrize("expr", [
    '{project="<B>"}',
    'memory_bytes{project="<B>"}',
    'sum(rate(http_requests_total{project="<B>"}[5m]))',
    'memory_bytes or {project="<B>"}',
    'absent(batch_jobs_failed_total{project="<B>"})',
])
def test_other_project_named_is_403(st, expr):
    e = sub(expr, st)
    r = send(st, "GET", "/api/v1/query?query=%s&time=%s" % (q(e), st["SEED_END"]))
    assert r.status == 403, r
    assert_safe(st, r, e)
    b = r.json()
    assert b["status"] == "error", r


# ------------------------------------------------------------------ header bytes
def test_header_values_that_are_not_utf8(st):
    """HTTP/1 allows bytes above 0x7F in header values (obs-text). The proxy-wasm SDK's own
    header reader panics on them, and a panic kills the filter's VM for every later request of
    the worker: the filter reads the header block itself."""
    path = "/api/v1/query?query=memory_bytes&" + _t(st)
    for _ in range(3):
        r = assert_enforced(st, "GET", path, {"X-Junk": b"caf\xe9", "User-Agent": b"gr\xfcn/1.0"})
        assert r.status == 200 and r.json()["data"]["result"], r
    # where the filter needs text (a credential), such bytes are refused, and nothing is asked of Keystone
    bad = raw(st["ENVOY_URL"], "GET", path, {"X-Auth-Token": st["ALICE_TOKEN"].encode() + b"\xff"})
    assert bad.status == 400 and "not valid UTF-8" in bad.text, bad
    # the VM is alive: the next requests are served as before
    r = send(st, "GET", path)
    assert r.status == 200 and r.json()["data"]["result"], r


# ------------------------------------------------------------------ parameter smuggling
def _t(st):
    return "time=%s" % st["SEED_END"]


def test_repeated_query_param(st):
    for qs in ("query=memory_bytes&query=%s" % q(ALL), "query=%s&query=memory_bytes" % q(ALL)):
        assert_enforced(st, "GET", "/api/v1/query?%s&%s" % (qs, _t(st)))


def test_encoded_key(st):
    # Go's url.ParseQuery unescapes keys: %71uery IS `query` for Prometheus
    for qs in ("query=memory_bytes&%%71uery=%s" % q(ALL), "%%71uery=%s&query=memory_bytes" % q(ALL),
               "%%71uery=%s" % q(ALL), "qu%%65ry=%s" % q(ALL), "%%71%%75%%65%%72%%79=%s" % q(ALL)):
        r = assert_enforced(st, "GET", "/api/v1/query?%s&%s" % (qs, _t(st)))
        if r.status == 200:
            assert r.json()["data"]["result"], "empty: the evil selector was not evaluated at all? %r" % r


def test_plus_as_space(st):
    e = 'sum by (project) ({__name__=~".+"})'
    qs = urllib.parse.quote_plus(e)
    assert "+" in qs
    r = assert_enforced(st, "GET", "/api/v1/query?query=%s&%s" % (qs, _t(st)))
    assert r.status == 200 and len(r.json()["data"]["result"]) == 1, r
    # a raw (unencoded) `+` inside the regex means a space to Prometheus: `. ` instead of `.+`
    r = assert_enforced(st, "GET", "/api/v1/query?query={__name__=~%22.+%22}&" + _t(st))


def test_semicolon_separator_400(st):
    for qs in ("query=memory_bytes;query=%s" % q(ALL), "query=%s;x=1" % q(ALL), "a=1;query=%s" % q(ALL)):
        r = send(st, "GET", "/api/v1/query?%s&%s" % (qs, _t(st)))
        assert_safe(st, r)
        assert r.status == 400, r


def test_semicolon_in_body_400(st):
    body = ("query=memory_bytes;query=%s&%s" % (q(ALL), _t(st))).encode()
    r = send(st, "POST", "/api/v1/query", {"Content-Type": FORM}, body)
    assert_safe(st, r)
    assert r.status == 400, r


def test_post_evil_body_benign_url(st):
    body = ("query=%s&%s" % (q(ALL), _t(st))).encode()
    assert_enforced(st, "POST", "/api/v1/query?query=memory_bytes&" + _t(st), {"Content-Type": FORM}, body)


def test_post_benign_body_evil_url(st):
    body = ("query=memory_bytes&%s" % _t(st)).encode()
    assert_enforced(st, "POST", "/api/v1/query?query=%s&%s" % (q(ALL), _t(st)), {"Content-Type": FORM}, body)


def test_post_evil_url_body_without_query(st):
    body = _t(st).encode()
    assert_enforced(st, "POST", "/api/v1/query?query=%s" % q(ALL), {"Content-Type": FORM}, body)


def test_post_repeated_and_encoded_keys_in_body(st):
    for b in ("query=memory_bytes&query=%s&%s", "%%71uery=%s&query=memory_bytes&%s"):
        body = (b % (q(ALL), _t(st))).encode()
        assert_enforced(st, "POST", "/api/v1/query", {"Content-Type": FORM}, body)


@pytest.mark.parametrize("ctype", [
    "application/x-www-form-urlencoded; charset=utf-8",
    "APPLICATION/X-WWW-FORM-URLENCODED",
    "application/x-www-form-urlencoded ; charset=UTF-8",
])
def test_post_content_type_variants(st, ctype):
    body = ("query=%s&%s" % (q(ALL), _t(st))).encode()
    assert_enforced(st, "POST", "/api/v1/query", {"Content-Type": ctype}, body)


def test_post_multipart_415(st):
    b = "XyZbOuNdArY"
    body = ("--%s\r\nContent-Disposition: form-data; name=\"query\"\r\n\r\n%s\r\n"
            "--%s\r\nContent-Disposition: form-data; name=\"time\"\r\n\r\n%s\r\n--%s--\r\n"
            % (b, ALL, b, st["SEED_END"], b)).encode()
    r = send(st, "POST", "/api/v1/query", {"Content-Type": "multipart/form-data; boundary=" + b}, body)
    assert_safe(st, r, ALL)
    assert r.status == 415, r


def test_post_text_plain_415(st):
    r = send(st, "POST", "/api/v1/query", {"Content-Type": "text/plain"},
             ("query=%s&%s" % (q(ALL), _t(st))).encode())
    assert_safe(st, r)
    assert r.status == 415, r


def test_post_gzip_body_415(st):
    body = gzip.compress(("query=%s&%s" % (q(ALL), _t(st))).encode())
    r = send(st, "POST", "/api/v1/query", {"Content-Type": FORM, "Content-Encoding": "gzip"}, body)
    assert_safe(st, r)
    assert r.status == 415, r


def test_post_no_content_type_with_body(st):
    r = send(st, "POST", "/api/v1/query?" + _t(st), None, ("query=%s" % q(ALL)).encode())
    assert_safe(st, r)
    assert r.status in (400, 415), r


# ------------------------------------------------------------------ path variants
@pytest.mark.parametrize("path", [
    "//api/v1/query", "/api/v1/query/", "/api/v1/%71uery", "/api/v1/./query", "/api/v1/../v1/query",
    "/api//v1/query", "/API/V1/QUERY", "/api/v1/query%2F", "/api/v1/query%00", "/./api/v1/query",
    "/api/v1/query;x=1", "/%61pi/v1/query", "/api/v1/query_range/../query", "///api/v1/series",
    "/api/v1/label/project/values/", "/api/v1/label/project/./values", "/federate/",
    "/api/v1/labels/", "/api/v1/series/",
])
def test_path_variants_never_leak(st, path):
    qs = "?query=%s&match[]=%s&%s" % (q(ALL), q(ALL), _t(st))
    r = send(st, "GET", path + qs)
    assert_safe(st, r, ALL)
    if r.status == 200:
        # forwarded: then it must have been enforced like the canonical path
        body = r.json()
        assert body is not None, r


# ------------------------------------------------------------------ metadata endpoints
def test_label_project_values_only_a(st):
    for path in ("/api/v1/label/project/values", "/api/v1/label/project/values?match[]=%s" % q(ALL),
                 "/api/v1/label/project/values?start=%s&end=%s" % (st["SEED_START"], st["SEED_END"]),
                 "/api/v1/label/project/values?match[]=%s" % q('{project=~".+"}')):
        r = send(st, "GET", path)
        assert_safe(st, r)
        assert r.status == 200, r
        assert r.json()["data"] == [st["TEAM_A_ID"]], r


def test_label_name_values_no_b_metric(st):
    r = send(st, "GET", "/api/v1/label/__name__/values")
    assert_safe(st, r)
    assert r.status == 200, r
    names = r.json()["data"]
    assert "batch_jobs_failed_total" not in names and "memory_bytes" in names, names


@pytest.mark.parametrize("label", ["instance", "flavor", "job"])
def test_label_values_no_b_values(st, label):
    r = send(st, "GET", "/api/v1/label/%s/values?match[]=%s" % (label, q(ALL)))
    assert_safe(st, r)
    assert r.status == 200 and r.json()["data"], r


def test_series_without_match_only_a(st):
    r = send(st, "GET", "/api/v1/series?start=%s&end=%s" % (st["SEED_START"], st["SEED_END"]))
    assert_safe(st, r)
    assert r.status == 200, r
    series = r.json()["data"]
    assert len(series) == int(st["TEAM_A_SERIES"]), len(series)
    assert all(s.get("project") == st["TEAM_A_ID"] for s in series)


@pytest.mark.parametrize("matches", [
    [ALL], ['{project=~".+"}'], [ALL, '{project!="<A>"}'], ['{__name__=~"batch.*"}'],
    ['memory_bytes', '{project=""}'], ['{instance="node-3"}'],
])
def test_series_match_only_a(st, matches):
    qs = "&".join("match[]=%s" % q(sub(m, st)) for m in matches)
    for method in ("GET", "POST"):
        if method == "GET":
            r = send(st, "GET", "/api/v1/series?" + qs)
        else:
            r = send(st, "POST", "/api/v1/series", {"Content-Type": FORM}, qs.encode())
        assert_safe(st, r)
        d = direct(st, "GET", "/api/v1/series?" + qs)
        if d.status != 200:   # e.g. `{project!="A"}` alone: no non-empty matcher -> 400 on both
            assert r.status == d.status, (r, d)
            continue
        assert r.status == 200, r
        got = without_rule_output(r.json()["data"], st["TEAM_A_ID"])
        assert sorted(map(json.dumps, got)) == sorted(map(json.dumps, d.json()["data"])), (r, d)


def test_series_other_project_403(st):
    r = send(st, "GET", "/api/v1/series?match[]=%s" % q(sub('{project="<B>"}', st)))
    assert_safe(st, r, st["TEAM_B_ID"])
    assert r.status == 403, r


def test_labels_only_a(st):
    for path in ("/api/v1/labels", "/api/v1/labels?match[]=%s" % q(ALL)):
        r = send(st, "GET", path)
        assert_safe(st, r)
        d = direct(st, "GET", path)
        assert r.status == 200 and sorted(without_rule_output(r.json()["data"])) == sorted(d.json()["data"]), (r, d)


@pytest.mark.parametrize("qs", ["?match[]=%s" % q(ALL), "", "?match[]=%s&match[]=%s" % (
    q('{project=~".+"}'), q('{__name__=~"batch.*"}')), "?%%6datch[]=%s" % q(ALL)])
def test_federate_only_a(st, qs):
    r = send(st, "GET", "/federate" + qs)
    assert_safe(st, r)
    assert r.status in (200, 400), r


def test_query_exemplars_only_a(st):
    r = send(st, "GET", "/api/v1/query_exemplars?query=%s&start=%s&end=%s" % (
        q(ALL), st["SEED_START"], st["SEED_END"]))
    assert_safe(st, r)
    assert r.status == 200, r


@pytest.mark.parametrize("path", ["/api/v1/rules", "/api/v1/alerts"])
def test_rules_alerts_only_a(st, path):
    r = send(st, "GET", path)
    assert_safe(st, r)


# ------------------------------------------------------------------ forbidden endpoints and methods
@pytest.mark.parametrize("method,path", [
    ("GET", "/api/v1/status/config"),
    ("GET", "/api/v1/status/tsdb"),
    ("GET", "/api/v1/status/flags"),
    ("GET", "/api/v1/status/runtimeinfo"),
    ("POST", "/api/v1/admin/tsdb/delete_series?match[]=%s" % q(ALL)),
    ("PUT", "/api/v1/admin/tsdb/delete_series?match[]=%s" % q(ALL)),
    ("POST", "/api/v1/admin/tsdb/clean_tombstones"),
    ("POST", "/api/v1/admin/tsdb/snapshot"),
    ("POST", "/-/reload"),
    ("GET", "/-/reload"),
    ("PUT", "/-/quit"),
    ("POST", "/-/quit"),
    ("GET", "/api/v1/targets"),
    ("GET", "/api/v1/targets/metadata"),
    # /api/v1/metadata and /api/v1/read are on in the stack (filtered: test_metadata.py,
    # test_remote_read.py; below: never another tenant's data). Remote write is on at /api/v1/write only (test_write.py); other receivers' paths are not.
    ("POST", "/api/v1/receive"),
    ("POST", "/api/v1/push"),
    ("POST", "/api/v1/otlp/v1/metrics"),
    ("GET", "/api/v1/alertmanagers"),
    ("GET", "/metrics"),
    ("GET", "/debug/pprof/heap"),
    ("GET", "/graph"),
    ("GET", "/api/v2/query?query=up"),
])
def test_forbidden_endpoints_403(st, method, path):
    body = b"" if method in ("POST", "PUT") else None
    r = send(st, method, path, {"Content-Type": FORM} if body is not None else None, body)
    assert_safe(st, r)
    assert r.status == 403, r


def test_admin_and_lifecycle_had_no_effect(st):
    """After the delete_series/quit/reload attempts above, Prometheus is up and data is intact (the
    projects' series: Prometheus' own series of a scrape, e.g. test_metadata.py's, have none)."""
    for method, path in (("POST", "/api/v1/admin/tsdb/delete_series?match[]=%s" % q(ALL)), ("POST", "/-/quit")):
        send(st, method, path, {"Content-Type": FORM}, b"")
    r = requests.get(st["PROM_URL"] + "/api/v1/series", params={"match[]": '{project=~".+"}'}, timeout=10)
    series = without_rule_output(r.json()["data"]) if r.status_code == 200 else None
    assert series is not None and len(series) == int(st["TEAM_A_SERIES"]) + int(st["TEAM_B_SERIES"]), r.text[:300]


@pytest.mark.parametrize("qs", ["", "?limit=1", "?metric=batch_jobs_failed_total", "?metric=batch_jobs_failed",
                                "?metric=memory_bytes&limit=-1", "?limit=1&limit=100", "?match[]=%s" % q(ALL)])
def test_metadata_no_b_metric(st, qs):
    r = send(st, "GET", "/api/v1/metadata" + qs)
    assert_safe(st, r)
    assert r.status in (200, 400), r
    if r.status == 200:
        assert not [m for m in r.json()["data"] if m.startswith("batch_jobs_failed")], r


def test_remote_read_refuses_what_it_cannot_read(st):
    """Remote read is on: a body that is not a snappy ReadRequest is refused (and never forwarded
    unenforced); test_remote_read.py reads the tenant's series and nothing else."""
    for body in (b"", b"garbage", b"\x05\x10\x0a\x03abc"):
        r = send(st, "POST", "/api/v1/read", {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"},
                 body)
        assert_safe(st, r)
        assert 400 <= r.status < 500, r
    r = send(st, "GET", "/api/v1/read")
    assert r.status == 405, r


@pytest.mark.parametrize("method,path", [
    ("PUT", "/api/v1/query?query=memory_bytes"),
    ("DELETE", "/api/v1/query?query=memory_bytes"),
    ("PATCH", "/api/v1/query_range?query=memory_bytes"),
    ("DELETE", "/api/v1/series?match[]=%s" % q(ALL)),
    ("POST", "/api/v1/label/project/values"),
    ("POST", "/federate?match[]=%s" % q(ALL)),
])
def test_wrong_method_405(st, method, path):
    body = b"" if method != "DELETE" else None
    r = send(st, method, path, {"Content-Type": FORM} if body is not None else None, body)
    assert_safe(st, r)
    assert r.status == 405, r


# ------------------------------------------------------------------ client-sent tenant headers
@pytest.mark.parametrize("hdr", ["X-Project-Id", "THANOS-TENANT", "X-Scope-OrgID", "X-Tenant-Id", "X-Forwarded-Project"])
def test_client_tenant_headers_ignored(st, hdr):
    r = assert_enforced(st, "GET", "/api/v1/query?query=%s&%s" % (q(ALL), _t(st)), {hdr: st["TEAM_B_ID"]},
                        request_text=st["TEAM_B_ID"])
    assert r.status == 200 and r.json()["data"]["result"], r


def test_two_auth_tokens_never_mix(st):
    """alice's token plus rita's in a second X-Auth-Token header: refused, or only one tenant's data."""
    u = urllib.parse.urlsplit(st["ENVOY_URL"])
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=20)
    try:
        c.putrequest("GET", "/api/v1/query?query=%s&%s" % (q(ALL), _t(st)))
        c.putheader("X-Auth-Token", st["ALICE_TOKEN"])
        c.putheader("X-Auth-Token", st["RITA_TOKEN"])
        c.endheaders()
        resp = c.getresponse()
        r = Resp(resp.status, dict(resp.getheaders()), resp.read())
    finally:
        c.close()
    assert r.status < 500, r
    if r.status == 200:
        pids = {s["metric"].get("project") for s in r.json()["data"]["result"]}
        assert len(pids) == 1, "two tenants mixed: %r" % pids


# ------------------------------------------------------------------ resource exhaustion
def test_deep_nesting_400_and_vm_survives(st):
    e = "abs(" * 200 + "memory_bytes" + ")" * 200
    for e2 in (e, "(" * 200 + "memory_bytes" + ")" * 200, "-" * 300 + "memory_bytes",
               "memory_bytes" + " + memory_bytes" * 300):
        r = send(st, "GET", "/api/v1/query?query=%s&%s" % (q(e2), _t(st)))
        assert_safe(st, r, e2)
        assert r.status == 400 or (r.status == 200 and e2.startswith("memory_bytes +")), r
    # the VM is alive: a normal query works
    r = assert_enforced(st, "GET", "/api/v1/query?query=memory_bytes&" + _t(st))
    assert r.status == 200 and len(r.json()["data"]["result"]) == 2, r


def test_huge_query_refused(st):
    e = "memory_bytes" + " " * (1 << 20)
    r = send(st, "POST", "/api/v1/query", {"Content-Type": FORM}, ("query=%s&%s" % (q(e), _t(st))).encode())
    assert_safe(st, r)
    assert r.status in (400, 413), r
    e = "memory_bytes or " * 70000 + ALL   # ~1 MiB of valid-looking PromQL
    r = send(st, "POST", "/api/v1/query", {"Content-Type": FORM}, ("query=%s&%s" % (q(e), _t(st))).encode())
    assert_safe(st, r)
    assert r.status in (400, 413), r
    r = send(st, "GET", "/api/v1/query?query=%s&%s" % (q("memory_bytes" + " " * (1 << 20)), _t(st)))
    assert_safe(st, r)
    assert 400 <= r.status < 500, r
    # still alive
    r = assert_enforced(st, "GET", "/api/v1/query?query=memory_bytes&" + _t(st))
    assert r.status == 200, r
