"""Identity end to end: every credential form, every scope, and the identity-related configuration keys,
against the real Keystone.

Seed (harness/stack.py ks_seed + ks_seed_identity):
  alice  (tenants)  member on team-a                         app creds alice-ci (unrestricted),
                                                             alice-ro (only GET /api/v1/query, metric-storage),
                                                             alice-glob (rules with * and **, see GLOB_CASES)
  rita   (tenants)  reader on team-b, reader on domain tenants
  bob    (Default)  member on team-a                         (user domain != project domain)
  carl   (tenants)  monitoring_viewer on team-b only         (no role on team-a)
  ops    (Default)  cloud_admin on project admin and on the system
  svc    (Default)  role service on project service          (+ app cred svc-filter)
  team-a-child is a child of team-a; alice has NO role on it.

The main Envoy (default configuration) sits in front of the main Prometheus (team-a and team-b series).
Configuration variants run in extra Envoys (conftest.EnvoyVariants) whose upstream is the recorder
(conftest.UpstreamRecorder): it shows what reached "Prometheus" and forwards to PROM_X, which also holds
team-a-child's series and domain-labelled series (domain tenants: 1 series; domain default: 1).
"""
import urllib.parse

import pytest

from conftest import (appcred_token, basic_auth, keystone_calls, keystone_log_lines, keystone_token,
                      label_values, prom_data, prom_error, remember_secret, upstream_saw, wait_for)
from keystone_proxy import KeystoneProxy

CPU = "cloud_cpu_seconds_total"
PASSWORDS = {"alice": "alice-secret", "rita": "rita-secret", "bob": "bob-secret", "carl": "carl-secret",
             "ops": "ops-secret"}
remember_secret(*PASSWORDS.values(), "svc-secret", "admin-secret")

# identity headers a client must never be able to set (always stripped inbound)
SPOOFED = {
    "X-Project-Id": "spoofed-project", "X-Roles": "admin,cloud_admin", "X-User-Id": "spoofed-user",
    "X-Domain-Id": "spoofed-domain", "X-Tenant-Id": "spoofed-tenant", "X-Identity-Status": "spoofed-status",
    "THANOS-TENANT": "spoofed-thanos", "X-Scope-OrgID": "spoofed-org",
}
CREDENTIAL_HEADERS = ("x-auth-token", "authorization", "x-application-credential-id",
                      "x-application-credential-name", "x-application-credential-secret", "x-service-token")


# ====================================================================== fixtures
@pytest.fixture(scope="module")
def st(stack):
    remember_secret(stack["APPCRED_SECRET"], stack["APPCRED_RO_SECRET"], stack["SVC_APPCRED_SECRET"],
                    stack["APPCRED_GLOB_SECRET"])
    for k in ("ALICE_TOKEN", "RITA_TOKEN", "RITA_DOMAIN_TOKEN", "BOB_TOKEN", "CARL_TOKEN", "OPS_TOKEN",
              "OPS_SYSTEM_TOKEN", "ADMIN_TOKEN", "ADMIN_SYSTEM_TOKEN", "SERVICE_TOKEN", "APPCRED_TOKEN"):
        remember_secret(stack[k])
    return stack


@pytest.fixture(scope="module")
def ks_proxy(st):
    """Keystone behind a recording proxy (pass mode; one test injects a 401): shows how the filter
    authenticates its callouts in the service_credentials variants."""
    p = KeystoneProxy("127.0.0.1", int(st["KEYSTONE_PORT"])).start()
    try:
        yield p
    finally:
        p.stop()


def variant_specs(st, ks_port):
    svc_pw = {"user_id": st["SVC_USER_ID"], "password": "svc-secret", "project_id": st["SVC_PROJECT_ID"]}
    svc_names = {"username": "svc", "user_domain_name": "Default", "password": "svc-secret",
                 "project_name": "service", "project_domain_name": "Default"}
    svc_ac = {"application_credential_id": st["SVC_APPCRED_ID"],
              "application_credential_secret": st["SVC_APPCRED_SECRET"]}
    via_proxy = {"keystone_port": ks_port}
    return {
        "plain": ({}, {}),
        "fwd": ({"forward_identity_headers": True}, {}),
        "domlabel": ({"domain_label": "os_domain"}, {}),
        "tenant": ({"tenant_header": "X-Scope-OrgID", "label_enforcement": False}, {}),
        # a tenant header of the operator's naming (THANOS-TENANT and X-Scope-OrgID are stripped anyway)
        "subtree": ({"include_subprojects": True, "tenant_header": "X-Prom-Tenant"}, {}),
        "unrestricted": ({"unrestricted_roles": ["cloud_admin"]}, {}),
        "required": ({"required_roles": ["monitoring_viewer", "metrics_reader"]}, {}),
        "svc_pw": ({"keystone": {"service_credentials": svc_pw}}, via_proxy),
        "svc_names": ({"keystone": {"service_credentials": svc_names}}, via_proxy),
        "svc_ac": ({"keystone": {"service_credentials": svc_ac}}, via_proxy),
    }


# configurations the filter must refuse (Envoy then exits, the log naming the key)
INVALID = {
    "bad_label": ({"label_enforcement": False}, "label_enforcement"),      # only with tenant_header
    "bad_svc": ({"keystone": {"service_credentials": {"username": "svc", "password": "svc-secret"}}},
                "service_credentials"),                                   # no user domain, no project
}


@pytest.fixture(scope="module")
def V(st, envoy_variants, ks_proxy):
    """V(name) -> the running extra Envoy of that variant. All of them boot in parallel at first use."""
    specs = variant_specs(st, ks_proxy.port)
    for name, (cfg, kw) in specs.items():
        envoy_variants.start(name, cfg, **kw)
    for name, (cfg, _) in INVALID.items():
        envoy_variants.start(name, cfg)

    def get(name):
        return envoy_variants.get(name)
    return get


def q(envoy, creds, query=CPU, path="/api/v1/query", method="GET", headers=None, **kw):
    """An instant query at SEED_END with credential headers `creds` (a dict)."""
    h = dict(creds)
    h.update(headers or {})
    params = {"query": query, "time": envoy.stack["SEED_END"]}
    if path == "/api/v1/query_range":
        params = {"query": query, "start": envoy.stack["SEED_START"], "end": envoy.stack["SEED_END"], "step": 60}
    if method == "POST":
        return envoy.request("POST", path, headers=h, data=params, **kw)
    return envoy.request(method, path, headers=h, params=params, **kw)


def tok(t):
    return {"X-Auth-Token": t}


def assert_projects(resp, projects, count=None):
    series = prom_data(resp)
    got = label_values(series, "project")
    assert set(got) <= set(projects), "foreign series: %r (allowed %r)" % (got, projects)
    if count is not None:
        assert len(series) == count, "expected %d series, got %d: %r" % (count, len(series), got)
    return series


def upstream_query(resp):
    saw = upstream_saw(resp)
    assert saw is not None, "the request did not reach the upstream"
    qs = urllib.parse.parse_qs(urllib.parse.urlsplit(saw["path"]).query)
    if saw["method"] == "POST":
        qs.update(urllib.parse.parse_qs(saw["body"]))
    return qs.get("query", [None])[0]


# ====================================================================== every credential form
def credential_forms(st):
    A, B = st["TEAM_A_ID"], st["TEAM_B_ID"]
    alice, bob = st["ALICE_ID"], st["BOB_ID"]
    ac_id, ac_name, ac_secret = st["APPCRED_ID"], st["APPCRED_NAME"], st["APPCRED_SECRET"]
    return {
        "x-auth-token": (tok(st["ALICE_TOKEN"]), A, 2),
        "bearer": ({"Authorization": "Bearer " + st["RITA_TOKEN"]}, B, 1),
        "appcred-id-headers": ({"X-Application-Credential-Id": ac_id,
                                "X-Application-Credential-Secret": ac_secret}, A, 2),
        "appcred-name-user-id-headers": ({"X-Application-Credential-Name": ac_name,
                                          "X-Application-Credential-Secret": ac_secret, "X-User-Id": alice}, A, 2),
        "appcred-name-user-name-headers": ({"X-Application-Credential-Name": ac_name,
                                            "X-Application-Credential-Secret": ac_secret, "X-User-Name": "alice",
                                            "X-User-Domain-Name": "tenants"}, A, 2),
        "basic user_id|project_id": (basic_auth("%s|%s" % (alice, A), "alice-secret"), A, 2),
        "basic user@domain|project_id": (basic_auth("alice@tenants|%s" % A, "alice-secret"), A, 2),
        "basic user_id|project@domain": (basic_auth("%s|team-a@tenants" % alice, "alice-secret"), A, 2),
        "basic user@domain|project@domain": (basic_auth("alice@tenants|team-a@tenants", "alice-secret"), A, 2),
        "basic user@domain|project-name": (basic_auth("alice@tenants|team-a", "alice-secret"), A, 2),
        "basic rita user@domain|project-name": (basic_auth("rita@tenants|team-b", "rita-secret"), B, 1),
        "basic bob (Default) -> team-a@tenants": (basic_auth("bob@Default|team-a@tenants", "bob-secret"), A, 2),
        "basic bob (Default) -> project_id": (basic_auth("bob@Default|%s" % A, "bob-secret"), A, 2),
        "basic bob user_id|project_id": (basic_auth("%s|%s" % (bob, A), "bob-secret"), A, 2),
        "basic carl (custom role only)": (basic_auth("carl@tenants|team-b@tenants", "carl-secret"), B, 1),
        "basic *appcred_id": (basic_auth("*" + ac_id, ac_secret), A, 2),
        "basic *appcred_name@user_id": (basic_auth("*%s@%s" % (ac_name, alice), ac_secret), A, 2),
        "basic *appcred_name@user@domain": (basic_auth("*%s@alice@tenants" % ac_name, ac_secret), A, 2),
    }


FORMS = ["x-auth-token", "bearer", "appcred-id-headers", "appcred-name-user-id-headers",
         "appcred-name-user-name-headers", "basic user_id|project_id", "basic user@domain|project_id",
         "basic user_id|project@domain", "basic user@domain|project@domain", "basic user@domain|project-name",
         "basic rita user@domain|project-name", "basic bob (Default) -> team-a@tenants",
         "basic bob (Default) -> project_id", "basic bob user_id|project_id", "basic carl (custom role only)",
         "basic *appcred_id", "basic *appcred_name@user_id", "basic *appcred_name@user@domain"]


@pytest.mark.parametrize("form", FORMS)
def test_credential_form_gets_only_its_project(envoy, st, form):
    creds, project, n = credential_forms(st)[form]
    assert_projects(q(envoy, creds), [project], n)
    # the range endpoint and a POST form too (cached by now)
    assert_projects(q(envoy, creds, path="/api/v1/query_range", method="POST"), [project], n)


@pytest.mark.parametrize("form", ["x-auth-token", "bearer", "appcred-id-headers", "appcred-name-user-name-headers",
                                  "basic user@domain|project@domain", "basic *appcred_id"])
def test_credentials_never_reach_upstream(V, st, form):
    creds, project, n = credential_forms(st)[form]
    # a second token a client may send along (keystonemiddleware's X-Service-Token): a credential too
    r = q(V("plain"), dict(creds, **{"X-Service-Token": st["SERVICE_TOKEN"]}))
    assert_projects(r, [project], n)
    saw = upstream_saw(r)
    for h in CREDENTIAL_HEADERS:
        assert h not in saw["headers"], "%s went upstream: %r" % (h, saw["headers"])
    text = repr(saw)
    for secret in list(creds.values()) + [PASSWORDS["alice"], st["APPCRED_SECRET"]]:
        if secret not in ("alice", "tenants", st["ALICE_ID"], st["APPCRED_NAME"], st["APPCRED_ID"]):
            assert secret not in text, "a secret went upstream (%s)" % form


def test_basic_cached_per_whole_credential(V, st):
    """Basic is exchanged for a token once (POST /v3/auth/tokens?nocatalog), then served from the cache;
    the same username with another password is a different credential, refused."""
    e = V("plain")     # an Envoy (and cache) of this module only
    creds = basic_auth("%s|team-a@tenants" % st["BOB_ID"], "bob-secret")   # used by no other test
    mark = len(keystone_log_lines(st))
    for _ in range(6):
        assert_projects(q(e, creds), [st["TEAM_A_ID"]], 2)
    wait_for(lambda: keystone_calls(st, mark) >= 1, timeout=2)
    assert keystone_calls(st, mark, "POST", "/v3/auth/tokens?nocatalog") == 1, \
        "expected one POST /v3/auth/tokens?nocatalog: %r" % keystone_log_lines(st)[mark:]
    assert keystone_calls(st, mark) == 1, "expected no other Keystone call: %r" % keystone_log_lines(st)[mark:]
    prom_error(q(e, basic_auth("%s|team-a@tenants" % st["BOB_ID"], "bob-wrong")), 401)


# ====================================================================== refused credentials
def refused_forms(st):
    A = st["TEAM_A_ID"]
    return {
        "basic wrong password (names)": basic_auth("alice@tenants|team-a@tenants", "wrong-secret"),
        "basic wrong password (ids)": basic_auth("%s|%s" % (st["ALICE_ID"], A), "wrong-secret"),
        "basic wrong password (domain scope)": basic_auth("rita@tenants|@tenants", "wrong-secret"),
        "basic unknown user": basic_auth("mallory@tenants|team-a@tenants", "alice-secret"),
        "basic project name looked up in the USER's domain": basic_auth("bob@Default|team-a", "bob-secret"),
        "basic user without a role on the project": basic_auth("carl@tenants|team-a@tenants", "carl-secret"),
        "basic user_id|project-name (with a user id, a plain project is an id)":
            basic_auth("%s|team-a" % st["ALICE_ID"], "alice-secret"),
        "basic appcred wrong secret": basic_auth("*" + st["APPCRED_ID"], "wrong-secret"),
        "basic appcred by name, wrong user": basic_auth("*%s@%s" % (st["APPCRED_NAME"], st["RITA_ID"]),
                                                        st["APPCRED_SECRET"]),
        "appcred headers wrong secret": {"X-Application-Credential-Id": st["APPCRED_ID"],
                                         "X-Application-Credential-Secret": "wrong-secret"},
        "bearer garbage": {"Authorization": "Bearer not-a-keystone-token"},
        "x-auth-token garbage": tok("not-a-keystone-token"),
    }


REFUSED = ["basic wrong password (names)", "basic wrong password (ids)", "basic wrong password (domain scope)",
           "basic unknown user", "basic project name looked up in the USER's domain",
           "basic user without a role on the project",
           "basic user_id|project-name (with a user id, a plain project is an id)", "basic appcred wrong secret",
           "basic appcred by name, wrong user", "appcred headers wrong secret", "bearer garbage",
           "x-auth-token garbage"]


@pytest.mark.parametrize("form", REFUSED)
def test_refused_credential_401(envoy, st, form):
    r = q(envoy, refused_forms(st)[form])
    prom_error(r, 401)


@pytest.mark.parametrize("username", ["alice", "alice@tenants", "|%s", "alice@tenants|", "@tenants|team-a",
                                      "*", "*@alice@tenants"])
def test_malformed_basic_username_refused(envoy, st, username):
    """Usernames that are not in Maia's encoding: refused (400 or 401), never forwarded."""
    r = q(envoy, basic_auth(username.replace("%s", st["TEAM_A_ID"]), "alice-secret"))
    assert r.status_code in (400, 401), "HTTP %d: %s" % (r.status_code, r.text[:300])
    prom_error(r, r.status_code)


def test_no_credential_401_names_keystone(envoy, st):
    r = q(envoy, {})
    prom_error(r, 401)
    assert "Keystone" in r.headers.get("WWW-Authenticate", "")


# ====================================================================== precedence
def test_precedence(envoy, st):
    A, B = st["TEAM_A_ID"], st["TEAM_B_ID"]
    alice_ac = {"X-Application-Credential-Id": st["APPCRED_ID"],
                "X-Application-Credential-Secret": st["APPCRED_SECRET"]}
    # X-Auth-Token before Bearer
    assert_projects(q(envoy, {"X-Auth-Token": st["RITA_TOKEN"], "Authorization": "Bearer " + st["ALICE_TOKEN"]}),
                    [B], 1)
    # Bearer before application credential headers
    h = dict(alice_ac, Authorization="Bearer " + st["RITA_TOKEN"])
    assert_projects(q(envoy, h), [B], 1)
    # application credential headers before Basic
    h = dict(alice_ac, **basic_auth("rita@tenants|team-b@tenants", "rita-secret"))
    assert_projects(q(envoy, h), [A], 2)
    # X-Auth-Token before a Basic with a wrong password (the Basic is not even tried)
    h = dict(tok(st["ALICE_TOKEN"]), **basic_auth("rita@tenants|team-b@tenants", "wrong-secret"))
    assert_projects(q(envoy, h), [A], 2)


# ====================================================================== domain scope
DOMAIN_QUERY = '{__name__=~".+"}'


@pytest.mark.parametrize("how", ["token", "basic user@domain|@domain", "basic user_id|@domain"])
def test_domain_scope_sees_only_domain_series(V, st, how):
    creds = {"token": tok(st["RITA_DOMAIN_TOKEN"]),
             "basic user@domain|@domain": basic_auth("rita@tenants|@tenants", "rita-secret"),
             "basic user_id|@domain": basic_auth("%s|@tenants" % st["RITA_ID"], "rita-secret")}[how]
    r = q(V("plain"), creds, DOMAIN_QUERY)
    series = prom_data(r)
    assert len(series) == int(st["DOMAIN_SERIES"]), series
    assert all(s["metric"].get("domain") == st["DOMAIN_ID"] for s in series), series
    assert 'domain="%s"' % st["DOMAIN_ID"] in upstream_query(r)
    # no project series: they carry no domain label
    assert prom_data(q(V("plain"), creds, CPU)) == []


def test_domain_label_configurable(V, st):
    r = q(V("domlabel"), tok(st["RITA_DOMAIN_TOKEN"]), DOMAIN_QUERY)
    assert prom_data(r) == []      # no series carries os_domain
    assert 'os_domain="%s"' % st["DOMAIN_ID"] in upstream_query(r), upstream_query(r)
    assert "domain=" not in upstream_query(r).replace("os_domain=", "")
    # project tokens are unaffected
    assert_projects(q(V("domlabel"), tok(st["ALICE_TOKEN"])), [st["TEAM_A_ID"]], 2)


def test_domain_token_cannot_name_another_domain(V, st):
    r = q(V("plain"), tok(st["RITA_DOMAIN_TOKEN"]), 'domain_quota_instances{domain="default"}')
    if r.status_code == 200:
        assert prom_data(r) == []
    else:
        prom_error(r, 403)


# ====================================================================== system scope, unrestricted roles
@pytest.mark.parametrize("which", ["ADMIN_SYSTEM_TOKEN", "OPS_SYSTEM_TOKEN"])
def test_system_scope_refused_403(V, st, which):
    r = q(V("plain"), tok(st[which]))
    prom_error(r, 403)
    assert upstream_saw(r) is None


def test_unrestricted_role_sees_every_tenant(V, st):
    e = V("unrestricted")
    every = sorted([st["TEAM_A_ID"]] * 2 + [st["TEAM_B_ID"], st["TEAM_A_CHILD_ID"]])
    for creds in (tok(st["OPS_SYSTEM_TOKEN"]), tok(st["OPS_TOKEN"]),
                  basic_auth("ops@Default|admin@Default", "ops-secret")):
        r = q(e, creds)
        assert label_values(prom_data(r), "project") == every
        assert upstream_query(r) == CPU, "no label enforcement expected for cloud_admin"
    # without the role: a system token is still refused, a project token still confined
    prom_error(q(e, tok(st["ADMIN_SYSTEM_TOKEN"])), 403)
    assert_projects(q(e, tok(st["ALICE_TOKEN"])), [st["TEAM_A_ID"]], 2)


def test_unrestricted_role_absent_by_default(envoy, st):
    """ops' project token (cloud_admin on project admin) in the default configuration: its own project only."""
    assert prom_data(q(envoy, tok(st["OPS_TOKEN"]))) == []


# ====================================================================== include_subprojects (+ a tenant header)
def test_include_subprojects(V, st):
    e = V("subtree")
    A, C = st["TEAM_A_ID"], st["TEAM_A_CHILD_ID"]
    r = q(e, tok(st["ALICE_TOKEN"]), headers={"X-Prom-Tenant": "spoofed"})
    assert label_values(prom_data(r), "project") == sorted([A, A, C])
    assert '=~"' in upstream_query(r) and A in upstream_query(r) and C in upstream_query(r), upstream_query(r)
    saw = upstream_saw(r)
    assert len(saw["headers"].get("x-prom-tenant", [])) == 1, saw["headers"]
    assert set(saw["headers"]["x-prom-tenant"][0].split("|")) == {A, C}
    # the child named explicitly: inside the scope
    assert_projects(q(e, tok(st["ALICE_TOKEN"]), 'cloud_instances{project="%s"}' % C), [C], 1)
    # a project without children: just itself
    r = q(e, tok(st["RITA_TOKEN"]))
    assert_projects(r, [st["TEAM_B_ID"]], 1)
    assert upstream_saw(r)["headers"].get("x-prom-tenant") == [st["TEAM_B_ID"]]


def test_subprojects_not_included_by_default(V, st):
    assert_projects(q(V("plain"), tok(st["ALICE_TOKEN"])), [st["TEAM_A_ID"]], 2)


# ====================================================================== required roles
def test_required_roles(V, st):
    e = V("required")
    r = q(e, tok(st["ALICE_TOKEN"]))
    body = prom_error(r, 403)
    assert "monitoring_viewer" in body["error"] and "metrics_reader" in body["error"], body
    assert upstream_saw(r) is None
    assert_projects(q(e, tok(st["CARL_TOKEN"])), [st["TEAM_B_ID"]], 1)
    assert_projects(q(e, basic_auth("carl@tenants|team-b", "carl-secret")), [st["TEAM_B_ID"]], 1)
    prom_error(q(e, tok(st["RITA_TOKEN"])), 403)


# ====================================================================== headers to and from the upstream
def test_inbound_identity_headers_stripped(V, st):
    r = q(V("plain"), tok(st["ALICE_TOKEN"]), headers=SPOOFED)
    assert_projects(r, [st["TEAM_A_ID"]], 2)
    saw = upstream_saw(r)
    leaked = sorted(h for h in saw["headers"] if h in {k.lower() for k in SPOOFED})
    assert not leaked, "client identity headers reached the upstream: %r" % leaked
    assert "spoofed" not in repr(saw), saw
    # no identity headers of the filter's own either, by default
    assert "x-project-id" not in saw["headers"] and "x-roles" not in saw["headers"]


def test_forward_identity_headers(V, st):
    e = V("fwd")
    r = q(e, tok(st["ALICE_TOKEN"]), headers=SPOOFED)
    assert_projects(r, [st["TEAM_A_ID"]], 2)
    h = upstream_saw(r)["headers"]
    assert h.get("x-project-id") == [st["TEAM_A_ID"]], h
    assert h.get("x-user-id") == [st["ALICE_ID"]], h
    # keystonemiddleware's convention: X-Domain-Id only for a domain-scoped token; the project's domain is
    # also acceptable for a project token (the spec does not say which)
    assert h.get("x-domain-id") in (None, [st["DOMAIN_ID"]]), h
    assert len(h.get("x-roles", [])) == 1 and set(h["x-roles"][0].split(",")) == {"member", "reader"}, h
    for k in ("x-tenant-id", "thanos-tenant", "x-scope-orgid"):
        assert k not in h, "%s reached the upstream: %r" % (k, h)
    # the filter may state X-Identity-Status itself (as keystonemiddleware does); the client's never passes
    assert h.get("x-identity-status") in (None, ["Confirmed"]), h
    assert "spoofed" not in repr(h), h
    # a domain-scoped token: its domain, no project
    r = q(e, tok(st["RITA_DOMAIN_TOKEN"]), DOMAIN_QUERY, headers=SPOOFED)
    h = upstream_saw(r)["headers"]
    assert h.get("x-domain-id") == [st["DOMAIN_ID"]], h
    assert h.get("x-user-id") == [st["RITA_ID"]], h
    assert h.get("x-project-id") in (None, [""]), h


def test_tenant_header_without_label_enforcement(V, st):
    e = V("tenant")
    r = q(e, tok(st["ALICE_TOKEN"]), headers={"X-Scope-OrgID": st["TEAM_B_ID"]})
    assert r.status_code == 200, r.text[:300]
    saw = upstream_saw(r)
    assert saw["headers"].get("x-scope-orgid") == [st["TEAM_A_ID"]], saw["headers"]
    assert upstream_query(r) == CPU, "label_enforcement false: the query goes up as the client wrote it"
    r = q(e, tok(st["RITA_TOKEN"]))
    assert upstream_saw(r)["headers"].get("x-scope-orgid") == [st["TEAM_B_ID"]]
    # credentials are still required
    prom_error(q(e, {}), 401)


# ====================================================================== service credentials, access rules
SVC_VARIANTS = ["svc_pw", "svc_names", "svc_ac"]


@pytest.mark.parametrize("variant", SVC_VARIANTS)
def test_service_credentials_validate_tokens(V, st, ks_proxy, variant):
    e = V(variant)
    t = alice_token(st)
    mark = ks_proxy.mark()
    assert_projects(q(e, tok(t)), [st["TEAM_A_ID"]], 2)
    calls = [c for c in ks_proxy.snapshot()[mark:] if c["method"] == "GET" and c["path"].startswith("/v3/auth/tokens")]
    assert len(calls) == 1, calls
    assert calls[0]["has_auth_token"] and not calls[0]["auth_is_subject"], \
        "the validation should authenticate with the service token: %r" % calls[0]
    assert calls[0]["access_rules_header"] == "1", calls[0]


def service_logins(ks_proxy, st, variant, since=0):
    """The variant's service logins (POST /v3/auth/tokens as svc) recorded by the proxy."""
    key, value = {"svc_pw": ("user", st["SVC_USER_ID"]), "svc_names": ("user", "svc"),
                  "svc_ac": ("appcred", st["SVC_APPCRED_ID"])}[variant]
    return [r for r in ks_proxy.snapshot()[since:]
            if r["method"] == "POST" and r["auth"] and r["auth"].get(key) == value]


def alice_token(st):
    return keystone_token(st, {"identity": {"methods": ["password"], "password": {"user": {
        "name": "alice", "domain": {"name": "tenants"}, "password": "alice-secret"}}},
        "scope": {"project": {"id": st["TEAM_A_ID"]}}})


@pytest.mark.parametrize("variant", SVC_VARIANTS)
def test_service_login_at_most_once_per_worker(V, st, ks_proxy, variant):
    """The service token is obtained once and shared (README: at most once per worker at a time)."""
    e = V(variant)
    for _ in range(4):
        assert_projects(q(e, tok(alice_token(st))), [st["TEAM_A_ID"]], 2)
    n = len(service_logins(ks_proxy, st, variant))
    assert 1 <= n <= 2, "%d service logins for %s" % (n, variant)


def test_stale_service_token_logs_in_again(V, st, ks_proxy):
    """A 401 on validation means the service token went stale: log in again once, then validate."""
    e = V("svc_pw")
    assert_projects(q(e, tok(st["ALICE_TOKEN"])), [st["TEAM_A_ID"]], 2)    # logged in by now
    t = alice_token(st)
    mark = ks_proxy.mark()
    ks_proxy.fail_next(401, "GET")
    try:
        r = q(e, tok(t))
    finally:
        ks_proxy.clear_injections()
    assert_projects(r, [st["TEAM_A_ID"]], 2)
    calls = ks_proxy.snapshot()[mark:]
    assert calls and calls[0]["mode"] == "inject-401", calls
    assert len(service_logins(ks_proxy, st, "svc_pw", since=mark)) == 1, calls
    assert [c["mode"] for c in calls if c["method"] == "GET"][-1] == "pass", calls


def restricted_creds(st, how):
    if how == "token":
        return tok(remember_secret(appcred_token(st, st["APPCRED_RO_ID"], st["APPCRED_RO_SECRET"])))
    if how == "headers":
        return {"X-Application-Credential-Id": st["APPCRED_RO_ID"],
                "X-Application-Credential-Secret": st["APPCRED_RO_SECRET"]}
    return basic_auth("*" + st["APPCRED_RO_ID"], st["APPCRED_RO_SECRET"])


@pytest.mark.parametrize("variant,how", [("svc_pw", "token"), ("svc_pw", "basic"), ("svc_ac", "headers"),
                                         ("svc_names", "token")])
def test_access_rules_enforced(V, st, variant, how):
    """alice-ro may only GET /api/v1/query (service type metric-storage)."""
    e = V(variant)
    creds = restricted_creds(st, how)
    assert_projects(q(e, creds), [st["TEAM_A_ID"]], 2)
    for path, method in (("/api/v1/query_range", "GET"), ("/api/v1/query", "POST"), ("/api/v1/series", "GET")):
        r = q(e, creds, path=path, method=method)
        prom_error(r, 403)
        assert upstream_saw(r) is None


# alice-glob's rules (scripts/stack.sh): GET /api/v1/label/*/values, GET /api/v1/query**, GET /api/v1/lab* for
# metric-storage, and GET /api/v1/series for service type compute. Keystone's definition of the globs is
# keystonemiddleware's _path_matches: `*` is [^/]+ and `**` is .*, wherever they stand in the pattern.
GLOB_CASES = [
    ("GET", "/api/v1/label/job/values", 200, "* matches one segment"),
    ("GET", "/api/v1/label/__name__/values", 200, "* matches one segment"),
    ("GET", "/api/v1/query", 200, "** matches the empty string"),
    ("GET", "/api/v1/query_range", 200, "** inside a segment"),
    ("GET", "/api/v1/query_exemplars", 200, "** inside a segment"),
    ("GET", "/api/v1/labels", 200, "* inside a segment"),
    ("GET", "/api/v1/series", 403, "the rule is for service type compute"),
    ("POST", "/api/v1/query", 403, "no rule for POST"),
    ("GET", "/federate", 403, "no rule"),
]


@pytest.mark.parametrize("method,path,status,why", GLOB_CASES, ids=["%s %s" % c[:2] for c in GLOB_CASES])
def test_access_rules_globs_and_service_type(V, st, method, path, status, why):
    e = V("svc_pw")
    creds = basic_auth("*" + st["APPCRED_GLOB_ID"], st["APPCRED_GLOB_SECRET"])
    params = {"start": st["SEED_START"], "end": st["SEED_END"], "query": CPU, "step": 60, "match[]": CPU}
    r = e.request(method, path, headers=creds, params=params)
    if status == 200:
        assert r.status_code == 200 and r.json()["status"] == "success", "%s (%s): HTTP %d %s" % (
            path, why, r.status_code, r.text[:300])
    else:
        prom_error(r, status)
        assert upstream_saw(r) is None


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_configuration_refused(V, envoy_variants, name):
    e = envoy_variants.running[name]
    rc = wait_for(lambda: e.proc.poll() is not None, timeout=30, interval=0.1)
    assert rc, "Envoy started with an invalid filter configuration %r" % (INVALID[name][0],)
    assert e.proc.returncode != 0
    assert INVALID[name][1] in e.log(), "the log does not name %r:\n%s" % (INVALID[name][1], e.log()[-2000:])


def test_access_rules_never_bypassed_without_service_credentials(envoy, st):
    """In the default configuration a restricted application credential is refused or held to its rules."""
    for how in ("token", "basic"):
        creds = restricted_creds(st, how)
        r = q(envoy, creds, path="/api/v1/query_range")
        assert r.status_code in (401, 403), "HTTP %d: %s" % (r.status_code, r.text[:300])
        r = q(envoy, creds)
        if r.status_code == 200:
            assert_projects(r, [st["TEAM_A_ID"]], 2)
        else:
            assert r.status_code in (401, 403), r.text[:300]
