"""Remote write through the filter (issue 20), end to end.

Everything here writes into a DEDICATED central Prometheus (`--web.enable-remote-write-receiver`, started
by this module), never into the stack's seeded servers, which other tests count. Between the filter and
that Prometheus stands a capture server (`Capture`, in this process) that records every request that
got past the filter and forwards it; a second capture server (`sink`) forwards nothing and answers 204,
for bodies Prometheus 2.42 cannot read (Remote-Write 2.0) and for "nothing was forwarded" checks.

Extra Envoys (conftest.EnvoyVariants) run the filter with `write` enabled:
- `write`:        defaults (on_conflict overwrite, metadata drop), upstream capture -> central;
- `write-reject`: on_conflict reject, upstream capture -> central;
- `write-kdown`:  a 1 s credential cache, so that Keystone is really asked while it is down;
- `write-sink`:   upstream the sink; tenant_header X-Scope-OrgID, cloud_admin unrestricted (and a writer).

Writers are real Prometheus 2.42 agents (harness/agents.py): alice's application credential for team-a,
dave's for team-b (harness/stack.py seeds dave), as Basic `*<id>` or as OAuth 2.0 client credentials
against Keystone's /v3/OS-OAUTH2/token (a token in `headers: {X-Auth-Token}` only where the Prometheus
build sends remote_write headers, which Debian's 2.42.0+ds does not); and bodies built here
(harness/remote_write.py).

"Nothing forwarded" is checked per request: each request a test expects refused carries X-Kpw-Probe:
<id>, goes out right after a good write through the same Envoy (so that a connection to the upstream is
open, as in production), and neither capture server may ever see that id: not at once, and not later
(the last test). Nothing asserts on durations: every wait polls with a generous deadline.
"""
import http.client
import http.server
import json
import math
import os
import shutil
import struct
import threading
import time
import uuid

import pytest
import requests

from conftest import basic_auth, keystone_calls, keystone_log_lines, prom_error, remember_secret, stack_cmd
from harness import remote_write as rw
from harness.agents import CountingTarget, basic_appcred, oauth2_appcred, start_agent, token_header
from harness.procs import read_request_body
from harness.stack import prom_start, stop_pidfiles

WRITE = {"write": {"enabled": True}}
WRITE_REJECT = {"write": {"enabled": True, "on_conflict": "reject"}}
# every request asks Keystone again after a second: the agents meet Keystone's outage
WRITE_KDOWN = {"write": {"enabled": True}, "cache": {"ttl_seconds": 1, "negative_ttl_seconds": 0}}
SINK_MAX_BODY = 256 * 1024
WRITE_SINK = {"write": {"enabled": True, "required_roles": ["member", "admin", "cloud_admin"],
                        "max_body_bytes": SINK_MAX_BODY},
              "unrestricted_roles": ["cloud_admin"], "tenant_header": "X-Scope-OrgID"}

# what a client may send to choose a tenant in Thanos, Cortex/Mimir, VictoriaMetrics: never forwarded
TENANT_HEADERS = {"THANOS-TENANT": "evil", "X-Scope-OrgID": "evil", "AccountID": "7", "ProjectID": "8",
                  "X-Mimir-SkipLabelNameValidation": "true"}

DEADLINE = 180      # seconds: the longest any wait may take on a loaded machine


# ======================================================================================= helpers
def poll(fn, what, timeout=DEADLINE, interval=0.5, context=None):
    """fn()'s first truthy value; fails naming `what` (and context(), e.g. log tails) on time-out."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except (requests.RequestException, OSError, ValueError, KeyError) as e:
            last = "error: %r" % e
        else:
            if last:
                return last
        time.sleep(interval)
    pytest.fail("%s: not within %ss (last: %r)%s" % (what, timeout, last, ("\n" + context()) if context else ""),
                pytrace=False)


class Capture:
    """An HTTP server in this process that records every request reaching it (method, path, headers,
    body bytes) and forwards it to 127.0.0.1:forward_port, or, without one, answers POSTs with 204 and
    GETs with an empty vector (and X-Kpw-Sink: 1, which tells its answers from the filter's own).
    `answer_next` sets the answer of the next request (upstream answers must pass the filter untouched).
    `saw(probe)`: the records of requests that carried `X-Kpw-Probe: <probe>`."""

    HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "te", "trailer", "upgrade",
           "proxy-connection", "host"}

    def __init__(self, forward_port=None):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _body(self):
                return read_request_body(self)

            def _any(self):
                body = self._body()
                rec = {"method": self.command, "path": self.path, "body": body,
                       "headers": [(k.lower(), v) for k, v in self.headers.items()]}
                with outer.lock:
                    outer._records.append(rec)
                    canned, outer.canned = outer.canned, None
                if canned is not None:
                    status, headers, data = canned
                elif outer.forward_port:
                    fwd = {k: v for k, v in self.headers.items() if k.lower() not in outer.HOP}
                    try:
                        c = http.client.HTTPConnection("127.0.0.1", outer.forward_port, timeout=30)
                        c.request(self.command, self.path, body=body or None, headers=fwd)
                        r = c.getresponse()
                        status, headers, data = r.status, r.getheaders(), r.read()
                        c.close()
                    except OSError as e:
                        status, headers, data = 502, [], ("capture: %s" % e).encode()
                elif self.command == "POST":
                    status, headers, data = 204, [("X-Kpw-Sink", "1")], b""
                else:
                    status, headers = 200, [("Content-Type", "application/json")]
                    data = b'{"status":"success","data":{"resultType":"vector","result":[]}}'
                self.send_response(status)
                for k, v in headers:
                    if k.lower() not in outer.HOP and k.lower() not in ("date", "server"):
                        self.send_header(k, v)
                if status not in (204, 304):
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD" and status not in (204, 304):
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

            def handle_error(self, request, client_address):
                # an aborted request (its client reset the stream) is recorded, not reported
                import sys
                if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                    super().handle_error(request, client_address)

        self.forward_port = forward_port
        self.lock = threading.Lock()
        self._records = []
        self.canned = None
        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="write-capture", daemon=True)
        self.thread.start()

    def saw(self, probe):
        return [r for r in self.records if ("x-kpw-probe", probe) in r["headers"]]

    def answer_next(self, status, headers=(), body=b""):
        with self.lock:
            self.canned = (status, list(headers), body)

    @property
    def records(self):
        with self.lock:
            return list(self._records)

    def writes(self, since=0, probe=None):
        """Recorded POSTs to a write path from record number `since` on (or those with X-Kpw-Probe:
        `probe`), each with its decoded body: rec["version"], rec["message"], rec["h"] (lower-case
        name -> [values])."""
        out = []
        for rec in self.records[since:]:
            if rec["method"] != "POST" or not rec["path"].startswith("/api/v1/write"):
                continue
            if probe is not None and ("x-kpw-probe", probe) not in rec["headers"]:
                continue
            rec = dict(rec)
            rec["h"] = {}
            for k, v in rec["headers"]:
                rec["h"].setdefault(k, []).append(v)
            ct = (rec["h"].get("content-type") or [""])[0]
            try:
                rec["version"], rec["message"] = rw.decode_body(rec["body"], ct)
            except ValueError as e:          # e.g. an aborted request: checked by the tests that care
                rec["version"], rec["message"] = "undecodable: %s" % e, {"timeseries": [], "metadata": []}
            out.append(rec)
        return out

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Central:
    """The module's own Prometheus receiver (harness.stack.prom_start)."""

    def __init__(self, d):
        self.dir = d
        self.port = prom_start(d, "prometheus-write")
        self.url = "http://127.0.0.1:%d" % self.port

    def query(self, q, **params):
        r = requests.get(self.url + "/api/v1/query", params=dict(params, query=q), timeout=15)
        assert r.status_code == 200, r.text[:300]
        return r.json()["data"]["result"]

    def stop(self):
        stop_pidfiles(os.path.join(self.dir, "prometheus.pid"))


def filter_query(envoy, token, q, **params):
    """The `result` of an instant query through the filter with `token`."""
    r = envoy.get("/api/v1/query", token, params=dict(params, query=q))
    assert r.status_code == 200, "HTTP %d: %s" % (r.status_code, r.text[:300])
    return r.json()["data"]["result"]


def groups(result, *labels):
    return sorted(tuple(s["metric"].get(lab) for lab in labels) for s in result)


def labels_of(series):
    return dict(series["labels"])


def expect_stamped(labels, label, value):
    """`labels` (as sent) with every `label` removed and label=value inserted, sorted by name."""
    out = [(n, v) for n, v in labels if n != label] + [(label, value)]
    return sorted(out)


def write_headers(version=1, token=None, auth=None, **extra):
    h = {}
    if token is not None:
        h["X-Auth-Token"] = token
    h.update(auth or {})
    return rw.write_headers(version, h, **extra)


# Every request a test expects refused carries X-Kpw-Probe: <id>; the last test checks that none of them
# reached an upstream at any time (a late arrival included).
REFUSED_PROBES = []


def post_refused(envoy, upstream, body, headers, token):
    """POSTs a write the filter must refuse, tagged with a probe id, after a good write with `token`
    through the same Envoy (so that a connection to the upstream is open, as in real life); returns
    (status, headers, body) once the upstream (a Capture) saw nothing of it for a while (fails if it
    did, showing its record)."""
    warm = rw.post(envoy.url + "/api/v1/write", rw.snappy_compress(sample_v1("kpw_warm_up")),
                   write_headers(token=token))
    assert warm[0] in (200, 204), warm
    probe = uuid.uuid4().hex
    REFUSED_PROBES.append(probe)
    status, h, out = rw.post(envoy.url + "/api/v1/write", body, dict(headers, **{"X-Kpw-Probe": probe}))
    deadline = time.monotonic() + 2          # an absence: look for a while (a stray comes within ms)
    while time.monotonic() < deadline and not upstream.saw(probe):
        time.sleep(0.1)
    seen = [dict(r, body=r["body"][:64]) for r in upstream.saw(probe)]
    assert not seen, "answered %d %r, but the upstream received: %r" % (status, out[:200], seen)
    return status, h, out


class _Resp:
    """rw.post's answer as conftest.prom_error reads a response."""

    def __init__(self, status, headers, body):
        self.status_code, self.text, self._body = status, body.decode(errors="replace"), body
        self.headers = {k.title(): v for k, v in headers.items()}

    def json(self):
        return json.loads(self._body)


def post_forwarded(envoy, sink, body, headers):
    """POSTs a write the filter must let through to the sink: (status, headers, body, the sink's
    records of it, decoded)."""
    probe = uuid.uuid4().hex
    status, h, out = rw.post(envoy.url + "/api/v1/write", body, dict(headers, **{"X-Kpw-Probe": probe}))
    return status, h, out, sink.writes(probe=probe)


def sample_v1(metric="kpw_write_test", labels=None, value=1.0, ts=None):
    ts = ts if ts is not None else int(time.time() * 1000)
    ls = [("__name__", metric)] + sorted((labels or {}).items())
    return rw.v1_request([{"labels": ls, "samples": [(value, ts)]}])


# ======================================================================================= fixtures
@pytest.fixture(scope="module")
def creds(stack):
    """The writers: each with its project, token and (where it has one) application credential."""
    remember_secret(stack["DAVE_APPCRED_SECRET"], stack["RITA_APPCRED_SECRET"], stack["DAVE_TOKEN"],
                    stack["DAVE_DOMAIN_TOKEN"], "dave-secret")
    return {
        "alice": {"project": stack["TEAM_A_ID"], "token": stack["ALICE_TOKEN"],
                  "appcred": (stack["APPCRED_ID"], stack["APPCRED_SECRET"])},
        "dave": {"project": stack["TEAM_B_ID"], "token": stack["DAVE_TOKEN"],
                 "appcred": (stack["DAVE_APPCRED_ID"], stack["DAVE_APPCRED_SECRET"])},
        "rita": {"project": stack["TEAM_B_ID"], "token": stack["RITA_TOKEN"],
                 "appcred": (stack["RITA_APPCRED_ID"], stack["RITA_APPCRED_SECRET"])},
    }


@pytest.fixture(scope="module")
def workdir(stack):
    d = os.path.join(stack["STACK_DIR"], "write-%s" % uuid.uuid4().hex[:8])
    os.makedirs(d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def central(workdir):
    c = Central(os.path.join(workdir, "central"))
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def capture(central):
    c = Capture(forward_port=central.port)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def sink():
    c = Capture()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def write_envoys(envoy_variants, capture, sink):
    """The module's Envoys with the write path on (started in parallel, on first use)."""
    specs = {"write": (WRITE, capture), "write-reject": (WRITE_REJECT, capture),
             "write-kdown": (WRITE_KDOWN, capture), "write-sink": (WRITE_SINK, sink)}
    for name, (cfg, up) in specs.items():
        envoy_variants.start(name, cfg, prom_port=up.port)
    return lambda name: envoy_variants.get(name)


class Agents:
    def __init__(self, workdir):
        self.workdir = os.path.join(workdir, "agents")
        self.running = []

    def __call__(self, name, url, **kw):
        a = start_agent(self.workdir, name, url, **kw)
        self.running.append(a)
        return a

    def tails(self):
        return "\n".join("== agent %s ==\n%s" % (a.name, a.tail(15)) for a in self.running)

    def stop(self, *agents):
        for a in agents or list(self.running):
            a.stop()
            if a in self.running:
                self.running.remove(a)


@pytest.fixture(scope="module")
def agents(workdir):
    a = Agents(workdir)
    try:
        yield a
    finally:
        a.stop()


def wait_tenants_apart(envoy, central, case, writers, context):
    """Each writer (agent name -> (token, project)) sees its agent's series under its project through
    the filter, and nobody else's; the central store holds each agent's series under its own project
    only, and no series of the case without a project."""
    q = 'count by (agent, project) ({kpw_case="%s"})' % case
    for agent, (token, project) in writers.items():
        poll(lambda: filter_query(envoy, token, q), "series of agent %s through the filter" % agent,
             context=context)
    for agent, (token, project) in writers.items():
        assert groups(filter_query(envoy, token, q), "agent", "project") == [(agent, project)]
    want = sorted((agent, project) for agent, (token, project) in writers.items())
    assert groups(central.query(q), "agent", "project") == want
    assert central.query('count({kpw_case="%s", project=""})' % case) == []


def check_forwarded(capture, since, want_project_by_agent):
    """Every write the capture server forwarded since record `since` from these agents: no credential
    went upstream, each series has exactly one project label, its writer's; no metadata was forwarded."""
    seen = set()
    for rec in capture.writes(since):
        assert not {"authorization", "x-auth-token"} & set(rec["h"]), rec["h"].keys()
        assert rec["message"].get("metadata", []) == [], "metadata forwarded despite metadata: drop"
        for ts in rec["message"]["timeseries"]:
            names = [n for n, v in ts["labels"]]
            assert names == sorted(names), ts["labels"]
            agent = labels_of(ts).get("agent")
            if agent in want_project_by_agent:
                assert [v for n, v in ts["labels"] if n == "project"] == [want_project_by_agent[agent]], ts["labels"]
                seen.add(agent)
    assert seen == set(want_project_by_agent), "no forwarded write of %s" % (set(want_project_by_agent) - seen)


# ======================================================================================= 1, 2: tenants apart
def test_agents_basic_auth_tenants_apart(stack, creds, write_envoys, agents, central, capture):
    """One agent per tenant, Basic `*<application credential id>`: each tenant reads its own agent's
    series (project=<its id>) and none of the other's; metadata-only requests are answered 204."""
    w = write_envoys("write")
    since = len(capture.records)
    url = w.url + "/api/v1/write"
    a = agents("wa-basic", url, auth=basic_appcred(*creds["alice"]["appcred"]),
               external_labels={"kpw_case": "basic"}, metadata_interval="2s")
    b = agents("wb-basic", url, auth=basic_appcred(*creds["dave"]["appcred"]),
               external_labels={"kpw_case": "basic"}, metadata_interval="2s")
    for who in ("alice", "dave"):      # (remembers the Basic values, for the log check at the end)
        basic_auth("*" + creds[who]["appcred"][0], creds[who]["appcred"][1])
    try:
        wait_tenants_apart(w, central, "basic", {"wa-basic": (creds["alice"]["token"], creds["alice"]["project"]),
                                                 "wb-basic": (creds["dave"]["token"], creds["dave"]["project"])},
                           agents.tails)
        # metadata-only requests (every 2 s): 204 from the filter, so never failed nor retried
        for ag in (a, b):
            poll(lambda: ag.remote_metric("prometheus_remote_storage_metadata_total") > 0,
                 "agent %s sent metadata" % ag.name, context=agents.tails)
            assert ag.remote_metric("prometheus_remote_storage_metadata_failed_total") == 0, ag.tail()
            assert ag.remote_metric("prometheus_remote_storage_samples_failed_total") == 0, ag.tail()
        check_forwarded(capture, since, {"wa-basic": creds["alice"]["project"], "wb-basic": creds["dave"]["project"]})
    finally:
        agents.stop(a, b)


def test_agents_oauth2_keystone_tenants_apart(stack, creds, write_envoys, agents, central, capture):
    """The same with Prometheus' `oauth2` (client credentials) against Keystone's /v3/OS-OAUTH2/token:
    the application credential id and secret as client_id/client_secret; Keystone answers a Keystone
    token, which Prometheus sends as `Authorization: Bearer`. (Keystone 22 reads the client's
    credentials from the Basic header only; Prometheus sends them form-urlencoded there, so a secret
    with characters like + / = & % fails: the seeded secrets are URL-safe, as Keystone's own are.)"""
    w = write_envoys("write")
    since, ks_since = len(capture.records), len(keystone_log_lines(stack))
    url, token_url = w.url + "/api/v1/write", stack["KEYSTONE_URL"] + "/OS-OAUTH2/token"
    a = agents("wa-oauth2", url, auth=oauth2_appcred(*creds["alice"]["appcred"], token_url),
               external_labels={"kpw_case": "oauth2"})
    b = agents("wb-oauth2", url, auth=oauth2_appcred(*creds["dave"]["appcred"], token_url),
               external_labels={"kpw_case": "oauth2"})
    try:
        wait_tenants_apart(w, central, "oauth2", {"wa-oauth2": (creds["alice"]["token"], creds["alice"]["project"]),
                                                  "wb-oauth2": (creds["dave"]["token"], creds["dave"]["project"])},
                           agents.tails)
        assert keystone_calls(stack, ks_since, "POST", "/v3/OS-OAUTH2/token") >= 2
        check_forwarded(capture, since, {"wa-oauth2": creds["alice"]["project"], "wb-oauth2": creds["dave"]["project"]})
    finally:
        agents.stop(a, b)


def test_agents_token_header_tenants_apart(stack, creds, write_envoys, agents, central, capture, sink):
    """`remote_write.headers: {X-Auth-Token: <token>}`. Debian's Prometheus 2.42.0+ds does not send
    remote_write `headers` at all (prometheus/prometheus#13030; upstream builds do): checked first
    against the sink, and the test is skipped with that reason when the header does not arrive."""
    probe = agents("header-probe", "http://127.0.0.1:%d/api/v1/write" % sink.port,
                   auth=token_header("kpw-header-probe-value"), external_labels={"kpw_case": "header-probe"})
    try:
        first = poll(lambda: [r for r in sink.writes(0) if any(labels_of(ts).get("kpw_case") == "header-probe"
                                                             for ts in r["message"]["timeseries"])],
                     "the probe agent's first write", context=agents.tails)[0]
    finally:
        agents.stop(probe)
    if "x-auth-token" not in first["h"]:
        pytest.skip("this Prometheus (%s) does not send remote_write `headers` (prometheus/prometheus#13030, "
                    "Debian's 2.42.0+ds): a token in X-Auth-Token cannot be configured"
                    % (first["h"].get("user-agent") or ["?"])[0])
    w = write_envoys("write")
    since = len(capture.records)
    url = w.url + "/api/v1/write"
    a = agents("wa-header", url, auth=token_header(creds["alice"]["token"]), external_labels={"kpw_case": "header"})
    b = agents("wb-header", url, auth=token_header(creds["dave"]["token"]), external_labels={"kpw_case": "header"})
    try:
        wait_tenants_apart(w, central, "header", {"wa-header": (creds["alice"]["token"], creds["alice"]["project"]),
                                                  "wb-header": (creds["dave"]["token"], creds["dave"]["project"])},
                           agents.tails)
        check_forwarded(capture, since, {"wa-header": creds["alice"]["project"], "wb-header": creds["dave"]["project"]})
    finally:
        agents.stop(a, b)


# ======================================================================================= 3: a claimed project
def test_agent_claiming_another_project(stack, creds, write_envoys, agents, central, capture):
    """An agent whose external_labels claim team-b, with team-a's credential: overwrite writes it under
    team-a; reject refuses every such request with 400 (the agent counts failed samples, and none of
    it lands)."""
    w, wr = write_envoys("write"), write_envoys("write-reject")
    a_project, b_project = creds["alice"]["project"], creds["dave"]["project"]
    since = len(capture.records)
    ow = agents("wa-claims-b", w.url + "/api/v1/write", auth=basic_appcred(*creds["alice"]["appcred"]),
                external_labels={"kpw_case": "conflict", "project": b_project})
    rj = agents("wa-claims-b-rej", wr.url + "/api/v1/write", auth=basic_appcred(*creds["alice"]["appcred"]),
                external_labels={"kpw_case": "conflict-reject", "project": b_project})
    try:
        q = 'count by (project) ({kpw_case="conflict"})'
        poll(lambda: central.query(q), "the overwriting agent's series in the central store", context=agents.tails)
        assert groups(central.query(q), "project") == [(a_project,)]
        assert groups(filter_query(w, creds["alice"]["token"], q), "project") == [(a_project,)]
        assert filter_query(w, creds["dave"]["token"], q) == []
        # reject: every batch is refused with 400, which the agent drops (failed, not retried)
        poll(lambda: rj.remote_metric("prometheus_remote_storage_samples_failed_total") > 0,
             "the rejecting Envoy's 400 counted by the agent", context=agents.tails)
        poll(lambda: "400" in rj.log(), "the 400 in the agent's log", context=agents.tails)
        assert rj.remote_metric("prometheus_remote_storage_samples_retried_total") == 0, rj.tail()
        # a direct request: 400 naming the series
        body = sample_v1("kpw_conflict_direct", {"project": b_project})
        status, headers, out = post_refused(wr, capture, rw.snappy_compress(body),
                                            write_headers(token=creds["alice"]["token"]), creds["alice"]["token"])
        assert status == 400, (status, out[:300])
        assert b"kpw_conflict_direct" in out, out[:500]
        # nothing of it landed, and nothing of it was forwarded
        assert central.query('count({kpw_case="conflict-reject"})') == []
        assert central.query('count({__name__="kpw_conflict_direct"})') == []
        forwarded = {labels_of(ts).get("agent") for rec in capture.writes(since)
                     for ts in rec["message"]["timeseries"]}
        assert "wa-claims-b-rej" not in forwarded and "wa-claims-b" in forwarded
    finally:
        agents.stop(ow, rj)


# ======================================================================================= 4: Keystone down
def _values(central, q):
    """[(timestamp s, value)] of a range selector's one series (or [] when there is none)."""
    res = central.query(q)
    assert len(res) <= 1, res
    return [(float(t), float(v)) for t, v in res[0]["values"]] if res else []


def _stored_exactly_what_was_scraped(central, agent, target, served):
    """The central store holds the target's values 1..served, each once: every scrape the target
    served, but for scrapes the agent itself failed (a scrape time-out on a loaded machine, which the
    agent records as an `up` == 0 sample): the values missing can be no more than those. Returns
    (samples stored, scrapes the agent failed)."""
    seq = _values(central, '%s{agent="%s"}[1h]' % (target.metric, agent))
    got = [int(v) for t, v in seq if not math.isnan(v)]
    assert len(got) == len(set(got)), "a value stored twice: %r" % got
    assert set(got) <= set(range(1, served + 1)), (got, served)
    t_last = max(t for t, v in seq)
    up = _values(central, 'up{agent="%s", job="seq"}[1h]' % agent)
    failed = sum(1 for t, v in up if t <= t_last and v == 0)
    missing = sorted(set(range(1, served + 1)) - set(got))
    if failed == 0:
        assert missing == [], "values %s the agent scraped never reached the central store" % missing
    else:
        assert len(missing) <= failed, "missing %s, with only %d failed scrapes" % (missing, failed)
    n = central.query('count_over_time(%s{agent="%s"}[1h])' % (target.metric, agent))
    assert int(float(n[0]["value"][1])) == len(got)
    return len(got), failed


def test_keystone_down_agents_retry_and_lose_nothing(stack, creds, write_envoys, agents, central, capture):
    """Keystone stopped while two agents write (Basic application credential; OAuth 2.0, whose Keystone
    token the agent fetched before): the filter, which must ask Keystone again (1 s cache), answers 503
    with Retry-After; the agents retry.
    Once Keystone is back, the targets stop serving (`freeze`: their scrape counts are final), the
    agents' queues drain, and the central store holds exactly the samples the agents scraped, once."""
    w = write_envoys("write-kdown")
    url = w.url + "/api/v1/write"
    ta, tb = CountingTarget().start(), CountingTarget().start()
    seq = lambda t: [{"job": "seq", "targets": [t.address]}]  # noqa: E731
    a = agents("wa-kdown", url, auth=basic_appcred(*creds["alice"]["appcred"]), targets=seq(ta),
               external_labels={"kpw_case": "kdown"})
    b = agents("wb-kdown", url, auth=oauth2_appcred(*creds["dave"]["appcred"], stack["KEYSTONE_URL"] + "/OS-OAUTH2/token"),
               targets=seq(tb), external_labels={"kpw_case": "kdown"})
    pair = ((a, ta), (b, tb))
    alice_basic = basic_auth("*" + creds["alice"]["appcred"][0], creds["alice"]["appcred"][1])
    try:
        for ag, t in pair:
            poll(lambda: central.query('%s{agent="%s"} >= 2' % (t.metric, ag.name)),
                 "agent %s's first scrapes in the central store" % ag.name, context=agents.tails)
        retried = {ag.name: ag.remote_metric("prometheus_remote_storage_samples_retried_total") for ag, t in pair}
        r = stack_cmd("ks-stop", stack["STACK_DIR"])
        assert r.returncode == 0, r.stderr
        try:
            # the filter's own answer to a writer while Keystone is down (once the 1 s cache expired)
            def refused():
                st, h, out = rw.post(url, rw.snappy_compress(sample_v1("kpw_kdown_direct")), write_headers(auth=alice_basic))
                return (st, h, out) if st not in (200, 204) else None
            st, h, out = poll(refused, "a write refused while Keystone is down")
            assert st == 503, (st, out[:300])
            assert "retry-after" in h, h
            for ag, t in pair:
                poll(lambda: ag.remote_metric("prometheus_remote_storage_samples_retried_total") > retried[ag.name],
                     "agent %s retrying while Keystone is down" % ag.name, context=agents.tails)
            poll(lambda: all("503" in ag.log() for ag, t in pair), "the 503 in the agents' logs", context=agents.tails)
        finally:
            r = stack_cmd("ks-start", stack["STACK_DIR"])
            assert r.returncode == 0, r.stderr
        # Keystone is back. The targets' counts become final; samples of one series go through one
        # shard, in order: once the last value is stored and nothing is pending, everything before is.
        served = {ag.name: t.freeze() for ag, t in pair}
        for ag, t in pair:
            poll(lambda: central.query('max_over_time(%s{agent="%s"}[1h]) >= %d' % (t.metric, ag.name, served[ag.name]))
                 and ag.remote_metric("prometheus_remote_storage_samples_pending") == 0,
                 "agent %s delivered scrape %d" % (ag.name, served[ag.name]), context=agents.tails)
        for ag, t in pair:
            stored, failed = _stored_exactly_what_was_scraped(central, ag.name, t, served[ag.name])
            print("%s: target served %d scrapes, %d stored, %d failed by the agent, %d samples retried"
                  % (ag.name, served[ag.name], stored, failed,
                     ag.remote_metric("prometheus_remote_storage_samples_retried_total")))
            assert ag.remote_metric("prometheus_remote_storage_samples_failed_total") == 0, ag.tail()
            assert ag.remote_metric("prometheus_remote_storage_samples_dropped_total") == 0, ag.tail()
        # and all of it under the writer's own project
        q = 'count by (agent, project) ({kpw_case="kdown"})'
        assert groups(central.query(q), "agent", "project") == [("wa-kdown", creds["alice"]["project"]),
                                                               ("wb-kdown", creds["dave"]["project"])]
    finally:
        agents.stop(a, b)
        ta.stop()
        tb.stop()


@pytest.mark.parametrize("mode", ["delay", "error", "down"])
def test_keystone_slow_broken_or_down_write_503(mode, stack, creds, envoy_variants, sink):
    """A writer is told to retry whatever ails Keystone: slower than keystone.timeout_ms (a read gets
    504 then), answering 500, or not listening: 503 with Retry-After, and nothing forwarded."""
    from keystone_proxy import KeystoneProxy
    proxy = KeystoneProxy("127.0.0.1", int(stack["KEYSTONE_PORT"])).start()
    try:
        w = envoy_variants("write-ks-%s" % mode, dict(WRITE, keystone={"timeout_ms": 500}, cache={"ttl_seconds": 1}),
                           keystone_port=proxy.port, prom_port=sink.port, replace=True)
        proxy.set_mode(mode, delay_ms=1500 if mode == "delay" else None)
        dave = basic_auth("*" + creds["dave"]["appcred"][0], creds["dave"]["appcred"][1])
        # (post_refused warms up with alice's token first: for "pass" only, so by hand here)
        probe = uuid.uuid4().hex
        REFUSED_PROBES.append(probe)
        status, h, out = rw.post(w.url + "/api/v1/write", rw.snappy_compress(sample_v1("kpw_ks_" + mode)),
                                 write_headers(auth=dave, **{"X-Kpw-Probe": probe}))
        prom_error(_Resp(status, h, out), 503)
        assert h.get("retry-after", "").isdigit(), h
        proxy.set_mode("pass")
        status, h, out = rw.post(w.url + "/api/v1/write", rw.snappy_compress(sample_v1("kpw_ks_" + mode)),
                                 write_headers(auth=dave))
        assert status == 204 and h.get("x-kpw-sink") == "1", (status, out[:300])
        assert sink.saw(probe) == []
    finally:
        proxy.stop()


# ======================================================================================= 5: bodies built here
def _rw2_series(ts):
    return [
        {"labels": [("__name__", "kpw_rw2_requests_total"), ("zone", "z1"), ("project", "claimed-other"),
                    ("job", "rw2"), ("project", "second-claim")],
         "samples": [(1.0, ts), (2.5, ts + 1000)],
         "exemplars": [{"labels": {"trace_id": "abc123"}, "value": 2.5, "timestamp": ts + 1000}],
         "metadata": {"type": "counter", "help": "Requests.", "unit": ""}, "created_timestamp": ts - 60000},
        {"labels": {"__name__": "kpw_rw2_latency_seconds", "job": "rw2"},
         "histograms": [{"count_int": 5, "sum": 1.25, "schema": 3, "zero_threshold": 1e-128, "zero_count_int": 1,
                         "positive_spans": [(0, 2), (3, 1)], "positive_deltas": [1, 1, -1], "timestamp": ts}],
         "metadata": {"type": "histogram", "help": "Latency.", "unit": "seconds"}},
        {"labels": {"__name__": "kpw_rw2_stale", "job": "rw2", "a": "1"}, "samples": [(rw.STALE_NAN, ts)]},
    ]


def _same_floats(a, b):
    """Equal bit for bit (a stale marker is one NaN among many)."""
    return len(a) == len(b) and all(struct.pack("<d", x) == struct.pack("<d", y) for x, y in zip(a, b))


ONEOFS = ("count_int", "count_float", "zero_count_int", "zero_count_float")


def hist(h):
    """A histogram as a protobuf encoder writes it: fields at their default value left out (but oneofs)."""
    return {k: v for k, v in h.items() if k in ONEOFS or v not in (0, 0.0, [], ())}


def test_rw2_body_enforced(stack, creds, write_envoys, sink):
    """A Remote-Write 2.0 body: every series gets project=<team-a> (its own project labels, two of them
    here, removed), labels sorted; samples (a stale marker bit for bit), exemplars, native histograms,
    metadata and created timestamps reach the upstream unchanged, as 2.0, snappy."""
    w = write_envoys("write-sink")
    ts = int(time.time() * 1000)
    series = _rw2_series(ts)
    status, headers, out, recs = post_forwarded(w, sink, rw.snappy_compress(rw.v2_request(series)),
                                                write_headers(2, token=creds["alice"]["token"]))
    assert status == 204 and headers.get("x-kpw-sink") == "1", (status, headers, out[:300])
    assert len(recs) == 1, recs
    rec = recs[0]
    assert rec["h"]["content-type"] == [rw.CT_V2] and rec["h"]["content-encoding"] == ["snappy"], rec["h"]
    msg = rec["message"]
    assert rec["version"] == "v2" and msg["symbols"][0] == ""
    assert len(msg["timeseries"]) == len(series)
    for sent, got in zip(series, msg["timeseries"]):
        sent_labels = list(sent["labels"].items()) if isinstance(sent["labels"], dict) else sent["labels"]
        assert got["labels"] == expect_stamped(sent_labels, "project", creds["alice"]["project"])
        assert [s[1] for s in got["samples"]] == [s[1] for s in sent.get("samples", [])]
        assert _same_floats([s[0] for s in got["samples"]], [s[0] for s in sent.get("samples", [])])
        assert [dict(e, labels=dict(e["labels"])) for e in got["exemplars"]] == sent.get("exemplars", [])
        assert got["histograms"] == [hist(x) for x in sent.get("histograms", [])]
        md = sent.get("metadata") or {"type": "unknown", "help": "", "unit": ""}
        assert got["metadata"] == md
        assert got["created_timestamp"] == sent.get("created_timestamp", 0)


def test_rw1_body_enforced_metadata_dropped_and_tenant_headers(stack, creds, write_envoys, sink):
    """A Remote-Write 1.0 body the same way (its metadata dropped, by default); the tenant headers a
    client sends never reach the upstream, which gets tenant_header = the writer's project."""
    w = write_envoys("write-sink")
    ts = int(time.time() * 1000)
    series = [{"labels": [("__name__", "kpw_rw1_total"), ("project", "other"), ("instance", "i1")],
               "samples": [(3.0, ts)], "exemplars": [{"labels": {"trace_id": "t1"}, "value": 3.0, "timestamp": ts}]},
              {"labels": [("__name__", "kpw_rw1_hist"), ("job", "j")],
               "histograms": [{"count_float": 2.0, "sum": 0.5, "schema": 0, "zero_count_float": 0.5,
                               "negative_spans": [(1, 1)], "negative_counts": [1.5], "timestamp": ts}]}]
    body = rw.v1_request(series, metadata=[{"type": "counter", "metric_family_name": "kpw_rw1_total", "help": "x"}])
    recs = []
    for ct in (rw.CT_V1, rw.CT_V1_PROTO):
        status, _, out, got = post_forwarded(w, sink, rw.snappy_compress(body), write_headers(
            token=creds["alice"]["token"], **{"Content-Type": ct}, **TENANT_HEADERS))
        assert status == 204, (ct, status, out[:300])
        recs += got
    assert len(recs) == 2, recs
    for rec in recs:
        msg = rec["message"]
        assert rec["version"] == "v1" and msg["metadata"] == []
        for sent, got in zip(series, msg["timeseries"]):
            assert got["labels"] == expect_stamped(sent["labels"], "project", creds["alice"]["project"])
            assert got["samples"] == sent.get("samples", [])
            assert [dict(e, labels=dict(e["labels"])) for e in got["exemplars"]] == sent.get("exemplars", [])
            assert got["histograms"] == [hist(x) for x in sent.get("histograms", [])]
        h = rec["h"]
        assert h.get("x-scope-orgid") == [creds["alice"]["project"]], h
        for name in ("thanos-tenant", "accountid", "projectid", "x-mimir-skiplabelnamevalidation",
                     "x-auth-token", "authorization"):
            assert name not in h, (name, h)


def test_metadata_only_request_is_answered_204_and_not_forwarded(creds, write_envoys, sink):
    w = write_envoys("write-sink")
    body = rw.v1_request([], metadata=[{"type": "gauge", "metric_family_name": "kpw_md", "help": "h"}])
    status, h, out = post_refused(w, sink, rw.snappy_compress(body), write_headers(token=creds["alice"]["token"]),
                                  creds["alice"]["token"])
    assert status == 204 and "x-kpw-sink" not in h, (status, h, out[:300])


def test_upstream_answer_passes_untouched(creds, write_envoys, sink):
    w = write_envoys("write-sink")
    body = rw.snappy_compress(sample_v1("kpw_upstream_answer"))
    for status_in, headers_in, data in ((429, [("Retry-After", "7"), ("Content-Type", "text/plain")], b"slow down\n"),
                                        (500, [("Content-Type", "text/plain")], b"tsdb on fire\n"),
                                        (400, [("Content-Type", "text/plain")], b"out of order sample\n")):
        sink.answer_next(status_in, headers_in, data)
        status, headers, out = rw.post(w.url + "/api/v1/write", body, write_headers(token=creds["alice"]["token"]))
        assert (status, out) == (status_in, data), (status, out[:300])
        for k, v in headers_in:
            assert headers.get(k.lower()) == v, headers


def test_domain_scoped_writer_gets_the_domain_label(stack, write_envoys, sink):
    w = write_envoys("write-sink")
    body = sample_v1("kpw_domain_write", {"domain": "default", "x": "1"})
    status, _, out, recs = post_forwarded(w, sink, rw.snappy_compress(body), write_headers(token=stack["DAVE_DOMAIN_TOKEN"]))
    assert status == 204, (status, out[:300])
    (rec,) = recs
    (ts,) = rec["message"]["timeseries"]
    assert [v for k, v in ts["labels"] if k == "domain"] == [stack["DOMAIN_ID"]], ts["labels"]
    assert [k for k, v in ts["labels"]] == sorted(k for k, v in ts["labels"])


# ======================================================================================= 6: bad input
def _too_many_labels():
    return rw.v1_request([{"labels": [("__name__", "kpw_many_labels")] + [("l%03d" % i, "v") for i in range(129)],
                           "samples": [(1.0, int(time.time() * 1000))]}])


def _good_v1():
    return sample_v1("kpw_bad_input_reference", {"job": "x"})


def _good_v2():
    return rw.v2_request([{"labels": {"__name__": "kpw_bad_input_v2", "job": "x"}, "samples": [(1.0, int(time.time() * 1000))]}])


BAD = {
    # name: (body, headers overrides, status, words the error should hold (any of them))
    "not-snappy": (lambda: b"this is not snappy \xff\xfe\xfd", {}, 400, ()),
    "empty-body": (lambda: b"", {}, 400, ()),
    "framed-snappy": (lambda: rw.snappy_framed(_good_v1()), {}, 400, ("framed", "stream", "snappy")),
    "truncated-protobuf": (lambda: rw.snappy_compress(_good_v1()[:-3]), {}, 400, ("protobuf",)),
    "bomb-1GiB-prefix": (lambda: rw.lying_prefix(1 << 30), {}, 413, ()),
    "too-many-labels": (lambda: rw.snappy_compress(_too_many_labels()), {}, 400, ("kpw_many_labels",)),
    "label-too-long": (lambda: rw.snappy_compress(sample_v1("kpw_long", {"x": "v" * 9000})), {}, 400, ("kpw_long",)),
    "duplicate-label": (lambda: rw.snappy_compress(rw.v1_request([{"labels": [("__name__", "kpw_dup"), ("a", "1"), ("a", "2")],
                                                                  "samples": [(1.0, 1)]}])), {}, 400, ("kpw_dup",)),
    "v2-ref-outside-symbols": (lambda: rw.snappy_compress(rw.v2_request([{"labels_refs": [0, 99], "samples": [(1.0, 1)]}])),
                               {"Content-Type": rw.CT_V2}, 400, ()),
    "v2-body-as-v1": (lambda: rw.snappy_compress(_good_v2()), {"Content-Type": rw.CT_V1}, "4xx", ()),
    "v1-body-as-v2": (lambda: rw.snappy_compress(_good_v1()), {"Content-Type": rw.CT_V2}, "4xx", ()),
    "content-type-json": (lambda: rw.snappy_compress(_good_v1()), {"Content-Type": "application/json"}, 415, ()),
    "content-type-unknown-proto": (lambda: rw.snappy_compress(_good_v1()),
                                   {"Content-Type": "application/x-protobuf;proto=foo.Bar"}, 415, ()),
    "content-encoding-gzip": (lambda: rw.snappy_compress(_good_v1()), {"Content-Encoding": "gzip"}, 415, ()),
    "content-encoding-missing": (lambda: rw.snappy_compress(_good_v1()), {"Content-Encoding": None}, 415, ()),
    "body-over-max_body_bytes": (lambda: rw.snappy_compress(os.urandom(SINK_MAX_BODY + 1024), copies=False), {}, 413, ()),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_refused_nothing_forwarded(case, creds, write_envoys, sink):
    w = write_envoys("write-sink")
    make, overrides, want, words = BAD[case]
    headers = write_headers(2 if overrides.get("Content-Type") == rw.CT_V2 else 1, token=creds["alice"]["token"])
    for k, v in overrides.items():
        if v is None:
            headers.pop(k, None)
        else:
            headers[k] = v
    status, h, out = post_refused(w, sink, make(), headers, creds["alice"]["token"])
    if want == "4xx":
        assert 400 <= status < 500, (status, out[:300])
    else:
        assert status == want, (status, out[:300])
    prom_error(_Resp(status, h, out), status)      # Prometheus' error shape, whatever the status
    if words:
        assert any(word.encode() in out for word in words), out[:500]


# ======================================================================================= 7: roles
def test_reader_only_and_unknown_credentials_refused(stack, creds, write_envoys, sink):
    w = write_envoys("write-sink")
    body = rw.snappy_compress(sample_v1("kpw_refused_write"))
    cases = {
        "rita's application credential (reader)": (write_headers(auth=basic_auth("*" + creds["rita"]["appcred"][0],
                                                                                   creds["rita"]["appcred"][1])), 403),
        "rita's token (reader)": (write_headers(token=creds["rita"]["token"]), 403),
        "carl's token (monitoring_viewer)": (write_headers(token=stack["CARL_TOKEN"]), 403),
        "no credentials": (write_headers(), 401),
        "an invalid token": (write_headers(token="gAAAAAB-not-a-token"), 401),
        "a wrong application credential secret": (write_headers(auth=basic_auth("*" + creds["alice"]["appcred"][0],
                                                                                  "wrong-secret-123")), 401),
    }
    for what, (headers, want) in cases.items():
        status, _, out = post_refused(w, sink, body, headers, creds["alice"]["token"])
        assert status == want, (what, status, out[:300])
    # dave (member) may
    status, h, out = rw.post(w.url + "/api/v1/write", body, write_headers(token=creds["dave"]["token"]))
    assert status == 204 and h.get("x-kpw-sink") == "1", (status, out[:300])


def test_write_disabled_is_refused_like_an_unknown_path(creds, envoy_variants, sink):
    """`write.enabled` false: the write path is denied (403), as any path the filter does not know."""
    w = envoy_variants("write-off", {"write": {"enabled": False}}, prom_port=sink.port)
    probe = uuid.uuid4().hex
    REFUSED_PROBES.append(probe)
    status, h, out = rw.post(w.url + "/api/v1/write", rw.snappy_compress(sample_v1("kpw_write_off")),
                             write_headers(token=creds["alice"]["token"], **{"X-Kpw-Probe": probe}))
    prom_error(_Resp(status, h, out), 403)
    time.sleep(1)
    assert sink.saw(probe) == []


def test_unrestricted_writer_keeps_labels(stack, write_envoys, sink):
    """ops' token carries cloud_admin, one of unrestricted_roles: labels pass unchanged (a series of
    any project, one without any), the body still decoded and re-encoded."""
    w = write_envoys("write-sink")
    ts = int(time.time() * 1000)
    series = [{"labels": [("__name__", "kpw_ops_write"), ("project", stack["TEAM_B_ID"])], "samples": [(1.0, ts)]},
              {"labels": [("__name__", "kpw_ops_write"), ("project", "any-project")], "samples": [(2.0, ts)]},
              {"labels": [("__name__", "kpw_ops_global")], "samples": [(3.0, ts)]}]
    status, _, out, recs = post_forwarded(w, sink, rw.snappy_compress(rw.v1_request(series), copies=False),
                                          write_headers(token=stack["OPS_TOKEN"]))
    assert status == 204, (status, out[:300])
    (rec,) = recs
    assert [(ts_["labels"], ts_["samples"]) for ts_ in rec["message"]["timeseries"]] == \
        [(s["labels"], s["samples"]) for s in series]


# ======================================================================================= at the end
def test_no_refused_request_ever_reached_an_upstream(capture, sink):
    """None of the requests this module expected refused reached an upstream, not even late (a request
    whose headers went upstream before its body was refused arrives there as an aborted request)."""
    late = [(p, [dict(r, body=r["body"][:64]) for r in up.saw(p)]) for p in REFUSED_PROBES for up in (capture, sink)]
    assert not [x for x in late if x[1]], late
