"""Real Prometheus agents (Debian's /usr/bin/prometheus 2.42, `--enable-feature=agent`) that scrape and
remote-write, for the write path's end-to-end tests; and a scrape target that counts its scrapes.

    a = start_agent(workdir, "team-a", "http://127.0.0.1:PORT/api/v1/write",
                    auth=basic_appcred(APPCRED_ID, SECRET), external_labels={"site": "x"})
    a.metric("prometheus_remote_storage_samples_retried_total")   # the agent's own counters
    a.reload(scrape=False)                                        # stop scraping, keep sending
    a.stop()

Each agent lives in WORKDIR/NAME: prometheus.yml, the secret files (0600), data/ (the agent's WAL),
prometheus.log and prometheus.pid, like harness/stack.py's servers. It listens on a random free port
(harness.procs.free_port; a start that loses the port race retries on another), scrapes itself (job
"agent", target its own listener) and any `targets`, every `scrape_interval`, and remote-writes with
a short batch deadline and small backoffs, so that it catches up fast after errors.

Remote write's credentials, one of:
- basic_appcred(id, secret): `basic_auth` with username `*<application credential id>` and the secret
  in `password_file` (the filter's application-credential form of Basic);
- oauth2_appcred(id, secret, token_url): `oauth2` client credentials (client_id, client_secret_file,
  token_url), e.g. Keystone's /v3/OS-OAUTH2/token: Prometheus sends `Authorization: Bearer <token>`;
- token_header(token): `headers: {X-Auth-Token: <token>}`;
- None: no credentials.
"""
import http.server
import json
import os
import re
import threading
import time

from harness.procs import free_port, http_get, spawn, stop_group, tail

PROMETHEUS = "/usr/bin/prometheus"

QUEUE_CONFIG = {"capacity": 2500, "max_shards": 1, "min_shards": 1, "max_samples_per_send": 500,
                "batch_send_deadline": "500ms", "min_backoff": "100ms", "max_backoff": "1s"}


def basic_appcred(appcred_id, secret):
    return {"kind": "basic_auth", "username": "*" + appcred_id, "secret": secret}


def basic_auth(username, password):
    return {"kind": "basic_auth", "username": username, "secret": password}


def oauth2_appcred(appcred_id, secret, token_url, endpoint_params=None):
    return {"kind": "oauth2", "client_id": appcred_id, "secret": secret, "token_url": token_url,
            "endpoint_params": endpoint_params}


def token_header(token, header="X-Auth-Token"):
    return {"kind": "headers", "headers": {header: token}}


def _yaml(obj):
    """JSON is YAML: Prometheus reads a JSON document as its configuration; quoted strings keep
    durations and secrets literal."""
    return json.dumps(obj, indent=2)


def agent_config(d, name, port, remote_write_url, auth=None, external_labels=None, scrape_interval="1s",
                 targets=(), scrape=True, queue_config=None, metadata_interval="1m", send_metadata=True,
                 remote_timeout="10s", extra_remote_write=None):
    """The agent's configuration (a dict), writing its secret files into `d`."""
    rw = {"url": remote_write_url, "name": name, "remote_timeout": remote_timeout,
          "queue_config": dict(QUEUE_CONFIG, **(queue_config or {})),
          "metadata_config": {"send": bool(send_metadata), "send_interval": metadata_interval}}
    if auth:
        kind = auth["kind"]
        if kind in ("basic_auth", "oauth2"):
            secret_file = os.path.join(d, "%s.secret" % kind)
            fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(auth["secret"])
        if kind == "basic_auth":
            rw["basic_auth"] = {"username": auth["username"], "password_file": secret_file}
        elif kind == "oauth2":
            rw["oauth2"] = {"client_id": auth["client_id"], "client_secret_file": secret_file,
                            "token_url": auth["token_url"]}
            if auth.get("endpoint_params"):
                rw["oauth2"]["endpoint_params"] = auth["endpoint_params"]
        elif kind == "headers":
            rw["headers"] = dict(auth["headers"])
        else:
            raise ValueError("unknown auth kind %r" % kind)
    rw.update(extra_remote_write or {})
    cfg = {"global": {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval,
                      "external_labels": dict(external_labels or {})},
           "scrape_configs": [], "remote_write": [rw]}
    if scrape:
        cfg["scrape_configs"].append({"job_name": "agent", "static_configs": [
            {"targets": ["127.0.0.1:%d" % port], "labels": {"agent": name}}]})
        for i, t in enumerate(targets):
            t = t if isinstance(t, dict) else {"targets": [t]}
            job = {"job_name": t.get("job", "target-%d" % i), "honor_labels": t.get("honor_labels", False),
                   "static_configs": [{"targets": list(t["targets"]), "labels": dict(t.get("labels", {}), agent=name)}]}
            if t.get("scrape_interval"):
                job["scrape_interval"] = job["scrape_timeout"] = t["scrape_interval"]
            if t.get("metrics_path"):
                job["metrics_path"] = t["metrics_path"]
            cfg["scrape_configs"].append(job)
    return cfg


def parse_metrics(text):
    """Prometheus' text exposition: [(name, {label: value}, float)] (comments skipped)."""
    out = []
    lab = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)', line)
        if not m:
            continue
        labels = {k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in lab.findall(m.group(3) or "")}
        try:
            out.append((m.group(1), labels, float(m.group(4))))
        except ValueError:
            pass
    return out


class Agent:
    """A running Prometheus agent (see start_agent)."""

    def __init__(self, name, d, port, proc, start_args):
        self.name, self.dir, self.port, self.proc = name, d, port, proc
        self.url = "http://127.0.0.1:%d" % port
        self.log_path = os.path.join(d, "prometheus.log")
        self.config_path = os.path.join(d, "prometheus.yml")
        self.start_args = start_args

    # ---------------------------------------------------------------- its own metrics and log
    def metrics(self):
        status, body = http_get(self.url + "/metrics", timeout=10)
        if status != 200:
            raise RuntimeError("agent %s /metrics: HTTP %d" % (self.name, status))
        return parse_metrics(body.decode(errors="replace"))

    def metric(self, name, **match):
        """Sum of the agent's own metric `name` over the series whose labels include `match`."""
        return sum(v for n, labels, v in self.metrics()
                   if n == name and all(labels.get(k) == str(want) for k, want in match.items()))

    def remote_metric(self, name):
        """One of the prometheus_remote_storage_* counters of this agent's remote write queue."""
        return self.metric(name, remote_name=self.name)

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def tail(self, n=40):
        return tail(self.log_path, n)

    # ---------------------------------------------------------------- configuration
    def write_config(self, **changes):
        kw = dict(self.start_args, **changes)
        self.start_args = kw
        cfg = agent_config(self.dir, self.name, self.port, **kw)
        with open(self.config_path, "w") as f:
            f.write(_yaml(cfg))
        return cfg

    def reload(self, **changes):
        """Rewrites the configuration with `changes` (agent_config's keywords, e.g. scrape=False) and
        has the agent reload it; raises if the agent refuses it."""
        self.write_config(**changes)
        from harness.stack import http
        status, _, body = http("POST", self.url + "/-/reload", b"", timeout=30)
        if status != 200:
            raise RuntimeError("agent %s reload: HTTP %d %s\n%s" % (self.name, status, body[:300], self.tail()))

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        stop_group(self.proc)


def start_agent(workdir, name, remote_write_url, ready_timeout=60, **kw):
    """Starts an agent in WORKDIR/NAME (agent_config's keywords: auth, external_labels, scrape_interval,
    targets, queue_config, metadata_interval, send_metadata, ...); returns it once /-/ready answers."""
    d = os.path.join(workdir, name)
    os.makedirs(os.path.join(d, "data"), exist_ok=True)
    kw = dict(kw, remote_write_url=remote_write_url)
    last = None
    for _ in range(3):
        port = free_port()
        agent = Agent(name, d, port, None, kw)
        agent.write_config()
        proc = spawn([PROMETHEUS, "--enable-feature=agent", "--config.file=%s" % agent.config_path,
                      "--storage.agent.path=%s" % os.path.join(d, "data"),
                      "--web.listen-address=127.0.0.1:%d" % port, "--web.enable-lifecycle",
                      "--log.level=debug"], agent.log_path)
        with open(os.path.join(d, "prometheus.pid"), "w") as f:
            f.write("%d\n" % proc.pid)
        agent.proc = proc
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if http_get(agent.url + "/-/ready", timeout=2)[0] == 200:
                    return agent
            except OSError:
                pass
            time.sleep(0.1)
        last = tail(agent.log_path, 30)
        stop_group(proc)
        if "address already in use" not in last:
            break
    raise RuntimeError("prometheus agent %s did not start; log tail:\n%s" % (name, last))


# ================================================================================ a counting target
class _CountingHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        with srv.lock:
            if self.path.split("?")[0] != "/metrics":
                body, status = b"not found\n", 404
            elif srv.frozen:
                body, status = b"frozen: no more scrapes are counted\n", 503
            else:
                srv.count += 1
                srv.served.append(srv.count)
                body, status = ("# TYPE %s gauge\n%s %d\n" % (srv.metric, srv.metric, srv.count)).encode(), 200
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


class CountingTarget:
    """A scrape target in this process whose one gauge, METRIC, is the number of the scrape: 1 on the
    first scrape, 2 on the second, ... A receiver that lost no sample holds every value a scraper
    appended. `served` lists the values handed out; after `freeze` scrapes fail and count nothing."""

    def __init__(self, metric="kpw_scrape_seq"):
        self.httpd = _Server(("127.0.0.1", 0), _CountingHandler)
        self.httpd.lock = threading.Lock()
        self.httpd.count = 0
        self.httpd.served = []
        self.httpd.metric = metric
        self.httpd.frozen = False
        self.metric = metric
        self.port = self.httpd.server_address[1]
        self.address = "127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="counting-target", daemon=True)

    def start(self):
        self.thread.start()
        return self

    @property
    def count(self):
        with self.httpd.lock:
            return self.httpd.count

    def freeze(self):
        """From now on every scrape fails (503) and counts nothing: the number of successful scrapes
        is final. A scrape served before stays served (the scraper appends it)."""
        with self.httpd.lock:
            self.httpd.frozen = True
            return self.httpd.count

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
