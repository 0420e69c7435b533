"""Keystone under stress: slow, down, broken, flapping; bursts of new credentials; revocation; metrics; logs.

An extra Envoy ("ks": keystone.timeout_ms 500) reaches Keystone through tests/e2e/keystone_proxy.py, whose
mode each test sets (and which goes back to pass-through after every test). Its `prometheus` cluster is
the upstream recorder, so Envoy's stat cluster.prometheus.upstream_rq_total counts what went "upstream".
A second extra Envoy ("ttl2": cache.ttl_seconds 2) talks to Keystone directly, for revocation; a third
("neg1": cache.negative_ttl_seconds 1) goes through the proxy too, and so does a fourth ("roomy":
keystone.timeout_ms 30000) for the tests that count Keystone calls rather than time them: a password
login takes longer than 500 ms on a loaded machine.
"""
import concurrent.futures
import re
import threading
import time
import uuid

import pytest
import requests

from conftest import (basic_auth, keystone_calls, keystone_log_lines, new_token, prom_data,
                      prom_error, remember_secret, secrets_in_envoy_logs, wait_for)
from keystone_proxy import KeystoneProxy

CPU = "cloud_cpu_seconds_total"
TIMEOUT_MS = 500
SLOW_MS = 1500          # > TIMEOUT_MS
PROM_RQ = "cluster.prometheus.upstream_rq_total"


@pytest.fixture(scope="module")
def proxy(stack):
    p = KeystoneProxy("127.0.0.1", int(stack["KEYSTONE_PORT"])).start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="module")
def variants(stack, envoy_variants, proxy):
    # the "ks" Envoy logs the filter at debug too: the secrets test reads it
    envoy_variants.start("ks", {"keystone": {"timeout_ms": TIMEOUT_MS}}, keystone_port=proxy.port,
                         log_args=("--component-log-level", "wasm:debug"))
    envoy_variants.start("ttl2", {"cache": {"ttl_seconds": 2}})
    envoy_variants.start("neg1", {"cache": {"negative_ttl_seconds": 1}}, keystone_port=proxy.port)
    envoy_variants.start("roomy", {"keystone": {"timeout_ms": 30000}}, keystone_port=proxy.port)
    return envoy_variants


@pytest.fixture
def ks(variants, proxy):
    e = variants.get("ks")
    proxy.set_mode("pass")
    try:
        yield e
    finally:
        proxy.set_mode("pass")


@pytest.fixture
def roomy(variants, proxy):
    proxy.set_mode("pass")
    return variants.get("roomy")


def fresh_token(stack, user="alice"):
    """A token the filter has never seen (issued by Keystone directly, not through the proxy)."""
    pw, project = {"alice": ("alice-secret", stack["TEAM_A_ID"]), "rita": ("rita-secret", stack["TEAM_B_ID"])}[user]
    return remember_secret(new_token(stack, user, pw, project))


def query(e, token, method="GET", headers=None, **kw):
    h = {"X-Auth-Token": token} if token else {}
    h.update(headers or {})
    params = {"query": CPU, "time": e.stack["SEED_END"]}
    if method == "POST":
        return e.request("POST", "/api/v1/query", headers=h, data=params, **kw)
    return e.request("GET", "/api/v1/query", headers=h, params=params, **kw)


def assert_team_a(resp, stack):
    series = prom_data(resp)
    assert sorted(s["metric"].get("project") for s in series) == [stack["TEAM_A_ID"]] * 2, series


def assert_unavailable(resp, status):
    """503 (Keystone down or broken) or 504 `timeout` (Keystone slow), both with Retry-After (README)."""
    body = prom_error(resp, status, "timeout" if status == 504 else None)
    assert resp.headers.get("Retry-After"), "%d without Retry-After: %r" % (status, dict(resp.headers))
    return body


# ====================================================================== Keystone slow, down, broken
def test_slow_keystone_504_nothing_forwarded(ks, proxy, stack):
    tok = fresh_token(stack)
    before = ks.stat(PROM_RQ)
    proxy.set_mode("delay", SLOW_MS)
    t0 = time.monotonic()
    r = query(ks, tok)
    took = time.monotonic() - t0
    assert_unavailable(r, 504)
    assert took < SLOW_MS / 1000.0, "the filter waited %.2fs, longer than Keystone's delay" % took
    assert_unavailable(query(ks, tok, "POST"), 504)
    # Basic (POST /auth/tokens) times out the same way
    assert_unavailable(query(ks, None, headers=basic_auth("alice@tenants|team-a@tenants", "alice-secret")), 504)
    assert ks.stat(PROM_RQ) == before, "a request reached Prometheus while Keystone was slow"
    proxy.set_mode("pass")
    assert_team_a(query(ks, tok), stack)     # the timeout was not remembered as a verdict
    # README: keystone_prom_requests_timeout_504 counts them
    timeouts = metric_values(ks.prometheus_stats(), "keystone_prom_requests_timeout_504")
    assert timeouts and max(v for _, v in timeouts) >= 3, timeouts


@pytest.mark.parametrize("mode", ["down", "error", "reset"])
def test_keystone_unavailable_503(ks, proxy, stack, mode):
    tok = fresh_token(stack)
    before = ks.stat(PROM_RQ)
    proxy.set_mode(mode)
    assert_unavailable(query(ks, tok), 503)
    assert_unavailable(query(ks, tok, "POST"), 503)
    assert_unavailable(query(ks, None, headers=basic_auth("alice@tenants|team-a", "alice-secret")), 503)
    assert ks.stat(PROM_RQ) == before, "a request reached Prometheus while Keystone was %s" % mode
    proxy.set_mode("pass")
    # recovery without restart: the same token, and a new one
    assert_team_a(query(ks, tok), stack)
    assert_team_a(query(ks, fresh_token(stack)), stack)


def test_flapping_keystone_never_leaks(ks, proxy, stack):
    tokens = [fresh_token(stack) for _ in range(12)]
    proxy.set_mode("flap", TIMEOUT_MS + 400)
    before = ks.stat(PROM_RQ)
    statuses = []
    for tok in tokens:
        r = query(ks, tok)
        statuses.append(r.status_code)
        if r.status_code == 200:
            assert_team_a(r, stack)
        else:
            assert r.status_code in (503, 504), "HTTP %d: %s" % (r.status_code, r.text[:300])
            assert_unavailable(r, r.status_code)
    ok = statuses.count(200)
    assert 0 < ok < len(tokens), "the proxy should have flapped: %r" % statuses
    assert ks.stat(PROM_RQ) - before == ok, "only the 200s may have gone upstream"
    proxy.set_mode("pass")
    assert_team_a(query(ks, fresh_token(stack)), stack)
    for tok, status in zip(tokens, statuses):   # no failure was remembered as "invalid"
        if status != 200:
            assert_team_a(query(ks, tok), stack)


# ====================================================================== bursts and negative caching
@pytest.mark.parametrize("kind", ["token", "basic"])
def test_burst_of_one_new_credential_one_callout_per_worker(roomy, proxy, stack, kind):
    """100 concurrent first requests with one new credential: at most one Keystone call per Envoy worker
    (2), all answered 200 with the tenant's data."""
    tok = fresh_token(stack) if kind == "token" else None
    creds = {} if tok else basic_auth("%s|team-a@tenants" % stack["ALICE_ID"], "alice-secret")
    method = "GET" if tok else "POST"
    time.sleep(0.2)    # the token's POST is in Keystone's log before the mark
    mark, pmark = len(keystone_log_lines(stack)), proxy.mark()
    n = 100
    barrier = threading.Barrier(n)

    def one(_):
        barrier.wait(10)
        return query(roomy, tok, headers=creds, timeout=60)

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        answers = list(pool.map(one, range(n)))
    bad = [(r.status_code, r.text[:200]) for r in answers if r.status_code != 200]
    assert not bad, "%d of %d failed: %r" % (len(bad), n, bad[:3])
    for r in answers:
        assert_team_a(r, stack)
    calls = [c for c in proxy.snapshot()[pmark:]]
    assert 1 <= len(calls) <= 2, "%d Keystone calls for one new credential in %d concurrent requests (2 workers): %r" % (
        len(calls), n, calls)
    assert all(c["method"] == method and c["path"] == "/v3/auth/tokens?nocatalog" for c in calls), calls
    time.sleep(0.3)
    assert keystone_calls(stack, mark, method, "/v3/auth/tokens") <= 2, keystone_log_lines(stack)[mark:]


def test_invalid_token_negative_cache(ks, proxy, stack):
    bad = "gAAAAAB" + uuid.uuid4().hex * 4
    pmark = proxy.mark()
    for _ in range(20):
        prom_error(query(ks, bad), 401)
    calls = proxy.count("GET", "/v3/auth/tokens", subject=bad, since=pmark)
    assert 1 <= calls <= 2, "%d Keystone calls for one invalid token sent 20 times" % calls


def test_invalid_basic_negative_cache(ks, proxy, stack):
    creds = basic_auth("alice@tenants|team-a@tenants", "wrong-%s" % uuid.uuid4().hex[:8])
    pmark = proxy.mark()
    for _ in range(20):
        prom_error(query(ks, None, headers=creds), 401)
    calls = proxy.count("POST", "/v3/auth/tokens", since=pmark)
    assert 1 <= calls <= 2, "%d Keystone calls for one wrong password sent 20 times" % calls


def test_negative_ttl_expires(variants, proxy, stack):
    """cache.negative_ttl_seconds 1: an invalid token is asked about again once its verdict expires."""
    e = variants.get("neg1")
    bad = "gAAAAAB" + uuid.uuid4().hex * 4
    pmark = proxy.mark()
    for _ in range(5):
        prom_error(query(e, bad), 401)
    first = proxy.count("GET", "/v3/auth/tokens", subject=bad, since=pmark)
    assert 1 <= first <= 2, first
    time.sleep(1.3)
    prom_error(query(e, bad), 401)
    assert proxy.count("GET", "/v3/auth/tokens", subject=bad, since=pmark) > first, \
        "the invalid verdict outlived cache.negative_ttl_seconds (1 s)"


# ====================================================================== revocation
def test_revoked_token_refused_after_cache_ttl(variants, stack):
    e = variants.get("ttl2")
    tok = fresh_token(stack)
    assert_team_a(query(e, tok), stack)
    r = requests.delete(stack["KEYSTONE_URL"] + "/auth/tokens",
                        headers={"X-Auth-Token": stack["ADMIN_TOKEN"], "X-Subject-Token": tok}, timeout=10)
    assert r.status_code == 204, r.text
    revoked = time.monotonic()
    refused = wait_for(lambda: query(e, tok).status_code == 401, timeout=5, interval=0.25)
    took = time.monotonic() - revoked
    assert refused, "a revoked token still works 5s after revocation (cache.ttl_seconds 2)"
    assert took <= 3.5, "refused only %.1fs after revocation (cache.ttl_seconds 2)" % took
    prom_error(query(e, tok), 401)


# ====================================================================== metrics and logs
METRICS = ["keystone_prom_requests_allowed", "keystone_prom_requests_denied_400", "keystone_prom_requests_denied_401",
           "keystone_prom_requests_denied_403", "keystone_prom_requests_unavailable_503", "keystone_prom_cache_hits",
           "keystone_prom_cache_misses", "keystone_prom_keystone_callouts"]
HISTOGRAM = "keystone_prom_keystone_callout_ms"


def metric_values(text, name):
    """Values of every sample line whose metric name contains `name` (Envoy may prefix it)."""
    out = []
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m and name in m.group(1):
            out.append((m.group(1), float(m.group(3))))
    return out


def test_metrics_exported(ks, proxy, stack):
    tok = fresh_token(stack)
    assert_team_a(query(ks, tok), stack)                                       # miss + callout + allowed
    assert_team_a(query(ks, tok), stack)                                       # hit
    prom_error(ks.get("/api/v1/query", tok, params={"query": "sum(", "time": stack["SEED_END"]}), 400)
    prom_error(ks.get("/api/v1/status/config", tok), 403)
    prom_error(query(ks, "not-a-token"), 401)
    proxy.set_mode("down")
    assert_unavailable(query(ks, fresh_token(stack)), 503)
    proxy.set_mode("pass")
    text = ks.prometheus_stats()
    missing = [m for m in METRICS if not metric_values(text, m)]
    assert not missing, "metrics not in /stats/prometheus: %r\n%s" % (
        missing, "\n".join(l for l in text.splitlines() if "keystone_prom" in l))
    zero = [m for m in METRICS if max(v for _, v in metric_values(text, m)) <= 0]
    assert not zero, "counters still 0 after traffic: %r" % zero
    hist = metric_values(text, HISTOGRAM)
    assert any(n.endswith("_count") and v > 0 for n, v in hist), "histogram %s: %r" % (HISTOGRAM, hist)
    assert any(n.endswith("_bucket") for n, _ in hist), hist


def test_log_lines_carry_request_id(ks, proxy, stack):
    rid = "kpw-e2e-%s" % uuid.uuid4().hex
    proxy.set_mode("down")
    assert_unavailable(query(ks, fresh_token(stack), headers={"X-Request-Id": rid}), 503)
    proxy.set_mode("pass")
    found = wait_for(lambda: rid in ks.log(), timeout=3)
    assert found, "no log line names the request id of a request refused for an unavailable Keystone"
    for line in ks.log().splitlines():
        if rid in line:
            assert "[wasm]" in line or "wasm log" in line, line


def test_no_secret_in_any_envoy_log(stack, variants, ks):
    """The main Envoy's log and every extra Envoy's log hold none of the passwords, secrets, tokens or
    Basic values the tests sent so far, with a debug-logging Envoy's traffic of every kind of secret.
    The extra Envoys' configurations (which hold service credentials) are not logs. conftest's
    `no_secret_in_any_envoy_log_at_the_end` checks every log again when the session ends, whatever
    ran in which order."""
    # a little traffic with every kind of secret into the debug-logging Envoy
    ks.get("/api/v1/query", headers=basic_auth("alice@tenants|team-a", "alice-secret"),
           params={"query": CPU, "time": stack["SEED_END"]})
    ks.get("/api/v1/query", headers=basic_auth("alice@tenants|team-a", "wrong-password-e2e"),
           params={"query": CPU, "time": stack["SEED_END"]})
    ks.get("/api/v1/query", headers={"X-Application-Credential-Id": stack["APPCRED_ID"],
                                     "X-Application-Credential-Secret": stack["APPCRED_SECRET"]},
           params={"query": CPU, "time": stack["SEED_END"]})
    found = secrets_in_envoy_logs(stack, variants.workdir)
    assert not found, "secrets in Envoy logs (log, sha256 prefix, start): %r" % found
