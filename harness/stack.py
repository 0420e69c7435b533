"""The real stack on 127.0.0.1: OpenStack Keystone (Debian's python3-keystone 22, served by gunicorn),
three Prometheus servers seeded with two tenants' series, and Envoy running the filter. `scripts/stack.sh`
installs what it needs and runs this module with Debian's python3 (which has keystone):

    python3 -m harness.stack up [DIR]        start, seed; writes DIR/stack.env and DIR/stack.json
    python3 -m harness.stack down DIR        stop everything (by pid) and delete DIR
    python3 -m harness.stack run -- CMD...   up in a temp dir, run CMD with stack.env exported, always down
    python3 -m harness.stack ks-stop DIR     stop Keystone only (the "Keystone is down" test)
    python3 -m harness.stack ks-start DIR    start Keystone again on the same port with the same database

Seed data: domain "tenants" with projects team-a (user alice, role member), team-b (user rita, role reader)
and team-a-child; series cloud_cpu_seconds_total (2 for team-a, 1 for team-b) and cloud_instances (1
each), every series labelled project=<keystone project id>, one sample a minute for the hour
SEED_START..SEED_END (always query at time=SEED_END or inside the window); richer series under other
names (scripts/stack/seed_rich.py), counted per project in TEAM_A_SERIES and TEAM_B_SERIES. PROM_A (not
behind Envoy) holds exactly team-a's samples, the reference for what alice may see; PROM_X (behind the
e2e tests' extra Envoys only) holds the main samples plus team-a-child's and domain-labelled series.
More identities for the credential tests: users bob, carl and ops, roles monitoring_viewer and
cloud_admin, and application credentials with and without access rules.

Alertmanager (Debian's 0.25) gets the main Prometheus' alerts (ALERTMANAGER_URL; behind Envoy under
/alertmanager/).

Knobs (environment): STACK_PORTS=fixed (Keystone 5000, Prometheus 9090, 9091, 9092, Envoy 10000, admin
9901, Alertmanager 9093; default random free ports), KS_WORKERS (2), KS_CACHE=1 (Keystone's in-memory cache),
STACK_KEEP=1 (down keeps DIR), WASM_PATH (default: the release build), ENVOY_LOG_LEVEL (info),
ENVOY_CONCURRENCY (2), ADMIN_PASSWORD (admin-secret).
"""
import json
import os
import shlex
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from harness import REPO
from harness.envoy import render
from harness.procs import alive, free_port, spawn, stop_pids, tail

STACK_SH = os.path.join(REPO, "scripts", "stack.sh")
PY = "/usr/bin/python3"     # Debian's python: python3-keystone lives there (not pyenv's python3)
VENV = os.path.join(REPO, ".venv")
FIXED = {"keystone": 5000, "prometheus": 9090, "prometheus-a": 9091, "prometheus-x": 9092,
         "envoy": 10000, "envoy-admin": 9901, "exporter": 9150, "alertmanager": 9093}
# The demo (STACK_DEMO=1) starts no reference Prometheus servers; it starts the exporter instead.
DEMO_ONLY, TESTS_ONLY = ("exporter",), ("prometheus-a", "prometheus-x")


def check_fixed_ports(demo):
    """With STACK_PORTS=fixed, every port must be free before anything starts: the error names each
    port that is taken, at once."""
    taken = ["%d (%s)" % (port, name) for name, port in sorted(FIXED.items(), key=lambda kv: kv[1])
             if name not in (TESTS_ONLY if demo else DEMO_ONLY) and port_taken(port)]
    if taken:
        raise StackError("port %s in use on 127.0.0.1; stop whatever holds it (a demo already running? "
                         "make demo-down)" % ", ".join(taken))


def read_stack(d):
    """The stack's settings, as `up` wrote them to DIR/stack.json (the same as stack.env)."""
    with open(os.path.join(d, "stack.json")) as f:
        return json.load(f)


def stack_cmd(*args, timeout=120):
    """Runs `scripts/stack.sh ARGS...` (up, down, ks-stop, ks-start)."""
    return subprocess.run(["bash", STACK_SH, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------------------------------ plumbing
class StackError(Exception):
    pass


def log(msg):
    print("[stack %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def now_ms():
    return int(time.time() * 1000)


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def pick_port(name):
    """A random free port, or the fixed one with STACK_PORTS=fixed (which must be free)."""
    if os.environ.get("STACK_PORTS", "random") != "fixed":
        return free_port()
    port = FIXED[name]
    if port_taken(port):
        raise StackError("port %d is in use (STACK_PORTS=fixed); stop whatever holds it (make demo-down?)" % port)
    return port


def port_taken(port):
    """Whether something holds 127.0.0.1:PORT."""
    import socket
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def http(method, url, body=None, headers=None, timeout=30):
    """(status, headers, body bytes); HTTP errors are answers too."""
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    h = dict(headers or {})
    if data is not None and "Content-Type" not in h:
        h["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, headers=h, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def wait_http(url, pidfile, timeout):
    """True once `url` answers 2xx; False on time-out or when the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = read_pid(pidfile)
        if pid is None or not alive(pid):
            return False
        try:
            if 200 <= http("GET", url, timeout=2)[0] < 300:
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def start_detached(argv, log_path, pidfile, cwd=None, env=None):
    """Starts a server in a session of its own, which outlives this process; its pid goes to `pidfile`."""
    p = spawn(argv, log_path, cwd=cwd, env=env)
    with open(pidfile, "w") as f:
        f.write("%d\n" % p.pid)
    return p


def stop_pidfiles(*pidfiles):
    """Stops the servers whose pids these files hold (their groups)."""
    stop_pids([read_pid(f) for f in pidfiles])


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


# ------------------------------------------------------------------------------------------ keystone
def ks_init(k, admin_password):
    """Configuration, database (WAL), keys; the port comes with `ks_bootstrap`."""
    os.makedirs(os.path.join(k, "fernet-keys"), exist_ok=True)
    os.makedirs(os.path.join(k, "credential-keys"), exist_ok=True)
    os.chmod(os.path.join(k, "fernet-keys"), 0o700)
    os.chmod(os.path.join(k, "credential-keys"), 0o700)
    conf = """[DEFAULT]
log_file = {k}/keystone.log
use_stderr = false
[database]
connection = sqlite:///{k}/keystone.db
[token]
provider = fernet
expiration = 3600
[fernet_tokens]
key_repository = {k}/fernet-keys
[fernet_receipts]
key_repository = {k}/fernet-keys
[credential]
key_repository = {k}/credential-keys
[identity]
# bcrypt cost 4 (minimum): password auth ~10x faster; fine for tests
password_hash_rounds = 4
""".format(k=k)
    if os.environ.get("KS_CACHE", "0") == "1":
        conf += "[cache]\nenabled = true\nbackend = dogpile.cache.memory\n"
    write(os.path.join(k, "keystone.conf"), conf)
    user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    group = subprocess.run(["id", "-gn"], capture_output=True, text=True).stdout.strip()
    manage("db_sync", k=k)
    # Debian keystone 22.0.2 leaks a read transaction (federation get_enabled_service_providers returns a
    # lazy Query); with sqlite's default rollback journal that SHARED lock makes later writes fail with
    # 'database is locked' (HTTP 500). WAL lets readers and a writer coexist.
    db = sqlite3.connect(os.path.join(k, "keystone.db"))
    db.execute("PRAGMA journal_mode=WAL")
    db.close()
    manage("fernet_setup", "--keystone-user", user, "--keystone-group", group, k=k)
    manage("credential_setup", "--keystone-user", user, "--keystone-group", group, k=k)


def manage(*args, k):
    with open(os.path.join(k, "manage.log"), "ab") as f:
        r = subprocess.run(["/usr/bin/keystone-manage", "--config-file", os.path.join(k, "keystone.conf"), *args],
                           stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise StackError("keystone-manage %s failed, see %s/manage.log" % (args[0], k))


def ks_serve(k, port):
    """gunicorn for an initialised Keystone dir; True once it answers. Keystone parses sys.argv with
    oslo.config, so gunicorn gets no arguments: everything is in ./gunicorn.conf.py."""
    t0 = now_ms()
    write(os.path.join(k, "gunicorn.conf.py"), """wsgi_app = "keystone.server.wsgi:initialize_public_application()"
bind = "127.0.0.1:{port}"
workers = {workers}
preload_app = True
timeout = 120
graceful_timeout = 5
# one line per request, written unbuffered (the e2e cache test counts /auth/tokens lines here)
accesslog = "{k}/access.log"
errorlog = "{k}/server.log"
""".format(port=port, workers=int(os.environ.get("KS_WORKERS", "2")), k=k))
    write(os.path.join(k, "port"), "%d\n" % port)
    env = dict(os.environ, OS_KEYSTONE_CONFIG_DIR=k)
    start_detached([PY, "-m", "gunicorn"], os.path.join(k, "server.log"), os.path.join(k, "server.pid"), cwd=k, env=env)
    if wait_http("http://127.0.0.1:%d/v3" % port, os.path.join(k, "server.pid"), 90):
        log("keystone answering on 127.0.0.1:%d after %dms" % (port, now_ms() - t0))
        return True
    stop_pidfiles(os.path.join(k, "server.pid"))
    print(tail(os.path.join(k, "server.log")), file=sys.stderr)
    return False


def ks_start(k, admin_password):
    t0 = now_ms()
    ks_init(k, admin_password)
    for _ in range(3):
        port = pick_port("keystone")
        url = "http://127.0.0.1:%d/v3/" % port
        # bootstrap is idempotent and re-points the catalog endpoints if a retry picked a new port
        manage("bootstrap", "--bootstrap-password", admin_password, "--bootstrap-admin-url", url,
               "--bootstrap-internal-url", url, "--bootstrap-public-url", url, "--bootstrap-region-id", "RegionOne", k=k)
        log("keystone db_sync+keys+bootstrap: %dms" % (now_ms() - t0))
        if ks_serve(k, port):
            return port
    raise StackError("keystone did not start")


class Keystone:
    """Keystone's API as the admin, for seeding."""

    def __init__(self, url):
        self.url = url
        self.admin = None

    def token(self, auth):
        status, headers, body = http("POST", self.url + "/auth/tokens", {"auth": auth})
        tok = headers.get("X-Subject-Token") if status == 201 else None
        if not tok:
            raise StackError("token request failed: HTTP %d %s" % (status, body[:300]))
        return tok

    def api(self, method, path, body=None, token=None):
        status, _, out = http(method, self.url + path, body, {"X-Auth-Token": token or self.admin})
        if status >= 400:
            raise StackError("%s %s -> HTTP %d: %s" % (method, path, status, out[:300]))
        return json.loads(out) if out else {}


def pw(user, domain, password, scope=None):
    auth = {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": domain, "password": password}}}}
    if scope is not None:
        auth["scope"] = scope
    return auth


def appcred(ks, user_id, token, name, secret, access_rules=None):
    body = {"application_credential": {"name": name, "secret": secret}}
    if access_rules is not None:
        body["application_credential"]["access_rules"] = access_rules
    return ks.api("POST", "/users/%s/application_credentials" % user_id, body, token=token)["application_credential"]["id"]


def ks_seed(ks, env, admin_password):
    t0 = now_ms()
    default, tenants = {"id": "default"}, {"name": "tenants"}
    ks.admin = ks.token(pw("admin", default, admin_password, {"project": {"name": "admin", "domain": default}}))
    e = env
    e["ADMIN_TOKEN"] = ks.admin
    e["ADMIN_SYSTEM_TOKEN"] = ks.token(pw("admin", default, admin_password, {"system": {"all": True}}))
    e["DOMAIN_ID"] = ks.api("POST", "/domains", {"domain": {"name": "tenants", "description": "test tenants"}})["domain"]["id"]
    project = lambda name, domain, **kw: ks.api("POST", "/projects", {"project": dict(name=name, domain_id=domain, **kw)})["project"]["id"]  # noqa: E731
    user = lambda name, domain, password: ks.api("POST", "/users", {"user": {"name": name, "domain_id": domain, "password": password}})["user"]["id"]  # noqa: E731
    role = lambda name: ks.api("POST", "/roles", {"role": {"name": name}})["role"]["id"]  # noqa: E731
    e["TEAM_A_ID"] = project("team-a", e["DOMAIN_ID"])
    e["TEAM_B_ID"] = project("team-b", e["DOMAIN_ID"])
    e["TEAM_A_CHILD_ID"] = project("team-a-child", e["DOMAIN_ID"], parent_id=e["TEAM_A_ID"])
    e["MEMBER_ROLE_ID"] = ks.api("GET", "/roles?name=member")["roles"][0]["id"]
    e["READER_ROLE_ID"] = ks.api("GET", "/roles?name=reader")["roles"][0]["id"]
    e["SERVICE_ROLE_ID"] = role("service")
    e["ALICE_ID"] = user("alice", e["DOMAIN_ID"], "alice-secret")
    e["RITA_ID"] = user("rita", e["DOMAIN_ID"], "rita-secret")
    e["SVC_PROJECT_ID"] = project("service", "default")
    e["SVC_USER_ID"] = user("svc", "default", "svc-secret")
    ks.api("PUT", "/projects/%s/users/%s/roles/%s" % (e["TEAM_A_ID"], e["ALICE_ID"], e["MEMBER_ROLE_ID"]))  # member implies reader
    ks.api("PUT", "/projects/%s/users/%s/roles/%s" % (e["TEAM_B_ID"], e["RITA_ID"], e["READER_ROLE_ID"]))
    ks.api("PUT", "/domains/%s/users/%s/roles/%s" % (e["DOMAIN_ID"], e["RITA_ID"], e["READER_ROLE_ID"]))  # a domain token
    ks.api("PUT", "/projects/%s/users/%s/roles/%s" % (e["SVC_PROJECT_ID"], e["SVC_USER_ID"], e["SERVICE_ROLE_ID"]))
    e["ALICE_TOKEN"] = ks.token(pw("alice", tenants, "alice-secret", {"project": {"name": "team-a", "domain": tenants}}))
    e["RITA_TOKEN"] = ks.token(pw("rita", tenants, "rita-secret", {"project": {"id": e["TEAM_B_ID"]}}))
    e["RITA_DOMAIN_TOKEN"] = ks.token(pw("rita", tenants, "rita-secret", {"domain": {"name": "tenants"}}))
    e["SERVICE_TOKEN"] = ks.token(pw("svc", default, "svc-secret", {"project": {"name": "service", "domain": default}}))
    e["APPCRED_SECRET"], e["APPCRED_NAME"] = "alice-appcred-secret", "alice-ci"
    e["APPCRED_ID"] = appcred(ks, e["ALICE_ID"], e["ALICE_TOKEN"], "alice-ci", e["APPCRED_SECRET"])
    e["APPCRED_TOKEN"] = ks.token({"identity": {"methods": ["application_credential"], "application_credential": {
        "id": e["APPCRED_ID"], "secret": e["APPCRED_SECRET"]}}})
    # sanity: the service token validates alice's token, scoped to team-a
    status, _, body = http("GET", ks.url + "/auth/tokens?nocatalog",
                           headers={"X-Auth-Token": e["SERVICE_TOKEN"], "X-Subject-Token": e["ALICE_TOKEN"]})
    if status != 200 or json.loads(body)["token"]["project"]["id"] != e["TEAM_A_ID"]:
        raise StackError("token validation sanity check failed (HTTP %d)" % status)
    ks_seed_identity(ks, e, project, user, role)
    log("keystone seeded in %dms" % (now_ms() - t0))


def ks_seed_identity(ks, e, project, user, role):
    """More identities for the credential, scope and role tests (test_identity.py, test_keystone_load.py):
    bob (Default) member on team-a; carl (tenants) monitoring_viewer on team-b only; dave (tenants)
    member on team-b and on the domain, with an application credential, and rita's application
    credential (test_write.py); ops (Default) cloud_admin on project admin and on the system; alice's
    application credentials alice-ro (only GET /api/v1/query of metric-storage) and alice-glob
    (Keystone's globs, and a rule of another service); svc's application credential, for
    keystone.service_credentials. alice has no role on team-a-child: GET
    /v3/projects/<team-a>?subtree_as_ids lists it with her team-a token all the same."""
    default, tenants = {"id": "default"}, {"name": "tenants"}
    e["MONITORING_VIEWER_ROLE_ID"] = role("monitoring_viewer")
    e["CLOUD_ADMIN_ROLE_ID"] = role("cloud_admin")
    e["ADMIN_PROJECT_ID"] = ks.api("GET", "/projects?name=admin&domain_id=default")["projects"][0]["id"]
    e["BOB_ID"] = user("bob", "default", "bob-secret")
    e["CARL_ID"] = user("carl", e["DOMAIN_ID"], "carl-secret")
    e["OPS_ID"] = user("ops", "default", "ops-secret")
    ks.api("PUT", "/projects/%s/users/%s/roles/%s" % (e["TEAM_A_ID"], e["BOB_ID"], e["MEMBER_ROLE_ID"]))
    ks.api("PUT", "/projects/%s/users/%s/roles/%s" % (e["TEAM_B_ID"], e["CARL_ID"], e["MONITORING_VIEWER_ROLE_ID"]))
    ks.api("PUT", "/projects/%s/users/%s/roles/%s" % (e["ADMIN_PROJECT_ID"], e["OPS_ID"], e["CLOUD_ADMIN_ROLE_ID"]))
    ks.api("PUT", "/system/users/%s/roles/%s" % (e["OPS_ID"], e["CLOUD_ADMIN_ROLE_ID"]))
    e["BOB_TOKEN"] = ks.token(pw("bob", default, "bob-secret", {"project": {"id": e["TEAM_A_ID"]}}))
    e["CARL_TOKEN"] = ks.token(pw("carl", tenants, "carl-secret", {"project": {"id": e["TEAM_B_ID"]}}))
    e["OPS_TOKEN"] = ks.token(pw("ops", default, "ops-secret", {"project": {"id": e["ADMIN_PROJECT_ID"]}}))
    e["OPS_SYSTEM_TOKEN"] = ks.token(pw("ops", default, "ops-secret", {"system": {"all": True}}))
    e["APPCRED_RO_NAME"], e["APPCRED_RO_SECRET"] = "alice-ro", "alice-ro-secret"
    e["APPCRED_RO_ID"] = appcred(ks, e["ALICE_ID"], e["ALICE_TOKEN"], "alice-ro", "alice-ro-secret", [
        {"service": "metric-storage", "method": "GET", "path": "/api/v1/query"}])
    # access rules with Keystone's globs (keystonemiddleware: * = [^/]+, ** = .*, anywhere in the path)
    e["APPCRED_GLOB_SECRET"] = "alice-glob-secret"
    e["APPCRED_GLOB_ID"] = appcred(ks, e["ALICE_ID"], e["ALICE_TOKEN"], "alice-glob", "alice-glob-secret", [
        {"service": "metric-storage", "method": "GET", "path": "/api/v1/label/*/values"},
        {"service": "metric-storage", "method": "GET", "path": "/api/v1/query**"},
        {"service": "metric-storage", "method": "GET", "path": "/api/v1/lab*"},
        {"service": "compute", "method": "GET", "path": "/api/v1/series"}])
    e["SVC_APPCRED_SECRET"] = "svc-appcred-secret"
    e["SVC_APPCRED_ID"] = appcred(ks, e["SVC_USER_ID"], e["SERVICE_TOKEN"], "svc-filter", "svc-appcred-secret")
    # writers for the write path (tests/e2e/test_write.py): dave (tenants) member on team-b with an
    # application credential (team-b's Prometheus agent); rita's application credential carries only her
    # reader role (refused a write). Secrets are URL-safe: Prometheus' oauth2 client sends them
    # form-urlencoded in its Basic header, which Keystone's /v3/OS-OAUTH2/token does not decode.
    e["DAVE_ID"] = user("dave", e["DOMAIN_ID"], "dave-secret")
    ks.api("PUT", "/projects/%s/users/%s/roles/%s" % (e["TEAM_B_ID"], e["DAVE_ID"], e["MEMBER_ROLE_ID"]))
    ks.api("PUT", "/domains/%s/users/%s/roles/%s" % (e["DOMAIN_ID"], e["DAVE_ID"], e["MEMBER_ROLE_ID"]))  # a domain-scoped writer
    e["DAVE_TOKEN"] = ks.token(pw("dave", tenants, "dave-secret", {"project": {"id": e["TEAM_B_ID"]}}))
    e["DAVE_DOMAIN_TOKEN"] = ks.token(pw("dave", tenants, "dave-secret", {"domain": {"id": e["DOMAIN_ID"]}}))
    e["DAVE_APPCRED_SECRET"] = "dave-appcred-secret"
    e["DAVE_APPCRED_ID"] = appcred(ks, e["DAVE_ID"], e["DAVE_TOKEN"], "dave-agent", e["DAVE_APPCRED_SECRET"])
    e["RITA_APPCRED_SECRET"] = "rita-appcred-secret"
    e["RITA_APPCRED_ID"] = appcred(ks, e["RITA_ID"], e["RITA_TOKEN"], "rita-agent", e["RITA_APPCRED_SECRET"])
    # sanity: a restricted application credential's token validates only with the access-rules header
    tok = ks.token({"identity": {"methods": ["application_credential"], "application_credential": {
        "id": e["APPCRED_RO_ID"], "secret": e["APPCRED_RO_SECRET"]}}})
    status = http("GET", ks.url + "/auth/tokens?nocatalog", headers={
        "X-Auth-Token": e["SERVICE_TOKEN"], "X-Subject-Token": tok, "OpenStack-Identity-Access-Rules": "1"})[0]
    if status != 200:
        raise StackError("access-rules token validation sanity check failed (HTTP %d)" % status)


# ---------------------------------------------------------------------------------------- prometheus
PROMETHEUS_YML = """global:
  scrape_interval: 15s
  evaluation_interval: 1s   # rules (prom_rules) evaluate at once
storage:
  tsdb:
    out_of_order_time_window: 30d   # lets remote write insert any timestamp of the last 30 days, in any order
scrape_configs: []
"""


def prom_start(p, name):
    """A Prometheus with the remote-write receiver in dir `p`; its port."""
    os.makedirs(os.path.join(p, "data"), exist_ok=True)
    write(os.path.join(p, "prometheus.yml"), PROMETHEUS_YML)
    for _ in range(3):
        # a name that has no fixed port (a test's own receiver) always gets a random one
        port, t0 = pick_port(name) if name in FIXED else free_port(), now_ms()
        start_detached(["/usr/bin/prometheus", "--config.file=%s/prometheus.yml" % p, "--storage.tsdb.path=%s/data" % p,
                        "--storage.tsdb.retention.time=100y", "--web.listen-address=127.0.0.1:%d" % port,
                        "--web.enable-remote-write-receiver", "--web.enable-admin-api", "--web.enable-lifecycle"],
                       os.path.join(p, "prometheus.log"), os.path.join(p, "prometheus.pid"))
        if wait_http("http://127.0.0.1:%d/-/ready" % port, os.path.join(p, "prometheus.pid"), 30):
            write(os.path.join(p, "port"), "%d\n" % port)
            log("prometheus answering on 127.0.0.1:%d after %dms" % (port, now_ms() - t0))
            return port
        stop_pidfiles(os.path.join(p, "prometheus.pid"))
        print(tail(os.path.join(p, "prometheus.log"), 5), file=sys.stderr)
    raise StackError("prometheus did not start")


def remote_write(url, lines):
    r = subprocess.run([PY, os.path.join(REPO, "scripts", "stack", "promwrite.py"), url + "/api/v1/write"],
                       input="\n".join(lines) + "\n", capture_output=True, text=True)
    if r.returncode != 0:
        raise StackError("remote write to %s failed: %s" % (url, r.stderr or r.stdout))


def prom_get(url, path, **params):
    q = urllib.parse.urlencode(params)
    status, _, body = http("GET", "%s%s?%s" % (url, path, q), timeout=10)
    if status != 200:
        raise StackError("%s%s: HTTP %d" % (url, path, status))
    return json.loads(body)["data"]


def series_of(lines, project):
    """Distinct series (name and labels) of one project in remote-write input lines."""
    return len({ln.rsplit(" ", 2)[0] for ln in lines if 'project="%s"' % project in ln})


def prom_seed(p, url, e):
    t0 = now_ms()
    e["SEED_END"] = str(int(time.time()) // 60 * 60)    # the last sample, aligned to the minute
    e["SEED_START"] = str(int(e["SEED_END"]) - 3600)
    a, b, start = e["TEAM_A_ID"], e["TEAM_B_ID"], int(e["SEED_START"])
    lines = []
    for i in range(61):
        ts = (start + i * 60) * 1000
        lines += ['cloud_cpu_seconds_total{project="%s",instance="vm-a1"} %d %d' % (a, i * 30, ts),
                  'cloud_cpu_seconds_total{project="%s",instance="vm-a2"} %d %d' % (a, i * 60, ts),
                  'cloud_cpu_seconds_total{project="%s",instance="vm-b1"} %d %d' % (b, i * 120, ts),
                  'cloud_instances{project="%s"} 2 %d' % (a, ts),
                  'cloud_instances{project="%s"} 1 %d' % (b, ts)]
    rich = subprocess.run([PY, os.path.join(REPO, "scripts", "stack", "seed_rich.py"), a, b, str(start)],
                          capture_output=True, text=True, check=True).stdout.splitlines()
    lines += rich
    write(os.path.join(p, "seed.txt"), "\n".join(lines) + "\n")
    remote_write(url, lines)
    # verify: visible at once through the query and series APIs
    n = len(prom_get(url, "/api/v1/query", query="sum by (project) (rate(cloud_cpu_seconds_total[5m]))",
                     time=e["SEED_END"])["result"])
    if n != 2:
        raise StackError("prometheus seed not visible (got %d project series)" % n)
    e["TEAM_A_SERIES"], e["TEAM_B_SERIES"] = str(series_of(lines, a)), str(series_of(lines, b))
    n = len(prom_get(url, "/api/v1/series", **{"match[]": '{project="%s"}' % a, "start": e["SEED_START"],
                                               "end": e["SEED_END"]}))
    if str(n) != e["TEAM_A_SERIES"]:
        raise StackError("prometheus series for team-a: expected %s got %d" % (e["TEAM_A_SERIES"], n))
    log("prometheus seeded+verified in %dms (%s team-a, %s team-b series)" % (now_ms() - t0, e["TEAM_A_SERIES"],
                                                                              e["TEAM_B_SERIES"]))
    return lines


def prom_rules(p, url, e):
    """Recording and alerting rules labelled with each project, for the rules/alerts filtering tests;
    loaded by a reload, because the project ids exist only after Keystone is seeded."""
    out = ["groups:"]
    for pid in (e["TEAM_A_ID"], e["TEAM_B_ID"]):
        out += ["- name: project-%s" % pid, "  rules:",
                "  - record: project:cloud_cpu_seconds:rate5m",
                '    expr: sum by (project) (rate(cloud_cpu_seconds_total{project="%s"}[5m]))' % pid,
                '    labels: { project: "%s" }' % pid,
                "  - alert: ProjectHasInstances",
                # last_over_time: the alert keeps firing (and reaching Alertmanager) after the
                # seeded hour, for as long as the stack runs (up to a day)
                '    expr: last_over_time(cloud_instances{project="%s"}[1d]) > 0' % pid,
                '    labels: { project: "%s", severity: info }' % pid]
    out += ["- name: global", "  rules:", "  - alert: AnyInstances", "    expr: count(last_over_time(cloud_instances[1d])) > 0"]
    write(os.path.join(p, "rules.yml"), "\n".join(out) + "\n")
    with open(os.path.join(p, "prometheus.yml"), "a") as f:
        f.write('rule_files: ["%s"]\n' % os.path.join(p, "rules.yml"))
    if http("POST", url + "/-/reload", b"", timeout=10)[0] != 200:
        raise StackError("prometheus reload failed")
    n = len(prom_get(url, "/api/v1/rules")["groups"])
    if n != 3:
        raise StackError("prometheus rules not loaded (got %d groups)" % n)


# ------------------------------------------------------------------------------------- alertmanager
# Every alert goes to a receiver that notifies nobody: the tests read Alertmanager's API only.
ALERTMANAGER_YML = """route:
  receiver: "null"
  group_by: [alertname, project]
  group_wait: 1s
  group_interval: 5s
receivers:
- name: "null"
"""

# The main Prometheus scrapes, for the metadata tests (tests/e2e/test_metadata.py), the targets that
# JSON files in prometheus/targets/ list (file_sd: a test writes one, and removes it). It keeps their
# metadata (HELP, TYPE) and drops every sample, so that the stored series stay the seeded ones (other
# tests compare them with PROM_A's); only Prometheus' own up/scrape_* series (without a project) are
# stored.
E2E_METADATA_JOB = """scrape_configs:
- job_name: e2e-metadata
  scrape_interval: 2s
  scrape_timeout: 2s
  file_sd_configs: [{files: ['%s/targets/*.json'], refresh_interval: 2s}]
  metric_relabel_configs: [{source_labels: [__name__], regex: '.+', action: drop}]
"""


def am_start(a):
    """Alertmanager (Debian's 0.25) in dir `a`, on loopback, without clustering; its port."""
    os.makedirs(os.path.join(a, "data"), exist_ok=True)
    write(os.path.join(a, "alertmanager.yml"), ALERTMANAGER_YML)
    pidfile = os.path.join(a, "alertmanager.pid")
    for _ in range(3):
        port, t0 = pick_port("alertmanager"), now_ms()
        start_detached(["/usr/bin/prometheus-alertmanager", "--config.file=%s/alertmanager.yml" % a,
                        "--storage.path=%s/data" % a, "--web.listen-address=127.0.0.1:%d" % port,
                        "--cluster.listen-address="], os.path.join(a, "alertmanager.log"), pidfile)
        if wait_http("http://127.0.0.1:%d/-/ready" % port, pidfile, 30):
            write(os.path.join(a, "port"), "%d\n" % port)
            log("alertmanager answering on 127.0.0.1:%d after %dms" % (port, now_ms() - t0))
            return port
        stop_pidfiles(pidfile)
        print(tail(os.path.join(a, "alertmanager.log"), 5), file=sys.stderr)
    raise StackError("alertmanager did not start")


def prom_alerting(p, url, e, demo):
    """The main Prometheus sends its alerts to Alertmanager; outside the demo it also gets the
    e2e-metadata scrape job (E2E_METADATA_JOB). Loaded by a reload."""
    with open(os.path.join(p, "prometheus.yml")) as f:
        conf = f.read()
    if not demo:
        os.makedirs(os.path.join(p, "targets"), exist_ok=True)
        conf = conf.replace("scrape_configs: []\n", E2E_METADATA_JOB % p)
    conf += "alerting:\n  alertmanagers:\n  - static_configs: [{targets: ['127.0.0.1:%d']}]\n" % e["ALERTMANAGER_PORT"]
    write(os.path.join(p, "prometheus.yml"), conf)
    if http("POST", url + "/-/reload", b"", timeout=10)[0] != 200:
        raise StackError("prometheus reload failed (alerting), see %s/prometheus.log" % p)
    deadline = time.monotonic() + 30
    while not prom_get(url, "/api/v1/alertmanagers")["activeAlertmanagers"]:
        if time.monotonic() > deadline:
            raise StackError("prometheus does not list alertmanager 127.0.0.1:%d" % e["ALERTMANAGER_PORT"])
        time.sleep(0.2)
    log("prometheus sends alerts to alertmanager 127.0.0.1:%d" % e["ALERTMANAGER_PORT"])


def am_wait_alerts(e, timeout=120):
    """Waits until Alertmanager has both projects' ProjectHasInstances alerts. Prometheus sends a firing
    alert at once, and again only a minute later (--rules.alert.resend-delay): a send that comes while a
    reload is re-reading the alerting configuration (prom_rules, exporter_start) finds no Alertmanager."""
    t0, want = now_ms(), {e["TEAM_A_ID"], e["TEAM_B_ID"]}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, _, body = http("GET", e["ALERTMANAGER_URL"] + "/api/v2/alerts", timeout=10)
        if status == 200 and want <= {a["labels"].get("project") for a in json.loads(body)
                                      if a["labels"].get("alertname") == "ProjectHasInstances"}:
            log("alertmanager has both projects' alerts after %dms" % (now_ms() - t0))
            return
        time.sleep(1)
    raise StackError("alertmanager did not get the projects' alerts within %ds" % timeout)


SERVICE_NAME = "prometheus"


def ks_register_metric_storage(ks, e):
    """The filter's listener in Keystone's catalog as service type `metric-storage` (public, RegionOne),
    where `openstack metric` (python-observabilityclient) looks for Prometheus."""
    ks.admin = ks.token(pw("admin", {"id": "default"}, e["ADMIN_PASSWORD"],
                           {"project": {"name": "admin", "domain": {"id": "default"}}}))
    svc = ks.api("POST", "/services", {"service": {"type": "metric-storage", "name": SERVICE_NAME,
                                                   "description": "Prometheus, behind Envoy and keystone_prom"}})
    ks.api("POST", "/endpoints", {"endpoint": {"service_id": svc["service"]["id"], "interface": "public",
                                               "url": e["ENVOY_URL"], "region_id": "RegionOne"}})
    e["METRIC_STORAGE_SERVICE_ID"] = svc["service"]["id"]


def exporter_start(x, p, e):
    """The demo's live data: scripts/stack/exporter.py serves Ceilometer-style gauges for team-a and
    team-b, each project's at /metrics/<project id>, which that project's agent scrapes
    (demo_agents_start)."""
    os.makedirs(x, exist_ok=True)
    projects = [{"project": e["TEAM_A_ID"], "user": e["ALICE_ID"],
                 "servers": [["1b0c5d2e-a1a1-4a1a-8a1a-00000000a001", "web-1"],
                             ["1b0c5d2e-a1a1-4a1a-8a1a-00000000a002", "db-1"]]},
                {"project": e["TEAM_B_ID"], "user": e["RITA_ID"],
                 "servers": [["1b0c5d2e-b2b2-4b2b-8b2b-00000000b001", "batch-1"]]}]
    write(os.path.join(x, "projects.json"), json.dumps(projects))
    port = pick_port("exporter")
    start_detached([PY, os.path.join(REPO, "scripts", "stack", "exporter.py"), str(port),
                    os.path.join(x, "projects.json")], os.path.join(x, "exporter.log"), os.path.join(x, "exporter.pid"))
    if not wait_http("http://127.0.0.1:%d/metrics" % port, os.path.join(x, "exporter.pid"), 15):
        raise StackError("the exporter did not start")
    e["EXPORTER_URL"] = "http://127.0.0.1:%d" % port
    # The samples come through the agents; the main Prometheus scrapes the exporter too, for its
    # metadata only (HELP, TYPE: what /api/v1/metadata answers), dropping every sample.
    with open(os.path.join(p, "prometheus.yml")) as f:
        conf = f.read()
    job = ("- job_name: ceilometer-metadata\n  scrape_interval: 15s\n  static_configs: [{targets: ['127.0.0.1:%d']}]\n"
           "  metric_relabel_configs: [{source_labels: [__name__], regex: '.+', action: drop}]" % port)
    conf = conf.replace("scrape_configs: []", "scrape_configs:\n" + job) if "scrape_configs: []" in conf \
        else conf.replace("scrape_configs:\n", "scrape_configs:\n" + job + "\n", 1)
    write(os.path.join(p, "prometheus.yml"), conf)
    if http("POST", e["PROM_URL"] + "/-/reload", b"", timeout=10)[0] != 200:
        raise StackError("prometheus reload failed")
    log("exporter on 127.0.0.1:%d" % port)


def demo_agents_start(a, e):
    """One Prometheus agent per demo project (Debian's Prometheus 2.42, --enable-feature=agent), as a
    tenant's cluster would run it: it scrapes its project's exporter path every 15 s and remote-writes
    through Envoy, Basic auth with the project's application credential (team-a: alice's, team-b:
    dave's). The filter stamps each series with the writer's project; the main Prometheus stores it.
    The stack waits for the first write of each to be readable, so that the printed commands answer."""
    from harness.agents import basic_appcred, start_agent
    url = e["ENVOY_URL"] + "/api/v1/write"
    for project, appcred, secret in (("team-a", "APPCRED_ID", "APPCRED_SECRET"),
                                     ("team-b", "DAVE_APPCRED_ID", "DAVE_APPCRED_SECRET")):
        pid_id = e["TEAM_A_ID"] if project == "team-a" else e["TEAM_B_ID"]
        target = {"job": "ceilometer", "targets": [e["EXPORTER_URL"][len("http://"):]], "honor_labels": True,
                  "metrics_path": "/metrics/" + pid_id, "scrape_interval": "15s"}
        agent = start_agent(a, project, url, auth=basic_appcred(e[appcred], e[secret]), scrape_interval="15s",
                            targets=[target], metadata_interval="1m")
        e["AGENT_%s_URL" % project.upper().replace("-", "_")] = agent.url
        e["AGENT_%s_PID" % project.upper().replace("-", "_")] = agent.proc.pid
    for _ in range(240):
        got = prom_get(e["PROM_URL"], "/api/v1/query", query='count by (project) (up{job="ceilometer"} == 1)')["result"]
        if {r["metric"].get("project") for r in got} >= {e["TEAM_A_ID"], e["TEAM_B_ID"]}:
            break
        time.sleep(0.5)
    else:
        raise StackError("the demo's agents did not write through the filter within two minutes (logs in %s)" % a)
    log("agents team-a and team-b scrape the exporter every 15s and remote-write through Envoy")

def prom_a_seed(p, url, e, lines):
    """PROM_A holds exactly team-a's lines of the main seed."""
    mine = [ln for ln in lines if 'project="%s"' % e["TEAM_A_ID"] in ln]
    write(os.path.join(p, "seed.txt"), "\n".join(mine) + "\n")
    remote_write(url, mine)
    window = {"start": e["SEED_START"], "end": e["SEED_END"]}
    n = len(prom_get(url, "/api/v1/series", **{"match[]": '{__name__=~".+"}'}, **window))
    if str(n) != e["TEAM_A_SERIES"]:
        raise StackError("prometheus-a series: expected %s got %d" % (e["TEAM_A_SERIES"], n))
    # (a selector needs a matcher that matches no empty value: {project!="…"} alone is refused)
    n = len(prom_get(url, "/api/v1/series", **{"match[]": '{__name__=~".+",project!="%s"}' % e["TEAM_A_ID"]}, **window))
    if n != 0:
        raise StackError("prometheus-a holds %d foreign series" % n)
    log("prometheus-a seeded+verified (%s series)" % e["TEAM_A_SERIES"])


def prom_x_seed(p, url, e, lines):
    """PROM_X: the main seed plus what the main Prometheus must not hold (other tests count every series
    there): team-a-child's series and domain-labelled series (the tenants domain's, and Default's)."""
    extra = []
    for i in range(61):
        ts = (int(e["SEED_START"]) + i * 60) * 1000
        extra += ['cloud_cpu_seconds_total{project="%s",instance="vm-c1"} %d %d' % (e["TEAM_A_CHILD_ID"], i * 15, ts),
                  'cloud_instances{project="%s"} 1 %d' % (e["TEAM_A_CHILD_ID"], ts),
                  'domain_quota_instances{domain="%s"} 10 %d' % (e["DOMAIN_ID"], ts),
                  'domain_quota_instances{domain="default"} 99 %d' % ts]
    write(os.path.join(p, "seed.txt"), "\n".join(lines + extra) + "\n")
    remote_write(url, lines + extra)
    e["TEAM_A_CHILD_SERIES"], e["DOMAIN_SERIES"] = "2", "1"
    n = len(prom_get(url, "/api/v1/series", **{"match[]": '{__name__=~".+"}', "start": e["SEED_START"],
                                               "end": e["SEED_END"]}))
    want = int(e["TEAM_A_SERIES"]) + int(e["TEAM_B_SERIES"]) + 2 + 2
    if n != want:
        raise StackError("prometheus-x series: expected %d got %d" % (want, n))
    log("prometheus-x seeded+verified (%d series)" % n)


# --------------------------------------------------------------------------------------------- envoy
def envoy_start(d, e, wasm):
    envoy_bin = os.path.join(VENV, "bin", "envoy")
    if not os.access(envoy_bin, os.X_OK):
        raise StackError("%s missing: run 'scripts/stack.sh install'" % envoy_bin)
    os.makedirs(d, exist_ok=True)
    for _ in range(3):
        port, admin = pick_port("envoy"), pick_port("envoy-admin")
        if port == admin:
            continue
        values = {"ENVOY_PORT": port, "ENVOY_ADMIN_PORT": admin, "KEYSTONE_PORT": e["KEYSTONE_PORT"],
                  "PROM_PORT": e["PROM_PORT"], "ALERTMANAGER_PORT": e["ALERTMANAGER_PORT"], "WASM_PATH": wasm}
        write(os.path.join(d, "envoy.yaml"), render(os.path.join(REPO, "envoy", "envoy.yaml"), values))
        t0 = now_ms()
        pidfile = os.path.join(d, "envoy.pid")
        if os.path.exists(pidfile):
            os.remove(pidfile)
        # Envoy sets PR_SET_PDEATHSIG: it exits when its parent does. Its parent is a small bash in a session
        # of its own that waits for it (and outlives this process); envoy.pid is Envoy's, wrapper.pid the bash.
        # --base-id from the admin port: several Envoys (parallel runs, the demo) keep their shared memory apart.
        wrapper = 'trap "kill \\$child 2>/dev/null" TERM INT; "$@" & child=$!; echo $child > "$PIDFILE"; wait $child'
        argv = ["bash", "-c", wrapper, "envoy-wrapper", envoy_bin, "-c", os.path.join(d, "envoy.yaml"),
                "--concurrency", os.environ.get("ENVOY_CONCURRENCY", "2"),
                "--log-level", os.environ.get("ENVOY_LOG_LEVEL", "info"), "--base-id", str(admin)]
        start_detached(argv, os.path.join(d, "envoy.log"), os.path.join(d, "wrapper.pid"),
                       env=dict(os.environ, PIDFILE=pidfile))
        deadline = time.monotonic() + 5
        while not read_pid(pidfile) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not read_pid(pidfile):
            raise StackError("envoy did not start (no pid)")
        if wait_http("http://127.0.0.1:%d/ready" % admin, pidfile, 60):
            log("envoy answering on 127.0.0.1:%d (admin %d) after %dms" % (port, admin, now_ms() - t0))
            return port, admin
        stop_pidfiles(pidfile, os.path.join(d, "wrapper.pid"))
        last = tail(os.path.join(d, "envoy.log"), 30)
        log("envoy did not become ready; last log lines:\n" + last)
        if "address already in use" not in last.lower() and "bind" not in last.lower():
            break       # a configuration or filter error does not mend with another port
    raise StackError("envoy did not start, see %s/envoy.log" % d)


# ------------------------------------------------------------------------------------------ commands
PIDFILES = ("envoy/envoy.pid", "envoy/wrapper.pid", "keystone/server.pid", "prometheus/prometheus.pid",
            "prometheus-a/prometheus.pid", "prometheus-x/prometheus.pid", "exporter/exporter.pid",
            "alertmanager/alertmanager.pid", "agents/team-a/prometheus.pid", "agents/team-b/prometheus.pid")


def stop_all(d):
    stop_pidfiles(*(os.path.join(d, f) for f in PIDFILES))


def write_env(d, env):
    with open(os.path.join(d, "stack.env.tmp"), "w") as f:
        for k, v in env.items():
            f.write("export %s=%s\n" % (k, shlex.quote(str(v))))
    with open(os.path.join(d, "stack.json"), "w") as f:
        json.dump({k: str(v) for k, v in env.items()}, f, indent=1)
    os.replace(os.path.join(d, "stack.env.tmp"), os.path.join(d, "stack.env"))


def up(d=None):
    t_start = now_ms()
    d = os.path.abspath(d or tempfile.mkdtemp(prefix="stack."))
    os.makedirs(d, exist_ok=True)
    if any(os.path.exists(os.path.join(d, f)) for f in ("stack.env", "envoy/envoy.pid", "keystone/server.pid")):
        raise StackError("%s already holds a stack; run 'scripts/stack.sh down %s' first" % (d, d))
    wasm = os.environ.get("WASM_PATH") or os.path.join(REPO, "target", "wasm32-wasip1", "release", "keystone_prom_wasm.wasm")
    if not os.path.exists(wasm):
        raise StackError("filter not built: %s missing (run 'make build')" % wasm)
    admin_password = os.environ.get("ADMIN_PASSWORD", "admin-secret")
    demo = os.environ.get("STACK_DEMO") == "1"
    if os.environ.get("STACK_PORTS") == "fixed":
        check_fixed_ports(demo)
    e = {"STACK_DIR": d, "WASM_PATH": wasm, "ADMIN_PASSWORD": admin_password, "DEMO": "1" if demo else "",
         "PROMWRITE": os.path.join(REPO, "scripts", "stack", "promwrite.py")}
    try:
        e["PROM_PORT"] = prom_start(os.path.join(d, "prometheus"), "prometheus")
        e["PROM_URL"] = "http://127.0.0.1:%d" % e["PROM_PORT"]
        e["PROM_PID"] = read_pid(os.path.join(d, "prometheus", "prometheus.pid"))
        k = os.path.join(d, "keystone")
        e["KEYSTONE_PORT"] = ks_start(k, admin_password)
        e["KEYSTONE_URL"] = "http://127.0.0.1:%d/v3" % e["KEYSTONE_PORT"]
        e["KEYSTONE_PID"] = read_pid(os.path.join(k, "server.pid"))
        e["KEYSTONE_ACCESS_LOG"] = os.path.join(k, "access.log")
        ks_seed(Keystone(e["KEYSTONE_URL"]), e, admin_password)
        lines = prom_seed(os.path.join(d, "prometheus"), e["PROM_URL"], e)
        # Alertmanager, which the main Prometheus sends its alerts to (behind Envoy under /alertmanager/),
        # before the rules: a firing alert is sent at once, then only every minute
        e["ALERTMANAGER_PORT"] = am_start(os.path.join(d, "alertmanager"))
        e["ALERTMANAGER_URL"] = "http://127.0.0.1:%d" % e["ALERTMANAGER_PORT"]
        e["ALERTMANAGER_PID"] = read_pid(os.path.join(d, "alertmanager", "alertmanager.pid"))
        prom_alerting(os.path.join(d, "prometheus"), e["PROM_URL"], e, demo)
        prom_rules(os.path.join(d, "prometheus"), e["PROM_URL"], e)
        # a second Prometheus, NOT behind Envoy, holding only team-a's samples: the reference answer for
        # "what alice may see" (tests/e2e/test_equivalence.py)
        for name, seed in () if demo else (("prometheus-a", prom_a_seed), ("prometheus-x", prom_x_seed)):
            key = "PROM_A" if name == "prometheus-a" else "PROM_X"
            port = prom_start(os.path.join(d, name), name)
            e[key + "_PORT"], e[key + "_URL"] = port, "http://127.0.0.1:%d" % port
            e[key + "_PID"] = read_pid(os.path.join(d, name, "prometheus.pid"))
            seed(os.path.join(d, name), e[key + "_URL"], e, lines)
        port, admin = envoy_start(os.path.join(d, "envoy"), e, wasm)
        e.update(ENVOY_PORT=port, ENVOY_ADMIN_PORT=admin, ENVOY_URL="http://127.0.0.1:%d" % port,
                 ENVOY_ADMIN_URL="http://127.0.0.1:%d" % admin, ENVOY_PID=read_pid(os.path.join(d, "envoy", "envoy.pid")))
        ks_register_metric_storage(Keystone(e["KEYSTONE_URL"]), e)
        if demo:
            exporter_start(os.path.join(d, "exporter"), os.path.join(d, "prometheus"), e)
            demo_agents_start(os.path.join(d, "agents"), e)
            am_wait_alerts(e)    # so that the printed Alertmanager commands answer
        write_env(d, e)
    except BaseException as ex:
        # stop whatever was started, keep the dir (logs) for debugging
        log("up failed (%s): stopping what was started; logs kept in %s" % (ex, d))
        stop_all(d)
        raise
    log("stack up in %dms" % (now_ms() - t_start))
    print("""STACK_DIR={STACK_DIR}
KEYSTONE_URL={KEYSTONE_URL}   (pid {KEYSTONE_PID})
PROM_URL={PROM_URL}           (pid {PROM_PID})
ALERTMANAGER_URL={ALERTMANAGER_URL}   (pid {ALERTMANAGER_PID}; through Envoy: {ENVOY_URL}/alertmanager/)
ENVOY_URL={ENVOY_URL}         (pid {ENVOY_PID}, admin {ENVOY_ADMIN_URL})
TEAM_A_ID={TEAM_A_ID}  TEAM_B_ID={TEAM_B_ID}  TEAM_A_CHILD_ID={TEAM_A_CHILD_ID}
SEED_START={SEED_START}  SEED_END={SEED_END}
ALICE_TOKEN={ALICE_TOKEN}
RITA_TOKEN={RITA_TOKEN}
env: . {STACK_DIR}/stack.env    json: {STACK_DIR}/stack.json    teardown: scripts/stack.sh down {STACK_DIR}""".format(**e))
    return d


def down(d):
    if not os.path.isdir(d):
        log("%s not found (nothing to stop)" % d)
        return
    stop_all(d)
    if os.environ.get("STACK_KEEP", "0") == "1":
        log("kept %s" % d)
    else:
        subprocess.run(["rm", "-rf", d])
        log("removed %s" % d)


def ks_stop(d):
    pidfile = os.path.join(d, "keystone", "server.pid")
    if not os.path.exists(pidfile):
        raise StackError("%s has no keystone" % d)
    stop_pidfiles(pidfile)
    log("keystone stopped")


def ks_start_again(d):
    d = os.path.abspath(d)
    k = os.path.join(d, "keystone")
    if not (os.path.exists(os.path.join(k, "port")) and os.path.exists(os.path.join(k, "gunicorn.conf.py"))):
        raise StackError("%s has no initialised keystone" % d)
    pid = read_pid(os.path.join(k, "server.pid"))
    if pid and alive(pid):
        log("keystone already running")
        return
    port = read_pid(os.path.join(k, "port"))
    # the old listening socket may linger briefly; gunicorn retries binding by itself, ks_serve waits
    if not ks_serve(k, port):
        raise StackError("keystone did not restart on port %d, see %s/server.log" % (port, k))
    if os.path.exists(os.path.join(d, "stack.json")):
        env = read_stack(d)
        env["KEYSTONE_PID"] = str(read_pid(os.path.join(k, "server.pid")))
        write_env(d, env)


def run(cmd):
    d = tempfile.mkdtemp(prefix="stack.")
    try:
        stdout = sys.stdout
        sys.stdout = sys.stderr
        try:
            up(d)
        finally:
            sys.stdout = stdout
        env = dict(os.environ, **read_stack(d))
        return subprocess.run(cmd, env=env).returncode
    finally:
        down(d)


def main(argv):
    usage = "usage: stack.sh install | up [DIR] | down DIR | check-ports | run -- CMD... | ks-stop DIR | ks-start DIR"
    if not argv:
        print(usage, file=sys.stderr)
        return 2
    cmd, args = argv[0], argv[1:]
    try:
        if cmd == "up" and len(args) <= 1:
            up(args[0] if args else None)
        elif cmd == "down" and len(args) == 1:
            down(args[0])
        elif cmd == "check-ports" and not args:
            check_fixed_ports(os.environ.get("STACK_DEMO") == "1")
        elif cmd == "ks-stop" and len(args) == 1:
            ks_stop(args[0])
        elif cmd == "ks-start" and len(args) == 1:
            ks_start_again(args[0])
        elif cmd == "run":
            return run(args[1:] if args[:1] == ["--"] else args)
        else:
            print(usage, file=sys.stderr)
            return 2
    except StackError as ex:
        log("ERROR: %s" % ex)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
