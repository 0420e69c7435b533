#!/usr/bin/env python3
"""seed_rich.py TEAM_A_ID TEAM_B_ID SEED_START: the richer series of scripts/stack.sh (see seed_rich there), as
remote-write input lines on stdout."""
import sys
a, b, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
projects = [  # (project id, factor, instances, flavors)
    (a, 1, ["node-1", "node-2"], ["m1.small", "m1.large"]),
    (b, 3, ["node-1", "node-3"], ["m1.xlarge", "m1.tiny"]),
]
BUCKETS = ["0.05", "0.1", "0.25", "0.5", "1", "+Inf"]
out = []
def emit(name, labels, value, ts):
    lbl = ",".join('%s="%s"' % kv for kv in labels)
    out.append("%s{%s} %s %d" % (name, lbl, repr(float(value)), ts))
for pid, f, insts, flavors in projects:
    for i in range(61):
        ts = (start + i * 60) * 1000
        for j, job in enumerate(["api", "web"]):
            for k, inst in enumerate(insts):
                for code, mult in (("200", 10), ("500", 1)):
                    rate = f * (j + 1) * mult + k + 2            # >= 3 per minute
                    n = i
                    if (job, k, code) == ("web", 1, "200") and i >= 40:
                        n = i - 40                                # counter reset at minute 40
                    v = n * rate + (n * n % 7) * 0.25             # wiggle < rate: still monotonic
                    emit("http_requests_total", [("project", pid), ("job", job), ("instance", inst), ("code", code)], v, ts)
            # histogram: cumulative bucket counts, distribution differs per project and job
            shares = [1, 3, 6, 8, 9, 10] if (f + j) % 2 else [2, 4, 5, 7, 9, 10]
            per_min = 6 * f + 4 * j
            for le, sh in zip(BUCKETS, shares):
                emit("request_duration_seconds_bucket", [("project", pid), ("job", job), ("le", le)], i * per_min * sh, ts)
            emit("request_duration_seconds_count", [("project", pid), ("job", job)], i * per_min * 10, ts)
            emit("request_duration_seconds_sum", [("project", pid), ("job", job)], i * per_min * (1.5 + f * 0.25 + j), ts)
        for k, (inst, flavor) in enumerate(zip(insts, flavors)):
            emit("memory_bytes", [("project", pid), ("instance", inst)], f * 1e9 + ((i * 37 + k * 11) % 17) * 1e6, ts)
            emit("temperature_celsius", [("project", pid), ("instance", inst)], ((i * 13 + k * 5 + f) % 21 - 10) * 0.75, ts)
            emit("instance_info", [("project", pid), ("instance", inst), ("flavor", flavor)], 1, ts)
        # Ceilometer-style series, as its Prometheus exporter labels them (project, user, resource, ...)
        for k, (inst, flavor) in enumerate(zip(insts, flavors)):
            common = [("counter", "memory.usage"), ("memory", "r-%s-%d" % (pid[:8], k)), ("project", pid),
                      ("publisher", "ceilometer"), ("resource", "r-%s-%d" % (pid[:8], k)), ("resource_name", inst),
                      ("server_group", "none"), ("type", "gauge"), ("unit", "MB"), ("user", "u-%s" % pid[:8]),
                      ("vm_instance", "compute-%d" % (k + 1))]
            emit("ceilometer_memory_usage", common, 256 * f * (k + 1) + (i * 7 + k) % 32, ts)
            cpu = [("counter", "cpu"), ("cpu", "r-%s-%d" % (pid[:8], k))] + common[2:7] + [
                ("type", "cumulative"), ("unit", "ns"), ("user", "u-%s" % pid[:8]), ("vm_instance", "compute-%d" % (k + 1))]
            emit("ceilometer_cpu", cpu, i * 60e9 * (0.1 * f + 0.05 * k), ts)
        # Names and values that PromQL strings must spell exactly (issue 18): a UTF-8 label
        # value, and metric and label names that newer PromQL reserves in some positions.
        for k, city in enumerate(["München", "Zürich", "Paris"]):
            emit("city_temp", [("project", pid), ("city", city)], (i + k * 7 + f) % 13 - 2.5, ts)
        emit("smoothed", [("project", pid), ("anchored", "a%d" % f)], i * f, ts)
        emit("anchored", [("project", pid), ("job", "x")], f, ts)
        if pid == b:
            emit("batch_jobs_failed_total", [("project", pid), ("job", "batch"), ("instance", "node-3")], i // 10, ts)
print("\n".join(out))
