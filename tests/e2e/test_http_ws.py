#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""End to end (root): loupe's HTTP RED metrics and WebSocket metrics for the reference API (tests/workload: uvicorn
0.17 on h11 + websockets 10.4, one worker, a private PostgreSQL 15), against exact traffic this test sends itself.

loupe runs with the `own` rules of test_workload.py (this run's uvicorn by its port, this run's postmaster by its
data dir), so nobody else's traffic counts and every delta is exact:

  HTTP (raw sockets, tests/lib/e2e_support.HttpConn, every byte and every write chosen here):
    - one keep-alive connection carrying every method/route/status combination the app has: 200, 201, 204, 307-free
      404s on admitted templates (/memories/{id} after it answered 200), 404 on unknown paths (_unmatched), 405 for a
      nonstandard method (_OTHER) and for HEAD (a response without a body), 500 (/fail), query strings (/search),
      /slow (200 ms: every one in the le=0.25 bucket, none in le=0.1), a chunked request body;
    - pipelining: three requests in one write, twice (GET, POST with a body, GET);
    - a request split over six writes 25 ms apart (the duration runs from the read of the first byte, so it lands
      above 0.1 s), a POST whose body comes in a later write, a POST with Expect: 100-continue (the interim 100 is
      not the final status);
    - messages longer than loupe's 256-byte capture: a 6 KB request body, 1 KB of headers, a ~20 KB response,
      request lines cut inside the query and inside the path, each followed by another request;
    - a connection closed by the server (Connection: close), and an HTTP/1.0 request;
    - 8 concurrent keep-alive connections x 10 requests;
    - an in-flight request (GET /slow?ms=600) during which http_server_active_requests{GET} is exactly 1.
    Each phase's delta is checked on its own (so a failure names the phase), then the whole run's.
    The expected label set follows loupe's rules in the test's own ledger: method outside RFC 9110 -> _OTHER; a 3xx or
    4xx on a template that never answered 1xx, 2xx or 5xx -> _unmatched.
    h11 writes every response as two sendto calls (head, then body), so every response is a multi-write one; the app
    never answers with a chunked body (JSONResponse sets Content-Length), so chunked responses are not exercised.
  WebSocket (tests/workload/ws_client.py and the websockets library in-process):
    - text and binary sessions on /ws (WS_RUNS), with payloads in all three length encodings (32, 100, 300 and
      70000 bytes), closed by the client with 1000 (the server answers 1000);
    - Mc sessions on /ws/close/4001: the server closes with 4001, the client echoes 4001;
    - one session sending a fragmented text message (3 frames, one message), a ping (answered by a pong) and closing
      with 3001;
    - one session with permessage-deflate (compressed frames, RSV1), checked on its own.
  TCP: loupe_tcp_connections_total{service_name=api,direction=inbound} grows by exactly the connections opened here.
"""
import asyncio
import os
import subprocess
import sys
import threading
import time
import traceback
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loupe_test import LOUPE, Loupe, select, value, wait_for  # noqa: E402
from e2e_support import ConnCounter, HttpConn, Workload, begin, stop_all  # noqa: E402

SVC = "api"
HTTP_DUR = "http_server_request_duration_seconds"
ACTIVE = "http_server_active_requests"
STD_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}

K_SLOW = 3              # GET /slow (200 ms)
SPLIT_PIECES, SPLIT_PAUSE = 6, 0.025   # 5 pauses: 125 ms between the first and the last byte of the request
K_SPLIT = 2             # GET /cpu?n=10 split over SPLIT_PIECES writes
CONC_CONNS, CONC_REQS = 8, 10          # concurrent keep-alive connections x requests each
DEFLATE_K = 4                           # text messages in a session with permessage-deflate
INFLIGHT_MS = 600       # GET /slow?ms=600 while the gauge is read
# ws_client.py runs on /ws: (sessions, messages per session, message size, binary); sizes cover the three
# RFC 6455 payload length encodings (7-bit, 16-bit, 64-bit; 70000 bytes also spans several reads)
WS_RUNS = [(4, 5, 32, False), (2, 3, 100, True), (1, 3, 300, False), (1, 2, 70000, True)]
WS_MC, WS_CODE = 3, 4001                # sessions on /ws/close/4001
FRAG = ["frag-one ", "frag-two ", "frag-three"]   # one text message in three frames
FRAG_CLOSE = 3001

SKIP_NAMES = [
    "workload and loupe start", "HTTP keep-alive: exactly the expected series and counts",
    "HTTP pipelined: exactly the expected series and counts", "HTTP split writes: exactly the expected series and "
    "counts", "HTTP longer than the capture: exactly the expected series and counts", "HTTP server closes: exactly "
    "the expected series and counts", "HTTP concurrent connections: exactly the expected series and counts", "HTTP traffic answered as planned",
    "WebSocket clients ran without error",
    "loupe saw every request (settled)", "no payload events dropped",
    "http_server_request_duration_seconds: exactly the expected series and counts (whole run)",
    "histogram buckets of GET /slow: K in le=0.25, none in le=0.1, the 600 ms one in le=0.75",
    "split request: duration from its first byte (le=0.1 empty, le=0.25 full)",
    "histogram _count equals the +Inf bucket for every HTTP series",
    "http_server_active_requests{GET} is 1 during one in-flight request",
    "http_server_active_requests is 0 when idle", "the WebSocket upgrade requests: each counted once with status 101",
    "loupe_websocket_connections_total per route",
    "loupe_websocket_connections_active is 0 after every session closed",
    "loupe_websocket_connection_duration_seconds_count per route",
    "loupe_websocket_messages_total per http_route, direction, opcode",
    "loupe_websocket_message_size_bytes count and sum (data messages and control frames)",
    "loupe_websocket_closes_total per http_route, sender, code", "permessage-deflate session: messages and closes counted",
    "loupe_tcp_connections_total{api,inbound} equals the connections opened",
]


class Ledger:
    """Ground truth: the (method, route, status) label set loupe must export for each response the client got,
    by loupe's rules (method -> _OTHER outside RFC 9110; a 3xx/4xx on a template not yet admitted -> _unmatched)."""

    def __init__(self):
        self.counts = {}
        self.phase = {}
        self.admitted = set()
        self.log = []

    def add(self, method, template, resp):
        st = resp.status
        if st < 300 or st >= 500:
            self.admitted.add(template)
        route = template if template in self.admitted else "_unmatched"
        key = (method if method in STD_METHODS else "_OTHER", route, str(st))
        self.counts[key] = self.counts.get(key, 0) + 1
        self.phase[key] = self.phase.get(key, 0) + 1
        self.log.append((method, template, st))
        return resp

    def total(self):
        return sum(self.counts.values())


def series_counts(m):
    """{(method, route, status): _count} of the api service."""
    out = {}
    for d, v in select(m, HTTP_DUR + "_count", service_name=SVC):
        k = (d.get("http_request_method"), d.get("http_route"), d.get("http_response_status_code"))
        out[k] = out.get(k, 0) + v
    return out


def deltas(after, before):
    keys = set(after) | set(before)
    return {k: after.get(k, 0) - before.get(k, 0) for k in keys if after.get(k, 0) != before.get(k, 0)}


def fmt(d):
    def num(v):
        return f"{v:g}" if isinstance(v, (int, float)) else "(" + ", ".join(num(x) for x in v) + ")"
    return "\n".join(f"  {k}: {num(v)}" for k, v in sorted(d.items(), key=lambda kv: tuple(map(str, kv[0]))))


class Ctx:
    """What the HTTP phases share: the port, the ledger, the connection counter, the problems met."""

    def __init__(self, port, seed_first, led, counter):
        self.port, self.seed_first, self.led, self.counter = port, seed_first, led, counter
        self.problems = []
        self.created = []

    def conn(self):
        return HttpConn(self.port, counter=self.counter)

    def want(self, resp, status, what):
        if resp.status != status:
            self.problems.append(f"{what}: status {resp.status}, want {status} ({resp.body[:80]!r})")
        return resp


JSON_H = [("Content-Type", "application/json")]


def jbody(content):
    return b'{"content":"%s","tags":["e2e"]}' % content.encode()


def phase_keepalive(x):
    """One keep-alive connection, every method/route/status the app has, in sequence."""
    led, c = x.led, x.conn()
    for _ in range(3):
        x.want(led.add("GET", "/healthz", c.request("GET", "/healthz")), 200, "GET /healthz")
    for i in range(6):
        x.want(led.add("GET", "/memories/{id}", c.request("GET", f"/memories/{x.seed_first + i}")), 200,
               "GET /memories/N")
    for i in range(4):
        r = x.want(led.add("POST", "/memories", c.request("POST", "/memories", JSON_H, jbody(f"e2e http {i}"))), 201,
                   "POST /memories")
        x.created.append(r.json()["id"] if r.status == 201 else 0)
    cr = x.created
    for i in (0, 1):
        x.want(led.add("PUT", "/memories/{id}", c.request("PUT", f"/memories/{cr[i]}", JSON_H,
                                                          jbody(f"e2e http updated {i}"))), 200, "PUT /memories/N")
    for i in (2, 3):
        r = x.want(led.add("DELETE", "/memories/{id}", c.request("DELETE", f"/memories/{cr[i]}")), 204,
                   "DELETE /memories/N")
        if r.body:
            x.problems.append(f"204 with a body {r.body!r}")
    for i in (2, 3, 2):   # /memories/{id} is admitted (it answered 200): its 404s keep the route
        x.want(led.add("GET", "/memories/{id}", c.request("GET", f"/memories/{cr[i]}")), 404, "GET /memories/deleted")
    x.want(led.add("DELETE", "/memories/{id}", c.request("DELETE", f"/memories/{cr[2]}")), 404,
           "DELETE /memories/deleted")
    for q in ("memory", "graph", "memory", "kernel"):
        x.want(led.add("GET", "/search", c.request("GET", f"/search?q={q}&limit=3")), 200, "GET /search")
    for _ in range(3):
        x.want(led.add("GET", "/fail", c.request("GET", "/fail")), 500, "GET /fail")
    for p, tmpl in (("/nosuchpath/abc", "/nosuchpath/abc"), ("/nosuchpath/abc", "/nosuchpath/abc"),
                    ("/nosuchpath/12345", "/nosuchpath/{id}")):
        x.want(led.add("GET", tmpl, c.request("GET", p)), 404, f"GET {p}")   # never admitted: _unmatched
    for _ in range(2):
        x.want(led.add("PURGE", "/healthz", c.request("PURGE", "/healthz")), 405, "PURGE /healthz")
    x.want(led.add("FOO", "/nosuchpath", c.request("FOO", "/nosuchpath")), 404, "FOO /nosuchpath")
    for _ in range(2):   # 405 with a Content-Length and, to HEAD, no body: the next request must still parse
        x.want(led.add("HEAD", "/healthz", c.request("HEAD", "/healthz")), 405, "HEAD /healthz")
    x.want(led.add("GET", "/memories", c.request("GET", "/memories?limit=2")), 200, "GET /memories?limit=2")
    for _ in range(K_SLOW):
        x.want(led.add("GET", "/slow", c.request("GET", "/slow")), 200, "GET /slow")
    x.want(led.add("POST", "/memories", c.request("POST", "/memories", JSON_H,
                                                  chunks=[b'{"content":', b'"e2e chunked",', b'"tags":[]}'])),
           201, "POST /memories (chunked request body)")
    x.want(led.add("GET", "/healthz", c.request("GET", "/healthz")), 200, "GET /healthz after a chunked body")
    c.close()


def phase_pipelined(x):
    """Three requests in one write, twice; then three requests whose write boundaries fall inside the second."""
    led, c = x.led, x.conn()
    a, b = x.seed_first, x.seed_first + 1
    rel = "e2e-" + uuid.uuid4().hex[:8]
    edge = b'{"src":%d,"dst":%d,"relation":"%s"}' % (a, b, rel.encode())
    batch = [("GET", f"/graph/{a}/neighbors", None, None), ("POST", "/edges", JSON_H, edge),
             ("GET", f"/graph/{b}/neighbors", None, None)]
    tmpls = ("/graph/{id}/neighbors", "/edges", "/graph/{id}/neighbors")
    for _ in range(2):
        rs = c.pipeline(batch)
        for (m, p, _, _), r, tmpl, st in zip(batch, rs, tmpls, (200, 201, 200)):
            x.want(led.add(m, tmpl, r), st, f"pipelined {m} {p}")
    if c.writes != 2:
        x.problems.append(f"pipelining used {c.writes} writes, want 2")
    data = b"".join(HttpConn.build(m, p, h, bd) for m, p, h, bd in batch)
    first_end = len(HttpConn.build(*batch[0][:4]))
    cut = first_end + 30   # inside the POST's head
    c.send(data[:cut])
    time.sleep(0.03)
    c.send(data[cut:])
    for (m, p, _, _), tmpl, st in zip(batch, tmpls, (200, 201, 200)):
        x.want(led.add(m, tmpl, c.read_response(m)), st, f"pipelined across writes {m} {p}")
    c.close()


def phase_split(x):
    """A request in SPLIT_PIECES writes; a body in a later write than its head; Expect: 100-continue."""
    led, c = x.led, x.conn()
    for _ in range(K_SPLIT):
        n = c.send_split(HttpConn.build("GET", "/cpu?n=10", [("User-Agent", "loupe-e2e-split"),
                                                             ("Accept", "application/json")]),
                         SPLIT_PIECES, SPLIT_PAUSE)
        if n != SPLIT_PIECES:
            x.problems.append(f"split request went out in {n} writes, want {SPLIT_PIECES}")
        x.want(led.add("GET", "/cpu", c.read_response("GET")), 200, "GET /cpu (split)")
    req = HttpConn.build("POST", "/memories", JSON_H, jbody("e2e body in a later write"))
    head_len = req.index(b"\r\n\r\n") + 4
    c.send(req[:head_len])
    time.sleep(0.05)
    c.send(req[head_len:])
    x.want(led.add("POST", "/memories", c.read_response("POST")), 201, "POST /memories (body in a later write)")
    req = HttpConn.build("POST", "/memories", JSON_H + [("Expect", "100-continue")], jbody("e2e expect"))
    head_len = req.index(b"\r\n\r\n") + 4
    c.send(req[:head_len])
    # the server sends 100 Continue when the app starts reading the body; send the body after it (or after 1 s)
    c.sock.settimeout(1.0)
    try:
        c._fill()
    except OSError:
        pass
    c.sock.settimeout(30)
    c.send(req[head_len:])
    r = x.want(led.add("POST", "/memories", c.read_response("POST")), 201, "POST /memories (Expect: 100-continue)")
    if r.interim != [100]:
        x.problems.append(f"Expect: 100-continue: interim responses {r.interim}, want [100]")
    c.close()


def phase_truncation(x):
    """Messages longer than loupe's capture (default 256 bytes per call): a 6 KB request body, a 1 KB header
    block, a ~20 KB response; each followed by a request on the same connection."""
    led, c = x.led, x.conn()
    big = "e2e big " + "x" * 6000
    x.want(led.add("PUT", "/memories/{id}", c.request("PUT", f"/memories/{x.created[0]}", JSON_H, jbody(big))), 200,
           "PUT /memories/N (6 KB body)")
    x.want(led.add("GET", "/healthz", c.request("GET", "/healthz")), 200, "GET /healthz after a 6 KB body")
    hdrs = [("Cookie", "session=" + "c" * 600), ("X-Padding", "p" * 400)]
    x.want(led.add("GET", "/healthz", c.request("GET", "/healthz", hdrs)), 200, "GET /healthz (1 KB of headers)")
    x.want(led.add("GET", "/healthz", c.request("GET", "/healthz")), 200, "GET /healthz after 1 KB of headers")
    r = x.want(led.add("GET", "/memories", c.request("GET", "/memories?limit=100")), 200, "GET /memories?limit=100")
    if len(r.body) < 10000:
        x.problems.append(f"GET /memories?limit=100 answered only {len(r.body)} bytes, want a response > 10 KB")
    x.want(led.add("GET", "/healthz", c.request("GET", "/healthz")), 200, "GET /healthz after a 20 KB response")
    x.want(led.add("GET", "/search", c.request("GET", "/search?limit=2&q=" + "q" * 190)), 200,
           "GET /search (request line cut by the capture inside the query)")
    x.want(led.add("GET", "/nosuchpath/long", c.request("GET", "/nosuchpath/" + "l" * 400)), 404,
           "GET /nosuchpath/<400 letters> (cut inside the path)")
    x.want(led.add("GET", "/healthz", c.request("GET", "/healthz")), 200, "GET /healthz after a 400-byte path")
    c.close()


def phase_concurrent(x):
    """CONC_CONNS keep-alive connections at once, CONC_REQS requests each."""
    errs = []

    def worker(i):
        try:
            c = x.conn()
            for j in range(CONC_REQS):
                r = c.request("GET", f"/memories/{x.seed_first + (i + j) % 10}")
                with lock:
                    x.want(x.led.add("GET", "/memories/{id}", r), 200, "concurrent GET /memories/N")
            c.close()
        except Exception as e:  # noqa: BLE001
            errs.append(repr(e))
    lock = threading.Lock()
    ths = [threading.Thread(target=worker, args=(i,)) for i in range(CONC_CONNS)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(60)
    x.problems += errs


def phase_close(x):
    """Connection: close (the server closes after the response), and an HTTP/1.0 request."""
    led = x.led
    c = x.conn()
    x.want(led.add("GET", "/healthz", c.request("GET", "/healthz", [("Connection", "close")])), 200,
           "GET /healthz (Connection: close)")
    c.close()
    c = x.conn()
    c.send(HttpConn.build("GET", "/healthz", version="HTTP/1.0"))
    x.want(led.add("GET", "/healthz", c.read_response("GET")), 200, "GET /healthz HTTP/1.0")
    c.close()


PHASES = [("keep-alive", phase_keepalive), ("pipelined", phase_pipelined), ("split writes", phase_split),
          ("longer than the capture", phase_truncation), ("server closes", phase_close),
          ("concurrent connections", phase_concurrent)]


def phase_inflight(x, L):
    """One GET /slow?ms=INFLIGHT_MS in flight while the gauge is read."""
    got = {}

    def inflight():
        cc = x.conn()
        try:
            got["resp"] = cc.request("GET", f"/slow?ms={INFLIGHT_MS}")
        finally:
            cc.close()
    th = threading.Thread(target=inflight)
    t_start = time.time()
    th.start()
    time.sleep(0.15)
    gauge = wait_for(lambda: value(L.scrape(), ACTIVE, service_name=SVC, http_request_method="GET") == 1,
                     timeout=0.3, interval=0.05)
    g_all = {d.get("http_request_method"): v for d, v in select(L.scrape(), ACTIVE, service_name=SVC)}
    in_time = time.time() - t_start < INFLIGHT_MS / 1000 - 0.05
    th.join(30)
    x.want(x.led.add("GET", "/slow", got["resp"]), 200, "GET /slow?ms=600")
    return gauge, g_all, in_time


def http_settle(L, before, want_total, timeout=5):
    """Scrape until the HTTP (non-upgrade) count delta reaches want_total, then once more after a pause."""
    def n(m):
        return sum(v for k, v in deltas(series_counts(m), before).items() if k[2] != "101")
    wait_for(lambda: n(L.scrape()) >= want_total, timeout=timeout, interval=0.1)
    time.sleep(0.2)
    return series_counts(L.scrape())


def compare(expected, got):
    """Failure text ("" when equal) between expected {(method, route, status): n} and got deltas."""
    missing = {k: v for k, v in expected.items() if got.get(k, 0) != v}
    extra = {k: v for k, v in got.items() if k not in expected}
    if not missing and not extra:
        return ""
    return (f"want (method, route, status) -> count, {sum(expected.values())} requests:\n{fmt(expected)}\n"
            "wrong counts:\n" + "\n".join(f"  {k}: want {v}, got {got.get(k, 0):g}" for k, v in sorted(missing.items()))
            + f"\nunexpected series (delta):\n{fmt(extra)}")


async def ws_inprocess(port):
    """One session on /ws: a text message in three fragments, a ping, then a close with FRAG_CLOSE."""
    import websockets
    ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws", ping_interval=None, compression=None,
                                  open_timeout=10, close_timeout=10)
    try:
        await ws.send(iter(FRAG))
        echo = await asyncio.wait_for(ws.recv(), 10)
        pong = await ws.ping(b"e2e")
        await asyncio.wait_for(pong, 10)
    finally:
        await ws.close(code=FRAG_CLOSE)
    return {"echo_ok": echo == "".join(FRAG), "close_code": ws.close_code}


def check_deltas(t, a, b, name, keys, want):
    """Exact deltas of a counter between scrapes b and a, summed by the label tuple `keys`, for service SVC."""
    got = {}
    for d, v in select(a, name, service_name=SVC):
        k = tuple(d.get(x) for x in keys)
        dv = v - value(b, name, **d)
        if dv:
            got[k] = got.get(k, 0) + dv
    diff = {k: (want.get(k, 0), got.get(k, 0)) for k in set(want) | set(got) if want.get(k, 0) != got.get(k, 0)}
    t.ok(not diff, f"{name} per {', '.join(keys)}",
         f"want ({', '.join(keys)}) -> count:\n{fmt(want)}\nwrong (want, got):\n{fmt(diff)}")


def main():
    t = begin(SKIP_NAMES)
    wl = Workload("httpws")
    L = None
    try:
        t0 = time.time()
        try:
            seeded = wl.start()
            L = Loupe(*wl.own_targets())
            L.start()
            ok = wait_for(lambda: value(L.scrape(), "loupe_targets", service_name=SVC) >= 1, timeout=10)
            if not ok:
                raise RuntimeError("loupe_targets{api} stayed 0")
        except Exception as e:  # noqa: BLE001
            t.ok(False, "workload and loupe start", e)
            return
        t.ok(True, "workload and loupe start")
        t.note(f"workload + loupe up in {time.time() - t0:.1f} s: api 127.0.0.1:{wl.api_port}, seed ids {seeded['ids']}")
        if "--capture-bytes" not in subprocess.run([LOUPE, "run", "--help"], capture_output=True, text=True).stdout:
            t.note("loupe run --help does not mention --capture-bytes: payload capture may not be built in yet")

        b = L.scrape()
        b_series = series_counts(b)
        led, counter = Ledger(), ConnCounter()

        # ---------------- HTTP, phase by phase (each phase's delta exact on its own)
        x = Ctx(wl.api_port, seeded["ids"][0], led, counter)
        prev = b_series
        for name, fn in PHASES:
            led.phase = {}
            fn(x)
            now = http_settle(L, prev, sum(led.phase.values()))
            d = deltas(now, prev)
            t.ok(not compare(led.phase, d), f"HTTP {name}: exactly the expected series and counts",
                 compare(led.phase, d))
            prev = now
        gauge, g_all, in_time = phase_inflight(x, L)
        problems = x.problems
        t.ok(not problems, "HTTP traffic answered as planned", "\n".join(problems))
        t.note(f"HTTP: {led.total()} responses over {counter.opened} connections")

        # ---------------- WebSocket (after HTTP, so that the HTTP checks see no WebSocket upgrade yet)
        ws_errors = []
        ws_conns = 0
        runs, res_c = [], None
        try:
            for m, k, size, binary in WS_RUNS:
                runs.append(wl.ws("--sessions", str(m), "--messages", str(k), "--size", str(size),
                                  *(["--binary"] if binary else [])))
            res_c = wl.ws("--sessions", str(WS_MC), "--expect-close", str(WS_CODE))
            for r in runs + [res_c]:
                ws_conns += r["connections"]
            frag = asyncio.run(ws_inprocess(wl.api_port))
            ws_conns += 1
            if not frag["echo_ok"] or frag["close_code"] != FRAG_CLOSE:
                ws_errors.append(f"in-process session: {frag}, want echo_ok and close_code {FRAG_CLOSE}")
        except Exception as e:  # noqa: BLE001
            ws_errors.append(repr(e))
        want_ws = [{"connections": m, "messages_sent": m * k, "messages_received": m * k, "close_codes": {"1000": m}}
                   for m, k, _, _ in WS_RUNS] + [{"connections": WS_MC, "close_codes": {str(WS_CODE): WS_MC}}]
        got_ws = [{f: r.get(f) for f in w} for w, r in zip(want_ws, runs + [res_c or {}])]
        t.ok(not ws_errors and got_ws == want_ws, "WebSocket clients ran without error",
             f"errors {ws_errors}; got {got_ws}, want {want_ws}")

        n_echo = sum(m for m, _, _, _ in WS_RUNS)          # client sessions closed with 1000 on /ws
        n_text = sum(m * k for m, k, _, b in WS_RUNS if not b)
        n_bin = sum(m * k for m, k, _, b in WS_RUNS if b)
        n_ws_sessions = n_echo + 1 + WS_MC
        expected = dict(led.counts)
        want_total = led.total()

        # ---------------- settle: everything counted (or time out), then one more scrape after a pause
        def settled():
            m = L.scrape()
            d = deltas(series_counts(m), b_series)
            http_done = sum(v for k, v in d.items() if k[1] not in ("/ws", "/ws/close/{id}")) >= want_total
            ws_done = (value(m, "loupe_websocket_closes_total", service_name=SVC)
                       - value(b, "loupe_websocket_closes_total", service_name=SVC)) >= 2 * n_ws_sessions
            return http_done and ws_done
        done = wait_for(settled, timeout=8, interval=0.2)
        time.sleep(0.5)
        a = L.scrape()
        t.ok(done, "loupe saw every request (settled)",
             f"after 8 s: http count delta (101s aside) "
             f"{sum(v for k, v in deltas(series_counts(a), b_series).items() if k[2] != '101'):g}, "
             f"want >= {want_total}; websocket closes delta "
             f"{value(a, 'loupe_websocket_closes_total', service_name=SVC) - value(b, 'loupe_websocket_closes_total', service_name=SVC):g}"
             f", want >= {2 * n_ws_sessions}")
        dropped = {d.get("reason"): v - value(b, "loupe_events_dropped_total", **d)
                   for d, v in select(a, "loupe_events_dropped_total", feature="payload")}
        t.ok(all(v == 0 for v in dropped.values()), "no payload events dropped",
             f"loupe_events_dropped_total{{feature=payload}} deltas by reason: {dropped}")

        # ---------------- HTTP assertions
        got = deltas(series_counts(a), b_series)
        upgrades = {k: v for k, v in got.items() if k[1] in ("/ws", "/ws/close/{id}") and k[2] == "101"}
        got_http = {k: v for k, v in got.items() if k not in upgrades}
        t.note("expected HTTP series (method, route, status) -> count:\n" + fmt(expected))
        t.ok(not compare(expected, got_http), "http_server_request_duration_seconds: exactly the expected series "
             "and counts (whole run)", compare(expected, got_http))

        def bdelta(le, method, route, status):
            lb = dict(service_name=SVC, http_request_method=method, http_route=route,
                      http_response_status_code=status)
            return value(a, HTTP_DUR + "_bucket", le=le, **lb) - value(b, HTTP_DUR + "_bucket", le=le, **lb)
        slow = {le: bdelta(le, "GET", "/slow", "200") for le in ("0.1", "0.25", "0.5", "0.75", "+Inf")}
        want_slow = {"0.1": 0, "0.25": K_SLOW, "0.5": K_SLOW, "0.75": K_SLOW + 1, "+Inf": K_SLOW + 1}
        t.ok(slow == want_slow,
             "histogram buckets of GET /slow: K in le=0.25, none in le=0.1, the 600 ms one in le=0.75",
             f"cumulative bucket deltas {slow}, want {want_slow} ({K_SLOW} x 200 ms, 1 x {INFLIGHT_MS} ms)")
        split = {le: bdelta(le, "GET", "/cpu", "200") for le in ("0.05", "0.1", "0.25", "+Inf")}
        want_split = {"0.05": 0, "0.1": 0, "0.25": K_SPLIT, "+Inf": K_SPLIT}
        t.ok(split == want_split, "split request: duration from its first byte (le=0.1 empty, le=0.25 full)",
             f"GET /cpu 200 bucket deltas {split}, want {want_split}: each request went out in {SPLIT_PIECES} "
             f"writes {SPLIT_PAUSE * 1000:.0f} ms apart ({(SPLIT_PIECES - 1) * SPLIT_PAUSE * 1000:.0f} ms from the "
             f"first byte to the last, answered in ~1 ms)")
        bad = []
        for d, v in select(a, HTTP_DUR + "_count", service_name=SVC):
            inf = value(a, HTTP_DUR + "_bucket", le="+Inf", **d)
            if inf != v:
                bad.append(f"{d}: _count {v:g}, +Inf bucket {inf:g}")
        t.ok(not bad, "histogram _count equals the +Inf bucket for every HTTP series", "\n".join(bad))
        t.ok(gauge and in_time, "http_server_active_requests{GET} is 1 during one in-flight request",
             f"read while GET /slow?ms={INFLIGHT_MS} was the only request in flight: {g_all} (read in time: {in_time})")
        act = {d.get("http_request_method"): v for d, v in select(a, ACTIVE, service_name=SVC)}
        t.ok(act and all(v == 0 for v in act.values()), "http_server_active_requests is 0 when idle",
             f"http_server_active_requests{{service_name=api}} by method: {act} (want every one 0, and the family "
             f"present)")
        want_up = {("GET", "/ws", "101"): n_echo + 1, ("GET", "/ws/close/{id}", "101"): WS_MC}
        t.ok(upgrades == want_up, "the WebSocket upgrade requests: each counted once with status 101",
             f"GET 101 deltas {upgrades}, want {want_up}")

        # ---------------- WebSocket assertions
        def wd(name, **lb):
            return value(a, name, service_name=SVC, **lb) - value(b, name, service_name=SVC, **lb)
        WS, WC = "/ws", "/ws/close/{id}"
        got = {r: wd("loupe_websocket_connections_total", http_route=r) for r in (WS, WC)}
        want = {WS: n_echo + 1, WC: WS_MC}
        t.eq(got, want, "loupe_websocket_connections_total per route")
        act = {d.get("http_route"): v for d, v in select(a, "loupe_websocket_connections_active", service_name=SVC)}
        t.ok(act.get(WS) == 0 and act.get(WC) == 0 and all(v == 0 for v in act.values()),
             "loupe_websocket_connections_active is 0 after every session closed",
             f"by route: {act}, want /ws: 0, /ws/close/{{id}}: 0")
        got = {r: wd("loupe_websocket_connection_duration_seconds_count", http_route=r) for r in (WS, WC)}
        t.eq(got, want, "loupe_websocket_connection_duration_seconds_count per route")

        n_ws_closed = n_echo + 1
        want_msgs = {(WS, "received", "text"): n_text + 1, (WS, "sent", "text"): n_text + 1,
                     (WS, "received", "binary"): n_bin, (WS, "sent", "binary"): n_bin,
                     (WS, "received", "ping"): 1, (WS, "sent", "pong"): 1,
                     (WS, "received", "close"): n_ws_closed, (WS, "sent", "close"): n_ws_closed,
                     (WC, "received", "close"): WS_MC, (WC, "sent", "close"): WS_MC}
        check_deltas(t, a, b, "loupe_websocket_messages_total", ("http_route", "direction", "opcode"), want_msgs)

        # sizes: loupe observes every message, control frames included (2-byte close payloads, the 3-byte
        # ping/pong), each once
        frag_len = len("".join(FRAG))
        data_rx = (n_text + n_bin + 1, sum(m * k * size for m, k, size, _ in WS_RUNS) + frag_len)
        ctl_rx = (n_ws_closed + WS_MC + 1, 2 * (n_ws_closed + WS_MC) + 3)   # closes + ping
        ctl_tx = (n_ws_closed + WS_MC + 1, 2 * (n_ws_closed + WS_MC) + 3)   # closes + pong
        size = {}
        for dirn, ctl in (("received", ctl_rx), ("sent", ctl_tx)):
            cnt = wd("loupe_websocket_message_size_bytes_count", direction=dirn)
            sm = wd("loupe_websocket_message_size_bytes_sum", direction=dirn)
            size[dirn] = (cnt, sm)
            size[dirn + " want"] = (data_rx[0] + ctl[0], data_rx[1] + ctl[1])
        t.ok(all(tuple(size[d]) == size[d + " want"] for d in ("received", "sent")),
             "loupe_websocket_message_size_bytes count and sum (data messages and control frames)",
             f"(count, sum) deltas and what they must be: {size}")

        want_closes = {(WS, "client", "1000"): n_echo, (WS, "server", "1000"): n_echo,
                       (WS, "client", str(FRAG_CLOSE)): 1, (WS, "server", str(FRAG_CLOSE)): 1,
                       (WC, "server", str(WS_CODE)): WS_MC, (WC, "client", str(WS_CODE)): WS_MC}
        check_deltas(t, a, b, "loupe_websocket_closes_total", ("http_route", "sender", "code"), want_closes)

        # ---------------- permessage-deflate (RSV1 frames): counted like any other message
        m0 = L.scrape()
        try:
            rd = wl.ws("--sessions", "1", "--messages", str(DEFLATE_K), "--size", "200", "--deflate")
            ws_conns += rd["connections"]
            rd_ok = rd["messages_received"] == DEFLATE_K and rd["close_codes"] == {"1000": 1}
        except Exception as e:  # noqa: BLE001
            rd, rd_ok = repr(e), False

        def dd(m, name, **lb):
            return value(m, name, service_name=SVC, http_route=WS, **lb) - value(m0, name, service_name=SVC,
                                                                                 http_route=WS, **lb)
        keys = {"received text": dict(direction="received", opcode="text"),
                "sent text": dict(direction="sent", opcode="text"),
                "received close": dict(direction="received", opcode="close"),
                "sent close": dict(direction="sent", opcode="close")}
        want_d = {"sessions": 1, "received text": DEFLATE_K, "sent text": DEFLATE_K, "received close": 1,
                  "sent close": 1, "closes client 1000": 1, "closes server 1000": 1}

        def got_deflate():
            m = L.scrape()
            g = {"sessions": dd(m, "loupe_websocket_connections_total")}
            g.update({k: dd(m, "loupe_websocket_messages_total", **lb) for k, lb in keys.items()})
            g["closes client 1000"] = dd(m, "loupe_websocket_closes_total", sender="client", code="1000")
            g["closes server 1000"] = dd(m, "loupe_websocket_closes_total", sender="server", code="1000")
            return g
        wait_for(lambda: got_deflate() == want_d, timeout=5)
        time.sleep(0.2)
        t.ok(rd_ok and got_deflate() == want_d, "permessage-deflate session: messages and closes counted",
             f"client {rd}; loupe deltas on /ws {got_deflate()}, want {want_d}")

        # ---------------- TCP
        n_conns = counter.opened + ws_conns
        a = L.scrape()   # after the deflate session too
        inbound = wd("loupe_tcp_connections_total", direction="inbound")
        peers = {d.get("peer"): v - value(b, "loupe_tcp_connections_total", **d)
                 for d, v in select(a, "loupe_tcp_connections_total", service_name=SVC, direction="inbound")}
        t.ok(inbound == n_conns, "loupe_tcp_connections_total{api,inbound} equals the connections opened",
             f"delta {inbound:g}, want {n_conns} ({counter.opened} HTTP + {ws_conns} WebSocket); by peer {peers}")
    except Exception:  # noqa: BLE001 - an error in a check is a failure, with its traceback
        t.ok(False, "no unexpected error", traceback.format_exc())
    finally:
        if L is not None and L.proc is not None:
            log = L.stderr()
            errs = [ln for ln in log.splitlines() if '"level":"error"' in ln]
            if errs:
                t.note("loupe error log lines:\n" + "\n".join(errs[:10]))
        stop_all(t, wl, L)


if __name__ == "__main__":
    main()
