#!/usr/bin/env python3
"""Turns the benchmark's results (docs/benchmark.json) into docs/benchmark.md and docs/benchmark.svg.

bench/bench.py calls it at the end of a run; `python3 bench/report.py docs/benchmark.json` renders the
two files again from a saved run (stdlib only).
"""
import math
import os
import statistics
import sys
from xml.sax.saxutils import escape

CONFIGS = {
    "direct": "1. direct to the upstream",
    "plain": "2. plain Envoy (router only)",
    "noop": "3. Envoy + no-op Wasm filter",
    "filter": "4. Envoy + keystone-prom-wasm, cached token",
    "aetos": "5. OpenStack Aetos",
}
SHORT = {"direct": "direct", "plain": "plain Envoy", "noop": "no-op Wasm", "filter": "filter", "aetos": "Aetos"}
UPSTREAMS = {"syn": "synthetic upstream", "prom": "real Prometheus"}
WORKLOADS = {
    "dashboard": "(a) dashboard mix",
    "unique": "(b) all-unique queries",
    "series": "(c) series and labels APIs",
    "trivial": "diagnostic: one fixed trivial query",
    "open": "diagnostic: /-/healthy, no token",
    "dashboard-instant": "(a) dashboard mix, instant queries",
    "write": "(e) remote write, 2,000-sample batches (req/s = batches/s)",
}
ORDER = [("syn", "dashboard"), ("syn", "unique"), ("syn", "series"), ("syn", "dashboard-instant"), ("syn", "trivial"),
         ("syn", "open"), ("syn", "write"), ("prom", "dashboard-instant")]
COLORS = {"direct": "#8c8c8c", "plain": "#4c78a8", "noop": "#72b7b2", "filter": "#e45756", "aetos": "#b279a2"}


def medians(results):
    """(upstream, workload, config) -> medians of the rounds."""
    groups = {}
    for r in results["runs"]:
        groups.setdefault((r["upstream"], r["workload"], r["config"]), []).append(r)
    out = {}
    for k, runs in groups.items():
        out[k] = {
            "rps": statistics.median(r["rps"] for r in runs),
            "p50": statistics.median(r["p50"] for r in runs) / 1e3,
            "p99": statistics.median(r["p99"] for r in runs) / 1e3,
            "cpu": statistics.median(r["cpu_us_per_req"] for r in runs),
            "all_rps": [r["rps"] for r in sorted(runs, key=lambda r: r["round"])],
            "by_round": {r["round"]: r["rps"] for r in runs},
            "errors": sum(r["errors"] for r in runs),
            "background": statistics.median(r.get("background", 0) for r in runs),
            "background_max": max(r.get("background", 0) for r in runs),
            "requests": sum(r["requests"] for r in runs),
            "cpu_by_round": {r["round"]: r["cpu_us_per_req"] for r in runs},
        }
        if "samples_per_cpu_s" in runs[0]:
            out[k].update(
                samples_per_s=statistics.median(r["samples_per_s"] for r in runs),
                samples_per_cpu_s=statistics.median(r["samples_per_cpu_s"] for r in runs),
                spc_by_round={r["round"]: r["samples_per_cpu_s"] for r in runs},
                cpu_share=statistics.median(r["cpu_share"] for r in runs))
    return out


def per_round(a, b, key="by_round"):
    """The rounds' own ratios a / b (both measured within seconds of each other), in round order."""
    return [a[key][r] / b[key][r] for r in sorted(set(a[key]) & set(b[key]))]


def write_figures(results):
    """The write workload's figures, or None: samples per Envoy CPU-second and their ratios, the
    filter's CPU per batch beyond the no-op filter's (and plain Envoy's) against the native cost of
    the same decode -> enforce -> encode measured in the same rounds."""
    m = medians(results)
    p, n, f = (m.get(("syn", "write", c)) for c in ("plain", "noop", "filter"))
    native = {x["round"]: x for x in (results.get("write") or {}).get("native", [])}
    if not (f and native):
        return None
    w = {"plain": p, "noop": n, "filter": f, "native_rounds": [native[r]["us_per_batch"] for r in sorted(native)],
         "native_us": statistics.median(x["us_per_batch"] for x in native.values()),
         "native_background": statistics.median(x["background"] for x in native.values())}
    w["native_samples_per_s"] = results["write"]["batches"]["samples_per_batch"] / (w["native_us"] / 1e6)
    for name, ref in (("noop", n), ("plain", p)):
        if not ref:
            continue
        rounds = sorted(set(f["cpu_by_round"]) & set(ref["cpu_by_round"]) & set(native))
        per = [(f["cpu_by_round"][r] - ref["cpu_by_round"][r]) / native[r]["us_per_batch"] for r in rounds]
        if per:
            w["over_" + name] = {"ratio": statistics.median(per), "rounds": per,
                                 "us": statistics.median(f["cpu_by_round"][r] - ref["cpu_by_round"][r] for r in rounds)}
        w["spc_" + name] = per_round(f, ref, "spc_by_round")
    if p and n:
        w["spc_noop_plain"] = per_round(n, p, "spc_by_round")
    return w


def fmt_rps(x):
    return "{:,.0f}".format(x)


def fmt_ms(x):
    if x >= 100:
        return "%.0f" % x
    if x >= 10:
        return "%.1f" % x
    return "%.2f" % x


def targets(results):
    m = medians(results)
    nt = results.get("newtokens") or {}
    rows = []
    limit = results["meta"].get("max_background", 0.10)

    def get(*k):
        return m.get(k)

    def flag(*rs):
        """A note when the medians come from runs other processes disturbed."""
        bad = ["%s %.0f%%" % (SHORT[c], 100 * r["background"]) for c, r in rs if r["background"] > limit]
        return " ⚠ other processes used the CPUs meanwhile (%s)" % ", ".join(bad) if bad else ""

    def ratio(title, up, workload, other, goal, spelled, note=lambda f, o: ""):
        """A throughput target row, filter ÷ `other`, when the run measured both; returns both runs. The
        ratio is the median of the rounds' own ratios: a round measures both within seconds, so the
        machine's speed, which drifts over a run, cancels out of each."""
        f, o = get(up, workload, "filter"), get(up, workload, other)
        if f and o:
            per = [f["by_round"][r] / o["by_round"][r] for r in sorted(set(f["by_round"]) & set(o["by_round"]))]
            v = statistics.median(per)
            fmt = "%.2f" if goal < 1 else "%.1f×"
            rows.append((title, "**%s** (rounds: %s; medians %s / %s req/s)%s%s" % (
                fmt % v, ", ".join(fmt % x for x in per), fmt_rps(f["rps"]), fmt_rps(o["rps"]), note(f, o),
                flag(("filter", f), (other, o))), spelled, v >= goal))
        return f, o

    def prom_vs_plain():
        """In front of the real Prometheus, Prometheus does most of a request's work on the same two CPUs,
        and even Envoy without a filter reaches only ~16-21× Aetos there: the filter's ratio to Aetos is
        judged against plain Envoy's own ratio to Aetos in the same rounds (at least 0.9 of it). In a
        round, (filter / Aetos) / (plain / Aetos) is filter / plain, so Aetos' own spread cancels out."""
        f, p, a = (get("prom", "dashboard-instant", c) for c in ("filter", "plain", "aetos"))
        if not (f and p and a):
            return f, a
        rounds = sorted(set(f["by_round"]) & set(p["by_round"]) & set(a["by_round"]))
        fa = statistics.median(f["by_round"][r] / a["by_round"][r] for r in rounds)
        pa = statistics.median(p["by_round"][r] / a["by_round"][r] for r in rounds)
        per = [f["by_round"][r] / p["by_round"][r] for r in rounds]
        v = statistics.median(per)
        # for scale: what a Wasm filter that does nothing reaches there (the floor of any Wasm filter)
        o = get("prom", "dashboard-instant", "noop")
        floor = ""
        if o:
            both = sorted(set(o["by_round"]) & set(p["by_round"]))
            floor = "; the no-op Wasm filter: %.2f of plain Envoy" % statistics.median(
                o["by_round"][r] / p["by_round"][r] for r in both)
        rows.append(("filter / Aetos against plain Envoy / Aetos, req/s, (a) instant dashboard mix, real Prometheus",
                     "**%.2f** of plain Envoy's ratio (filter %.1f× Aetos, plain Envoy %.1f×; rounds: %s; medians "
                     "%s / %s / %s req/s%s)%s" % (v, fa, pa, ", ".join("%.2f" % x for x in per), fmt_rps(f["rps"]),
                                                  fmt_rps(p["rps"]), fmt_rps(a["rps"]), floor,
                                                  flag(("filter", f), ("plain", p), ("aetos", a))),
                     "≥ 0.90", v >= 0.90))
        return f, a

    ratio("filter / no-op Wasm filter, req/s, (a) dashboard mix, synthetic upstream",
          "syn", "dashboard", "noop", 0.90, "≥ 0.90")
    ratio("filter / plain Envoy, req/s, (b) all-unique queries, synthetic upstream",
          "syn", "unique", "plain", 0.50, "≥ 0.50")
    for up in ("syn", "prom"):
        if up == "syn":
            # the synthetic upstream does no work: only the two proxies are measured
            f, a = ratio("filter / Aetos, req/s, (a) instant dashboard mix, %s" % UPSTREAMS[up],
                         up, "dashboard-instant", "aetos", 20, "≥ 20×")
        else:
            f, a = prom_vs_plain()
        if f and a:
            rows.append(("p99 latency, filter vs Aetos, same workload and upstream",
                         "**%s ms vs %s ms** (%.0f× lower)%s" % (fmt_ms(f["p99"]), fmt_ms(a["p99"]), a["p99"] / f["p99"],
                                                                 flag(("filter", f), ("aetos", a))),
                         "lower than Aetos", f["p99"] < a["p99"]))
    w = write_figures(results)
    if w and "over_noop" in w:
        o = w["over_noop"]
        spb = "{:,}".format(results["write"]["batches"]["samples_per_batch"])
        rows.append(("Wasm / native cost per remote write batch, the filter's Envoy CPU per %s-sample batch "
                     "beyond the no-op Wasm filter's ÷ the native decode → enforce → encode of the same batches" % spb,
                     "**%.2f×** (%.0f µs / %.0f µs per batch; rounds: %s)%s"
                     % (o["ratio"], o["us"], w["native_us"], ", ".join("%.2f" % x for x in o["rounds"]),
                        flag(("filter", w["filter"]), ("noop", w["noop"]))),
                     "≤ 2.5×", o["ratio"] <= 2.5))
    if w:
        f = w["filter"]
        rows.append(("remote write samples/s of one Envoy worker with the filter, `--concurrency 1`, saturated",
                     "**%s samples/s** (Envoy busy %.0f%% of its CPU: %s samples per CPU-second; rounds: %s)"
                     % (fmt_rps(f["samples_per_s"]), 100 * f["cpu_share"], fmt_rps(f["samples_per_cpu_s"]),
                        ", ".join(fmt_rps(x * results["write"]["batches"]["samples_per_batch"]) for x in f["all_rps"])),
                     "> 1,000,000 on this machine", f["samples_per_s"] > 1e6))
    if nt:
        v = nt["calls_per_credential"]
        first = nt["keystone_calls"] - nt["replay"]["keystone_calls"]
        rows.append(("Keystone calls per credential within the cache TTL (300 s), from Keystone's access log",
                     "**%.3f** (%d calls / %d credentials: %d on first use, including %d credentials sent as 4 "
                     "concurrent first requests; %d when all came back 3× within the TTL)"
                     % (v, nt["keystone_calls"], nt["credentials"], first, nt["concurrent_firsts"]["credentials"],
                        nt["replay"]["keystone_calls"]),
                     "exactly 1", nt["keystone_calls"] == nt["credentials"] and nt["all_200"]))
    return rows


def markdown(results):
    meta = results["meta"]
    m = medians(results)
    L = []
    L.append("# Benchmark")
    L.append("")
    L.append("Generated by `make bench` (bench/run.sh) on %s, %s, %d cores; %d s total. "
             "Every number is the **median of %d rounds** measured in this one run; wrk `-t1 -c%d`, %d s per "
             "measurement, rounds interleaved across configurations. Envoy %s, every Envoy `--concurrency 1` "
             "on CPU %d with wrk and the synthetic upstream on CPU %d (real Prometheus: %s). How to read it: "
             "bench/README.md."
             % (meta["date"], meta["cpu"], meta["cores"], meta.get("bench_seconds", 0), meta["rounds"],
                meta["connections"], meta["duration_s"], meta["envoy"], meta["sut_cpu"], meta["load_cpu"],
                "everything free on both CPUs" if meta.get("prom_placement") == "free" else "pinned the same way"))
    retried = sum(1 for r in results["runs"] if r.get("retries"))
    if retried:
        L.append("")
        L.append("%d measurement(s) were disturbed by other processes (over %.0f%% of the CPUs) and measured again; "
                 "the quietest attempt is kept." % (retried, 100 * meta.get("max_background", 0.1)))
    bg = [r.get("background", 0) for r in results["runs"]]
    if bg and (statistics.median(bg) > 0.05 or max(bg) > 0.15):
        L.append("")
        L.append("**Warning: the machine was not idle.** Processes other than the benchmark's used a median of "
                 "%.0f%% and up to %.0f%% of the two CPUs during the measurements (column *other CPU*): the "
                 "numbers of those runs are lower and noisier than on a quiet machine."
                 % (100 * statistics.median(bg), 100 * max(bg)))
    L.append("")
    L.append("![req/s and latency per configuration and workload](benchmark.svg)")
    L.append("")
    L.append("## Targets")
    L.append("")
    L.append("| Target | Measured | Goal | Result |")
    L.append("|---|---|---|---|")
    for name, measured, goal, ok in targets(results):
        L.append("| %s | %s | %s | %s |" % (name, measured, goal, "**PASS**" if ok else "**FAIL**"))
    L.append("")
    L.append("## Throughput and latency")
    L.append("")
    L.append("CPU µs/req: CPU time of the process under test (the Envoy; for *direct*, the upstream itself; for "
             "Aetos, all its gunicorn processes) divided by the requests served. Errors: responses ≥ 400, "
             "socket errors and timeouts (all runs). Other CPU: share of the two CPUs used meanwhile by processes "
             "that are not the benchmark's (median over the rounds).")
    L.append("")
    L.append("| Upstream | Workload | Configuration | req/s | p50 ms | p99 ms | CPU µs/req | req/s of each round | errors | other CPU |")
    L.append("|---|---|---|--:|--:|--:|--:|---|--:|--:|")
    for up, wl in ORDER:
        for cfg in CONFIGS:
            r = m.get((up, wl, cfg))
            if not r:
                continue
            L.append("| %s | %s | %s | %s | %s | %s | %.1f | %s | %d | %.0f%% |" % (
                UPSTREAMS[up], WORKLOADS[wl], CONFIGS[cfg], fmt_rps(r["rps"]), fmt_ms(r["p50"]), fmt_ms(r["p99"]),
                r["cpu"], ", ".join(fmt_rps(x) for x in r["all_rps"]), r["errors"], 100 * r["background"]))
    L.append("")
    # ratios and where the time goes
    L.append("## Where the time goes (synthetic upstream)")
    L.append("")
    L.append("Per-request cost of each layer, from the medians above: Envoy CPU µs per request, and the filter's "
             "throughput relative to the no-op Wasm filter and to plain Envoy.")
    L.append("")
    L.append("| Workload | plain Envoy µs/req | no-op Wasm µs/req | filter µs/req | Wasm floor (no-op − plain) | "
             "filter's own work (filter − no-op) | filter / no-op req/s | filter / plain req/s |")
    L.append("|---|--:|--:|--:|--:|--:|--:|--:|")
    for up, wl in ORDER:
        if up != "syn":
            continue
        p, n, f = m.get((up, wl, "plain")), m.get((up, wl, "noop")), m.get((up, wl, "filter"))
        if not (n and f):
            continue
        L.append("| %s | %s | %.1f | %.1f | %s | %.1f | %.2f | %s |" % (
            WORKLOADS[wl], "%.1f" % p["cpu"] if p else "—", n["cpu"], f["cpu"],
            "%.1f" % (n["cpu"] - p["cpu"]) if p else "—", f["cpu"] - n["cpu"], f["rps"] / n["rps"],
            "%.2f" % (f["rps"] / p["rps"]) if p else "—"))
    L.append("")
    own = {wl: m[("syn", wl, "filter")]["cpu"] - m[("syn", wl, "noop")]["cpu"]
           for wl in ("dashboard", "unique", "series", "trivial", "open")
           if ("syn", wl, "filter") in m and ("syn", wl, "noop") in m}
    if all(k in own for k in ("dashboard", "unique", "trivial", "open")):
        n_d = m[("syn", "dashboard", "noop")]["cpu"]
        L.append("The filter's own work per request (filter − no-op), taken apart:")
        L.append("")
        L.append("- **%.1f µs** on `/-/healthy` without a token: reading the request headers into the VM, the route, "
                 "the header clean-up;" % own["open"])
        L.append("- **%+.1f µs** more for a query with a cached token and a trivial cached rewrite (trivial − open): "
                 "the credential's hash and cache lookup, the policy, the rewrite-cache lookup and the new "
                 "`:path`;" % (own["trivial"] - own["open"]))
        L.append("- **%+.1f µs** for the dashboard mix over the trivial query: the real panels' query strings, all "
                 "from the rewrite cache;" % (own["dashboard"] - own["trivial"]))
        L.append("- **%+.1f µs** for all-unique queries over the trivial query: parsing, rewriting and printing a "
                 "PromQL expression never seen before." % (own["unique"] - own["trivial"]))
        L.append("")
        p_u = m.get(("syn", "unique", "plain"))
        L.append("For scale, at the same CPU-bound throughput the targets allow: 0.90 × the no-op filter on the dashboard "
                 "mix leaves the filter **%.1f µs** of own work per request (it uses %.1f)%s."
                 % (n_d / 0.9 - n_d, own["dashboard"],
                    "; 0.50 × plain Envoy on all-unique queries leaves it **%.1f µs** beyond the no-op filter (it "
                    "uses %.1f)" % (2 * p_u["cpu"] - m[("syn", "unique", "noop")]["cpu"], own["unique"]) if p_u else ""))
        L.append("")
    w = write_figures(results)
    if w:
        write_section(L, results, w)
    nt = results.get("newtokens")
    if nt:
        L.append("## (d) First requests with new credentials (the Keystone path)")
        L.append("")
        L.append("Filter Envoy in front of the synthetic upstream, the real Keystone behind it (Keystone %s under "
                 "gunicorn, 2 workers, no cache; one validation takes %.0f ms on its own). Each request carries a "
                 "token never seen before (%d fresh tokens per round, %d connections); a Python client "
                 "(wrk cannot stop after N requests)."
                 % (meta["keystone"], nt["keystone_validate_ms_p50"], nt["tokens_per_round"], nt["connections"]))
        L.append("")
        L.append("| Phase | Requests | req/s | p50 ms | p99 ms | Keystone calls | statuses |")
        L.append("|---|--:|--:|--:|--:|--:|---|")
        for r in nt["rounds"]:
            L.append("| round %d: every request a new credential | %d | %.1f | %s | %s | | %s |" % (
                r["round"], r["requests"], r["rps"], fmt_ms(r["p50"]), fmt_ms(r["p99"]), codes(r["codes"])))
        L.append("| **median of the rounds** | | **%.1f** | **%s** | **%s** | %d (all rounds) | |" % (
            nt["rps"], fmt_ms(nt["p50"]), fmt_ms(nt["p99"]),
            nt["keystone_calls"] - nt["replay"]["keystone_calls"] - nt["concurrent_firsts"]["keystone_calls"]))
        rp = nt["replay"]
        L.append("| the same credentials again, 3× each (cached) | %d | %.0f | %s | %s | %d | %s |" % (
            rp["requests"], rp["rps"], fmt_ms(rp["p50"]), fmt_ms(rp["p99"]), rp["keystone_calls"], codes(rp["codes"])))
        cf = nt["concurrent_firsts"]
        L.append("| %d new credentials, each as %d concurrent copies | %d | | %s | %s | %d | %s |" % (
            cf["credentials"], cf["copies"], cf["requests"], fmt_ms(cf["p50"]), fmt_ms(cf["p99"]),
            cf["keystone_calls"], codes(cf["codes"])))
        L.append("")
        L.append("Keystone alone, with its 2 gunicorn workers at %.0f ms per validation, can validate about %.0f "
                 "tokens/s: the first requests with new credentials run at Keystone's pace, and their latency is "
                 "Keystone's queue (16 at once)." % (nt["keystone_validate_ms_p50"], 2000 / nt["keystone_validate_ms_p50"]))
        L.append("")
        L.append("Keystone calls per credential over all phases: **%d / %d = %.3f** (the filter's own "
                 "`keystone_prom_keystone_callouts` counter says %d)."
                 % (nt["keystone_calls"], nt["credentials"], nt["calls_per_credential"], nt["filter_callouts"]))
        if "slot_collisions" in nt:
            lo, hi = nt["predicted_replay_calls"]
            L.append("")
            L.append("Shared-data slots: the shared scope cache is direct-mapped (slot = first 8 bytes of the "
                     "credential's SHA-256 modulo `cache.max_entries`, 16384), a new credential overwrites whatever "
                     "held its slot. %d of this run's %d credentials share a slot with another one (about "
                     "N²/(2·16384) pairs for N credentials: ~%.0f for 1,000). Had the replay been served from "
                     "shared data alone, that would have cost %d to %d Keystone calls; measured: **%d**%s."
                     % (nt["slot_collisions"], nt["credentials"], 1000 ** 2 / (2 * 16384), lo, hi,
                        nt["replay"]["keystone_calls"],
                        " (the worker's own cache in front of shared data held them: with more workers than one, "
                        "a worker that did not see a credential first reads shared data)"
                        if nt["replay"]["keystone_calls"] == 0 and hi > 0 else ""))
        L.append("")
    mem = results.get("memory")
    if mem:
        L.append("## Memory: distinct tokens through the cache")
        L.append("")
        L.append("A fresh filter Envoy (`--concurrency 1`, default `cache.max_entries` = 16384 slots, "
                 "`cache.rewrite_bytes` = 4 MiB) whose Keystone is a fake that answers every validation with a "
                 "valid team-a token at once, so every random token is validated and cached (the real "
                 "Keystone validates only ~%.0f tokens/s here). RSS from /proc/PID/status."
                 % ((results.get("newtokens") or {}).get("rps", 40)))
        L.append("")
        L.append("| State | Envoy RSS (MiB) |")
        L.append("|---|--:|")
        L.append("| filter Envoy, started | %.1f |" % (mem["idle_kib"] / 1024))
        L.append("| after a warm-up (one token, 2 s) | %.1f |" % (mem["warm_kib"] / 1024))
        for w in mem["waves"]:
            L.append("| after %s distinct never-seen tokens (%s new tokens/s) | %.1f |"
                     % ("{:,}".format(w["tokens"]), fmt_rps(w["rps"]), w["rss_kib"] / 1024))
        L.append("| for scale: plain Envoy / no-op Wasm Envoy / filter Envoy after the matrix | %.1f / %.1f / %.1f |"
                 % (mem["plain_kib"] / 1024, mem["noop_kib"] / 1024, mem["filter_syn_kib"] / 1024))
        L.append("")
        if len(mem["waves"]) >= 2:
            a, b = mem["waves"][0], mem["waves"][-1]
            L.append("Growth from %s to %s distinct tokens: %+.1f MiB: the caches are bounded (the shared scope "
                     "cache has a fixed number of slots, a new credential overwrites its slot). Filter counters: %s "
                     "cache misses, %s Keystone callouts."
                     % ("{:,}".format(a["tokens"]), "{:,}".format(b["tokens"]), (b["rss_kib"] - a["rss_kib"]) / 1024,
                        "{:,}".format(mem["misses"] or 0), "{:,}".format(mem["callouts"] or 0)))
            L.append("")
    st, wasm = results.get("startup"), results.get("wasm")
    if st and wasm:
        L.append("## Wasm module size and load time")
        L.append("")
        L.append("| | Module size (bytes) | Envoy start to `/ready`, median of %d (ms) | Each start (ms) |"
                 % len(st["plain"]["all_ms"]))
        L.append("|---|--:|--:|---|")
        L.append("| plain Envoy | — | %.0f | %s |" % (st["plain"]["median_ms"], ms_list(st["plain"]["all_ms"])))
        L.append("| no-op Wasm filter | %s | %.0f | %s |" % ("{:,}".format(wasm["noop_bytes"]),
                                                            st["noop"]["median_ms"], ms_list(st["noop"]["all_ms"])))
        L.append("| keystone-prom-wasm | %s | %.0f | %s |" % ("{:,}".format(wasm["filter_bytes"]),
                                                             st["filter"]["median_ms"], ms_list(st["filter"]["all_ms"])))
        L.append("")
        L.append("Loading the filter (V8 compiling the module, a VM on the main thread and on the worker, "
                 "`on_configure`) adds **%.0f ms** to Envoy's start (filter − plain, medians); the no-op "
                 "module, for comparison, %.0f ms."
                 % (st["filter"]["median_ms"] - st["plain"]["median_ms"], st["noop"]["median_ms"] - st["plain"]["median_ms"]))
        L.append("")
    L.append("## Setup")
    L.append("")
    L.append("- Synthetic upstream: an Envoy (`--concurrency 1`, CPU %d) whose listener answers every request "
             "with `direct_response`: a fixed 165-byte Prometheus vector JSON (and the metric names to "
             "`/api/v1/label/__name__/values`, which Aetos asks for before each query; 204 to `POST /api/v1/write` once "
             "the body is read, with Envoy's buffer filter). Configuration 1 on it shows the ceiling of wrk + upstream "
             "on their CPU." % meta["load_cpu"])
    L.append("- Real Prometheus: Prometheus %s with the demo data of scripts/stack.sh; the instant dashboard mix "
             "(Aetos serves GET /api/v1/query only). *direct*, *plain* and *no-op* send the expressions with the tenant "
             "matcher already on every selector (what the filter sends upstream; checked to give the filter's "
             "answers), so Prometheus does the same work in every configuration." % meta["prometheus"])
    L.append("- Filter configuration: the one of envoy/envoy.yaml (Keystone callouts to the real Keystone, "
             "`cache.ttl_seconds` 300, other keys default); the token is alice's (team-a), validated during the "
             "warm-up.")
    def trial(key):
        runs = "; ".join("%s: %s req/s" % (x["gunicorn"], fmt_rps(x["rps"])) for x in meta.get("aetos_trial" + key, []))
        return "**%s**, the best of a %s-second trial of each of: %s" % (
            meta.get("aetos_gunicorn" + key, "?"), meta.get("aetos_trial_s", "?"), runs or "(no trial)")
    best = "; ".join("%s %s" % (UPSTREAMS[up], trial(key)) for up, key in (("prom", ""), ("syn", "_syn"))
                     if "aetos_gunicorn" + key in meta)
    if best:
        L.append("- Aetos %s with keystonemiddleware %s under gunicorn %s, both CPUs, keystonemiddleware's "
                 "in-process token cache; each query costs it a label-values call to the upstream and the query. "
                 "One Aetos per upstream, each with its best gunicorn settings: %s."
                 % (meta["aetos"], meta["keystonemiddleware"], meta["gunicorn"], best))
    f, a = m.get(("prom", "dashboard-instant", "filter")), m.get(("prom", "dashboard-instant", "aetos"))
    d = m.get(("prom", "dashboard-instant", "direct"))
    if f and a:
        L.append("- Real Prometheus: every configuration shares the two CPUs with Prometheus itself%s, so the "
                 "filter's throughput there is bounded by Prometheus' work on this machine. Per request the filter's "
                 "Envoy used %.0f µs of CPU and Aetos %.0f µs (%.0f× more)."
                 % (" (direct: %s req/s)" % fmt_rps(d["rps"]) if d else "", f["cpu"], a["cpu"], a["cpu"] / f["cpu"]))
    if meta.get("aetos_answers_differ"):
        L.append("- Correctness on the way: Aetos answered %d of the 20 dashboard expressions differently from "
                 "the tenant-matched query (its regex rewrite; the filter answered all 20 identically)."
                 % meta["aetos_answers_differ"])
    L.append("- Keystone %s (Debian), gunicorn, 2 workers, sqlite, no cache. wrk %s. Envoy log level `warning`."
             % (meta["keystone"], meta["wrk"]))
    L.append("")
    return "\n".join(L)


def write_section(L, results, w):
    b = results["write"]["batches"]
    spb = b["samples_per_batch"]
    L.append("## (e) Remote write (synthetic upstream)")
    L.append("")
    L.append("POST `/api/v1/write`, Remote-Write 1.0 (snappy block, protobuf), X-Auth-Token of alice (role member of "
             "team-a); %d distinct batches in turn, each %s samples in %s series of one sample (as Prometheus sends "
             "them), %.1f labels per series, %.0f%% of the series with a `project` label of another project (the filter "
             "overwrites it); %.0f KiB snappy (%.0f KiB protobuf) per batch, %.0f KiB forwarded by the filter. The "
             "synthetic upstream reads each body and answers 204. The filter's configuration adds `\"write\": "
             "{\"enabled\": true}`. *Native*: the same decode → enforce → encode of the same batch files, natively "
             "(bench/stages, criterion `write/decode_enforce_encode`, the filter's release profile, glibc's allocator), "
             "on the Envoys' CPU, %s s per round right after the round's write measurements."
             % (b["batches"], "{:,}".format(spb), "{:,}".format(b["series"] // b["batches"]), b["labels_per_series"],
                100 * b["with_project_label"], b["snappy_bytes"] / 1024, b["protobuf_bytes"] / 1024,
                b["forwarded_bytes"] / 1024, results["meta"].get("native_seconds", "?")))
    L.append("")
    L.append("| Configuration | batches/s | samples/s | Envoy busy | Envoy CPU µs per batch | samples per CPU-second | "
             "samples per CPU-second of each round | p50 ms | p99 ms | errors |")
    L.append("|---|--:|--:|--:|--:|--:|---|--:|--:|--:|")
    for cfg in ("plain", "noop", "filter"):
        r = w.get(cfg)
        if not r:
            continue
        L.append("| %s | %s | %s | %.0f%% | %.0f | **%s** | %s | %s | %s | %d |" % (
            CONFIGS[cfg], fmt_rps(r["rps"]), fmt_rps(r["samples_per_s"]), 100 * r["cpu_share"], r["cpu"],
            fmt_rps(r["samples_per_cpu_s"]), ", ".join(fmt_rps(r["spc_by_round"][k]) for k in sorted(r["spc_by_round"])),
            fmt_ms(r["p50"]), fmt_ms(r["p99"]), r["errors"]))
    L.append("| native decode → enforce → encode (one core) | %s | %s | | %.0f | %s | %s | | | |" % (
        fmt_rps(1e6 / w["native_us"]), fmt_rps(w["native_samples_per_s"]), w["native_us"],
        fmt_rps(w["native_samples_per_s"]), ", ".join(fmt_rps(spb / (x / 1e6)) for x in w["native_rounds"])))
    L.append("")

    def med(xs):
        fmt = "%.2f" if min(xs or [1]) >= 0.1 else "%.4f"
        return ("**%s** (rounds: %s)" % (fmt % statistics.median(xs), ", ".join(fmt % x for x in xs))) if xs else "—"
    L.append("- Samples per Envoy CPU-second, the rounds' own ratios: filter / plain Envoy %s; filter / no-op Wasm "
             "filter %s; no-op / plain %s." % (med(w.get("spc_plain")), med(w.get("spc_noop")),
                                                  med(w.get("spc_noop_plain"))))
    for name, what in (("noop", "the no-op Wasm filter"), ("plain", "plain Envoy")):
        o = w.get("over_" + name)
        if o:
            L.append("- The filter's Envoy CPU per batch beyond %s: **%.0f µs**, %.2f× the native %.0f µs (rounds: %s)%s."
                     % (what, o["us"], o["ratio"], w["native_us"], ", ".join("%.2f" % x for x in o["rounds"]),
                        " (the target's measure)" if name == "noop" else ""))
    f = w["filter"]
    L.append("- One Envoy worker with the filter: **%s samples/s** (%s batches/s) with the worker busy %.0f%% of its "
             "CPU; natively the same work runs at %s samples/s on one core."
             % (fmt_rps(f["samples_per_s"]), fmt_rps(f["rps"]), 100 * f["cpu_share"], fmt_rps(w["native_samples_per_s"])))
    if w["native_background"] > results["meta"].get("max_background", 0.10):
        L.append("- ⚠ other processes used %.0f%% of the CPUs during the native timings." % (100 * w["native_background"]))
    L.append("")


def codes(c):
    return ", ".join("%s: %d" % (k, v) for k, v in sorted(c.items()))


def ms_list(v):
    return ", ".join("%.0f" % x for x in v)


# ------------------------------------------------------------------------------------------- SVG plot
def svg(results):
    """Left: req/s, a linear axis per group (so the ratios inside a group show as lengths); right: p50 and
    p99 latency on one log axis."""
    m = medians(results)
    groups = [(up, wl) for up, wl in ORDER if any((up, wl, c) in m for c in CONFIGS)]
    row_h, group_gap, top = 17, 30, 100
    label_w, x0a, wa = 210, 215, 380       # throughput panel
    x0b, wb = 680, 380                      # latency panel
    width = x0b + wb + 110                  # room for the last latency label
    n_rows = sum(1 for up, wl in groups for c in CONFIGS if (up, wl, c) in m)
    height = top + n_rows * row_h + len(groups) * group_gap + 60

    lat_vals = [v["p50"] for v in m.values()] + [v["p99"] for v in m.values()]
    l_lo = 10 ** math.floor(math.log10(max(1e-3, min(lat_vals))))
    l_hi = 10 ** math.ceil(math.log10(max(lat_vals)))

    def nice(v):
        e = 10 ** math.floor(math.log10(v))
        return next(k * e for k in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if k * e >= v)

    def xb(v):
        return x0b + wb * (math.log10(max(v, l_lo)) - math.log10(l_lo)) / (math.log10(l_hi) - math.log10(l_lo))

    out = []
    o = out.append
    o('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
      'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="11">' % (width, height, width, height))
    o('<rect width="100%" height="100%" fill="white"/>')
    meta = results["meta"]
    o('<text x="12" y="22" font-size="15" font-weight="bold">keystone-prom-wasm benchmark: medians of %d rounds, '
      'wrk -t1 -c%d, %d s each, Envoy --concurrency 1</text>' % (meta["rounds"], meta["connections"], meta["duration_s"]))
    o('<text x="12" y="40" fill="#555">%s · %s · %d cores</text>' % (escape(meta["date"]), escape(meta["cpu"]), meta["cores"]))
    o('<text x="%d" y="62" font-weight="bold">Throughput (req/s; linear, one scale per group)</text>' % x0a)
    o('<text x="%d" y="62" font-weight="bold">Latency (ms, log): p50 dark, p99 light</text>' % x0b)
    axis_bottom = height - 45
    d = l_lo
    while d <= l_hi * 1.0001:
        for k in (1, 2, 5):
            v = d * k
            if v > l_hi * 1.0001:
                break
            x = xb(v)
            o('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s"/>'
              % (x, top - 14, x, axis_bottom, "#bbb" if k == 1 else "#eee"))
            if k == 1:
                lab = "{:,.0f}".format(v) if v >= 1 else "%g" % v
                o('<text x="%.1f" y="%d" text-anchor="middle" fill="#555">%s</text>' % (x, top - 18, lab))
                o('<text x="%.1f" y="%d" text-anchor="middle" fill="#555">%s</text>' % (x, axis_bottom + 14, lab))
        d *= 10
    o('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#bbb"/>' % (x0a, top - 14, x0a, axis_bottom))
    y = top
    for up, wl in groups:
        rows = [(c, m[(up, wl, c)]) for c in CONFIGS if (up, wl, c) in m]
        gmax = nice(max(r["rps"] for _, r in rows) * 1.18)
        y += 8
        o('<text x="12" y="%d" font-weight="bold">%s: %s</text>' % (y + 6, escape(UPSTREAMS[up]), escape(WORKLOADS[wl])))
        o('<text x="%d" y="%d" text-anchor="end" fill="#888">scale 0 to %s</text>' % (x0a + wa, y + 6, fmt_rps(gmax)))
        y += 12
        for c, r in rows:
            col = COLORS[c]
            o('<text x="%d" y="%d" text-anchor="end">%s</text>' % (label_w, y + row_h - 5, escape(SHORT[c])))
            xe = x0a + wa * r["rps"] / gmax
            o('<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>' % (x0a, y + 2, max(1, xe - x0a), row_h - 4, col))
            o('<text x="%.1f" y="%d" fill="#222">%s</text>' % (xe + 4, y + row_h - 5, fmt_rps(r["rps"])))
            x99, x50 = xb(r["p99"]), xb(r["p50"])
            o('<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s" fill-opacity="0.35"/>'
              % (x0b, y + 2, max(1, x99 - x0b), row_h - 4, col))
            o('<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>' % (x0b, y + 2, max(1, x50 - x0b), row_h - 4, col))
            o('<text x="%.1f" y="%d" fill="#222">%s / %s</text>' % (x99 + 4, y + row_h - 5, fmt_ms(r["p50"]), fmt_ms(r["p99"])))
            y += row_h
        y += group_gap - 20
    o('<text x="12" y="%d" fill="#555">Targets: %s</text>' % (height - 12, escape("; ".join(
        "%s %s" % (name.split(",")[0], "PASS" if ok else "FAIL") for name, _, _, ok in targets(results)))))
    o("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    import json
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "docs", "benchmark.json")
    with open(src) as f:
        res = json.load(f)
    d = os.path.dirname(os.path.abspath(src))
    md = markdown(res)
    with open(os.path.join(d, "benchmark.md"), "w") as f:
        f.write(md)
    with open(os.path.join(d, "benchmark.svg"), "w") as f:
        f.write(svg(res))
    print(md)
