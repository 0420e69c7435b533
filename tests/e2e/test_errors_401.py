"""The 401 for a password or application credential the real Keystone refused: the message says which
credential form the filter read (never the password or secret) and what Keystone refused.

Keystone's default hides why it refused a token request: a wrong password, a project without a role and
an unknown project all answer 401 "The request you have made requires authentication." (seen on the
stack's Keystone 22), and the filter says so. With `[DEFAULT] insecure_debug = true` Keystone names the
reason, and the filter tells the password (authentication) from the scope. The second half of this
module restarts the stack's Keystone with that setting (on the same port and database, as
test_keystone_down.py does) and puts the configuration back afterwards.
"""
import os
import uuid

import pytest

from conftest import basic_auth, prom_error, remember_secret, stack_cmd

CPU = "cloud_cpu_seconds_total"
ALICE_TEAM_A = "Basic auth as user name 'alice' in domain 'tenants', scoped to project name 'team-a' in domain 'tenants'"
ALICE_TEAM_B = "Basic auth as user name 'alice' in domain 'tenants', scoped to project name 'team-b' in domain 'tenants'"
NOTE = ("Note: 'alice' was read as a user id and 'team-a' as a project id, as neither names a domain; if they are "
        "names, write alice@DOMAIN|team-a@DOMAIN (e.g. alice@Default|team-a@Default)")
UNSAID = ("Keystone does not say whether it refused the password or the scope (it says why only with "
          "insecure_debug): the password may be wrong (or the user may not exist), or the user may have no role "
          "on that project (or it may not exist)")


def refused(e, stack, headers):
    """The 401's message for a query with these credential headers; checks that no secret is echoed."""
    r = e.get("/api/v1/query", headers=headers, params={"query": CPU, "time": stack["SEED_END"]})
    body = prom_error(r, 401, "unauthorized")
    assert r.headers.get("WWW-Authenticate", "").startswith("Keystone uri="), r.headers
    for v in headers.values():
        assert v.split(" ")[-1] not in r.text, "a credential value is echoed: %s" % r.text
    return body["error"]


def wrong_password():
    return remember_secret("wrong-%s" % uuid.uuid4().hex)


# ------------------------------------------------------------------ Keystone's default: it does not say why
@pytest.fixture(scope="module")
def plain(envoy_variants):
    return envoy_variants("errors_401")


def test_wrong_password(plain, stack):
    m = refused(plain, stack, basic_auth("alice@tenants|team-a@tenants", wrong_password()))
    assert m == "Keystone refused %s: %s" % (ALICE_TEAM_A, UNSAID), m
    assert "openstack token issue" not in m


def test_project_without_a_role(plain, stack):
    m = refused(plain, stack, basic_auth("alice@tenants|team-b@tenants", "alice-secret"))
    assert m == "Keystone refused %s: %s" % (ALICE_TEAM_B, UNSAID), m


def test_names_without_domains(plain, stack):
    m = refused(plain, stack, basic_auth("alice|team-a", "alice-secret"))
    assert m.startswith("Keystone refused Basic auth as user id 'alice', scoped to project id 'team-a': "), m
    assert m.endswith(NOTE), m


def test_application_credential_with_a_wrong_secret(plain, stack):
    m = refused(plain, stack, basic_auth("*" + stack["APPCRED_ID"], wrong_password()))
    assert m == ("Keystone refused Basic auth as application credential id '%s': the application credential "
                 "does not exist, its secret is wrong, or it has expired" % stack["APPCRED_ID"]), m


def test_a_token_still_points_at_openstack_token_issue(plain, stack):
    m = refused(plain, stack, {"X-Auth-Token": "kpw-not-a-token-%s" % uuid.uuid4().hex})
    assert m == ("Keystone refused the token in X-Auth-Token: it is invalid, expired or revoked; get a new token "
                 "with `openstack token issue`"), m


def test_a_remembered_refusal_names_the_form(plain, stack):
    creds = basic_auth("alice@tenants|team-a@tenants", wrong_password())
    refused(plain, stack, creds)
    m = refused(plain, stack, creds)
    assert m.startswith("Keystone refused %s less than 10 s ago" % ALICE_TEAM_A), m


# ------------------------------------------------------------------ Keystone with insecure_debug: it says why
@pytest.fixture(scope="module")
def debug_keystone(stack):
    """The stack's Keystone restarted with `insecure_debug = true`; restarted without it afterwards."""
    conf = os.path.join(stack["STACK_DIR"], "keystone", "keystone.conf")
    with open(conf) as f:
        original = f.read()
    assert original.startswith("[DEFAULT]\n"), original[:200]

    def restart(text):
        r = stack_cmd("ks-stop", stack["STACK_DIR"])
        assert r.returncode == 0, r.stderr
        with open(conf, "w") as f:
            f.write(text)
        r = stack_cmd("ks-start", stack["STACK_DIR"])
        assert r.returncode == 0, r.stderr

    restart(original.replace("[DEFAULT]\n", "[DEFAULT]\ninsecure_debug = true\n", 1))
    try:
        yield
    finally:
        restart(original)


@pytest.fixture(scope="module")
def debug(debug_keystone, envoy_variants):
    # An Envoy of its own: nothing remembered from the refusals above.
    return envoy_variants("errors_401_debug")


def test_debug_wrong_password_is_authentication(debug, stack):
    m = refused(debug, stack, basic_auth("alice@tenants|team-a@tenants", wrong_password()))
    assert m == ("Keystone refused %s: authentication failed: the password is wrong (or there is no user with "
                 "that id)" % ALICE_TEAM_A), m


def test_debug_project_without_a_role_is_the_scope(debug, stack):
    m = refused(debug, stack, basic_auth("alice@tenants|team-b@tenants", "alice-secret"))
    assert m == ("Keystone refused %s: the password is right, but the scope was refused: the user has no role on "
                 "that project" % ALICE_TEAM_B), m


def test_debug_names_without_domains_are_an_unknown_project(debug, stack):
    m = refused(debug, stack, basic_auth("alice|team-a", "alice-secret"))
    assert m == ("Keystone refused Basic auth as user id 'alice', scoped to project id 'team-a': the scope was "
                 "refused: there is no such project. " + NOTE), m


def test_debug_unknown_user_domain(debug, stack):
    m = refused(debug, stack, basic_auth("alice@nodomain|team-a@tenants", "alice-secret"))
    assert m.endswith(": authentication failed: there is no domain 'nodomain' (the user's)"), m
