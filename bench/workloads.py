"""The benchmark's workloads: the Grafana dashboard mix, all-unique queries, the series APIs and the
diagnostics, as wrk Lua scripts."""
import json
import re
import struct
import urllib.parse

# 20 Grafana-style panel queries over the seeded series (scripts/stack/seed_rich.py): time series
# panels send query_range (start/end/step follow the refresh), stat and table panels send instant
# queries (time follows the refresh); the PromQL text itself repeats on every refresh.
DASHBOARD = [
    ("range", 'sum by (job) (rate(http_requests_total[5m]))'),
    ("range", 'sum by (code) (rate(http_requests_total{job="api"}[5m]))'),
    ("range", 'sum(rate(http_requests_total{code=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))'),
    ("range", 'histogram_quantile(0.99, sum by (le) (rate(request_duration_seconds_bucket{job="api"}[5m])))'),
    ("range", 'histogram_quantile(0.5, sum by (le, job) (rate(request_duration_seconds_bucket[5m])))'),
    ("range", 'rate(request_duration_seconds_sum[5m]) / rate(request_duration_seconds_count[5m])'),
    ("range", 'avg by (instance) (memory_bytes)'),
    ("range", 'max_over_time(temperature_celsius[10m])'),
    ("instant", 'memory_bytes * on (instance) group_left (flavor) instance_info'),
    ("instant", 'topk(5, sum by (instance) (rate(http_requests_total[5m])))'),
    ("range", 'increase(http_requests_total{job="web",code="200"}[1h])'),
    ("instant", 'sum(cloud_instances)'),
    ("range", 'sum by (instance) (rate(cloud_cpu_seconds_total[5m]))'),
    ("instant", 'count by (flavor) (instance_info)'),
    ("range", 'avg_over_time(temperature_celsius{instance="node-1"}[15m])'),
    ("range", 'deriv(memory_bytes[10m])'),
    ("range", 'sum without (instance) (rate(http_requests_total{job=~"api|web"}[1m]))'),
    ("instant", 'quantile_over_time(0.95, temperature_celsius[30m])'),
    ("instant", 'absent(batch_jobs_failed_total)'),
    ("instant", 'sum by (job) (increase(request_duration_seconds_count[1h]))'),
]

# all-unique: a counter inside a label matcher value (and on every third request an offset of 1-9
# minutes), so no two requests carry the same PromQL text: every request pays the full parse + rewrite
# + print. Each template: (text before the counter, text after it up to the range, the rest).
UNIQUE = [
    ('sum by (job) (rate(http_requests_total{job="api",instance!="u-', '"}[5m]', '))'),
    ('histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket{job!="j', '"}[5m]', ')))'),
    ('avg_over_time(memory_bytes{instance=~"node-1|n', '"}[10m]', ')'),
    ('sum(rate(http_requests_total{code="500",instance!="x', '"}[5m]', ')) / sum(rate(http_requests_total[5m]))'),
]

SERIES = [
    ("/api/v1/series", [("match[]", 'http_requests_total{job="api"}')], True),
    ("/api/v1/series", [("match[]", "memory_bytes"), ("match[]", "instance_info")], True),
    ("/api/v1/labels", [], True),
    ("/api/v1/labels", [("match[]", "memory_bytes")], True),
    ("/api/v1/label/__name__/values", [], False),
    ("/api/v1/label/job/values", [("match[]", "http_requests_total")], False),
    ("/api/v1/label/instance/values", [], False),
]

WORKLOADS = {
    "dashboard": "dashboard mix: 20 Grafana panel queries (13 query_range, 7 instant), time/start/end moving",
    "dashboard-instant": "dashboard mix, instant queries only: the same 20 expressions as /api/v1/query",
    "unique": "all-unique queries: a counter inside a label matcher, every PromQL text new",
    "series": "series and labels APIs: /series, /labels, /label/<name>/values, with and without match[]",
    "trivial": "diagnostic: one fixed request, /api/v1/query?query=up (token check + cached rewrite only)",
    "open": "diagnostic: GET /-/healthy without a token (forwarded as it is: no token, no rewrite)",
    "write": "remote write 1.0: POST /api/v1/write of 2,000-sample batches (snappy protobuf)",
}

LUA_DONE = r'''
done = function(summary, latency, requests)
  io.write(string.format('BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
'''


def q(s):
    return urllib.parse.quote(s, safe="")


def lua_str(s):
    return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"')


def lua_header(token):
    return 'wrk.headers["X-Auth-Token"] = %s\nlocal n = 0\n' % lua_str(token)


SEEDED_NAMES = ("http_requests_total", "request_duration_seconds_bucket", "request_duration_seconds_sum",
                "request_duration_seconds_count", "memory_bytes", "temperature_celsius", "instance_info",
                "cloud_instances", "cloud_cpu_seconds_total", "batch_jobs_failed_total")
# what the synthetic upstream answers to the metric-names request (Aetos makes one before each query)
LABELS_BODY = json.dumps({"status": "success", "data": sorted(SEEDED_NAMES + ("up",))})
SELECTOR = re.compile(r"\b(%s)\b(\{[^}]*\})?" % "|".join(SEEDED_NAMES))


def with_tenant(expr, project_id):
    """The expression as the filter sends it upstream: project="<id>" on every selector (for the
    configurations without enforcement on the real Prometheus, so that Prometheus does the same work)."""
    def sub(m):
        inner = (m.group(2) or "{}")[1:-1]
        return '%s{%s%sproject="%s"}' % (m.group(1), inner, "," if inner else "", project_id)
    return SELECTOR.sub(sub, expr)


def lua_dashboard(token, t_end, instant_only, tenant=None):
    paths, ranges = [], []
    for kind, expr in DASHBOARD:
        if tenant:
            expr = with_tenant(expr, tenant)
        rng = kind == "range" and not instant_only
        paths.append(lua_str(("/api/v1/query_range?query=" if rng else "/api/v1/query?query=") + q(expr)))
        ranges.append("true" if rng else "false")
    return lua_header(token) + '''
local paths = {%s}
local ranges = {%s}
local T = %d
request = function()
  n = n + 1
  local i = n %% #paths + 1
  -- Grafana refreshes: the end moves by one 15 s step every 20 requests (a full dashboard refresh)
  local t = T - 15 * (math.floor(n / #paths) %% 120)
  local p
  if ranges[i] then p = paths[i] .. "&start=" .. (t - 3600) .. "&end=" .. t .. "&step=15"
  else p = paths[i] .. "&time=" .. t end
  return wrk.format(nil, p)
end
''' % (", ".join(paths), ", ".join(ranges), t_end) + LUA_DONE


def lua_unique(token, t_end):
    parts = [[lua_str(q(x)) for x in tpl] for tpl in UNIQUE]
    return lua_header(token) + '''
local pre = {%s}
local mid = {%s}
local suf = {%s}
local T = %d
request = function()
  n = n + 1
  local i = n %% #pre + 1
  local off = ""
  if n %% 3 == 0 then off = "%%20offset%%20" .. (n %% 9 + 1) .. "m" end
  return wrk.format(nil, "/api/v1/query?query=" .. pre[i] .. n .. mid[i] .. off .. suf[i] .. "&time=" .. T)
end
''' % (", ".join(p[0] for p in parts), ", ".join(p[1] for p in parts), ", ".join(p[2] for p in parts),
       t_end) + LUA_DONE


def lua_series(token, t_end):
    paths, timed = [], []
    for path, params, with_time in SERIES:
        qs = "&".join("%s=%s" % (q(k), q(v)) for k, v in params)
        paths.append(lua_str(path + "?" + qs if qs else path + "?"))
        timed.append("true" if with_time else "false")
    return lua_header(token) + '''
local paths = {%s}
local timed = {%s}
local T = %d
request = function()
  n = n + 1
  local i = n %% #paths + 1
  local t = T - 15 * (math.floor(n / #paths) %% 120)
  local p = paths[i]
  if timed[i] then p = p .. "&start=" .. (t - 3600) .. "&end=" .. t end
  return wrk.format(nil, p)
end
''' % (", ".join(paths), ", ".join(timed), t_end) + LUA_DONE


def lua_trivial(token, t_end):
    return lua_header(token) + '''
local p = "/api/v1/query?query=up&time=%d"
request = function() return wrk.format(nil, p) end
''' % t_end + LUA_DONE


def lua_open(t_end):
    return '''
local p = "/-/healthy"
request = function() return wrk.format(nil, p) end
''' + LUA_DONE


def lua_random_tokens(prefix):
    """Every request a new, never-seen token (memory test)."""
    return '''
local n = 0
local p = "/api/v1/query?query=up&time=1700000000"
local pre = %s
request = function()
  n = n + 1
  return wrk.format(nil, p, {["X-Auth-Token"] = pre .. n})
end
''' % lua_str(prefix) + LUA_DONE


# ---------------------------------------------------------------------------------------- remote write
WRITE_HEADERS = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
                 "X-Prometheus-Remote-Write-Version": "0.1.0", "User-Agent": "Prometheus/2.42.0"}


def lua_write(token, files, path="/api/v1/write"):
    """Remote write 1.0 as Prometheus sends it: POST of one batch file after the other (the bodies
    of bench/stages/examples/write_batches.rs, snappy-compressed protobuf), each request formatted
    once when wrk starts."""
    heads = "".join("wrk.headers[%s] = %s\n" % (lua_str(k), lua_str(v)) for k, v in WRITE_HEADERS.items())
    return lua_header(token) + heads + '''
local files = {%s}
local reqs = {}
init = function(args)
  for i, f in ipairs(files) do
    local h = assert(io.open(f, "rb"))
    local body = h:read("*a")
    h:close()
    reqs[i] = wrk.format("POST", %s, nil, body)
  end
end
request = function()
  n = n + 1
  return reqs[n %% #reqs + 1]
end
''' % (", ".join(lua_str(f) for f in files), lua_str(path)) + LUA_DONE


def _uvarint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _field(number, payload):
    return _uvarint(number << 3 | 2) + _uvarint(len(payload)) + payload


def write_body(series):
    """A small prometheus.WriteRequest, [(labels dict, value, timestamp ms)], in a snappy block of
    literals only (valid snappy, not compressed: for the checks, not for the workload)."""
    msg = b""
    for labels, value, ts in series:
        ts_msg = b"".join(_field(1, _field(1, k.encode()) + _field(2, v.encode())) for k, v in sorted(labels.items()))
        ts_msg += _field(2, b"\x09" + struct.pack("<d", value) + b"\x10" + _uvarint(ts))
        msg += _field(1, ts_msg)
    out = _uvarint(len(msg))
    for i in range(0, len(msg), 1 << 16):
        chunk = msg[i:i + (1 << 16)]
        out += bytes([62 << 2]) + struct.pack("<I", len(chunk) - 1)[:3] + chunk  # tag 62: 3-byte length
    return out
