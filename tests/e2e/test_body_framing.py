"""POST bodies whose headers carry no length, through the real Envoy.

Envoy removes `Transfer-Encoding` before any filter runs, and HTTP/2 needs no `Content-Length`, so
for these bodies only the headers' end of stream says that a body follows. Each body must be
enforced like a body with a length, or refused; Prometheus reads it as a form either way. A body
that ends with trailers (HTTP/2) never reaches its end in the body callback, so it is refused.
Every answer goes through `assert_safe` (test_attacks.py), and the query answers must equal
PROM_A's (the Prometheus holding only team-a's samples) to the same form sent with its length.
"""
import base64
import http.client
import json
import socket
import threading
import time
import urllib.parse

import h2.config
import h2.connection
import h2.events
import pytest

from test_attacks import ALL, FORM, Resp, _ok, _query_of, assert_safe, direct, st  # noqa: F401 (st: fixture)
from conftest import new_token
from test_equivalence import canon


def _addr(st):
    u = urllib.parse.urlsplit(st["ENVOY_URL"])
    return u.hostname, u.port


def chunked(st, path, body, ctype=FORM, piece=7):
    """HTTP/1.1 POST with a chunked body of `piece`-byte chunks, no Content-Length."""
    host, port = _addr(st)
    s = socket.create_connection((host, port), timeout=30)
    try:
        head = ("POST %s HTTP/1.1\r\nHost: %s:%d\r\nX-Auth-Token: %s\r\nTransfer-Encoding: chunked\r\n"
                "Connection: close\r\n" % (path, host, port, st["ALICE_TOKEN"]))
        if ctype:
            head += "Content-Type: %s\r\n" % ctype
        parts = [body[i:i + piece] for i in range(0, len(body), piece)]
        data = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
        s.sendall(head.encode() + b"\r\n" + data)
        r = http.client.HTTPResponse(s)
        r.begin()
        return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        s.close()


def h2_post(st, path, body, ctype=FORM, length=False, trailers=None):
    """HTTP/2 (prior knowledge) POST; `length`: send content-length; `trailers`: end with them."""
    host, port = _addr(st)
    s = socket.create_connection((host, port), timeout=30)
    try:
        c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        c.initiate_connection()
        sid = c.get_next_available_stream_id()
        headers = [(":method", "POST"), (":path", path), (":scheme", "http"), (":authority", "%s:%d" % (host, port)),
                   ("x-auth-token", st["ALICE_TOKEN"]), ("content-type", ctype)]
        if length:
            headers.append(("content-length", str(len(body))))
        c.send_headers(sid, headers)
        c.send_data(sid, body, end_stream=trailers is None)
        if trailers:
            c.send_headers(sid, trailers, end_stream=True)
        s.sendall(c.data_to_send())
        status, data, ended = None, b"", False
        while not ended:
            got = s.recv(65536)
            if not got:
                break
            for ev in c.receive_data(got):
                if isinstance(ev, h2.events.ResponseReceived):
                    status = int(dict(ev.headers)[":status"])
                elif isinstance(ev, h2.events.DataReceived):
                    data += ev.data
                    c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                    ended = True
            s.sendall(c.data_to_send())
        assert status is not None, "no answer"
        return Resp(status, {}, data)
    finally:
        s.close()


def _form(st, **kv):
    return urllib.parse.urlencode(kv).replace("%3CE%3E", st["SEED_END"]).replace("%3CS%3E", st["SEED_START"]).encode()


def assert_like_prom_a(st, r, path, body):
    """Success, team-a only, and PROM_A's answer to the same form sent with its length."""
    assert_safe(st, r)
    assert _ok(r), r
    d = direct(st, "POST", path, {"Content-Type": FORM}, body)
    assert _ok(d), d
    q = _query_of(path, body)
    assert canon(r.json(), q, st["TEAM_A_ID"]) == canon(d.json(), q)


QUERIES = ["count by (project) (cloud_instances)", ALL, "sum by (project) (cloud_cpu_seconds_total)"]


@pytest.mark.parametrize("expr", QUERIES)
def test_chunked_query_body_is_enforced(st, expr):
    body = _form(st, query=expr, time="<E>")
    assert_like_prom_a(st, chunked(st, "/api/v1/query", body), "/api/v1/query", body)


@pytest.mark.parametrize("length", [False, True])
@pytest.mark.parametrize("expr", QUERIES)
def test_h2_query_body_is_enforced(st, expr, length):
    body = _form(st, query=expr, time="<E>")
    assert_like_prom_a(st, h2_post(st, "/api/v1/query", body, length=length), "/api/v1/query", body)


@pytest.mark.parametrize("send", ["chunked", "h2"])
@pytest.mark.parametrize("path", ["/api/v1/series", "/api/v1/labels"])
def test_match_all_in_an_unannounced_body_is_enforced(st, send, path):
    body = _form(st, **{"match[]": ALL, "start": "<S>", "end": "<E>"})
    r = chunked(st, path, body) if send == "chunked" else h2_post(st, path, body)
    assert_safe(st, r)
    assert _ok(r), r
    if path == "/api/v1/series":
        assert r.json()["data"], "team-a's own series come back"
        assert {m["project"] for m in r.json()["data"]} == {st["TEAM_A_ID"]}


@pytest.mark.parametrize("send", ["chunked", "h2"])
def test_an_unannounced_body_must_be_a_form(st, send):
    body = _form(st, query=ALL, time="<E>")
    r = chunked(st, "/api/v1/query", body, ctype="text/plain") if send == "chunked" else \
        h2_post(st, "/api/v1/query", body, ctype="text/plain")
    assert r.status == 415, r
    assert_safe(st, r)


@pytest.mark.parametrize("length", [False, True])
def test_h2_body_ending_with_trailers_is_refused(st, length):
    body = _form(st, query=ALL, time="<E>")
    r = h2_post(st, "/api/v1/query", body, length=length, trailers=[("x-trailer", "1")])
    assert r.status == 400, r
    assert "trailers" in r.text
    assert_safe(st, r)


def test_h2_empty_body_without_length_keeps_the_url_enforced(st):
    path = "/api/v1/query?" + urllib.parse.urlencode({"query": ALL, "time": st["SEED_END"]})
    r = h2_post(st, path, b"")
    assert_safe(st, r)
    assert _ok(r), r
    assert {s["metric"]["project"] for s in r.json()["data"]["result"]} == {st["TEAM_A_ID"]}


# ------------------------------------------------------------------ a body that arrives while Keystone is asked
def slow_post(st, token, path, first, rest, chunked_body=False, pause=1.0):
    """POST whose body comes in two writes `pause` seconds apart (the token is new, so Keystone is asked
    meanwhile)."""
    host, port = _addr(st)
    s = socket.create_connection((host, port), timeout=30)
    try:
        frame = (lambda b: b"%x\r\n%s\r\n" % (len(b), b)) if chunked_body else (lambda b: b)
        length = "Transfer-Encoding: chunked" if chunked_body else "Content-Length: %d" % (len(first) + len(rest))
        s.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nX-Auth-Token: %s\r\nContent-Type: %s\r\n%s\r\n"
                   "Connection: close\r\n\r\n" % (path, token, FORM, length)).encode() + frame(first))
        time.sleep(pause)
        s.sendall(frame(rest) + (b"0\r\n\r\n" if chunked_body else b""))
        r = http.client.HTTPResponse(s)
        r.begin()
        return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        s.close()


@pytest.mark.parametrize("chunked_body", [False, True])
def test_body_held_in_part_while_keystone_answers_is_enforced_whole(st, chunked_body):
    """The first part of the body is held while the new token is validated; when Keystone answers,
    that part must not go upstream as it came (it names the query), only with the rest, enforced."""
    token = new_token(st, "alice", "alice-secret", st["TEAM_A_ID"])
    first = _form(st, query="count by (project) (cloud_instances)") + b"&"
    rest = _form(st, time="<E>")
    r = slow_post(dict(st, ALICE_TOKEN=token), token, "/api/v1/query", first, rest, chunked_body)
    assert_like_prom_a(st, r, "/api/v1/query", first + rest)


@pytest.mark.parametrize("chunked_body", [False, True])
def test_body_held_in_part_reaches_upstream_whole_and_enforced(st, envoy_variants, chunked_body):
    """The same, seen from the upstream (the recorder in front of PROM_X): one body, enforced whole."""
    e = envoy_variants("slowbody")
    token = new_token(st, "alice", "alice-secret", st["TEAM_A_ID"])
    first, rest = b"query=cloud_instances&", _form(st, time="<E>")
    r = slow_post(dict(st, ENVOY_URL=e.url), token, "/api/v1/query", first, rest, chunked_body)
    raw = r.headers.get("x-upstream-request")
    assert raw, "nothing reached the upstream: %r" % r
    saw = json.loads(base64.b64decode(raw))
    body = urllib.parse.parse_qs(saw["body"])
    assert body["query"] == ['cloud_instances{project="%s"}' % st["TEAM_A_ID"]], saw
    assert body["time"] == [st["SEED_END"]], saw


# ------------------------------------------------------------------ answers that end with trailers
class TrailerUpstream:
    """An HTTP/1.1 upstream whose every answer is `body`, chunked, ending with a trailer."""

    def __init__(self, body):
        self.body = body
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.served = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        with conn:
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    got = conn.recv(65536)
                    if not got:
                        return
                    buf += got
                _, _, buf = buf.partition(b"\r\n\r\n")  # GET: no body
                self.served += 1
                half = len(self.body) // 2
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                             b"Trailer: x-upstream-trailer\r\n\r\n"
                             + b"%x\r\n%s\r\n" % (half, self.body[:half])
                             + b"%x\r\n%s\r\n" % (len(self.body) - half, self.body[half:])
                             + b"0\r\nx-upstream-trailer: 1\r\n\r\n")

    def close(self):
        self.sock.close()


def test_rules_answer_ending_with_trailers_is_not_let_through(st, envoy_variants):
    """Both projects' rules, from an upstream that ends its answer with a trailer: the filter holds
    the answer to filter it and never sees it end, so it answers itself; the headers being gone,
    Envoy resets the stream. Nothing of team-b's may reach the client either way."""
    rules = {"status": "success", "data": {"groups": [{"name": "g", "file": "f", "interval": 60, "rules": [
        {"name": "mine", "query": "up", "labels": {"project": st["TEAM_A_ID"]}, "health": "ok", "type": "recording"},
        {"name": "theirs", "query": "up", "labels": {"project": st["TEAM_B_ID"]}, "health": "ok",
         "type": "recording"}]}]}}
    upstream = TrailerUpstream(json.dumps(rules).encode())
    try:
        e = envoy_variants("trailers", prom_port=upstream.port, prom_trailers=True)
        host, port = urllib.parse.urlsplit(e.url).hostname, urllib.parse.urlsplit(e.url).port
        s = socket.create_connection((host, port), timeout=30)
        try:
            s.sendall(b"GET /api/v1/rules HTTP/1.1\r\nHost: x\r\nX-Auth-Token: %s\r\nConnection: close\r\n\r\n"
                      % st["ALICE_TOKEN"].encode())
            got = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                got += chunk
        finally:
            s.close()
        assert upstream.served >= 1, "the request reached the upstream"
        assert st["TEAM_B_ID"].encode() not in got, got
        assert b"theirs" not in got, got
    finally:
        upstream.close()
