"""What the benchmark measures with: CPU seconds of processes and of the machine, memory, wrk's summary
line, percentiles, and the predictions it checks answers and Keystone calls against."""
import hashlib
import json
import os
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def machine_busy(seconds=2.0):
    """Share of both CPUs busy (user+system+irq, everything but idle and iowait) over `seconds`: taken
    while the benchmark's own processes are idle, it is what other processes use."""
    def snap():
        with open("/proc/stat") as f:
            f = f.readline().split()[1:]
        vals = list(map(int, f))
        return sum(vals), vals[3] + vals[4]
    t0, i0 = snap()
    time.sleep(seconds)
    t1, i1 = snap()
    return 1 - (i1 - i0) / max(1, t1 - t0)


def task_cpu_total():
    """user + nice + system seconds of all CPUs (irq/softirq time is not charged to processes)."""
    with open("/proc/stat") as f:
        v = list(map(int, f.readline().split()[1:4]))
    return sum(v) / CLK_TCK


def pgid_of(pid):
    """The process group of `pid` (field 5 of /proc/PID/stat), or None if it is gone."""
    try:
        with open("/proc/%s/stat" % pid) as f:
            st = f.read()
        return int(st[st.rindex(")") + 2:].split()[2])
    except (OSError, ValueError):
        return None


def pids_in_groups(pgids):
    """Pids of every process in these process groups (e.g. gunicorn's master and workers)."""
    return [int(d) for d in os.listdir("/proc") if d.isdigit() and pgid_of(d) in pgids]


def wrk_result(text):
    """The BENCHJSON summary line our wrk scripts print (LUA_DONE), with rps added; None without one."""
    for line in text.splitlines():
        if line.startswith("BENCHJSON "):
            r = json.loads(line[len("BENCHJSON "):])
            r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
            return r
    return None


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])   # utime + stime
    return total / CLK_TCK


def canonical(data):
    """A query answer with its series in a fixed order (Prometheus does not sort aggregations)."""
    res = data.get("result")
    if isinstance(res, list):
        res = sorted(res, key=lambda s: json.dumps(s, sort_keys=True))
    return data.get("resultType"), res


def token_slot(token, slots):
    h = hashlib.sha256()
    for s in ("token", token):
        b = s.encode()
        h.update(len(b).to_bytes(8, "big"))
        h.update(b)
    return int.from_bytes(h.digest()[:8], "big") % slots


def slot_prediction(first, fresh, slots):
    """(credentials of the run sharing a slot with another one, [least, most] Keystone calls the replay
    of `first` should cause). Replaying, a slot shared by k credentials costs k - 1 calls if the one cached
    last is replayed first, k if not (which one completed last among concurrent requests is not known)."""
    by_slot = {}
    for t in first:
        by_slot.setdefault(token_slot(t, slots), []).append(t)
    least = sum(len(v) - 1 for v in by_slot.values() if len(v) > 1)
    most = sum(len(v) for v in by_slot.values() if len(v) > 1)
    all_slots = [token_slot(t, slots) for t in first + fresh]
    shared = sum(1 for s in all_slots if all_slots.count(s) > 1)
    return shared, [least, most]


def pctl(values, p):
    """Nearest-rank percentile."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]
