#!/usr/bin/env python3
"""The benchmark of keystone-prom-wasm (run by bench/run.sh, i.e. `make bench`).

Needs a stack already up (scripts/stack.sh up DIR: Keystone, Prometheus with the demo data), the filter
and the no-op filter built, and Aetos installed in its own venv. Starts its own Envoys (all with
--concurrency 1) and Aetos, measures with wrk, writes docs/benchmark.md, docs/benchmark.svg and
docs/benchmark.json, prints the Markdown, and stops everything it started. Python stdlib only.

CPU placement (2 cores): every Envoy under test runs on CPU 0; wrk, the synthetic upstream Envoy and
this script run on CPU 1. Keystone, Prometheus and Aetos may use both CPUs.
"""
import argparse
import concurrent.futures
import datetime
import http.client
import json
import os
import random
import resource
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The harness the e2e tests share (ports, processes, Envoy configurations); the workloads and the
# measurements are this folder's. Their names are re-exported here for bench/ab.py.
from harness.envoy import direct_route, hcm, listener, proxy_config as harness_proxy_config, stat as envoy_stat  # noqa: E402,F401
from harness.envoy import wasm_filter_of  # noqa: E402
from harness.procs import Procs, free_port, http_get, wait_ready  # noqa: E402,F401
from measure import (CLK_TCK, canonical, cpu_seconds, machine_busy, pctl, pgid_of, pids_in_groups,  # noqa: E402,F401
                     rss_kib, slot_prediction, task_cpu_total, wrk_result)
from workloads import (DASHBOARD, LABELS_BODY, WRITE_HEADERS, lua_dashboard, lua_open, lua_random_tokens,  # noqa: E402
                       lua_series, lua_trivial, lua_unique, lua_write, q, with_tenant, write_body)
SUT_CPU = 0      # the system under test (every Envoy variant)
LOAD_CPU = 1     # wrk, the synthetic upstream, this script


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ processes
# Aetos runs with the environment a service manager gives it, not this script's: python-requests
# scans every environment variable for proxy settings on each of Aetos' calls to Prometheus, and
# with a shell's ~100 variables that alone took 7% of its time (bench/README.md, "Aetos").
SERVICE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C.UTF-8"}


# -------------------------------------------------------------------------------------- Envoy configs
PROM_BODY = ('{"status":"success","data":{"resultType":"vector","result":[{"metric":'
             '{"__name__":"up","job":"api","instance":"node-1","project":"p"},"value":[1700000000,"1"]}]}}')


def fake_token_body(project_id):
    """What the fake Keystone answers to every validation (memory test only)."""
    return json.dumps({"token": {
        "expires_at": "2099-01-01T00:00:00.000000Z", "methods": ["password"],
        "user": {"id": "0123456789abcdef0123456789abcdef", "name": "bench", "domain": {"id": "default"}},
        "project": {"id": project_id, "name": "team-a", "domain": {"id": "default", "name": "Default"}},
        "roles": [{"id": "r1", "name": "reader"}, {"id": "r2", "name": "member"}]}})


# The filter's `write` section in `make bench` (envoy/envoy.yaml enables it the same way): the
# defaults, POST /api/v1/write, roles member or admin, `project` stamped, other values overwritten.
WRITE_CONFIG = {"enabled": True}
WRITE_PATH = "/api/v1/write"


def proxy_config(kind, admin_port, port, upstream_port, keystone_port, wasm, noop_wasm, write=False):
    """harness.envoy.proxy_config, with the filter's `write` section when writes are benchmarked (a
    filter built before the write path refuses the key: BENCH_WRITE=0)."""
    cfg = harness_proxy_config(kind, admin_port, port, upstream_port, keystone_port, wasm, noop_wasm)
    if kind == "filter" and write:
        value = wasm_filter_of(cfg)["configuration"]
        filter_cfg = json.loads(value["value"])
        filter_cfg["write"] = dict(filter_cfg.get("write") or {}, **WRITE_CONFIG)
        value["value"] = json.dumps(filter_cfg)
    return cfg


def buffer_filter():
    """Envoy's buffer filter, off unless a route turns it on (the synthetic upstream's write route:
    the whole body is read before the 204, so the connection stays open as with a real receiver)."""
    return {"name": "envoy.filters.http.buffer", "disabled": True, "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
        "max_request_bytes": 16 << 20}}


def write_route():
    return {"match": {"path": WRITE_PATH}, "direct_response": {"status": 204},
            "typed_per_filter_config": {"envoy.filters.http.buffer": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute",
                "buffer": {"max_request_bytes": 16 << 20}}}}


class Envoy:
    def __init__(self, bench, name, config, cpus):
        self.name = name
        self.port = config["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"]
        self.admin_port = config["admin"]["address"]["socket_address"]["port_value"]
        self.url = "http://127.0.0.1:%d" % self.port
        self.admin_url = "http://127.0.0.1:%d" % self.admin_port
        path = os.path.join(bench.work, "envoy-%s.json" % name)
        with open(path, "w") as f:
            json.dump(config, f, indent=1)
        self.proc = bench.procs.start(
            "envoy-" + name, [bench.envoy_bin, "-c", path, "--concurrency", "1", "--log-level", "warning",
                              "--disable-hot-restart"],
            os.path.join(bench.work, "envoy-%s.log" % name), cpus=cpus)
        self.pid = self.proc.pid
        self.ready_s = wait_ready(self.admin_url + "/ready", self.proc)
        log("  envoy %s ready in %.0f ms (pid %d, port %d)" % (name, self.ready_s * 1e3, self.pid, self.port))

    def stat(self, name):
        return envoy_stat(self.admin_url, name)


class Bench:
    def __init__(self, a):
        self.a = a
        self.work = a.work
        self.procs = Procs(os.path.join(a.work, "pids"))
        with open(os.path.join(a.stack, "stack.json")) as f:
            self.env = json.load(f)  # what stack.sh up wrote (the same as stack.env)
        self.envoy_bin = os.path.join(ROOT, ".venv", "bin", "envoy")
        self.ks_port = int(self.env["KEYSTONE_PORT"])
        self.prom_port = int(self.env["PROM_PORT"])
        self.t_end = int(self.env["SEED_END"])
        self.token = self.env["ALICE_TOKEN"]
        self.stack_pids = [int(self.env[k]) for k in ("KEYSTONE_PID", "PROM_PID", "PROM_A_PID", "PROM_X_PID", "ENVOY_PID")
                           if self.env.get(k, "").isdigit()]
        self.results = {"runs": [], "meta": {}, "newtokens": {}, "memory": {}, "startup": {}, "wasm": {},
                        "write": {}}
        self.targets = {}      # (upstream, config name) -> dict(url, pids)

    # ------------------------------------------------------------------ start everything
    def start(self):
        a = self.a
        self.upstream_port, self.fakeks_port = free_port(), free_port()
        up_cfg = {
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}}},
            "static_resources": {"listeners": [
                # Aetos asks for the metric names before every query (to find the selectors)
                # remote write: 204 once the body is read, as Prometheus' receiver answers
                listener("prometheus", self.upstream_port, hcm("prometheus", ([write_route()] if a.write else []) + [
                    direct_route(LABELS_BODY, "/api/v1/label/__name__/values"), direct_route(PROM_BODY)],
                    [buffer_filter()] if a.write else [])),
                listener("keystone", self.fakeks_port,
                         hcm("keystone", direct_route(fake_token_body(self.env["TEAM_A_ID"])))),
            ], "clusters": []}}
        log("starting the synthetic upstream (Envoy direct_response, CPU %d)" % LOAD_CPU)
        self.upstream = Envoy(self, "upstream", up_cfg, {LOAD_CPU})

        log("starting the Envoys under test (--concurrency 1, CPU %d)" % SUT_CPU)
        self.envoys = {}
        self.targets = {
            ("syn", "direct"): {"url": "http://127.0.0.1:%d" % self.upstream_port, "pids": [self.upstream.pid]},
            ("prom", "direct"): {"url": "http://127.0.0.1:%d" % self.prom_port,
                                 "pids": [int(self.env["PROM_PID"])]},
        }
        self.start_syn_envoys()
        for kind in ("plain", "noop", "filter"):
            self.start_proxy("prom", kind, self.prom_port, {0, 1} if a.prom_placement == "free" else {SUT_CPU})
        # Aetos only where the selected groups measure it (starting and trying it takes a minute)
        for up, port in (("prom", self.prom_port), ("syn", self.upstream_port)):
            if any(u == up and "aetos" in cfgs for u, _, cfgs in self.matrix()):
                self.start_aetos(up, port)

    def start_proxy(self, up, kind, upstream_port, cpus):
        a = self.a
        cfg = proxy_config(kind, free_port(), free_port(), upstream_port, self.ks_port, a.wasm, a.noop_wasm, a.write)
        env = self.envoys[(up, kind)] = Envoy(self, "%s-%s" % (kind, up), cfg, set(cpus))
        self.targets[(up, kind)] = {"url": env.url, "pids": [env.pid]}

    def start_syn_envoys(self):
        """The Envoys in front of the synthetic upstream, started again for every round: two starts
        of the same Envoy and module differ by a few per cent in throughput (code and memory land
        elsewhere), so the median over the rounds covers that too instead of one start's luck."""
        for kind in ("plain", "noop", "filter"):
            old = self.envoys.pop(("syn", kind), None)
            if old is not None:
                self.procs.stop(old.proc)
            self.start_proxy("syn", kind, self.upstream_port, {SUT_CPU})

    def start_aetos(self, up, prom_port):
        """Aetos under gunicorn in front of upstream `up`; with several candidate worker settings, each
        gets a short trial on the instant dashboard mix there and the best one (req/s) is kept."""
        a = self.a
        d = os.path.join(self.work, "aetos-" + up)
        os.makedirs(d)
        site = subprocess.check_output([os.path.join(a.aetos_venv, "bin", "python"), "-c",
                                        "import aetos, os; print(os.path.dirname(aetos.__file__))"], text=True).strip()
        paste = open(os.path.join(site, "api-paste.ini")).read()
        conf = os.path.join(d, "aetos.conf")
        # keystonemiddleware ignores --config-file when loaded by paste: point it at the file itself
        marker = "paste.filter_factory = keystonemiddleware.auth_token:filter_factory\noslo_config_project = aetos\n"
        if marker not in paste:
            raise RuntimeError("unexpected aetos api-paste.ini, cannot add oslo_config_file")
        paste = paste.replace(marker, marker + "oslo_config_file = %s\n" % conf)
        with open(os.path.join(d, "api-paste.ini"), "w") as f:
            f.write(paste)
        with open(conf, "w") as f:
            f.write("""[DEFAULT]
auth_mode = keystone
paste_config = {d}/api-paste.ini
debug = false
log_file = {d}/aetos.log
[prometheus]
host = 127.0.0.1
port = {prom}
project_label_name = project
[keystone_authtoken]
# no memcached_servers: keystonemiddleware's in-process token cache (per worker)
www_authenticate_uri = http://127.0.0.1:{ks}/v3
auth_url = http://127.0.0.1:{ks}/v3
auth_type = password
username = svc
password = svc-secret
project_name = service
user_domain_name = Default
project_domain_name = Default
""".format(d=d, prom=prom_port, ks=self.ks_port))
        running = []
        for spec in a.aetos_candidates.split(","):
            wc, w, th = spec.split(":")
            port = free_port()
            gconf = os.path.join(d, "gunicorn-%s-%s-%s.conf.py" % (wc, w, th))
            with open(gconf, "w") as f:
                f.write("""wsgi_app = 'aetos.app:build_wsgi_app(argv=["--config-file", "{conf}"])'
bind = "127.0.0.1:{port}"
workers = {w}
worker_class = "{wc}"
threads = {t}
timeout = 60
graceful_timeout = 5
accesslog = None
errorlog = "{d}/gunicorn.log"
control_socket_disable = True
""".format(conf=conf, port=port, w=int(w), wc=wc, t=int(th), d=d))
            name = "%s, workers=%s, threads=%s" % (wc, w, th)
            log("starting Aetos under gunicorn (%s; both CPUs; %s upstream)" % (name, up))
            p = self.procs.start("aetos", [os.path.join(a.aetos_venv, "bin", "gunicorn"), "-c", gconf],
                                 os.path.join(d, "gunicorn.out"), cpus={0, 1}, cwd=d, env=SERVICE_ENV)
            running.append({"name": name, "proc": p, "url": "http://127.0.0.1:%d" % port})
        for r in running:
            wait_ready(r["url"] + "/healthcheck", r["proc"], timeout=60, interval=0.1)
        trial = []
        if len(running) > 1:
            script = self.script_for("dashboard-instant", up, "aetos")
            for r in running:
                self.wrk(r["url"], script, 2, "aetos-warmup", cpus=self.wrk_cpus(up))
                r["rps"] = self.wrk(r["url"], script, a.aetos_trial, "aetos-trial", cpus=self.wrk_cpus(up))["rps"]
                trial.append({"gunicorn": r["name"], "rps": r["rps"]})
                log("  Aetos trial (%s upstream), %s: %.0f req/s" % (up, r["name"], r["rps"]))
            best = max(running, key=lambda r: r["rps"])
        else:
            best = running[0]
        for r in running:
            if r is not best:
                self.procs.stop(r["proc"])
        meta = self.results["meta"]
        key = "" if up == "prom" else "_" + up
        meta["aetos_gunicorn" + key] = best["name"]
        meta["aetos_trial" + key] = trial
        meta["aetos_trial_s"] = a.aetos_trial
        # gunicorn's workers are its children, in its process group
        self.targets[(up, "aetos")] = {"url": best["url"], "pids": None, "group": best["proc"].pid}
        log("Aetos (%s upstream): keeping gunicorn %s" % (up, best["name"]))

    # ------------------------------------------------------------------ checks
    def sanity(self):
        """Every target answers the workloads' requests with 200 before anything is measured, and the
        tenant enforcement is really on where it should be (filter and Aetos see team-a only)."""
        if os.environ.get("BENCH_UNCHECKED"):
            # development only: measuring a deliberately incomplete filter build (bisecting costs)
            log("sanity checks skipped (BENCH_UNCHECKED): these numbers are not a benchmark")
            return
        h = {"X-Auth-Token": self.token}
        expr = q("count(cloud_instances)")
        for (up, name), t in self.targets.items():
            code, body = http_get("%s/api/v1/query?query=%s&time=%d" % (t["url"], expr, self.t_end), h)
            if code != 200:
                raise RuntimeError("sanity: %s/%s answered %d: %s" % (up, name, code, body[:300]))
            if up == "prom":
                n = json.loads(body)["data"]["result"][0]["value"][1]
                want = "2" if name in ("direct", "plain", "noop") else "1"
                if n != want:
                    raise RuntimeError("sanity: %s/%s count(cloud_instances) = %s, expected %s" % (up, name, n, want))
        # the real-Prometheus workload: without enforcement, the queries carry the tenant matcher already;
        # they must answer exactly what the filter answers (and Aetos, for information)
        differ = {name: 0 for name in ("filter", "aetos") if ("prom", name) in self.targets}
        for _, expr in DASHBOARD:
            qs = "/api/v1/query?time=%d&query=" % self.t_end
            code, ref = http_get(self.targets[("prom", "direct")]["url"] + qs + q(with_tenant(expr, self.env["TEAM_A_ID"])))
            if code != 200:
                raise RuntimeError("sanity: Prometheus answered %d to %s: %s" % (code, expr, ref[:300]))
            ref = canonical(json.loads(ref)["data"])
            for name in differ:
                code, got = http_get(self.targets[("prom", name)]["url"] + qs + q(expr), h)
                if code != 200 or canonical(json.loads(got)["data"]) != ref:
                    differ[name] += 1
                    log("  %s answers %s differently (HTTP %d): %s" % (name, expr, code, got[:200]))
        if differ.get("filter"):
            raise RuntimeError("sanity: the filter's answers differ from the tenant-matched queries'")
        self.results["meta"]["aetos_answers_differ"] = differ.get("aetos", 0)
        code, _ = http_get(self.targets[("syn", "filter")]["url"] + "/api/v1/query?query=up", {"X-Auth-Token": "nope"})
        if code != 401:
            raise RuntimeError("sanity: the filter let an invalid token through (%d)" % code)
        log("sanity checks passed (filter and Aetos enforce team-a; invalid token -> 401)")

    # ------------------------------------------------------------------ wrk
    def wrk(self, url, script_text, duration, name, conns=None, cpus=None):
        conns = conns or self.a.connections
        path = os.path.join(self.work, "%s.lua" % name)
        with open(path, "w") as f:
            f.write(script_text)
        cpus = cpus or {LOAD_CPU}
        argv = ["taskset", "-c", ",".join(map(str, sorted(cpus))), "wrk", "-t1", "-c%d" % conns, "-d%ds" % duration,
                "--timeout", "30s", "--latency", "-s", path, url]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 120)
        r = wrk_result(out.stdout)
        if r is not None:
            return r
        raise RuntimeError("wrk gave no result: %s %s" % (out.stdout[-1000:], out.stderr[-1000:]))

    def script_for(self, workload, up=None, cfg=None):
        if workload == "dashboard":
            return lua_dashboard(self.token, self.t_end, False)
        if workload == "dashboard-instant":
            # without enforcement in front of the real Prometheus: the queries as the filter rewrites them
            tenant = self.env["TEAM_A_ID"] if up == "prom" and cfg in ("direct", "plain", "noop") else None
            return lua_dashboard(self.token, self.t_end, True, tenant)
        if workload == "unique":
            return lua_unique(self.token, self.t_end)
        if workload == "series":
            return lua_series(self.token, self.t_end)
        if workload == "trivial":
            return lua_trivial(self.token, self.t_end)
        if workload == "open":
            return lua_open(self.t_end)
        if workload == "write":
            return lua_write(self.token, self.write_files)
        raise KeyError(workload)

    def pids_of(self, up, cfg):
        t = self.targets[(up, cfg)]
        return t["pids"] if t["pids"] is not None else pids_in_groups({t["group"]})

    def own_cpu(self):
        """CPU seconds used so far by everything of the benchmark: its processes (and their groups), the
        stack's (Keystone, the Prometheus servers, the stack's Envoy), finished children (wrk), itself."""
        if not hasattr(self, "own_pgids"):
            self.own_pgids = set()
        for pid in [p.pid for p in self.procs.procs] + self.stack_pids:
            g = pgid_of(pid)
            if g:
                self.own_pgids.add(g)
        ru_c, ru_s = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
        return (cpu_seconds(pids_in_groups(self.own_pgids)) + ru_c.ru_utime + ru_c.ru_stime
                + ru_s.ru_utime + ru_s.ru_stime)

    def wrk_cpus(self, up):
        return {0, 1} if up == "prom" and self.a.prom_placement == "free" else {LOAD_CPU}

    def measure(self, up, workload, cfg, rnd, duration):
        t = self.targets[(up, cfg)]
        pids = self.pids_of(up, cfg)
        c0, all0, own0 = cpu_seconds(pids), task_cpu_total(), self.own_cpu()
        r = self.wrk(t["url"], self.script_for(workload, up, cfg), duration, "%s-%s-%s" % (up, workload, cfg),
                     cpus=self.wrk_cpus(up))
        r["cpu_s"] = cpu_seconds(pids) - c0
        r["cpu_us_per_req"] = r["cpu_s"] * 1e6 / max(1, r["requests"])
        # what other processes of the machine used meanwhile, as a share of both CPUs
        r["background"] = max(0.0, (task_cpu_total() - all0) - (self.own_cpu() - own0)) / (2 * r["duration_us"] / 1e6)
        r.update(upstream=up, workload=workload, config=cfg, round=rnd)
        if workload == "write":
            # a request is a batch: samples per second of wrk's run, per CPU-second of the Envoy
            r["samples"] = r["requests"] * self.write_samples
            r["samples_per_s"] = r["samples"] / (r["duration_us"] / 1e6)
            r["samples_per_cpu_s"] = r["samples"] / r["cpu_s"] if r["cpu_s"] else 0.0
            r["cpu_share"] = r["cpu_s"] / (r["duration_us"] / 1e6)
        errs = r["status"] + r["connect"] + r["read"] + r["write"] + r["timeout"]
        r["errors"] = errs
        log("  round %d %-5s %-17s %-7s %9.0f req/s  p50 %7.2f ms  p99 %7.2f ms  cpu %6.1f us/req  other %3.0f%%%s"
            % (rnd, up, workload, cfg, r["rps"], r["p50"] / 1e3, r["p99"] / 1e3, r["cpu_us_per_req"],
               100 * r["background"], "  ERRORS %d" % errs if errs else ""))
        return r

    def matrix(self):
        groups = self.full_matrix()
        if self.a.only:
            sel = self.a.only.split(",")
            groups = [g for g in groups if g[0] in sel or "%s:%s" % (g[0], g[1]) in sel]
        return groups

    def full_matrix(self):
        return [
            ("syn", "dashboard", ["direct", "plain", "noop", "filter"]),
            ("syn", "unique", ["direct", "plain", "noop", "filter"]),
            ("syn", "series", ["direct", "plain", "noop", "filter"]),
            ("syn", "trivial", ["noop", "filter"]),
            ("syn", "open", ["noop", "filter"]),
            ("syn", "dashboard-instant", ["noop", "filter", "aetos"]),
            ("prom", "dashboard-instant", ["direct", "plain", "noop", "filter", "aetos"]),
        ] + ([("syn", "write", ["plain", "noop", "filter"])] if self.a.write else [])

    def wait_quiet(self, seconds):
        """Until other processes use less than --max-background of the CPUs (1 s samples; the benchmark's
        own processes are idle meanwhile), or `seconds` have passed."""
        t_end = time.monotonic() + max(0, seconds)
        while time.monotonic() < t_end:
            if machine_busy(1.0) < self.a.max_background:
                return True
        return False

    def run_matrix(self):
        a = self.a
        self.retry_deadline = time.monotonic() + a.retry_budget
        log("warm-up: %ss per target and workload (filter caches the token and the rewrites; Aetos "
            "workers cache the token)" % a.warmup)
        for up, wl, cfgs in self.matrix():
            for cfg in cfgs:
                self.wrk(self.targets[(up, cfg)]["url"], self.script_for(wl, up, cfg),
                         max(2, a.warmup) if cfg == "aetos" else a.warmup, "warmup", cpus=self.wrk_cpus(up))
        for rnd in range(1, a.rounds + 1):
            log("round %d/%d (%ds per run)" % (rnd, a.rounds, a.duration))
            if rnd > 1 and any(up == "syn" for up, _, _ in self.matrix()):
                log("  new Envoys in front of the synthetic upstream for this round, warmed up as before")
                self.start_syn_envoys()
                for up, wl, cfgs in self.matrix():
                    for cfg in cfgs:
                        if up == "syn" and cfg != "direct":
                            self.wrk(self.targets[(up, cfg)]["url"], self.script_for(wl, up, cfg), a.warmup,
                                     "warmup", cpus=self.wrk_cpus(up))
            for up, wl, cfgs in self.matrix():
                # interleaved: every config once per round, the order rotated from round to round
                k = (rnd - 1) % len(cfgs)
                for cfg in cfgs[k:] + cfgs[:k]:
                    r = self.measure(up, wl, cfg, rnd, a.duration)
                    # another process took CPU meanwhile (a shared machine): wait for quiet (a while at
                    # most), measure again, keep the quietest; within a time budget for the whole run
                    tries = 0
                    while (r["background"] > a.max_background and tries < a.retries
                           and time.monotonic() < self.retry_deadline):
                        tries += 1
                        log("  other processes used %.0f%% of the CPUs: waiting for quiet, then measuring again "
                            "(%d/%d)" % (100 * r["background"], tries, a.retries))
                        self.wait_quiet(min(a.quiet_wait, self.retry_deadline - time.monotonic()))
                        again = self.measure(up, wl, cfg, rnd, a.duration)
                        if again["background"] < r["background"]:
                            r = again
                    r["retries"] = tries
                    self.results["runs"].append(r)
                if (up, wl) == ("syn", "write"):
                    self.native_write(rnd)

    # ------------------------------------------------------------------ remote write
    def prepare_write(self):
        """The write workload's batches, generated once by bench/stages (the filter's own encoder):
        the files wrk sends, which the native timing decodes, enforces and encodes too."""
        a = self.a
        self.write_dir = os.path.join(self.work, "write")
        out = subprocess.run(["taskset", "-c", str(LOAD_CPU), a.write_gen, self.write_dir, str(a.write_batches),
                              str(a.write_samples)], capture_output=True, text=True, check=True, timeout=300).stdout
        desc = json.loads(out.strip().splitlines()[-1])
        self.write_files = sorted(os.path.join(self.write_dir, f) for f in os.listdir(self.write_dir)
                                  if f.endswith(".bin"))
        self.write_samples = desc["samples_per_batch"]
        if len(self.write_files) != a.write_batches:
            raise RuntimeError("write_batches wrote %d files, expected %d" % (len(self.write_files), a.write_batches))
        self.results["write"] = {"batches": desc, "native": []}
        log("remote write: %d batches of %d samples, %.1f labels per series (%.0f%% with a project label), "
            "%.0f KiB snappy / %.0f KiB protobuf each"
            % (desc["batches"], desc["samples_per_batch"], desc["labels_per_series"],
               100 * desc["with_project_label"], desc["snappy_bytes"] / 1024, desc["protobuf_bytes"] / 1024))

    def post(self, url, body, headers):
        u = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        try:
            conn.request("POST", u.path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def sanity_write(self):
        """Every configuration takes a batch (204); the filter refuses one without a credential and
        a corrupt one, and what it forwards to the real Prometheus carries the writer's project."""
        with open(self.write_files[0], "rb") as f:
            batch = f.read()
        h = dict(WRITE_HEADERS, **{"X-Auth-Token": self.token})
        for cfg in ("plain", "noop", "filter"):
            code, body = self.post(self.targets[("syn", cfg)]["url"] + WRITE_PATH, batch, h)
            if code != 204:
                raise RuntimeError("sanity: write to syn/%s answered %d: %s" % (cfg, code, body[:300]))
        url = self.targets[("syn", "filter")]["url"] + WRITE_PATH
        code, _ = self.post(url, batch, WRITE_HEADERS)
        if code != 401:
            raise RuntimeError("sanity: the filter took a write without a credential (%d)" % code)
        code, _ = self.post(url, batch[:len(batch) // 2], h)
        if code != 400:
            raise RuntimeError("sanity: the filter took a truncated batch (%d)" % code)
        if ("prom", "filter") in self.envoys:
            now = int(time.time() * 1000)
            name = "kpw_bench_write_check"
            series = [({"__name__": name, "job": "bench", "instance": "i1", "project": "someone-else"}, 1.0, now),
                      ({"__name__": name, "job": "bench", "instance": "i2"}, 2.0, now)]
            code, body = self.post(self.targets[("prom", "filter")]["url"] + WRITE_PATH, write_body(series), h)
            if code != 204:
                raise RuntimeError("sanity: write through the filter to Prometheus answered %d: %s" % (code, body[:300]))
            code, body = http_get("%s/api/v1/query?query=%s&time=%.3f"
                                  % (self.targets[("prom", "direct")]["url"], name, now / 1e3))
            got = sorted((s["metric"].get("instance"), s["metric"].get("project"))
                         for s in json.loads(body)["data"]["result"])
            want = [("i1", self.env["TEAM_A_ID"]), ("i2", self.env["TEAM_A_ID"])]
            if code != 200 or got != want:
                raise RuntimeError("sanity: Prometheus holds %r after the filter's write, expected %r" % (got, want))
        log("write sanity checks passed (204 through every proxy; the filter: no credential -> 401, a truncated "
            "batch -> 400, its writes reach Prometheus with project=team-a)")

    def native_write(self, rnd):
        """The filter's decode -> enforce -> encode of the same batches, natively (bench/stages' criterion
        bench write/decode_enforce_encode, the filter's release profile), on the CPU of the Envoys under test,
        in the same round as their write measurements."""
        a = self.a
        env = dict(os.environ, CRITERION_HOME=os.path.join(self.work, "criterion"), KPW_WRITE_DIR=self.write_dir,
                   KPW_WRITE_SAMPLES=str(self.write_samples))
        all0, own0, t0 = task_cpu_total(), self.own_cpu(), time.monotonic()
        out = subprocess.run(["taskset", "-c", str(SUT_CPU), a.stages_bench, "--bench", "--noplot",
                              "--warm-up-time", "1", "--measurement-time", str(a.native_seconds),
                              "write/decode_enforce_encode"],
                             capture_output=True, text=True, env=env, timeout=300)
        secs = time.monotonic() - t0
        est = os.path.join(self.work, "criterion", "write", "decode_enforce_encode", "new", "estimates.json")
        if out.returncode != 0 or not os.path.exists(est):
            raise RuntimeError("native write bench failed: %s %s" % (out.stdout[-1000:], out.stderr[-1000:]))
        with open(est) as f:
            e = json.load(f)
        r = {"round": rnd, "us_per_batch": e["median"]["point_estimate"] / 1e3,
             "mean_us": e["mean"]["point_estimate"] / 1e3,
             "ci_us": [e["median"]["confidence_interval"]["lower_bound"] / 1e3,
                       e["median"]["confidence_interval"]["upper_bound"] / 1e3],
             "background": max(0.0, (task_cpu_total() - all0) - (self.own_cpu() - own0)) / (2 * secs)}
        r["samples_per_s"] = self.write_samples / (r["us_per_batch"] / 1e6)
        os.remove(est)
        self.results["write"]["native"].append(r)
        log("  round %d native decode+enforce+encode: %.0f us per batch (%.0f samples/s)  other %3.0f%%"
            % (rnd, r["us_per_batch"], r["samples_per_s"], 100 * r["background"]))

    # ------------------------------------------------------------------ (d) new credentials
    def issue_tokens(self, n):
        body = json.dumps({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "alice", "domain": {"name": "tenants"}, "password": "alice-secret"}}},
            "scope": {"project": {"id": self.env["TEAM_A_ID"]}}}}).encode()
        url = "http://127.0.0.1:%d/v3/auth/tokens?nocatalog" % self.ks_port

        def one(_):
            req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.headers["X-Subject-Token"]
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            toks = list(ex.map(one, range(n)))
        if len(set(toks)) != n:
            raise RuntimeError("Keystone issued duplicate tokens")
        return toks

    def ks_validations(self):
        """GET /v3/auth/tokens lines in Keystone's access log (validations) so far."""
        with open(self.env["KEYSTONE_ACCESS_LOG"], errors="replace") as f:
            return sum(1 for line in f if '"GET /v3/auth/tokens' in line)

    def ks_validations_settled(self):
        # gunicorn writes the access log line after the response: let the last ones land
        last = -1
        for _ in range(50):
            n = self.ks_validations()
            if n == last:
                return n
            last = n
            time.sleep(0.1)
        return last

    def client(self, url, tokens, conns, repeat=1):
        """Sends GET url once per token (repeat times each, the copies back to back so they overlap),
        over `conns` keep-alive connections. Returns (seconds, latencies_ms, status counts)."""
        u = urllib.parse.urlsplit(url)
        work = [t for t in tokens for _ in range(repeat)]
        lock = threading.Lock()
        idx = [0]
        lat, codes = [], {}

        def worker():
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
            while True:
                with lock:
                    i = idx[0]
                    idx[0] += 1
                if i >= len(work):
                    break
                t0 = time.perf_counter()
                conn.request("GET", u.path + "?" + u.query, headers={"X-Auth-Token": work[i]})
                resp = conn.getresponse()
                resp.read()
                dt = (time.perf_counter() - t0) * 1e3
                with lock:
                    lat.append(dt)
                    codes[resp.status] = codes.get(resp.status, 0) + 1
            conn.close()
        threads = [threading.Thread(target=worker) for _ in range(conns)]
        t0 = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        return time.perf_counter() - t0, lat, codes

    def new_tokens(self):
        a = self.a
        n, rounds, dedupe_n, dedupe_rep = a.new_tokens, a.rounds, max(10, a.new_tokens // 3), 4
        t0 = time.monotonic()
        log("issuing %d tokens for alice (team-a) from Keystone" % (n * rounds + dedupe_n))
        toks = self.issue_tokens(n * rounds + dedupe_n)
        log("  %d tokens in %.1fs" % (len(toks), time.monotonic() - t0))
        env = self.envoys[("syn", "filter")]
        url = env.url + "/api/v1/query?query=%s&time=%d" % (q('sum(rate(http_requests_total[5m]))'), self.t_end)
        out = {"rounds": [], "tokens_per_round": n, "connections": a.connections}
        callouts0 = env.stat("wasmcustom.keystone_prom_keystone_callouts")
        ks0 = self.ks_validations_settled()
        total_creds = 0
        for rnd in range(rounds):
            batch = toks[rnd * n:(rnd + 1) * n]
            secs, lat, codes = self.client(url, batch, a.connections)
            r = {"round": rnd + 1, "requests": len(lat), "seconds": secs, "rps": len(lat) / secs,
                 "p50": pctl(lat, 50), "p99": pctl(lat, 99), "max": max(lat), "codes": codes}
            out["rounds"].append(r)
            total_creds += len(batch)
            log("  new credentials round %d: %d requests, %.1f req/s, p50 %.1f ms, p99 %.1f ms, %s"
                % (rnd + 1, len(lat), r["rps"], r["p50"], r["p99"], codes))
        ks1 = self.ks_validations_settled()
        # the same credentials again, 3 times each: all from the cache, no Keystone call
        secs, lat, codes = self.client(url, toks[:n * rounds], a.connections, repeat=3)
        ks2 = self.ks_validations_settled()
        out["replay"] = {"requests": len(lat), "rps": len(lat) / secs, "p50": pctl(lat, 50), "p99": pctl(lat, 99),
                         "codes": codes, "keystone_calls": ks2 - ks1}
        log("  replay of the same %d credentials x3: %d Keystone calls, %s" % (n * rounds, ks2 - ks1, codes))
        # fresh credentials, each sent 4 times at once: the concurrent first requests share one callout
        dd = toks[n * rounds:]
        secs, lat, codes = self.client(url, dd, a.connections, repeat=dedupe_rep)
        ks3 = self.ks_validations_settled()
        total_creds += len(dd)
        out["concurrent_firsts"] = {"credentials": len(dd), "copies": dedupe_rep, "requests": len(lat),
                                    "p50": pctl(lat, 50), "p99": pctl(lat, 99), "codes": codes,
                                    "keystone_calls": ks3 - ks2}
        log("  %d new credentials x%d concurrent copies: %d Keystone calls, %s"
            % (len(dd), dedupe_rep, ks3 - ks2, codes))
        out["credentials"] = total_creds
        # the filter's scope cache is direct-mapped: slot = first 8 bytes of the credential's SHA-256
        # (src/credentials.rs digest, src/cache.rs slot_key) modulo cache.max_entries (16384 by default);
        # a credential whose slot a later one took is validated again. Predicted from the tokens used:
        out["slot_collisions"], out["predicted_replay_calls"] = slot_prediction(
            toks[:n * rounds], toks[n * rounds:], 16384)
        out["keystone_calls"] = ks3 - ks0
        out["filter_callouts"] = env.stat("wasmcustom.keystone_prom_keystone_callouts") - callouts0
        out["calls_per_credential"] = out["keystone_calls"] / total_creds
        out["all_200"] = all(set(x["codes"]) == {200} for x in out["rounds"] + [out["replay"], out["concurrent_firsts"]])
        out["rps"] = statistics.median(x["rps"] for x in out["rounds"])
        out["p50"] = statistics.median(x["p50"] for x in out["rounds"])
        out["p99"] = statistics.median(x["p99"] for x in out["rounds"])
        # reference: Keystone's own validation latency, sequential, one at a time
        lat = []
        for t in toks[:20]:
            t1 = time.perf_counter()
            http_get("http://127.0.0.1:%d/v3/auth/tokens?nocatalog" % self.ks_port,
                     {"X-Auth-Token": t, "X-Subject-Token": t})
            lat.append((time.perf_counter() - t1) * 1e3)
        out["keystone_validate_ms_p50"] = statistics.median(lat)
        self.results["newtokens"] = out

    # ------------------------------------------------------------------ memory
    def memory(self):
        a = self.a
        cfg = proxy_config("filter", free_port(), free_port(), self.upstream_port, self.fakeks_port, a.wasm, a.noop_wasm,
                           a.write)
        log("memory: a fresh filter Envoy whose Keystone is a fake (an Envoy direct_response answering "
            "every validation with a valid team-a token)")
        env = Envoy(self, "memory", cfg, {SUT_CPU})
        out = {"idle_kib": rss_kib(env.pid)}
        self.wrk(env.url, lua_trivial("warm-up-token", self.t_end), 2, "mem-warmup")
        out["warm_kib"] = rss_kib(env.pid)
        pushed, chunk, waves = 0, 0, []
        # RSS halfway and at the end: with a fixed number of cache slots the second half adds ~nothing
        for target in (a.memory_tokens // 2, a.memory_tokens):
            t0, n0 = time.monotonic(), pushed
            while pushed < target:
                chunk += 1
                r = self.wrk(env.url, lua_random_tokens("bench-%d-%x-" % (chunk, random.getrandbits(48))),
                             a.memory_chunk, "mem-%d" % chunk)
                if r["status"] or r["connect"] or r["timeout"]:
                    raise RuntimeError("memory test: wrk saw errors: %r" % r)
                pushed += r["requests"]
            waves.append({"tokens": pushed, "rss_kib": rss_kib(env.pid),
                          "rps": (pushed - n0) / (time.monotonic() - t0)})
            log("  %d distinct tokens pushed: RSS %d KiB (%.0f new tokens/s)" % (pushed, waves[-1]["rss_kib"],
                                                                               waves[-1]["rps"]))
        out["waves"] = waves
        out["misses"] = env.stat("wasmcustom.keystone_prom_cache_misses")
        out["callouts"] = env.stat("wasmcustom.keystone_prom_keystone_callouts")
        # the plain Envoy's RSS, for scale (same binary, same --concurrency, no Wasm)
        out["plain_kib"] = rss_kib(self.envoys[("syn", "plain")].pid)
        out["noop_kib"] = rss_kib(self.envoys[("syn", "noop")].pid)
        out["filter_syn_kib"] = rss_kib(self.envoys[("syn", "filter")].pid)
        self.procs.stop(env.proc)
        self.results["memory"] = out

    # ------------------------------------------------------------------ startup
    def startup(self):
        a = self.a
        times = {"plain": [], "noop": [], "filter": []}
        for i in range(a.starts):
            for kind in ("plain", "noop", "filter"):
                cfg = proxy_config(kind, free_port(), free_port(), self.upstream_port, self.ks_port, a.wasm,
                                   a.noop_wasm, a.write)
                env = Envoy(self, "start-%s-%d" % (kind, i), cfg, {SUT_CPU})
                times[kind].append(env.ready_s * 1e3)
                self.procs.stop(env.proc)
        out = {k: {"median_ms": statistics.median(v), "all_ms": v} for k, v in times.items()}
        log("startup to /ready, median of %d: plain %.0f ms, no-op Wasm %.0f ms, filter %.0f ms"
            % (a.starts, out["plain"]["median_ms"], out["noop"]["median_ms"], out["filter"]["median_ms"]))
        self.results["startup"] = out
        self.results["wasm"] = {"filter_bytes": os.path.getsize(a.wasm), "noop_bytes": os.path.getsize(a.noop_wasm)}

    # ------------------------------------------------------------------ meta
    def meta(self):
        def cmd(argv):
            try:
                return subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout.strip()
            except OSError:
                return "?"
        cpu = "?"
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        envoy_v = cmd([self.envoy_bin, "--version"])
        m = re.search(r"/(\d+\.\d+\.\d+)/", envoy_v)
        aetos_v = cmd([os.path.join(self.a.aetos_venv, "bin", "python"), "-c",
                       "from importlib.metadata import version as v; print(v('aetos'), v('keystonemiddleware'), v('gunicorn'))"]).split()
        self.results["meta"] = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu": cpu, "cores": os.cpu_count(), "envoy": m.group(1) if m else envoy_v,
            "wrk": cmd(["dpkg-query", "-W", "-f=${Version}", "wrk"]),
            "prometheus": cmd(["dpkg-query", "-W", "-f=${Version}", "prometheus"]),
            "keystone": cmd(["dpkg-query", "-W", "-f=${Version}", "python3-keystone"]),
            "aetos": aetos_v[0] if aetos_v else "?", "keystonemiddleware": aetos_v[1] if len(aetos_v) > 1 else "?",
            "gunicorn": aetos_v[2] if len(aetos_v) > 2 else "?",
            "duration_s": self.a.duration, "rounds": self.a.rounds, "connections": self.a.connections,
            "warmup_s": self.a.warmup, "sut_cpu": SUT_CPU, "load_cpu": LOAD_CPU,
            "prom_placement": self.a.prom_placement, "max_background": self.a.max_background,
            "native_seconds": self.a.native_seconds,
        }

    def run(self):
        t0 = time.monotonic()
        os.sched_setaffinity(0, {LOAD_CPU})
        self.meta()
        if self.a.write:
            self.prepare_write()
        self.start()
        self.sanity()
        if any(wl == "write" for _, wl, _ in self.matrix()):
            self.sanity_write()
        busy = machine_busy()
        self.results["meta"]["busy_before"] = busy
        log("background CPU use (the benchmark idle): %.0f%% of 2 CPUs%s"
            % (100 * busy, "  WARNING: the machine is not idle, the numbers will suffer" if busy > 0.1 else ""))
        phases = self.a.phases.split(",")
        if "matrix" in phases:
            self.run_matrix()
            busy = machine_busy()
            self.results["meta"]["busy_after"] = busy
            log("background CPU use after the matrix: %.0f%%" % (100 * busy))
        if "newtokens" in phases:
            self.new_tokens()
        if "memory" in phases:
            self.memory()
        if "startup" in phases:
            self.startup()
        self.results["meta"]["bench_seconds"] = round(time.monotonic() - t0)
        return self.results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stack", required=True, help="directory of a running scripts/stack.sh stack")
    ap.add_argument("--work", required=True, help="scratch directory (configs, logs)")
    ap.add_argument("--wasm", required=True)
    ap.add_argument("--noop-wasm", required=True)
    ap.add_argument("--aetos-venv", required=True)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs"))
    ap.add_argument("--duration", type=int, default=5, help="seconds per measured run")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--new-tokens", type=int, default=150, help="new credentials per round (workload d)")
    ap.add_argument("--memory-tokens", type=int, default=100000)
    ap.add_argument("--memory-chunk", type=int, default=2, help="seconds per wrk run of the memory test")
    ap.add_argument("--starts", type=int, default=5)
    ap.add_argument("--max-background", type=float, default=0.10,
                    help="a run during which other processes used more than this share of the CPUs is repeated")
    ap.add_argument("--retries", type=int, default=2, help="at most this many repeats of a disturbed run")
    ap.add_argument("--quiet-wait", type=int, default=15, help="seconds to wait for quiet before a repeat")
    ap.add_argument("--retry-budget", type=int, default=150,
                    help="seconds of the whole run that waiting and repeating may take")
    ap.add_argument("--prom-placement", choices=("free", "pinned"), default="free",
                    help="real Prometheus group: Envoys and wrk free on both CPUs (default), or pinned as for "
                         "the synthetic upstream")
    ap.add_argument("--only", default="", help="development: only these matrix groups, e.g. prom,syn:dashboard")
    ap.add_argument("--phases", default="matrix,newtokens,memory,startup", help="development: phases to run")
    ap.add_argument("--aetos-candidates", default="sync:2:1,sync:3:1,sync:4:1,sync:8:1,gthread:4:4",
                    help="gunicorn settings for Aetos, class:workers:threads,...; the best of a short trial is kept")
    ap.add_argument("--aetos-trial", type=int, default=3, help="seconds of trial per Aetos setting")
    ap.add_argument("--write", type=int, default=1,
                    help="1: the remote write workload, and the filter configured with write.enabled; 0: neither")
    ap.add_argument("--write-gen", default="", help="bench/stages' write_batches example (the batches)")
    ap.add_argument("--stages-bench", default="", help="bench/stages' criterion bench binary (the native timing)")
    ap.add_argument("--write-batches", type=int, default=64, help="distinct batches the write workload rotates")
    ap.add_argument("--write-samples", type=int, default=2000, help="samples per batch")
    ap.add_argument("--native-seconds", type=int, default=3,
                    help="criterion's measurement time of the native decode-enforce-encode, per round")
    a = ap.parse_args()
    if a.write and not (a.write_gen and a.stages_bench):
        ap.error("--write 1 needs --write-gen and --stages-bench (bench/run.sh builds them)")
    for k in ("work", "wasm", "noop_wasm", "aetos_venv", "stack", "out"):
        setattr(a, k, os.path.abspath(getattr(a, k)))
    bench = Bench(a)

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        results = bench.run()
    except SystemExit:
        log("interrupted: stopping everything the benchmark started")
        raise
    finally:
        bench.procs.stop_all()
    sys.dont_write_bytecode = True
    import report
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "benchmark.json"), "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)
    md = report.markdown(results)
    with open(os.path.join(a.out, "benchmark.md"), "w") as f:
        f.write(md)
    with open(os.path.join(a.out, "benchmark.svg"), "w") as f:
        f.write(report.svg(results))
    print(md)


if __name__ == "__main__":
    main()
