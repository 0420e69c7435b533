"""End-to-end fixtures: the REAL stack (Keystone + Prometheus + Envoy running the filter).

`bash scripts/stack.sh up DIR` starts everything on random 127.0.0.1 ports and writes DIR/stack.env and
DIR/stack.json; the `stack` fixture reads the latter and always tears the stack down at the end of the session.
With E2E_STACK_DIR=DIR set, a stack already up in DIR is used instead (and left running).

Tests of configuration variants start extra Envoys (`envoy_variants`), whose upstream is a recorder of
what reached "Prometheus" (`upstream_recorder`, `upstream_saw`); tests/e2e/keystone_proxy.py puts a
Keystone that is slow, down or broken on demand between an extra Envoy and the real Keystone.
"""
import json
import os
import subprocess
import tempfile
import time

import sys

import pytest
import requests

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
from harness.envoy import ENVOY_BIN, cluster_of, merge_config, set_cluster_port, stat, wasm_filter_of  # noqa: E402
from harness.procs import free_port, read_request_body, stop_group, tail as _tail, wait_for  # noqa: E402,F401 (tests import them from here)
from harness.stack import REPO, read_stack, stack_cmd  # noqa: E402,F401


# Series that only the main Prometheus has: it alone evaluates rules (harness/stack.py prom_rules, for
# the rules/alerts tests), and their samples are stamped "now", after the seeded window. Comparisons
# with the team-a-only Prometheus leave them out by name, after checking they belong to the tenant.
RULE_OUTPUT_NAMES = {"ALERTS", "ALERTS_FOR_STATE", "project:cloud_cpu_seconds:rate5m"}
RULE_OUTPUT_LABELS = {"alertname", "alertstate", "severity"}


def without_rule_output(items, project=None):
    """Series (dicts) or names (strings) minus those of rule evaluation; checks the series' tenant."""
    kept = []
    for it in items:
        if isinstance(it, dict) and it.get("__name__") in RULE_OUTPUT_NAMES:
            assert project is None or it.get("project") == project, "rule output of another tenant: %r" % it
            continue
        if isinstance(it, str) and (it in RULE_OUTPUT_NAMES or it in RULE_OUTPUT_LABELS):
            continue
        kept.append(it)
    return kept


@pytest.fixture(scope="session")
def stack():
    reuse = os.environ.get("E2E_STACK_DIR")
    if reuse:
        # a stack already up (`scripts/stack.sh up DIR`): reused as it is and left running (for quick
        # iterations on tests; a full run starts its own)
        env = read_stack(reuse)
        env["STACK_DIR"] = os.path.abspath(reuse)
        yield env
        return
    d = tempfile.mkdtemp(prefix="kpw-e2e-")
    try:
        try:
            r = stack_cmd("up", d, timeout=600)
        except subprocess.TimeoutExpired as e:
            pytest.fail("stack.sh up timed out:\n%s\n%s" % (e.stdout, e.stderr), pytrace=False)
        if r.returncode != 0:
            logs = "\n".join("== %s ==\n%s" % (p, _tail(os.path.join(d, p))) for p in (
                "envoy/envoy.log", "keystone/server.log", "keystone/manage.log", "prometheus/prometheus.log"))
            pytest.fail("stack.sh up failed (rc=%d)\nstdout:\n%s\nstderr:\n%s\n%s"
                        % (r.returncode, r.stdout, r.stderr, logs), pytrace=False)
        env = read_stack(d)
        env["STACK_DIR"] = d
        yield env
    finally:
        r = stack_cmd("down", d)
        if r.returncode != 0:
            print("stack.sh down failed:", r.stdout, r.stderr)


@pytest.fixture(scope="session")
def tokens(stack):
    """Project-scoped tokens and the project ids they belong to, per user."""
    return {
        "alice": {"token": stack["ALICE_TOKEN"], "project": stack["TEAM_A_ID"], "other": stack["TEAM_B_ID"],
                  "cpu_series": 2, "all_series": int(stack["TEAM_A_SERIES"])},
        "rita": {"token": stack["RITA_TOKEN"], "project": stack["TEAM_B_ID"], "other": stack["TEAM_A_ID"],
                 "cpu_series": 1, "all_series": int(stack["TEAM_B_SERIES"])},
    }


def new_token(stack, user, password, project, timeout=10):
    """A brand-new (never validated) project-scoped token via password auth."""
    body = {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"name": "tenants"}, "password": password}}},
        "scope": {"project": {"id": project}}}}
    r = requests.post(stack["KEYSTONE_URL"] + "/auth/tokens", json=body, timeout=timeout)
    assert r.status_code == 201, r.text
    return r.headers["X-Subject-Token"]


class Envoy:
    """Small client for the Envoy listener; every request uses a fresh connection
    (Connection: close) so requests spread over Envoy's worker threads."""

    def __init__(self, stack):
        self.url = stack["ENVOY_URL"]
        self.stack = stack

    def request(self, method, path, token=None, headers=None, **kw):
        h = {"Connection": "close"}
        if token is not None:
            h["X-Auth-Token"] = token
        h.update(headers or {})
        kw.setdefault("timeout", 15)
        with requests.Session() as s:
            return s.request(method, self.url + path, headers=h, **kw)

    def get(self, path, token=None, **kw):
        return self.request("GET", path, token, **kw)

    def post(self, path, token=None, **kw):
        return self.request("POST", path, token, **kw)


@pytest.fixture(scope="session")
def envoy(stack):
    return Envoy(stack)


# ====================================================================== extra Envoys, variant configurations
# Tests of configuration keys start EXTRA Envoys next to the stack's: the stack's rendered envoy.yaml with
# other ports and base-id, the filter's JSON configuration merged with overrides, and optionally the
# `keystone` cluster pointed at tests/e2e/keystone_proxy.py and the `prometheus` cluster at the upstream
# recorder below (which forwards to PROM_X, the Prometheus with sub-project and domain series).
import base64
import hashlib
import http.client
import http.server
import threading



class ExtraEnvoy(Envoy):
    """A running extra Envoy: the Envoy client (request/get/post) plus its admin interface and log."""

    def __init__(self, stack, name, port, admin_port, log_path, proc, filter_config):
        super().__init__(stack)
        self.name = name
        self.url = "http://127.0.0.1:%d" % port
        self.admin_url = "http://127.0.0.1:%d" % admin_port
        self.log_path = log_path
        self.proc = proc
        self.filter_config = filter_config

    def stat(self, name):
        """Value of one Envoy counter/gauge by its exact name (0 when it does not exist yet)."""
        return stat(self.admin_url, name, default=0)

    def prometheus_stats(self):
        r = requests.get(self.admin_url + "/stats/prometheus", timeout=5)
        r.raise_for_status()
        return r.text

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()


class EnvoyVariants:
    """Starts extra Envoys by name. `start` only spawns (so several boot in parallel); `get` waits for
    /ready and fails the test with the log's tail if the Envoy refused the configuration."""

    def __init__(self, stack, workdir, default_prom_port=None):
        self.stack = stack
        self.workdir = workdir
        self.default_prom_port = default_prom_port
        self.rendered = os.path.join(stack["STACK_DIR"], "envoy", "envoy.yaml")
        self.specs = {}
        self.running = {}

    def start(self, name, config=None, keystone_port=None, prom_port=None, replace=False, log_args=(),
              prom_trailers=False):
        import yaml  # pyyaml: installed by scripts/stack.sh install
        if name in self.running and not replace:
            return
        if name in self.running:
            self._stop(name)
        self.specs[name] = dict(config=config, keystone_port=keystone_port, prom_port=prom_port,
                                log_args=log_args, prom_trailers=prom_trailers)
        with open(self.rendered) as f:
            cfg = yaml.safe_load(f)
        port, admin_port = free_port(), free_port()
        cfg["admin"]["address"]["socket_address"]["port_value"] = admin_port
        cfg["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] = port
        wasm = wasm_filter_of(cfg)
        base = json.loads(wasm["configuration"]["value"])
        filter_config = merge_config(base, config)
        wasm["configuration"]["value"] = json.dumps(filter_config, indent=2)
        wasm["vm_config"]["vm_id"] = "keystone_prom_%s" % name
        if keystone_port is not None:
            set_cluster_port(cfg, "keystone", keystone_port)
        prom_port = prom_port or self.default_prom_port
        if prom_port is not None:
            set_cluster_port(cfg, "prometheus", prom_port)
        if prom_trailers:
            # HTTP/1 trailers from the upstream reach the filters only when enabled
            cluster_of(cfg, "prometheus")["typed_extension_protocol_options"] = {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http_protocol_options": {"enable_trailers": True}}}}
        d = os.path.join(self.workdir, name)
        os.makedirs(d, exist_ok=True)
        cfg_path, log_path = os.path.join(d, "envoy.yaml"), os.path.join(d, "envoy.log")
        with open(cfg_path, "w") as f:
            yaml.safe_dump(cfg, f, sort_keys=False)
        log = open(log_path, "w")
        # Popen from the main thread only: Envoy sets PR_SET_PDEATHSIG, which fires when the THREAD that
        # forked it ends. --base-id keeps its hot-restart shared memory apart from the other Envoys'.
        proc = subprocess.Popen(
            [ENVOY_BIN, "-c", cfg_path, "--concurrency", "2", "--log-level", "info",
             "--base-id", str(admin_port), *log_args],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.running[name] = ExtraEnvoy(self.stack, name, port, admin_port, log_path, proc, filter_config)

    def get(self, name, timeout=60):
        e = self.running.get(name)
        assert e is not None, "variant %r was never started" % name
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if e.proc.poll() is not None:
                tail = _tail(e.log_path, 25)
                if "address already in use" in tail.lower():   # port race: once more on new ports
                    self.running.pop(name)
                    self.start(name, **self.specs[name])
                    return self.get(name, timeout)
                pytest.fail("extra Envoy %r (filter configuration %s) exited with %s; log tail:\n%s"
                            % (name, json.dumps(e.filter_config), e.proc.returncode, tail), pytrace=False)
            try:
                if requests.get(e.admin_url + "/ready", timeout=1).status_code == 200:
                    return e
            except requests.RequestException:
                pass
            time.sleep(0.05)
        pytest.fail("extra Envoy %r not ready after %ss; log tail:\n%s" % (name, timeout, _tail(e.log_path)),
                    pytrace=False)

    def __call__(self, name, config=None, **kw):
        """Start (if needed) and wait: the variant's ExtraEnvoy."""
        self.start(name, config, **kw)
        return self.get(name)

    def _stop(self, name):
        e = self.running.pop(name, None)
        if e is not None:
            stop_group(e.proc)

    def stop_all(self):
        for name in list(self.running):
            self._stop(name)

    def logs(self):
        """Every extra Envoy's log text (also of stopped ones: the files stay until the session ends)."""
        out = {}
        for name in os.listdir(self.workdir):
            p = os.path.join(self.workdir, name, "envoy.log")
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    out[name] = f.read()
        return out


@pytest.fixture(scope="session")
def variants_dir(stack):
    d = os.path.join(stack["STACK_DIR"], "extra-envoys")
    os.makedirs(d, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def envoy_variants(stack, variants_dir, upstream_recorder):
    """Factory of extra Envoys (per test module; all stopped at the module's end). By default their
    `prometheus` cluster is the upstream recorder (which forwards to PROM_X)."""
    v = EnvoyVariants(stack, variants_dir, default_prom_port=upstream_recorder.port)
    try:
        yield v
    finally:
        v.stop_all()


# ---------------------------------------------------------------------- upstream recorder
class _RecorderHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "te", "trailer", "upgrade",
           "proxy-connection"}

    def log_message(self, *args):
        pass

    def _body(self):
        return read_request_body(self)

    def _any(self):
        body = self._body()
        rec = {"method": self.command, "path": self.path,
               "headers": [[k, v] for k, v in self.headers.items()], "body": body.decode("latin-1")}
        srv = self.server
        with srv.lock:
            srv.records.append(rec)
        status, headers, data = 502, [("Content-Type", "application/json")], b'{"status":"error"}'
        if srv.target_port:
            fwd = {k: v for k, v in self.headers.items() if k.lower() == "content-type"}
            try:
                c = http.client.HTTPConnection("127.0.0.1", srv.target_port, timeout=30)
                c.request(self.command, self.path, body=body if body else None, headers=fwd)
                r = c.getresponse()
                status, headers, data = r.status, r.getheaders(), r.read()
                c.close()
            except OSError as e:
                data = json.dumps({"status": "error", "error": "recorder: %s" % e}).encode()
        else:   # echo only: a Prometheus-shaped empty answer
            status, data = 200, b'{"status":"success","data":{"resultType":"vector","result":[]}}'
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in self.HOP and k.lower() != "date" and k.lower() != "server":
                self.send_header(k, v)
        self.send_header("X-Upstream-Request", base64.b64encode(json.dumps(rec).encode()).decode())
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _any


class _RecorderServer(http.server.ThreadingHTTPServer):
    request_queue_size = 512     # listen backlog: bursts of 100 connections (socketserver's default is 5)
    daemon_threads = True


class UpstreamRecorder:
    """An HTTP server in this process between the extra Envoys and Prometheus: it records every request
    that reached "Prometheus" (method, path, headers, body), forwards it, and returns the answer with the
    recorded request in the X-Upstream-Request response header (base64 JSON). See `upstream_saw`."""

    def __init__(self, target_port=None):
        self.httpd = _RecorderServer(("127.0.0.1", 0), _RecorderHandler)
        self.httpd.records = []
        self.httpd.lock = threading.Lock()
        self.httpd.target_port = int(target_port) if target_port else None
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="upstream-recorder", daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    @property
    def records(self):
        with self.httpd.lock:
            return list(self.httpd.records)


def upstream_saw(resp):
    """The request the upstream recorder received for this response, or None if nothing went upstream:
    {"method", "path", "body", "headers": {lower-case name: [values]}}."""
    raw = resp.headers.get("X-Upstream-Request")
    if raw is None:
        return None
    rec = json.loads(base64.b64decode(raw))
    headers = {}
    for k, v in rec["headers"]:
        headers.setdefault(k.lower(), []).append(v)
    rec["headers"] = headers
    return rec


@pytest.fixture(scope="session")
def upstream_recorder(stack):
    r = UpstreamRecorder(stack.get("PROM_X_PORT") or stack["PROM_PORT"]).start()
    try:
        yield r
    finally:
        r.stop()


# ---------------------------------------------------------------------- Keystone's access log
def keystone_log_lines(stack):
    with open(stack["KEYSTONE_ACCESS_LOG"], errors="replace") as f:
        return f.readlines()


def keystone_calls(stack, since, method=None, path="/v3/auth/tokens"):
    """Lines of Keystone's access log after line `since` for METHOD PATH (gunicorn: "GET /v3/... HTTP/1.1")."""
    n = 0
    for line in keystone_log_lines(stack)[since:]:
        if ('"%s %s' % (method, path) in line) if method else (" %s" % path in line):
            n += 1
    return n


# ---------------------------------------------------------------------- answers (identity and Keystone tests)
def prom_data(resp):
    """The `data.result` of a successful Prometheus answer."""
    assert resp.status_code == 200, "HTTP %d: %s" % (resp.status_code, resp.text[:500])
    body = resp.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def label_values(series, label):
    return sorted(s["metric"].get(label) for s in series)


def prom_error(resp, status, error_type=None):
    """Asserts a Prometheus-style JSON error with this status; returns the body."""
    assert resp.status_code == status, "HTTP %d (want %d): %s" % (resp.status_code, status, resp.text[:500])
    assert resp.headers.get("Content-Type", "").startswith("application/json"), resp.headers
    body = resp.json()
    assert body.get("status") == "error" and body.get("errorType") and body.get("error"), body
    if error_type is not None:
        assert body["errorType"] == error_type, body
    return body


# Every secret the tests send (passwords, application credential secrets, tokens, Basic values): the
# log test checks that no Envoy log holds any of them.
SECRETS_USED = set()


def remember_secret(*values):
    SECRETS_USED.update(v for v in values if v)
    return values[0] if len(values) == 1 else values


def _secrets(stack):
    s = set(SECRETS_USED)
    for k in ("ADMIN_PASSWORD", "ADMIN_TOKEN", "ADMIN_SYSTEM_TOKEN", "SERVICE_TOKEN", "ALICE_TOKEN", "RITA_TOKEN",
              "RITA_DOMAIN_TOKEN", "APPCRED_TOKEN", "APPCRED_SECRET", "BOB_TOKEN", "CARL_TOKEN", "OPS_TOKEN",
              "OPS_SYSTEM_TOKEN", "APPCRED_RO_SECRET", "SVC_APPCRED_SECRET", "APPCRED_GLOB_SECRET"):
        if stack.get(k):
            s.add(stack[k])
    s.update(["alice-secret", "rita-secret", "bob-secret", "carl-secret", "ops-secret", "svc-secret"])
    return {x for x in s if len(x) >= 8}


def secrets_in_envoy_logs(stack, variants_dir):
    """(log, sha256 prefix, first characters) of every secret the tests used that stands in the main
    Envoy's log or an extra Envoy's log."""
    logs = {}
    for name in sorted(os.listdir(variants_dir)) if os.path.isdir(variants_dir) else []:
        p = os.path.join(variants_dir, name, "envoy.log")
        if os.path.exists(p):
            with open(p, errors="replace") as f:
                logs[name] = f.read()
    main = os.path.join(stack["STACK_DIR"], "envoy", "envoy.log")
    if os.path.exists(main):
        with open(main, errors="replace") as f:
            logs["main"] = f.read()
    secrets = _secrets(stack)
    return [(name, hashlib.sha256(s.encode()).hexdigest()[:12], s[:4] + "...")
            for name, text in logs.items() for s in secrets if s in text]


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_envoy_log_at_the_end(stack, variants_dir):
    """After every e2e test, in whatever order they ran: no secret any of them sent is in a log."""
    yield
    found = secrets_in_envoy_logs(stack, variants_dir)
    assert not found, "secrets in Envoy logs (log, sha256 prefix, start): %r" % found


def basic_auth(username, password):
    value = base64.b64encode(("%s:%s" % (username, password)).encode()).decode()
    remember_secret(password, value)
    return {"Authorization": "Basic " + value}


def keystone_token(stack, auth):
    """A new token from the real Keystone for an `auth` object (identity + optional scope)."""
    r = requests.post(stack["KEYSTONE_URL"] + "/auth/tokens?nocatalog", json={"auth": auth}, timeout=15)
    assert r.status_code == 201, r.text
    return remember_secret(r.headers["X-Subject-Token"])


def appcred_token(stack, appcred_id, secret):
    return keystone_token(stack, {"identity": {"methods": ["application_credential"],
                                               "application_credential": {"id": appcred_id, "secret": secret}}})
