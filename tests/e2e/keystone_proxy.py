"""A misbehaving Keystone on demand: a small asyncio proxy between Envoy and Keystone (stdlib only).

Envoy's `keystone` cluster points at the proxy; the tests change what it does at run time:

    pass        forward every request to Keystone and its answer back (the default)
    delay       wait `delay_ms` before forwarding (a slow Keystone: the filter's timeout fires first)
    down        stop listening: connections are refused (Keystone is down)
    error       answer every request with HTTP 500 (Keystone is broken) without asking Keystone
    reset       accept, read the request, close the connection without an answer
    flap        per request, in turn: pass, error, reset, delay (a Keystone that comes and goes)

It works one request per connection: it reads one HTTP/1.1 request (Content-Length or chunked body),
forwards it with `Connection: close` and relays the answer until Keystone closes. Keystone under
gunicorn's sync workers closes every connection after one answer anyway, and so does every answer made
here, so Envoy never sends a second request on a connection.

Every request is recorded (method, path, the mode applied, the SHA-256 of X-Subject-Token, whether
X-Auth-Token is the subject token itself, OpenStack-Identity-Access-Rules, and for token requests the
methods, user and application credential id or name; never a token, password or secret), so tests can
count the filter's callouts per credential and see how it authenticates them. `fail_next(status)` answers
the next matching request with that status (e.g. a 401 that makes a service token look stale).

In-process use (the e2e fixtures):

    p = KeystoneProxy("127.0.0.1", keystone_port).start()
    p.set_mode("delay", delay_ms=1500)
    ...
    p.stop()

Standalone, with a control endpoint:

    python keystone_proxy.py --target 127.0.0.1:5000 --listen 127.0.0.1:15000 --control 127.0.0.1:15001
    curl '127.0.0.1:15001/mode?set=delay&ms=1500'      # or set=pass|down|error|reset|flap
    curl '127.0.0.1:15001/stats'                        # JSON: mode and recorded requests
"""
import argparse
import asyncio
import hashlib
import json
import threading
import time
import urllib.parse

MODES = ("pass", "delay", "down", "error", "reset", "flap")
FLAP_CYCLE = ("pass", "error", "reset", "delay")
MAX_HEAD = 64 * 1024
MAX_BODY = 4 * 1024 * 1024


class BadRequest(Exception):
    pass


async def read_request(reader):
    """One HTTP/1.1 request: (head bytes, body bytes, method, path, headers dict lower-case)."""
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > MAX_HEAD:
        raise BadRequest("head too large")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise BadRequest("bad request line %r" % lines[0])
    method, path = parts[0], parts[1]
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    body = b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                # trailers until an empty line
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                break
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
            if sum(map(len, chunks)) > MAX_BODY:
                raise BadRequest("body too large")
        body = b"".join(chunks)
        headers.pop("transfer-encoding", None)
        headers["content-length"] = str(len(body))
    else:
        n = int(headers.get("content-length", "0") or "0")
        if n > MAX_BODY:
            raise BadRequest("body too large")
        body = await reader.readexactly(n) if n else b""
    return method, path, headers, body


def auth_summary(body):
    """Who a POST /v3/auth/tokens authenticates, without its secrets: methods, user, app credential."""
    try:
        ident = json.loads(body)["auth"]["identity"]
    except (ValueError, KeyError, TypeError):
        return None
    out = {"methods": ident.get("methods"), "user": None, "appcred": None}
    user = (ident.get("password") or {}).get("user") or {}
    out["user"] = user.get("id") or user.get("name")
    ac = ident.get("application_credential") or {}
    out["appcred"] = ac.get("id") or ac.get("name")
    if not out["user"] and isinstance(ac.get("user"), dict):
        out["user"] = ac["user"].get("id") or ac["user"].get("name")
    return out


def build_request(method, path, headers, body):
    h = dict(headers)
    h["connection"] = "close"
    h["content-length"] = str(len(body))
    if not body and method in ("GET", "HEAD", "DELETE"):
        h.pop("content-length")
    head = "%s %s HTTP/1.1\r\n" % (method, path) + "".join("%s: %s\r\n" % kv for kv in h.items()) + "\r\n"
    return head.encode("latin-1") + body


def simple_response(status, reason, body, extra=()):
    head = "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n" % (
        status, reason, len(body))
    head += "".join("%s: %s\r\n" % kv for kv in extra)
    return head.encode() + b"\r\n" + body


class KeystoneProxy:
    def __init__(self, target_host, target_port, host="127.0.0.1", port=0, control_port=None):
        self.target = (target_host, int(target_port))
        self.host, self.port = host, int(port)
        self.control_port = control_port
        self.mode, self.delay_ms = "pass", 0
        self.records = []             # dicts: t, method, path, mode, subject_sha256
        self._flap_i = 0
        self._inject = []             # (method, status): answer the next such request with status
        self._lock = threading.Lock()
        self._loop = None
        self._thread = None
        self._server = None
        self._control = None
        self._tasks = set()
        self._ready = threading.Event()
        self._error = None

    # ------------------------------------------------------------------ control (any thread)
    def start(self):
        self._thread = threading.Thread(target=self._run, name="keystone-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("keystone proxy did not start")
        if self._error:
            raise self._error
        return self

    def set_mode(self, mode, delay_ms=None):
        if mode not in MODES:
            raise ValueError("mode must be one of %s" % (MODES,))
        fut = asyncio.run_coroutine_threadsafe(self._set_mode(mode, delay_ms), self._loop)
        fut.result(10)

    def fail_next(self, status, method="GET", path_prefix="/v3/auth/tokens"):
        """Answer the next METHOD request under path_prefix with `status` (no Keystone involved), whatever
        the mode; e.g. fail_next(401) makes the next validation look like a stale service token."""
        with self._lock:
            self._inject.append((method, path_prefix, int(status)))

    def clear_injections(self):
        with self._lock:
            self._inject.clear()

    def stop(self):
        if not self._loop or not self._thread:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        except Exception:  # pragma: no cover - best effort
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None

    def snapshot(self):
        with self._lock:
            return list(self.records)

    def count(self, method=None, path_prefix=None, subject=None, since=0):
        """Requests recorded at index >= since, filtered by method, path prefix, and X-Subject-Token."""
        sha = hashlib.sha256(subject.encode()).hexdigest() if subject else None
        n = 0
        for r in self.snapshot()[since:]:
            if method and r["method"] != method:
                continue
            if path_prefix and not r["path"].startswith(path_prefix):
                continue
            if sha and r["subject_sha256"] != sha:
                continue
            n += 1
        return n

    def mark(self):
        """Index to pass as `since` to count only what comes after now."""
        with self._lock:
            return len(self.records)

    # ------------------------------------------------------------------ event loop
    def _run(self):
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._listen())
            if self.control_port is not None:
                self._control = self._loop.run_until_complete(
                    asyncio.start_server(self._handle_control, self.host, int(self.control_port)))
                self.control_port = self._control.sockets[0].getsockname()[1]
        except Exception as e:
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _listen(self):
        self._server = await asyncio.start_server(self._handle, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _set_mode(self, mode, delay_ms):
        if mode not in MODES:
            raise ValueError("mode must be one of %s" % (MODES,))
        if delay_ms is not None:
            self.delay_ms = int(delay_ms)
        if mode == "down" and self._server is not None:
            # no wait_closed(): from Python 3.12 on it also waits for the open connections (a delayed one)
            self._server.close()
            self._server = None
        elif mode != "down" and self._server is None:
            for _ in range(50):   # the port may linger for a moment
                try:
                    await self._listen()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
            else:
                raise RuntimeError("cannot listen again on port %d" % self.port)
        self.mode = mode
        self._flap_i = 0

    async def _shutdown(self):
        for srv in (self._server, self._control):
            if srv is not None:
                srv.close()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._server = self._control = None

    def _effective_mode(self):
        if self.mode != "flap":
            return self.mode
        m = FLAP_CYCLE[self._flap_i % len(FLAP_CYCLE)]
        self._flap_i += 1
        return m

    async def _handle(self, reader, writer):
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            try:
                method, path, headers, body = await asyncio.wait_for(read_request(reader), 30)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
                    BadRequest, ValueError, ConnectionError):
                return
            mode, inject = self._effective_mode(), None
            with self._lock:
                for i, (m, prefix, status) in enumerate(self._inject):
                    if m == method and path.startswith(prefix):
                        inject = self._inject.pop(i)[2]
                        mode = "inject-%d" % inject
                        break
            subject = headers.get("x-subject-token")
            auth = headers.get("x-auth-token")
            with self._lock:
                self.records.append({
                    "t": time.time(), "method": method, "path": path, "mode": mode,
                    "subject_sha256": hashlib.sha256(subject.encode()).hexdigest() if subject else None,
                    # secrets are never recorded: only whether the caller authenticated as the subject
                    "has_auth_token": auth is not None,
                    "auth_is_subject": auth is not None and auth == subject,
                    "access_rules_header": headers.get("openstack-identity-access-rules"),
                    "auth": auth_summary(body) if method == "POST" else None})
            if inject is not None:
                writer.write(simple_response(inject, "Injected", b'{"error":{"code":%d,"message":"injected by '
                                             b'keystone_proxy","title":"Injected"}}' % inject))
                await writer.drain()
                return
            if mode == "reset":
                return
            if mode == "error":
                writer.write(simple_response(500, "Internal Server Error",
                                             b'{"error":{"code":500,"message":"injected by keystone_proxy",'
                                             b'"title":"Internal Server Error"}}'))
                await writer.drain()
                return
            if mode == "delay":
                await asyncio.sleep(self.delay_ms / 1000.0)
            await self._forward(writer, method, path, headers, body)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            try:
                writer.close()
            except Exception:
                pass

    async def _forward(self, writer, method, path, headers, body):
        try:
            ur, uw = await asyncio.wait_for(asyncio.open_connection(*self.target), 5)
        except (OSError, asyncio.TimeoutError):
            return   # Keystone itself is down: close without an answer
        try:
            uw.write(build_request(method, path, headers, body))
            await uw.drain()
            while True:
                chunk = await ur.read(65536)
                if not chunk:
                    break
                writer.write(chunk)
                await writer.drain()
        finally:
            uw.close()

    async def _handle_control(self, reader, writer):
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            method, path, _, _ = await asyncio.wait_for(read_request(reader), 10)
            u = urllib.parse.urlsplit(path)
            q = dict(urllib.parse.parse_qsl(u.query))
            status, out = 200, None
            if u.path == "/mode":
                if "set" in q:
                    try:
                        await self._set_mode(q["set"], q.get("ms"))
                    except Exception as e:
                        status, out = 400, {"error": str(e)}
                out = out or {"mode": self.mode, "delay_ms": self.delay_ms, "port": self.port}
            elif u.path == "/stats":
                out = {"mode": self.mode, "delay_ms": self.delay_ms, "requests": self.snapshot()}
            else:
                status, out = 404, {"error": "use /mode?set=MODE[&ms=N] or /stats"}
            writer.write(simple_response(status, "OK" if status == 200 else "Error", json.dumps(out).encode()))
            await writer.drain()
        except Exception:
            pass
        finally:
            self._tasks.discard(task)
            writer.close()


def _hostport(s):
    h, _, p = s.rpartition(":")
    return h or "127.0.0.1", int(p)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", required=True, help="Keystone host:port")
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--control", help="host:port of the control endpoint (same host as --listen)")
    ap.add_argument("--mode", default="pass", choices=MODES)
    ap.add_argument("--delay-ms", type=int, default=0)
    a = ap.parse_args()
    th, tp = _hostport(a.target)
    lh, lp = _hostport(a.listen)
    cp = _hostport(a.control)[1] if a.control else None
    p = KeystoneProxy(th, tp, lh, lp, cp).start()
    p.set_mode(a.mode, a.delay_ms)
    print("keystone proxy on %s:%d -> %s:%d (control %s)" % (lh, p.port, th, tp, cp), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        p.stop()


if __name__ == "__main__":
    main()
