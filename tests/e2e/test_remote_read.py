"""Remote read per tenant, end to end: POST /api/v1/read through the stack's Envoy, with the filter's
`read` section on (envoy/envoy.yaml).

* A real Prometheus 2.42 (started here, random port, empty TSDB, no scrape targets) whose `remote_read`
  is the filter's /api/v1/read with a tenant's Basic auth: queried on its own HTTP API, it holds only the
  tenant's series of the main Prometheus (which holds both projects').
* Hand-built ReadRequests (snappy protobuf) through the filter, answered as SAMPLES and as
  STREAMED_XOR_CHUNKS: a matcher naming the other project yields nothing of it, and every answer equals
  what PROM_A (the Prometheus holding only team-a's samples) answers to the same request, straight.

Prometheus 2.42's remote-read client asks for SAMPLES only (its ReadRequest lists no accepted response
types; streamed chunks are read by newer clients): `test_prometheus_2_42_asks_for_samples` records its
request to show it, and the chunked answers are tested with hand-built requests.
"""
import http.server
import json
import os
import struct
import subprocess
import threading
import time

import pytest
import requests

from conftest import RULE_OUTPUT_NAMES, _tail, basic_auth, free_port, remember_secret, stop_group
from harness import remote_write as rw

PROMETHEUS = "/usr/bin/prometheus"
SAMPLES, STREAMED_XOR_CHUNKS = 0, 1
EQ, NEQ, RE, NRE = 0, 1, 2, 3
READ_HEADERS = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
                "X-Prometheus-Remote-Read-Version": "0.1.0"}


# --------------------------------------------------------------------------- protobuf and snappy (harness)
def field(num, wire, payload):
    """A varint (wire 0) or length-delimited field."""
    return rw.f_uvarint(num, payload) if wire == 0 else rw.f_bytes(num, payload)


def read_request(queries, accepted=()):
    """prometheus.ReadRequest: queries = [(start_ms, end_ms, [(type, name, value)])]."""
    out = b""
    for start, end, matchers in queries:
        q = field(1, 0, start) + field(2, 0, end)
        for typ, name, value in matchers:
            q += field(3, 2, field(1, 0, typ) + field(2, 2, name.encode()) + field(3, 2, value.encode()))
        out += field(1, 2, q)
    for t in accepted:
        out += field(2, 0, t)
    return out


def snappy_literal(data):
    """A snappy block of literals only (valid snappy; Prometheus decodes any)."""
    return rw.snappy_compress(data, copies=False)


snappy_decode, fields = rw.snappy_decompress, rw.fields


def labels_of(series_msg):
    out = {}
    for num, _, v in fields(series_msg):
        if num == 1:
            kv = {n: val.decode() for n, _, val in fields(v)}
            out[kv.get(1, "")] = kv.get(2, "")
    return out


def decode_samples_response(body):
    """ReadResponse -> per query: [(labels, [(ts, value)])]."""
    results = []
    for num, _, qr in fields(snappy_decode(body)):
        if num != 1:
            continue
        series = []
        for n2, _, ts in fields(qr):
            if n2 != 1:
                continue
            samples = []
            for n3, _, s in fields(ts):
                if n3 == 2:
                    d = dict((a, b) for a, _, b in fields(s))
                    samples.append((d.get(2, 0), struct.unpack("<d", d[1])[0] if 1 in d else 0.0))
            series.append((labels_of(ts), samples))
        results.append(series)
    return results


def decode_chunked_response(body):
    """Streamed ChunkedReadResponse frames -> [(query index, labels, number of chunks)]."""
    out, i = [], 0
    while i < len(body):
        ln, i = rw.read_uvarint(body, i)
        crc = struct.unpack(">I", body[i:i + 4])[0]
        msg = body[i + 4:i + 4 + ln]
        i += 4 + ln
        assert rw.crc32c(msg) == crc, "frame checksum"
        qi, series = 0, []
        for num, _, v in fields(msg):
            if num == 2:
                qi = v
            elif num == 1:
                series.append(v)
        for s in series:
            chunks = [c for n, _, c in fields(s) if n == 2]
            out.append((qi, labels_of(s), len(chunks)))
    return out


# ------------------------------------------------------------------------------------------- requests
def post_read(url, payload, headers, timeout=30):
    h = dict(READ_HEADERS, Connection="close", **headers)
    return requests.post(url + "/api/v1/read", data=snappy_literal(payload), headers=h, timeout=timeout)


def window(stack):
    return int(stack["SEED_START"]) * 1000, int(stack["SEED_END"]) * 1000


def series_key(labels):
    return json.dumps(sorted(labels.items()))


def without_rule_output(keys):
    return sorted(k for k in keys if dict(json.loads(k)).get("__name__") not in RULE_OUTPUT_NAMES)


@pytest.fixture(scope="module")
def alice(stack):
    return {"X-Auth-Token": stack["ALICE_TOKEN"]}


def test_samples_only_the_tenants(stack, alice):
    start, end = window(stack)
    a, b = stack["TEAM_A_ID"], stack["TEAM_B_ID"]
    body = read_request([(start, end, [(EQ, "__name__", "cloud_instances")])])
    r = post_read(stack["ENVOY_URL"], body, alice)
    assert r.status_code == 200, r.text[:500]
    assert r.headers["Content-Type"].startswith("application/x-protobuf"), r.headers
    [series] = decode_samples_response(r.content)
    assert [s[0].get("project") for s in series] == [a], series
    assert len(series[0][1]) == 61 and all(v == 2.0 for _, v in series[0][1])
    # Prometheus itself answers both projects' series to the same request
    d = post_read(stack["PROM_URL"], body, {})
    assert {s[0]["project"] for s in decode_samples_response(d.content)[0]} == {a, b}


def test_thanos_sidecars_content_type_is_enforced_the_same(stack, alice):
    """Thanos' sidecar sends its ReadRequest as `application/x-stream-protobuf`: the same message, the
    same enforcement (only team-a's series), not a 415."""
    start, end = window(stack)
    body = read_request([(start, end, [(RE, "__name__", "cloud_.+")])])
    h = dict(alice, **{"Content-Type": "application/x-stream-protobuf"})
    r = post_read(stack["ENVOY_URL"], body, h)
    assert r.status_code == 200, r.text[:500]
    series = decode_samples_response(r.content)[0]
    assert series and {s[0].get("project") for s in series} == {stack["TEAM_A_ID"]}, series
    d = post_read(stack["PROM_URL"], body, {"Content-Type": "application/x-stream-protobuf"})
    assert {s[0].get("project") for s in decode_samples_response(d.content)[0]} == {
        stack["TEAM_A_ID"], stack["TEAM_B_ID"]}


@pytest.mark.parametrize("matchers", [
    [(EQ, "__name__", "cloud_instances"), (EQ, "project", "<B>")],
    [(RE, "__name__", "cloud_.+"), (EQ, "project", "<B>")],
    [(RE, "__name__", ".+"), (NEQ, "project", "<A>")],
    [(RE, "project", "<B>|<A>"), (EQ, "__name__", "cloud_instances")],
    [(RE, "__name__", ".+"), (NRE, "project", "<A>")],
    [(EQ, "project", "<B>")],
], ids=["eq-B", "re-name-eq-B", "neq-A", "re-A-or-B", "nre-A", "only-eq-B"])
def test_another_projects_series_never_come_back(stack, alice, matchers):
    start, end = window(stack)
    a, b = stack["TEAM_A_ID"], stack["TEAM_B_ID"]
    ms = [(t, n, v.replace("<A>", a).replace("<B>", b)) for t, n, v in matchers]
    body = read_request([(start, end, ms)])
    for accepted in ((), (STREAMED_XOR_CHUNKS,)):
        r = post_read(stack["ENVOY_URL"], read_request([(start, end, ms)], accepted), alice)
        assert r.status_code in (200, 400, 403), r.text[:500]
        assert b not in r.content.decode("latin-1"), "team-b's id in the answer"
        if r.status_code != 200:
            continue
        if accepted:
            projects = {labels.get("project") for _, labels, _ in decode_chunked_response(r.content)}
        else:
            projects = {s[0].get("project") for q in decode_samples_response(r.content) for s in q}
        assert projects <= {a}, projects
    # the same query straight to Prometheus does return team-b's series (the test means something)
    d = post_read(stack["PROM_URL"], body, {})
    assert b in d.content.decode("latin-1") or any(
        s[0].get("project") == b for q in decode_samples_response(d.content) for s in q)


@pytest.mark.parametrize("accepted", [(), (SAMPLES,), (STREAMED_XOR_CHUNKS,), (STREAMED_XOR_CHUNKS, SAMPLES)],
                         ids=["default", "samples", "chunks", "chunks-then-samples"])
def test_every_series_equals_prom_a(stack, alice, accepted):
    """Several queries in one request, all series of the hour: through the filter, exactly PROM_A's answer
    (PROM_A holds only team-a's samples), in either response type."""
    start, end = window(stack)
    b = stack["TEAM_B_ID"]
    queries = [(start, end, [(RE, "__name__", ".+")]),
               (start, end, [(EQ, "__name__", "cloud_cpu_seconds_total"), (EQ, "project", b)]),
               (start, end, [(RE, "__name__", "cloud_.+|batch_.+")])]
    body = read_request(queries, accepted)
    r = post_read(stack["ENVOY_URL"], body, alice)
    d = post_read(stack["PROM_A_URL"], body, {})
    assert r.status_code == d.status_code == 200, (r.status_code, r.text[:300], d.text[:300])
    chunked = STREAMED_XOR_CHUNKS in accepted[:1]
    if chunked:
        assert r.headers["Content-Type"].startswith("application/x-streamed-protobuf"), r.headers
        got, want = decode_chunked_response(r.content), decode_chunked_response(d.content)
        per_query = lambda frames: [without_rule_output(series_key(l) for qi, l, n in frames if qi == q)  # noqa: E731
                                    for q in range(len(queries))]
        assert all(n > 0 for _, _, n in got)
        assert per_query(got) == per_query(want)
        assert len(per_query(got)[0]) == int(stack["TEAM_A_SERIES"])
    else:
        got, want = decode_samples_response(r.content), decode_samples_response(d.content)
        assert len(got) == len(want) == len(queries)
        for g, w in zip(got, want):
            gk = {series_key(l): s for l, s in g if l.get("__name__") not in RULE_OUTPUT_NAMES}
            wk = {series_key(l): s for l, s in w}
            assert sorted(gk) == sorted(wk)
            assert gk == wk, "different samples"
        assert len(got[0]) == int(stack["TEAM_A_SERIES"]) and got[1] == []
    assert b not in r.content.decode("latin-1")


def test_rita_reads_only_team_b(stack):
    start, end = window(stack)
    a, b = stack["TEAM_A_ID"], stack["TEAM_B_ID"]
    body = read_request([(start, end, [(RE, "__name__", "cloud_.+")])])
    r = post_read(stack["ENVOY_URL"], body, {"X-Auth-Token": stack["RITA_TOKEN"]})
    assert r.status_code == 200, r.text[:300]
    series = decode_samples_response(r.content)[0]
    assert series and {s[0]["project"] for s in series} == {b}
    assert a not in r.content.decode("latin-1")


def test_refusals(stack, alice):
    start, end = window(stack)
    body = read_request([(start, end, [(EQ, "__name__", "cloud_instances")])])
    assert post_read(stack["ENVOY_URL"], body, {}).status_code == 401
    r = requests.get(stack["ENVOY_URL"] + "/api/v1/read", headers=dict(alice, Connection="close"), timeout=20)
    assert r.status_code == 405, r.text
    for bad in (b"", b"not snappy at all", snappy_literal(b"\xff\xff\xff")):
        r = requests.post(stack["ENVOY_URL"] + "/api/v1/read", data=bad, timeout=20,
                          headers=dict(READ_HEADERS, Connection="close", **alice))
        assert 400 <= r.status_code < 500, (bad, r.status_code, r.text[:300])
    r = requests.post(stack["ENVOY_URL"] + "/api/v1/read", data=snappy_literal(body), timeout=20,
                      headers=dict(alice, Connection="close", **{"Content-Type": "application/x-www-form-urlencoded"}))
    assert 400 <= r.status_code < 500, r.text[:300]


# ---------------------------------------------------------------- a real Prometheus reading remotely
class _Capture(http.server.BaseHTTPRequestHandler):
    """A remote-read endpoint that records each ReadRequest and answers an empty ReadResponse."""
    def log_message(self, *a):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.bodies.append(snappy_decode(body))
        n = sum(1 for num, _, _ in fields(self.server.bodies[-1]) if num == 1)
        data = snappy_literal(b"".join(field(1, 2, b"") for _ in range(n)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Encoding", "snappy")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def capture():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    srv.bodies = []
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def start_reader(workdir, stack, username, password, capture_port):
    """A Prometheus 2.42 with an empty TSDB that reads through the filter (and from the capture)."""
    remember_secret(password)
    basic_auth(username, password)      # remembers the Basic value too (no secret may reach a log)
    cfg = os.path.join(workdir, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write("""global: {scrape_interval: 15s}
remote_read:
- name: through-the-filter
  url: %s/api/v1/read
  read_recent: true
  remote_timeout: 30s
  basic_auth: {username: %s, password: %s}
- name: capture
  url: http://127.0.0.1:%d/api/v1/read
  read_recent: true
""" % (stack["ENVOY_URL"], json.dumps(username), json.dumps(password), capture_port))
    for _ in range(3):
        port = free_port()
        log_path = os.path.join(workdir, "prometheus.log")
        log = open(log_path, "w")
        proc = subprocess.Popen([PROMETHEUS, "--config.file=" + cfg, "--storage.tsdb.path=" + os.path.join(workdir, "data"),
                                 "--web.listen-address=127.0.0.1:%d" % port], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        url = "http://127.0.0.1:%d" % port
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if requests.get(url + "/-/ready", timeout=2).status_code == 200:
                    return proc, url
            except requests.RequestException:
                pass
            time.sleep(0.2)
        stop_group(proc)
        if "address already in use" not in _tail(log_path).lower():
            break
    pytest.fail("the reading Prometheus did not start:\n" + _tail(log_path), pytrace=False)


@pytest.fixture(scope="module")
def readers(stack, tmp_path_factory, capture):
    out, procs = {}, []
    try:
        for user, name, password in (("alice", "alice@tenants|team-a@tenants", "alice-secret"),
                                     ("alice-appcred", "*" + stack["APPCRED_ID"], stack["APPCRED_SECRET"]),
                                     ("rita", "rita@tenants|team-b@tenants", "rita-secret")):
            proc, url = start_reader(str(tmp_path_factory.mktemp("reader-" + user)), stack, name, password,
                                     capture.server_address[1])
            procs.append(proc)
            out[user] = url
        yield out
    finally:
        for p in procs:
            stop_group(p)


def reader_query(url, query, t, timeout=60):
    r = requests.get(url + "/api/v1/query", params={"query": query, "time": t}, timeout=timeout)
    assert r.status_code == 200, r.text[:500]
    body = r.json()
    assert body["status"] == "success" and not body.get("warnings"), body
    return body["data"]["result"]


@pytest.mark.parametrize("user", ["alice", "alice-appcred", "rita"])
def test_a_reading_prometheus_holds_only_the_tenants_series(stack, readers, user):
    own, other = (stack["TEAM_B_ID"], stack["TEAM_A_ID"]) if user == "rita" else (stack["TEAM_A_ID"], stack["TEAM_B_ID"])
    url, t = readers[user], stack["SEED_END"]
    res = reader_query(url, "cloud_instances", t)
    assert [s["metric"]["project"] for s in res] == [own], res
    assert res[0]["value"][1] == ("1" if user == "rita" else "2")
    res = reader_query(url, "count by (project) ({__name__=~\"cloud_.+\"})", t)
    assert [s["metric"]["project"] for s in res] == [own], res
    res = reader_query(url, 'cloud_instances{project="%s"}' % other, t)
    assert res == [], res
    res = reader_query(url, 'count({__name__=~".+", project!="%s"})' % own, t)
    assert res == [], res
    # a range query over the hour: the tenant's series with every sample
    r = requests.get(url + "/api/v1/query_range", params={
        "query": "cloud_cpu_seconds_total", "start": stack["SEED_START"], "end": t, "step": 60}, timeout=60)
    series = r.json()["data"]["result"]
    assert {s["metric"]["project"] for s in series} == {own} and all(len(s["values"]) == 61 for s in series), r.text[:500]
    n = reader_query(url, 'count({__name__=~".+"})', t)
    series_count = stack["TEAM_B_SERIES"] if user == "rita" else stack["TEAM_A_SERIES"]
    assert n and n[0]["value"][1] == series_count, n


def test_prometheus_2_42_asks_for_samples(stack, readers, capture):
    """What the 2.42 client sends: one query per request, and no accepted response types, which means
    SAMPLES (it can't ask for STREAMED_XOR_CHUNKS)."""
    capture.bodies.clear()
    reader_query(readers["alice"], "cloud_instances", stack["SEED_END"])
    assert capture.bodies, "the capture endpoint was not asked"
    for body in capture.bodies:
        parsed = list(fields(body))
        assert [n for n, _, _ in parsed if n == 1] == [1], parsed
        assert [v for n, _, v in parsed if n == 2] == [], "it listed accepted response types: %r" % parsed
