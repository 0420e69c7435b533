#!/usr/bin/env python3
"""exporter.py PORT PROJECTS.json: the demo's live data, in the form Ceilometer's Prometheus exporter
writes it (`ceilometer_<meter>` gauges labelled with `project`, `user`, `resource`, ...), for the demo's
projects and their servers. Each demo project's Prometheus agent scrapes /metrics/<project id> and
remote-writes it through the filter, so that queries about "now", `openstack metric show` and federation
keep answering for as long as the demo runs.

PROJECTS.json: [{"project": id, "user": id, "servers": [[resource id, name], ...]}, ...]
Values follow the clock: CPU time grows, memory and disk vary around a level per server."""
import http.server
import json
import math
import sys
import time

PORT, PROJECTS = int(sys.argv[1]), json.load(open(sys.argv[2]))
STARTED = time.time()


def metrics(only=None):
    """Every project's series, or only those of the project id `only`."""
    now = time.time()
    out = []
    meters = [  # (name, type, unit, value(t, k))
        ("cpu", "cumulative", "ns", lambda t, k: (t - STARTED + 3600) * 1e9 * (0.2 + 0.1 * k)),
        ("memory_usage", "gauge", "MB", lambda t, k: 512 * (k + 1) + 64 * math.sin(t / 60 + k)),
        ("disk_device_read_bytes", "cumulative", "B", lambda t, k: (t - STARTED + 3600) * 4096 * (k + 1)),
        ("network_incoming_bytes", "cumulative", "B", lambda t, k: (t - STARTED + 3600) * 2048 * (k + 2)),
    ]
    for name, typ, unit, value in meters:
        out.append("# HELP ceilometer_%s %s" % (name, name.replace("_", " ")))
        out.append("# TYPE ceilometer_%s gauge" % name)
        for p in PROJECTS:
            if only is not None and p["project"] != only:
                continue
            for k, (resource, server) in enumerate(p["servers"]):
                # As Ceilometer's exporter: a label named after the meter's first part, then the rest.
                labels = {name.split("_")[0]: resource, "counter": name.replace("_", "."), "project": p["project"],
                          "publisher": "ceilometer", "resource": resource, "resource_name": server,
                          "server_group": "none", "type": typ, "unit": unit, "user": p["user"],
                          "vm_instance": "compute-1"}
                lbl = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
                out.append("ceilometer_%s{%s} %r" % (name, lbl, float(value(now, k))))
    return ("\n".join(out) + "\n").encode()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        # /metrics: every project's series; /metrics/<project id>: one project's, which that
        # project's Prometheus agent scrapes and remote-writes through the filter.
        path = self.path.split("?")[0]
        if path == "/metrics":
            body = metrics()
        elif path.startswith("/metrics/") and any(p["project"] == path[len("/metrics/"):] for p in PROJECTS):
            body = metrics(path[len("/metrics/"):])
        else:
            body = b"see /metrics or /metrics/<project id>\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
