"""Ports and processes on 127.0.0.1: picking a free port, starting a program in its own process group,
waiting until it answers, and stopping the whole group."""
import http.client
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request


def free_port():
    """A port nothing listens on right now (a start that races for it retries on another)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, headers=None, timeout=10):
    """(status, body) of a GET; HTTP errors are answers too."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def read_request_body(handler):
    """The body of the request an http.server handler is serving (Content-Length, or chunked as Envoy
    sends a body whose length it changed)."""
    if "chunked" in (handler.headers.get("Transfer-Encoding") or "").lower():
        out = b""
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return out
            out += handler.rfile.read(size)
            handler.rfile.readline()
    n = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(n) if n else b""


def tail(path, n=40):
    """The last `n` lines of a log file (or why it can't be read)."""
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return "(%s)" % e


def wait_for(pred, timeout=5.0, interval=0.05):
    """pred()'s first true value, or its last value once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def wait_ready(url, proc, timeout=60, interval=0.01, name=None):
    """Seconds until `url` answers 200; raises if the process dies or time runs out."""
    name = name or getattr(proc, "bench_name", "process %d" % proc.pid)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError("%s exited with %s" % (name, proc.returncode))
        try:
            if http_get(url, timeout=2)[0] == 200:
                return time.monotonic() - t0
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(interval)
    raise RuntimeError("%s not ready after %ds" % (name, timeout))


def spawn(argv, log_path, cpus=None, cwd=None, env=None):
    """Starts `argv` in a new session (its own process group, e.g. gunicorn's workers, untouched by
    the terminal's ^C), output to `log_path`, optionally pinned to `cpus`."""
    def pre():
        if cpus is not None:
            os.sched_setaffinity(0, cpus)
    with open(log_path, "ab") as f:
        return subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd,
                                env=env, preexec_fn=pre if cpus is not None else None, start_new_session=True)


def stop_group(proc, timeout=10):
    """SIGTERM to the process's group, SIGKILL after `timeout` seconds (a child of this process)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)


def alive(pid):
    """The process runs (a zombie counts as dead)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError, ValueError):
        return False


def _signal(pid, sig):
    try:
        os.killpg(pid, sig)
    except OSError:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def stop_pids(pids, timeout=15):
    """The same for processes that are not this one's children (servers a former run started): SIGTERM
    to each group at once, up to `timeout` seconds to go, then SIGKILL to what is left."""
    pids = [p for p in pids if p and alive(p)]
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return
        time.sleep(0.1)
    for pid in pids:
        if alive(pid):
            _signal(pid, signal.SIGKILL)


class Procs:
    """Every process a run starts, each in its own group; all stopped by stop_all (also on errors and
    signals). Their pids are also appended to `pidfile`, for a cleanup from outside."""

    def __init__(self, pidfile):
        self.procs = []
        self.pidfile = pidfile

    def start(self, name, argv, log_path, cpus=None, cwd=None, env=None):
        p = spawn(argv, log_path, cpus=cpus, cwd=cwd, env=env)
        p.bench_name = name
        self.procs.append(p)
        with open(self.pidfile, "a") as pf:
            pf.write("%d\n" % p.pid)
        return p

    def stop(self, p, timeout=10):
        stop_group(p, timeout)
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self):
        for p in list(self.procs):
            self.stop(p)
