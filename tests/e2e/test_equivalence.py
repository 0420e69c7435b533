"""Equivalence: what alice (team-a) gets through Envoy + the filter must be EXACTLY what a Prometheus
that only ever held team-a's samples answers (PROM_A, started by scripts/stack.sh, not behind Envoy).

For every PromQL query of the corpus below:
  * an instant query at time=SEED_END, GET (and POST form for every third query),
  * a range query start=SEED_START+600, end=SEED_END, step=60, GET (and POST form for every third),
through Envoy with alice's token vs directly against PROM_A (no token). Compared: the resultType and
the multiset of (metric labels, timestamp(s), value string(s)); values are compared exactly as the
strings Prometheus returns (same data, same Prometheus version: the float arithmetic is identical).
`sort(...)`/`sort_desc(...)` results are compared in order as well.

If PROM_A answers an error (bad_data, execution, ...), the filtered answer must be an error too
(non-200 or status "error"); if PROM_A succeeds, the filtered answer must succeed with the same data.

Seed data (scripts/stack/seed_rich.py): http_requests_total{job,instance,code} counters (one with a
reset), request_duration_seconds_{bucket,sum,count}{job,le}, memory_bytes{instance},
temperature_celsius{instance} (negative/fractional), instance_info{instance,flavor} == 1,
batch_jobs_failed_total only in team-b, and the original cloud_cpu_seconds_total / cloud_instances.
"""
import os

import pytest

from conftest import RULE_OUTPUT_NAMES, without_rule_output
import requests

# Placeholders substituted per stack: <S> SEED_START, <E> SEED_END, <M> the middle of the window,
# <A> team-a's project id. (Angle brackets never occur in PromQL otherwise.)
H = "http_requests_total"
D = "request_duration_seconds"

QUERIES = [
    # ---- plain selectors and matchers
    H,
    H + '{job="api"}',
    H + '{job!="api",code="500"}',
    H + '{code=~"5.."}',
    H + '{instance!~"node-1|vm-.*"}',
    H + '{job=~"API",code="200"}',                      # regex is case-sensitive: empty
    '{__name__="memory_bytes"}',
    '{__name__=~"http_.*|memory_bytes"}',
    '{__name__=~"request_duration_seconds_(sum|count)",job="web"}',
    '{__name__!~"http.*",instance="node-1"}',
    '{job=~"api|web"}',
    '{__name__=~".+"}',
    '{__name__=~"batch_.*"}',                           # team-b only: empty for alice
    'batch_jobs_failed_total',                          # team-b only: empty for alice
    'cloud_cpu_seconds_total',
    'cloud_instances',
    'memory_bytes{project="<A>"}',                   # naming the own project explicitly
    'memory_bytes{project=~"<A>|nothing"}',
    'memory_bytes{instance=""}',                        # matches series without the label: none
    'memory_bytes{flavor=""}',                          # ... all of them (no flavor label)
    'instance_info{flavor=~"m1\\\\..*"}',                  # escaped dot in a regex string
    # raw (backtick) strings have no escapes: a regex and a label_replace written with backslashes
    'http_requests_total{instance=~`node-\\d+|vm-.*`}',
    'instance_info{flavor=~`m1\\..*`}',
    'label_replace(memory_bytes, "n", "$1", "instance", `node-(\\d+)`)',
    # Ceilometer-style series (the labels of its Prometheus exporter)
    'ceilometer_memory_usage',
    'sum by (resource_name) (ceilometer_memory_usage{unit="MB"})',
    'rate(ceilometer_cpu[5m]) / 1e9',
    'topk(1, sum by (user, vm_instance) (rate(ceilometer_cpu[10m])))',
    'ceilometer_memory_usage * on(resource) group_left(vm_instance) (ceilometer_cpu > bool 0)',
    # Go's byte escapes are bytes (issue 18): "\xc3\xbc" and "\303\274" are ü; "\xff" is no UTF-8
    'city_temp{city="M\\xc3\\xbcnchen"}',
    'count(city_temp{city!="M\\xc3\\xbcnchen"})',
    'city_temp{city="M\\303\\274nchen"} + city_temp{city="Z\\u00fcrich"} * 0',
    'label_replace(city_temp, "c2", "\\xc3\\xbc", "", "")',
    'label_replace(city_temp{city="Paris"}, "c2", "\\xff", "", "")',
    'city_temp{city="\\xff"}',
    "count(city_temp{city!='\\377'})",
    'city_temp{city=~"M.nchen"}',
    'city_temp{city=~`Z\\x{fc}rich|M\\Snchen`}',
    # names that newer PromQL reserves in some positions
    'smoothed',
    'sum by (anchored) (smoothed)',
    'anchored{job="x"}',
    'rate(smoothed[5m]) * on(project) group_left anchored',
    'count by (anchored) (smoothed{anchored=~"a.*"})',
    # @ before 1970
    'memory_bytes @ -100',
    'max_over_time(vector(time())[2m:1m] @ -100)',
    'timestamp(vector(1)) - max_over_time(vector(time())[1m:] @ -1.5)',
    'memory_bytes[5m]',                                 # instant only (range query: error on both)
    'http_requests_total{job="api"}[3m]',
    # ---- counter / gauge functions over range vectors
    'rate(%s[5m])' % H,
    'irate(%s[5m])' % H,
    'increase(%s[10m])' % H,
    'rate(%s{code="500"}[1h])' % H,
    'delta(memory_bytes[15m])',
    'idelta(temperature_celsius[5m])',
    'deriv(memory_bytes[10m])',
    'predict_linear(memory_bytes[15m], 3600)',
    'holt_winters(memory_bytes[20m], 0.5, 0.5)',
    'avg_over_time(temperature_celsius[10m])',
    'min_over_time(temperature_celsius[10m])',
    'max_over_time(temperature_celsius[10m])',
    'sum_over_time(temperature_celsius[10m])',
    'count_over_time(%s[10m])' % H,
    'last_over_time(memory_bytes[10m])',
    'stddev_over_time(temperature_celsius[30m])',
    'stdvar_over_time(temperature_celsius[30m])',
    'present_over_time(memory_bytes[5m])',
    'quantile_over_time(0.9, temperature_celsius[30m])',
    'quantile_over_time(0.25, memory_bytes[1h])',
    'changes(temperature_celsius[30m])',
    'resets(%s[1h])' % H,
    # ---- math functions
    'abs(temperature_celsius)',
    'ceil(temperature_celsius)',
    'floor(temperature_celsius)',
    'round(temperature_celsius)',
    'round(temperature_celsius, 0.5)',
    'clamp(temperature_celsius, -2, 2)',
    'clamp_min(temperature_celsius, 0)',
    'clamp_max(temperature_celsius, 1.5)',
    'sgn(temperature_celsius)',
    'sqrt(memory_bytes)',
    'ln(memory_bytes)',
    'log2(memory_bytes)',
    'log10(memory_bytes)',
    'exp(temperature_celsius / 10)',
    'sin(temperature_celsius)',
    'deg(temperature_celsius)',
    'temperature_celsius atan2 temperature_celsius',
    # ---- sort, time, scalar, vector
    'sort(memory_bytes)',
    'sort_desc(rate(%s[5m]))' % H,
    'sort(sum by (instance) (memory_bytes))',
    'timestamp(memory_bytes)',
    'timestamp(memory_bytes @ <M>)',
    'vector(1)',
    'vector(time())',
    'time()',
    'scalar(sum(memory_bytes))',
    'scalar(memory_bytes)',                             # several series: NaN on both
    'scalar(memory_bytes{instance="node-1"}) * 2',
    'memory_bytes > scalar(avg(memory_bytes))',
    '42',
    '1 + 2 * 3',
    '"a string"',                                       # string result (range query: error on both)
    'minute(timestamp(memory_bytes))',
    'hour(vector(<E>))',
    'day_of_week(vector(<M>))',
    'days_in_month()',
    # ---- label manipulation
    'label_replace(%s, "svc", "$1", "job", "(.*)")' % H,
    'label_replace(memory_bytes, "project", "x", "", "")',
    'label_replace(memory_bytes, "__name__", "mem", "", "")',
    'label_replace(memory_bytes, "node", "$1", "instance", "node-(.*)")',
    'label_join(memory_bytes, "combo", "-", "instance", "project")',
    'label_join(instance_info, "instance", ",", "flavor")',
    # ---- histograms
    'histogram_quantile(0.9, rate(%s_bucket[5m]))' % D,
    'histogram_quantile(0.5, sum by (le) (rate(%s_bucket[5m])))' % D,
    'histogram_quantile(0.7, sum by (le, job) (rate(%s_bucket[10m])))' % D,
    'rate(%s_sum[5m]) / rate(%s_count[5m])' % (D, D),
    'histogram_quantile(0.75, %s_bucket)' % D,
    # ---- absent (the ONLY allowed difference: labels may carry project=<A>, see below)
    'absent(nonexistent_metric)',
    'absent(batch_jobs_failed_total)',
    'absent(memory_bytes)',
    'absent(nonexistent_metric{job="x"})',
    'absent(nonexistent_metric{job=~"x.*"})',
    'absent_over_time(nonexistent_metric[5m])',
    'absent_over_time(batch_jobs_failed_total{job="batch"}[10m])',
    'absent_over_time(memory_bytes[5m])',
    # ---- aggregations
    'sum(memory_bytes)',
    'sum by (job) (rate(%s[5m]))' % H,
    'sum without (instance, code) (rate(%s[5m]))' % H,
    'sum by (project) (rate(cloud_cpu_seconds_total[5m]))',
    'avg(temperature_celsius)',
    'avg by (code) (rate(%s[5m]))' % H,
    'min(temperature_celsius)',
    'max by (instance) (memory_bytes)',
    'count(%s)' % H,
    'count by (__name__) ({__name__=~".+"})',
    'count without (le) (%s_bucket)' % D,
    'group(%s)' % H,
    'group by (project) ({__name__=~".+"})',
    'stddev(memory_bytes)',
    'stdvar by (job) (rate(%s[5m]))' % H,
    'topk(3, rate(%s[5m]))' % H,
    'topk by (job) (1, rate(%s[5m]))' % H,
    'bottomk(2, temperature_celsius)',
    'quantile(0.5, rate(%s[5m]))' % H,
    'quantile by (job) (0.75, rate(%s[5m]))' % H,
    'count_values("value", cloud_instances)',
    'count_values by (job) ("rps", round(rate(%s[5m])))' % H,
    'count_values without (instance) ("v", instance_info)',
    'sum(count_over_time(%s[1h]))' % H,
    # ---- binary operators: arithmetic
    'memory_bytes / 1e6',
    'memory_bytes * 2 - 1',
    '2 ^ 3 ^ 2',
    'memory_bytes % 7e6',
    '-memory_bytes',
    '-temperature_celsius ^ 2',
    'sum(%s) / count(%s)' % (H, H),
    'rate(%s{code="500"}[5m]) / ignoring(code) rate(%s{code="200"}[5m])' % (H, H),
    'sum by (job, instance) (rate(%s[5m])) / on(job, instance) group_left sum by (job, instance) (rate(%s{code="200"}[5m]))' % (H, H),
    # ---- binary operators: comparison, with and without bool
    'memory_bytes > 1e9',
    'memory_bytes > bool 1e9',
    'temperature_celsius < 0',
    'temperature_celsius == bool 0',
    'temperature_celsius != 0',
    '1 < bool 2',
    'sum by (job) (rate(%s[5m])) >= bool 10' % H,
    'memory_bytes > on(instance) group_left memory_bytes offset 5m',
    # ---- set operators
    '%s{code="200"} and on(job, instance) %s{code="500"}' % (H, H),
    'memory_bytes or temperature_celsius',
    'memory_bytes unless on(instance) temperature_celsius > 0',
    '%s unless %s{code="500"}' % (H, H),
    '(memory_bytes > 1.01e9) or vector(0)',
    'batch_jobs_failed_total or vector(7)',
    # ---- one-to-many joins with extra labels
    'memory_bytes * on(instance) group_left(flavor) instance_info',
    'memory_bytes * on(instance, project) group_left(flavor) instance_info',
    'instance_info * on(instance) group_right(flavor) memory_bytes',
    'sum by (instance) (rate(%s[5m])) * on(instance) group_left(flavor) instance_info' % H,
    'cloud_cpu_seconds_total + on(project) group_left cloud_instances',
    'cloud_instances * on(project) group_right cloud_cpu_seconds_total',
    'rate(%s[5m]) / ignoring(code, job) group_left sum without (flavor) (instance_info)' % H,
    # ---- subqueries
    'max_over_time(rate(%s[5m])[30m:1m])' % H,
    'avg_over_time(memory_bytes[10m:])',
    'deriv(sum(memory_bytes)[20m:2m])',
    'min_over_time(sum by (job) (rate(%s[2m]))[15m:30s] offset 5m)' % H,
    'rate(%s[5m])[10m:1m]' % H,                         # instant only (range query: error on both)
    # ---- offset (positive and negative)
    'memory_bytes offset 10m',
    'rate(%s[5m] offset 30m)' % H,
    'memory_bytes offset -10m',
    'sum(memory_bytes offset -5m)',
    'memory_bytes - memory_bytes offset 1h',
    # ---- @ modifier (inside the seed window, and start()/end())
    'memory_bytes @ <M>',
    'rate(%s[5m] @ <M>)' % H,
    'memory_bytes @ <S>',
    'memory_bytes @ start()',
    'memory_bytes @ end()',
    'rate(%s[5m] @ end())' % H,
    'max_over_time(temperature_celsius[10m] @ <M> offset 5m)',
    'last_over_time(memory_bytes[1h] @ <M>)',
    'memory_bytes - memory_bytes @ start()',
    'sum by (job) (rate(%s[5m] @ <M>))' % H,
    'max_over_time(rate(%s[5m])[20m:1m] @ <M>)' % H,
    # ---- nested combinations
    'topk(2, sum by (instance) (rate(%s{code=~"2.."}[5m])))' % H,
    'sort_desc(sum by (flavor) (memory_bytes * on(instance) group_left(flavor) instance_info))',
    'histogram_quantile(0.9, sum by (le) (rate(%s_bucket[5m] offset 10m)))' % D,
    'sum(rate(%s{code="500"}[5m])) / sum(rate(%s[5m])) > bool 0.05' % (H, H),
    'label_replace(sum by (job) (rate(%s[5m])), "j", "$1", "job", "(a).*") or vector(0)' % H,
    'count(count by (instance) ({__name__=~".+",instance=~".+"}))',
    'abs(deriv(temperature_celsius[10m])) > bool 0.01',
    'clamp_max(increase(%s[10m]) / 10, 20)' % H,
    'avg_over_time((memory_bytes / on(instance) group_left instance_info)[10m:1m])',
    'quantile_over_time(0.5, sum by (instance) (rate(%s[1m]))[10m:1m])' % H,
]

# Queries that Prometheus refuses (parse or execution error) on PROM_A: the filter must not turn
# them into a success.
ERROR_QUERIES = [
    'rate(memory_bytes)',
    'sum(',
    'topk("a", memory_bytes)',
    'memory_bytes[5m:1m:1m]',
    '"str" + 1',
    'absent(nonexistent_metric[5m])',
    'label_replace(memory_bytes, "a", "b", "c", "(")',        # invalid regex
    'label_replace(memory_bytes, "1a", "b", "instance", ".*")',  # invalid label name
    'count_values("a b", memory_bytes)',                     # invalid label name
    'label_replace(memory_bytes, "instance", "x", "", "")',  # duplicate label sets
    'memory_bytes + on() instance_info',                      # many-to-many
    'memory_bytes * on(instance) group_left instance_info * on() group_right memory_bytes',
    'holt_winters(memory_bytes[10m], 2, 0.5)',               # invalid smoothing factor
    'vector(1) + on(x) group_left(x) vector(1)',
    '{}',
    '{__name__=~".*"}',          # must contain at least one non-empty matcher
    '{job=~".*"}',
    '{job!="x"}',
    'sum(count_over_time({__name__=~".+"}[1h]))',  # dropping __name__: duplicate label sets
    # Prometheus 2.42 allows `@` only after a selector or a subquery (not after an aggregation)
    'sum(rate(http_requests_total[5m])) @ <M>',
    'group_left',                # a keyword, not a metric name
    # Prometheus 3.x syntax that 2.42 refuses: the filter must not "translate" it into a valid query
    '{a="1" or b="2"}',
    'memory_bytes{instance="node-1" or instance="node-2"}',
]

# Prometheus 3.x spellings that the filter accepts and prints in the form every Prometheus reads
# (quoted names that are valid legacy names unquoted, durations as plain seconds). Same meaning,
# so the filtered answer must equal PROM_A's answer to the 2.x spelling.
NORMALIZED = [
    ('{"memory_bytes"}', 'memory_bytes'),
    ('{"memory_bytes",instance="node-1"}', 'memory_bytes{instance="node-1"}'),
    ('{"instance"="node-1"}', '{instance="node-1"}'),
    ('memory_bytes{"instance"="node-1"}', 'memory_bytes{instance="node-1"}'),
    ('memory_bytes[300]', 'memory_bytes[5m]'),
    ('rate(memory_bytes[300])', 'rate(memory_bytes[5m])'),
    ('memory_bytes offset 300', 'memory_bytes offset 5m'),
    ('memory_bytes[5m:60]', 'memory_bytes[5m:1m]'),
]

def subst(q, stack):
    s, e = int(stack["SEED_START"]), int(stack["SEED_END"])
    return (q.replace("<S>", str(s)).replace("<E>", str(e)).replace("<M>", str((s + e) // 2))
            .replace("<A>", stack["TEAM_A_ID"]))


@pytest.fixture(scope="module")
def client(stack):
    """(through-filter session with alice's token, direct-to-PROM_A session)."""
    f = requests.Session()
    f.headers["X-Auth-Token"] = stack["ALICE_TOKEN"]
    d = requests.Session()
    yield f, d
    f.close()
    d.close()


def _labels(m):
    return tuple(sorted(m.items()))


def _is_absent(q):
    return q.startswith("absent(") or q.startswith("absent_over_time(")


def canon(body, query, project=None):
    """(resultType, canonical result). For absent()/absent_over_time() queries only, and only when
    `project` is given (the filtered side), a project=<project> label is dropped from the result
    labels: the filter rewrites `absent(x)` to `absent(x{project="<A>"})` and Prometheus copies
    equality matchers of the argument into absent()'s output labels, so the filtered answer may carry
    project=<A> where PROM_A's has none. That label is the ONLY difference allowed anywhere."""
    data = body["data"]
    rt, res = data["resultType"], data["result"]
    if rt in ("scalar", "string"):
        return rt, tuple(res)

    def lbls(m):
        if project is not None and _is_absent(query) and m.get("project") == project:
            m = {k: v for k, v in m.items() if k != "project"}
        return _labels(m)

    if rt == "vector":
        items = [(lbls(s["metric"]), tuple(s["value"])) for s in res]
    else:
        items = [(lbls(s["metric"]), tuple(tuple(v) for v in s["values"])) for s in res]
    if not query.startswith("sort"):
        items.sort()
    return rt, items


def _answer(resp):
    try:
        body = resp.json()
    except ValueError:
        body = None
    ok = resp.status_code == 200 and isinstance(body, dict) and body.get("status") == "success"
    return ok, body


def compare(stack, query, filtered, direct):
    fok, fbody = _answer(filtered)
    dok, dbody = _answer(direct)
    ctx = "query %r\n  filtered: HTTP %d %s\n  expected (PROM_A): HTTP %d %s" % (
        query, filtered.status_code, filtered.text[:1500], direct.status_code, direct.text[:1500])
    if not dok:
        assert not fok, "PROM_A refuses the query but the filter's answer is a success\n" + ctx
        return
    assert fok, "PROM_A answers but the filter's answer is not a success\n" + ctx
    assert canon(fbody, query, stack["TEAM_A_ID"]) == canon(dbody, query), "different data\n" + ctx


def run(stack, client, path, query, extra, method):
    f, d = client
    params = dict(extra, query=query)
    if method == "GET":
        fr = f.get(stack["ENVOY_URL"] + path, params=params, timeout=20)
        dr = d.get(stack["PROM_A_URL"] + path, params=params, timeout=20)
    else:
        fr = f.post(stack["ENVOY_URL"] + path, data=params, timeout=20)
        dr = d.post(stack["PROM_A_URL"] + path, data=params, timeout=20)
    compare(stack, query, fr, dr)
    return fr, dr


def instant(stack):
    return {"time": stack["SEED_END"]}


def range_(stack):
    return {"start": int(stack["SEED_START"]) + 600, "end": stack["SEED_END"], "step": 60}


def _ids(qs):
    return ["%03d:%s" % (i, q[:60]) for i, q in enumerate(qs)]


def test_corpus_size():
    assert len(QUERIES) >= 120, len(QUERIES)
    assert len(set(QUERIES)) == len(QUERIES), "duplicate queries in the corpus"


@pytest.mark.parametrize("q", QUERIES, ids=_ids(QUERIES))
def test_instant_get(stack, client, q):
    run(stack, client, "/api/v1/query", subst(q, stack), instant(stack), "GET")


@pytest.mark.parametrize("q", QUERIES, ids=_ids(QUERIES))
def test_range_get(stack, client, q):
    # queries yielding a range vector or a string are errors as range queries: on both sides
    run(stack, client, "/api/v1/query_range", subst(q, stack), range_(stack), "GET")


POST_SUBSET = QUERIES[::3]


@pytest.mark.parametrize("q", POST_SUBSET, ids=_ids(POST_SUBSET))
def test_instant_post(stack, client, q):
    run(stack, client, "/api/v1/query", subst(q, stack), instant(stack), "POST")


@pytest.mark.parametrize("q", POST_SUBSET, ids=_ids(POST_SUBSET))
def test_range_post(stack, client, q):
    run(stack, client, "/api/v1/query_range", subst(q, stack), range_(stack), "POST")


@pytest.mark.parametrize("q", ERROR_QUERIES, ids=_ids(ERROR_QUERIES))
def test_error_stays_error(stack, client, q):
    for path, extra in (("/api/v1/query", instant(stack)), ("/api/v1/query_range", range_(stack))):
        fr, dr = run(stack, client, path, subst(q, stack), extra, "GET")
        # the corpus is meant to be errors on PROM_A: keep it honest
        assert not _answer(dr)[0], "not an error on PROM_A (fix the corpus): %r -> %s" % (q, dr.text[:300])


@pytest.mark.parametrize("q3,q2", NORMALIZED, ids=_ids([q for q, _ in NORMALIZED]))
def test_3x_spelling_means_the_same(stack, client, q3, q2):
    f, d = client
    for path, extra in (("/api/v1/query", instant(stack)), ("/api/v1/query_range", range_(stack))):
        fr = f.get(stack["ENVOY_URL"] + path, params=dict(extra, query=subst(q3, stack)), timeout=20)
        dr = d.get(stack["PROM_A_URL"] + path, params=dict(extra, query=subst(q2, stack)), timeout=20)
        if path == "/api/v1/query":
            assert _answer(dr)[0], "the 2.x spelling must work on PROM_A: %r" % q2
        compare(stack, q3, fr, dr)  # a range query of a matrix is an error on both


def test_no_absent_blind_spot(stack, client):
    """The absent() allowance must not hide a real difference: with non-absent queries and data, the
    canonical forms keep project."""
    body = {"data": {"resultType": "vector", "result": [
        {"metric": {"project": stack["TEAM_A_ID"]}, "value": [1, "1"]}]}}
    assert canon(body, "memory_bytes", stack["TEAM_A_ID"]) != canon(
        {"data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "1"]}]}}, "memory_bytes")


# ------------------------------------------------------------------ metadata endpoints
META = [
    ("/api/v1/labels", []),
    ("/api/v1/labels", [("start", "<S>"), ("end", "<E>")]),
    ("/api/v1/labels", [("match[]", "memory_bytes")]),
    ("/api/v1/labels", [("match[]", "instance_info"), ("match[]", '{job="api"}')]),
    ("/api/v1/label/__name__/values", []),
    ("/api/v1/label/__name__/values", [("start", "<S>"), ("end", "<E>")]),
    ("/api/v1/label/__name__/values", [("match[]", '{instance="node-1"}')]),
    ("/api/v1/label/instance/values", []),
    ("/api/v1/label/instance/values", [("match[]", "memory_bytes")]),
    ("/api/v1/label/job/values", []),
    ("/api/v1/label/flavor/values", []),
    ("/api/v1/label/project/values", []),
    ("/api/v1/label/le/values", []),
    ("/api/v1/series", [("match[]", H)]),
    ("/api/v1/series", [("match[]", "memory_bytes"), ("match[]", "instance_info")]),
    ("/api/v1/series", [("match[]", '{__name__=~".+"}')]),
    ("/api/v1/series", [("match[]", '{instance="node-1"}'), ("start", "<S>"), ("end", "<E>")]),
    ("/api/v1/series", [("match[]", '{__name__=~"batch.*"}')]),
    ("/api/v1/series", [("match[]", 'cloud_cpu_seconds_total{instance=~"vm-.*"}')]),
]


def _meta_canon(data, project=None):
    data = without_rule_output(data, project)
    if data and isinstance(data[0], dict):
        return sorted(_labels(m) for m in data)
    return sorted(data)


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("path,params", META, ids=["%02d:%s" % (i, p) for i, (p, _) in enumerate(META)])
def test_metadata_equivalent(stack, client, path, params, method):
    if method == "POST" and "/label/" in path:
        pytest.skip("label values is GET only")
    f, d = client
    params = [(k, subst(v, stack)) for k, v in params]
    if method == "GET":
        fr = f.get(stack["ENVOY_URL"] + path, params=params, timeout=20)
        dr = d.get(stack["PROM_A_URL"] + path, params=params, timeout=20)
    else:
        # explicit form Content-Type even for an empty body (requests sends none then; the filter
        # refuses body-less POSTs without a Content-Type with 415, Prometheus would accept them)
        hdr = {"Content-Type": "application/x-www-form-urlencoded"}
        fr = f.post(stack["ENVOY_URL"] + path, data=params, headers=hdr, timeout=20)
        dr = d.post(stack["PROM_A_URL"] + path, data=params, headers=hdr, timeout=20)
    ctx = "%s %s %r\n  filtered: HTTP %d %s\n  expected (PROM_A): HTTP %d %s" % (
        method, path, params, fr.status_code, fr.text[:1500], dr.status_code, dr.text[:1500])
    assert dr.status_code == 200, ctx
    assert fr.status_code == 200, ctx
    fb, db = fr.json(), dr.json()
    assert fb["status"] == "success", ctx
    assert _meta_canon(fb["data"], stack["TEAM_A_ID"]) == _meta_canon(db["data"]), "different data\n" + ctx


def test_federate_equivalent(stack, client):
    """federate output: the same sample lines (comments and order aside)."""
    f, d = client
    params = [("match[]", '{__name__=~".+"}')]
    fr = f.get(stack["ENVOY_URL"] + "/federate", params=params, timeout=20)
    dr = d.get(stack["PROM_A_URL"] + "/federate", params=params, timeout=20)
    assert fr.status_code == dr.status_code == 200, (fr.status_code, fr.text[:500], dr.text[:500])

    def lines(t):
        # federate stamps samples with their own timestamps; staleness relative to "now" is the same
        # for both servers (same data), so compare the sample lines as a set
        return sorted(l for l in t.splitlines() if l and not l.startswith("#"))
    rule_lines = [l for l in lines(fr.text) if l.split("{")[0] in RULE_OUTPUT_NAMES]
    assert all('project="%s"' % stack["TEAM_A_ID"] in l for l in rule_lines), rule_lines
    assert [l for l in lines(fr.text) if l not in rule_lines] == lines(dr.text)
