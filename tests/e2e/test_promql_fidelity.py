"""PromQL fidelity (issue 18) against the real Prometheus 2.42.

tests/cases/promql_prometheus.jsonl records, for 1600+ queries (valid ones, and mistakes made by
mutating valid ones), what Prometheus 2.42 answers: accepted, or refused with its parse error. The
native and Wasm tests hold the filter's `promql::enforce` to that record; here, for every query:

* the record is checked against the live team-a-only Prometheus (PROM_A), so it cannot go stale;
* the query is sent as alice (team-a) through Envoy, and the answer compared with PROM_A's:
  - `same`: PROM_A's error is the filter's error, word for word and with the same errorType and
    HTTP status; an accepted query is accepted by both with the same data;
  - `newer` (Prometheus 3 spellings, such as numbers as durations): PROM_A refuses, the filter answers
    with what PROM_A answers to the 2.x spelling (tests/e2e/test_equivalence.py checks such pairs);
  - `upstream` (regexes that Go's regex syntax refuses and Rust's takes): the filter sends them on and
    Prometheus's own error comes back.

The cases of the issue that need data (a UTF-8 label value, metrics named `smoothed` and `anchored`,
`@` before 1970) are in tests/e2e/test_equivalence.py's corpus, on the seed of scripts/stack/seed_rich.py.
"""
import json
import os

import pytest

from conftest import REPO
# `client`: (alice's session through Envoy, a session straight to PROM_A).
from test_equivalence import canon, client  # noqa: F401 (a fixture)

CASES = [json.loads(line) for line in open(os.path.join(REPO, "tests", "cases", "promql_prometheus.jsonl"),
                                           encoding="utf-8") if line.strip()]


def answer(resp):
    try:
        body = resp.json()
    except ValueError:
        body = {}
    return resp.status_code, body


def strip_tenant(body, query, project):
    """absent() copies the argument's equality matchers into its result: the filter's tenant matcher
    shows as a project label there, the only difference allowed (see test_equivalence.canon)."""
    if "absent" not in query:
        return body
    for s in body.get("data", {}).get("result", []) if isinstance(body.get("data", {}).get("result"), list) else []:
        if isinstance(s, dict) and s.get("metric", {}).get("project") == project:
            del s["metric"]["project"]
    return body


def test_corpus_is_large():
    assert len(CASES) > 1500
    assert {c[3] for c in CASES} <= {"same", "newer", "upstream"}


@pytest.mark.parametrize("chunk", range(8))
def test_the_filter_answers_as_prometheus(stack, client, chunk):
    f, d = client
    params = {"time": stack["SEED_END"]}
    wrong = []
    for query, kind, message, how in CASES[chunk::8]:
        data = dict(params, query=query)
        ds, dbody = answer(d.post(stack["PROM_A_URL"] + "/api/v1/query", data=data, timeout=20))
        fs, fbody = answer(f.post(stack["ENVOY_URL"] + "/api/v1/query", data=data, timeout=20))
        live = "ok" if ds == 200 else dbody.get("errorType")
        recorded = message == dbody.get("error", "").replace('invalid parameter "query": ', "", 1)
        if kind == "ok" and live == "execution":
            # Valid, but PROM_A's data makes it fail (a many-to-many match, say): the same failure.
            if (fs, fbody.get("errorType")) != (ds, "execution"):
                wrong.append("%r:\n  PROM_A: HTTP %d %s\n  filter: HTTP %d %s" % (query, ds, dbody, fs, fbody))
            continue
        if live != kind or (kind != "ok" and not recorded):
            wrong.append("%r: recorded %s %r, PROM_A now says HTTP %d %s" % (query, kind, message, ds, dbody))
            continue
        if how in ("same", "upstream") and kind != "ok":
            if (fs, fbody.get("errorType"), fbody.get("error")) != (ds, dbody.get("errorType"), dbody.get("error")):
                wrong.append("%r:\n  PROM_A: HTTP %d %s\n  filter: HTTP %d %s" % (query, ds, dbody, fs, fbody))
        elif how == "same":
            same = fs == 200 and canon(strip_tenant(fbody, query, stack["TEAM_A_ID"]), query) == canon(dbody, query)
            if not same:
                wrong.append("%r:\n  PROM_A: HTTP %d %s\n  filter: HTTP %d %s" % (query, ds, dbody, fs, fbody))
        elif fs != 200:
            wrong.append("%r (a Prometheus 3 spelling): the filter answers HTTP %d %s" % (query, fs, fbody))
    assert not wrong, "%d of %d differ:\n%s" % (len(wrong), len(CASES[chunk::8]), "\n".join(wrong[:20]))


@pytest.mark.parametrize("query,message", [
    # The issue's own examples, with Prometheus 2.42's words.
    ("rate(x[5m]", "1:11: parse error: unclosed left parenthesis"),
    ("sum(up) by (job", "1:16: parse error: unclosed left parenthesis"),
    ("sum(rate(cloud_instance[5m])) cloud_instances",
     '1:31: parse error: unexpected identifier "cloud_instances"'),
    ('up{job=~"\\xff"}', "1:4: parse error: error parsing regexp: invalid UTF-8: `\ufffd)$`"),
])
def test_issue_examples_fail_in_prometheus_words(stack, client, query, message):
    f, d = client
    # Prometheus names the parameter in /query's errors, not in /query_range's.
    for path, prefix, extra in (
            ("/api/v1/query", 'invalid parameter "query": ', {"time": stack["SEED_END"]}),
            ("/api/v1/query_range", "", {"start": stack["SEED_START"], "end": stack["SEED_END"], "step": 60})):
        ds, dbody = answer(d.get(stack["PROM_A_URL"] + path, params=dict(extra, query=query), timeout=20))
        fs, fbody = answer(f.get(stack["ENVOY_URL"] + path, params=dict(extra, query=query), timeout=20))
        assert (ds, dbody.get("errorType"), dbody.get("error")) == (400, "bad_data", prefix + message)
        assert (fs, fbody.get("errorType"), fbody.get("error")) == (ds, "bad_data", dbody["error"]), fbody


def test_match_selector_errors_in_prometheus_words(stack, client):
    f, d = client
    for sel in ('up{job="a"', "up{job=}", 'up{job=~"("}'):
        ds, dbody = answer(d.get(stack["PROM_A_URL"] + "/api/v1/series", params={"match[]": sel}, timeout=20))
        fs, fbody = answer(f.get(stack["ENVOY_URL"] + "/api/v1/series", params={"match[]": sel}, timeout=20))
        assert ds == 400 and dbody["error"].startswith('invalid parameter "match[]": 1:'), dbody
        assert (fs, fbody.get("error")) == (ds, dbody["error"]), fbody
