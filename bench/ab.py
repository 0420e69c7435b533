#!/usr/bin/env python3
"""A/B of Wasm builds, for development (bench/README.md, "Taking the filter's own work apart").

    python3 bench/ab.py STARTSxROUNDS SECONDS BASE.wasm NAME=OTHER.wasm ...

Each OTHER module runs in an Envoy of its own on CPU 0, loaded with the dashboard mix at the same time as an
Envoy with BASE (both Envoys share CPU 0, wrk and the synthetic upstream run on CPU 1); the figure is the
ratio of requests per CPU-second, OTHER / BASE. Both suffer the machine's speed changes alike, which
sequential runs do not. Every start brings up fresh Envoys (two starts of one module differ by a few per
cent); medians over all rounds of all starts are printed. A NAME starting with `noop` is configured as the
no-op filter (bench/noop), any other as the filter with a fake Keystone that accepts the token. The load is
the dashboard mix, or AB_WORKLOAD=unique (all-unique queries) or AB_WORKLOAD=series. Needs `make deps` (Envoy
in .venv, wrk); no stack.
"""
import os
import random
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402

TOKEN = "gAAAAAB" + "x" * 176


class Ctx:
    """What bench.Envoy and Bench.script_for need of a Bench."""

    def __init__(self, work):
        self.work = work
        self.procs = B.Procs(os.path.join(work, "pids"))
        self.envoy_bin = os.path.join(B.ROOT, ".venv", "bin", "envoy")
        self.token, self.t_end = TOKEN, 1700000000

    script_for = B.Bench.script_for


def cpu_seconds(pid):
    return B.cpu_seconds([pid])


def main():
    starts, rounds = (int(x) for x in sys.argv[1].split("x"))
    secs = int(sys.argv[2])
    specs = [("base", sys.argv[3])] + [tuple(x.split("=", 1)) for x in sys.argv[4:]]
    work = tempfile.mkdtemp(prefix="kpw-ab.")
    ctx = Ctx(work)
    up, ks = B.free_port(), B.free_port()
    up_cfg = {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": B.free_port()}}},
              "static_resources": {"listeners": [
                  B.listener("prometheus", up, B.hcm("prometheus", B.direct_route(B.PROM_BODY))),
                  B.listener("keystone", ks, B.hcm("keystone", B.direct_route(B.fake_token_body("p1"))))],
                  "clusters": []}}
    workload = os.environ.get("AB_WORKLOAD", "dashboard")
    if workload not in ("dashboard", "unique", "series"):
        raise SystemExit("AB_WORKLOAD: dashboard, unique or series")
    lua = os.path.join(work, workload + ".lua")
    with open(lua, "w") as f:
        f.write(ctx.script_for(workload))

    def wrk(url, out, seconds):
        return subprocess.Popen(["taskset", "-c", str(B.LOAD_CPU), "wrk", "-t1", "-c16", "-d%ds" % seconds,
                                 "-s", lua, url], stdout=open(out, "w"), stderr=subprocess.STDOUT)

    def served(out):
        with open(out) as f:
            d = B.wrk_result(f.read())
        if d is None:
            raise RuntimeError("no wrk summary in " + out)
        if d["status"]:
            raise RuntimeError("%d responses >= 400 in %s" % (d["status"], out))
        return d["requests"]

    results = {name: [] for name, _ in specs[1:]}
    try:
        B.Envoy(ctx, "upstream", up_cfg, {B.LOAD_CPU})
        for start in range(starts):
            envoys = {}
            for name, wasm in specs:
                kind = "noop" if name.startswith("noop") else "filter"
                cfg = B.proxy_config(kind, B.free_port(), B.free_port(), up, ks, wasm, wasm)
                envoys[name] = B.Envoy(ctx, "%s-%d" % (name, start), cfg, {B.SUT_CPU})
            for name, e in envoys.items():
                code, body = B.http_get(e.url + "/api/v1/query?query=up", {"X-Auth-Token": TOKEN})
                if code != 200:
                    raise RuntimeError("%s answered %d: %s" % (name, code, body[:200]))
                wrk(e.url, os.path.join(work, "warm.txt"), 2).wait()
            base = envoys["base"]
            for rnd in range(rounds):
                order = list(results)
                random.shuffle(order)
                line = []
                for name in order:
                    e = envoys[name]
                    c0 = (cpu_seconds(base.pid), cpu_seconds(e.pid))
                    pb = wrk(base.url, os.path.join(work, "b.txt"), secs)
                    pv = wrk(e.url, os.path.join(work, "v.txt"), secs)
                    pb.wait()
                    pv.wait()
                    c1 = (cpu_seconds(base.pid), cpu_seconds(e.pid))
                    ratio = ((served(os.path.join(work, "v.txt")) / max(1 / B.CLK_TCK, c1[1] - c0[1]))
                             / (served(os.path.join(work, "b.txt")) / max(1 / B.CLK_TCK, c1[0] - c0[0])))
                    results[name].append(ratio)
                    line.append("%s %.3f" % (name, ratio))
                print("start %d round %d: %s" % (start + 1, rnd + 1, ", ".join(line)), flush=True)
            for e in envoys.values():
                ctx.procs.stop(e.proc)
        for name, v in results.items():
            print("%-12s / base: median %.3f (min %.3f, max %.3f, n=%d)"
                  % (name, statistics.median(v), min(v), max(v), len(v)))
    finally:
        ctx.procs.stop_all()


if __name__ == "__main__":
    main()
