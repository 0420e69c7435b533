"""`make demo` as a new operator meets it (scripts/demo.sh): every command it prints is run, as printed,
and must work as the tenant it names; the data stays live (the exporter is scraped); a taken port stops
the demo before anything is installed or started, naming the port.

The demo runs on its well-known ports (Keystone 5000, Prometheus 9090, Envoy 10000, Envoy admin 9901,
exporter 9150) in a directory of its own, and is stopped at the end."""
import json
import os
import re
import socket
import subprocess
import tempfile

import pytest
import requests

from conftest import REPO

DEMO_PORTS = (5000, 9090, 9150, 9901, 10000)


def run(cmd, env=None, timeout=900):
    return subprocess.run(["bash", "-c", cmd], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


# First: the demo below holds these ports once it is up.
def test_a_taken_port_stops_the_demo_before_anything_starts(tmp_path):
    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            held.bind(("127.0.0.1", 9150))
        except OSError:
            pytest.skip("port 9150 is taken already")
        held.listen(1)
        d = str(tmp_path / "demo")
        r = run("bash scripts/demo.sh", env={"DEMO_DIR": d, "DEMO_NO_WAIT": "1"}, timeout=120)
    assert r.returncode != 0
    assert re.search(r"port .*9150 \(exporter\)", r.stdout + r.stderr), r.stdout + r.stderr
    assert not os.path.exists(d), "the demo started something"
    assert "pip install" not in r.stderr and "apt-get" not in r.stderr, r.stderr


@pytest.fixture(scope="module")
def demo():
    d = tempfile.mkdtemp(prefix="kpw-demo-")
    r = run("bash scripts/demo.sh", env={"DEMO_DIR": d, "DEMO_NO_WAIT": "1"})
    try:
        assert r.returncode == 0, "demo.sh failed (rc=%d)\n%s\n%s" % (r.returncode, r.stdout[-3000:], r.stderr[-3000:])
        with open(os.path.join(d, "stack.json")) as f:
            yield r.stdout, json.load(f)
    finally:
        run("bash scripts/stack.sh down %s" % d, timeout=120)


def printed_commands(text):
    """(exports, commands): the `export` lines, and every other command line, as printed."""
    block = text[text.index("# Tokens"):text.index("\nLogs:")]
    exports, commands = [], []
    for line in block.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        (exports if line.startswith("export ") else commands).append(line)
    return exports, commands


def test_every_printed_command_works_as_its_tenant(demo):
    text, st = demo
    a, b = st["TEAM_A_ID"], st["TEAM_B_ID"]
    exports, commands = printed_commands(text)
    assert len(commands) >= 15, commands
    out = {}
    for cmd in commands:
        r = run("set -euo pipefail\n%s\n%s" % ("\n".join(exports), cmd), timeout=120)
        assert r.returncode == 0, "printed command failed (rc=%d): %s\n%s\n%s" % (r.returncode, cmd, r.stdout, r.stderr)
        out[cmd] = r.stdout

    def output(*words):
        found = [o for c, o in out.items() if all(w in c for w in words)]
        assert len(found) == 1, (words, list(out))
        return found[0]

    mem = output("ALICE_TOKEN", "query=ceilometer_memory_usage")
    assert a in mem and b not in mem and "web-1" in mem and "db-1" in mem, mem
    counts = json.loads(output("RITA_TOKEN", "count by (project)"))["data"]["result"]
    assert [c["metric"]["project"] for c in counts] == [b], counts
    # alice's live servers (and, in the demo's first minutes, the seeded ones), never team-b's
    basic = {s["metric"]["resource_name"] for s in json.loads(output("curl -s -u 'alice@tenants"))["data"]["result"]}
    assert {"db-1", "web-1"} <= basic and "batch-1" not in basic, basic
    agents = json.loads(output("RITA_TOKEN", "up{job="))["data"]["result"]
    assert [(r["metric"]["project"], r["metric"]["agent"]) for r in agents] == [(b, "team-b")], agents
    assert json.loads(output("/api/v1/write"))["errorType"] == "forbidden"
    fed = output("/federate")
    assert "batch-1" in fed and 'project="%s"' % b in fed and a not in fed and "web-1" not in fed, fed
    assert "401" in output("curl -s -i").splitlines()[0]
    assert json.loads(output('{project="%s"}' % b))["errorType"] == "forbidden"
    assert json.loads(output("status/config"))["status"] == "error"
    labels = json.loads(output("label/project/values"))["data"]
    assert labels == [a], labels
    assert "web-1" in output("promtool query instant") and b not in output("promtool query instant")
    assert output("promtool query range").strip(), "no data from promtool query range"
    assert "ceilometer_memory_usage" in output("metric list")
    show = output("metric show ceilometer_memory_usage")
    assert "web-1" in show and "batch-1" not in show, show
    q = output("metric query")
    assert "batch-1" in q and "web-1" not in q, q


def test_the_data_stays_live(demo):
    """The exporter is scraped: the newest sample alice sees moves on (waits for the next scrape)."""
    _, st = demo
    s = requests.Session()
    s.headers["X-Auth-Token"] = st["ALICE_TOKEN"]

    def newest():
        r = s.get(st["ENVOY_URL"] + "/api/v1/query", params={"query": "max(timestamp(ceilometer_cpu))"}, timeout=20)
        res = r.json()["data"]["result"]
        return float(res[0]["value"][1]) if res else None

    first = newest()
    assert first is not None, "no live sample"
    for _ in range(120):
        r = run("sleep 1")
        assert r.returncode == 0
        if (newest() or 0) > first:
            return
    pytest.fail("no new scrape within two minutes")
