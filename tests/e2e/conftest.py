"""End-to-end fixtures: the REAL stack (Keystone + Prometheus + Envoy running the filter).

`bash scripts/stack.sh up DIR` starts everything on random 127.0.0.1 ports and writes DIR/stack.env;
the `stack` fixture parses it into a dict and always tears the stack down at the end of the session.
"""
import os
import shlex
import subprocess
import tempfile
import time

import pytest
import requests

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
STACK_SH = os.path.join(REPO, "scripts", "stack.sh")


# Series that only the main Prometheus has: it alone evaluates rules (scripts/stack.sh prom_rules, for
# the rules/alerts tests), and their samples are stamped "now", after the seeded window. Comparisons
# with the team-a-only Prometheus leave them out by name, after checking they belong to the tenant.
RULE_OUTPUT_NAMES = {"ALERTS", "ALERTS_FOR_STATE", "project:cloud_cpu_seconds:rate5m"}
RULE_OUTPUT_LABELS = {"alertname", "alertstate", "severity"}


def without_rule_output(items, project=None):
    """Series (dicts) or names (strings) minus those of rule evaluation; checks the series' tenant."""
    kept = []
    for it in items:
        if isinstance(it, dict) and it.get("__name__") in RULE_OUTPUT_NAMES:
            assert project is None or it.get("project_id") == project, "rule output of another tenant: %r" % it
            continue
        if isinstance(it, str) and (it in RULE_OUTPUT_NAMES or it in RULE_OUTPUT_LABELS):
            continue
        kept.append(it)
    return kept


def parse_env(path):
    """Parse lines `export K=V` (V quoted with bash printf %q) into a dict."""
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = shlex.split(line)
            if parts and parts[0] == "export":
                parts = parts[1:]
            for part in parts:
                k, _, v = part.partition("=")
                env[k] = v
    return env


def _tail(path, n=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return "(%s)" % e


def stack_cmd(*args, timeout=120):
    return subprocess.run(["bash", STACK_SH, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="session")
def stack():
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
        env = parse_env(os.path.join(d, "stack.env"))
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


def new_token(stack, user, password, project_id, timeout=10):
    """A brand-new (never validated) project-scoped token via password auth."""
    body = {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"name": "tenants"}, "password": password}}},
        "scope": {"project": {"id": project_id}}}}
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


def wait_for(pred, timeout=5.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)
