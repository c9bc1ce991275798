#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""End to end (root): no secret that enters the reference API leaves loupe (DESIGN.md section 3).

Random canary strings, new on every run and one per input channel (so a leak names its channel), are planted in
everything the API and PostgreSQL see while loupe watches them with the `own` rules of test_workload.py:
  - path segments: token-like (letters and digits), letters-only, e-mail-like and numeric, on unknown paths (404),
    on /memories/<x> (422: not an integer), and behind a trailing slash (/memories/<x>/: FastAPI answers 307; a
    redirect does not admit a route template);
  - query strings (/search?q=, /healthz?token=, the WebSocket upgrade's /ws?token=), a fragment-looking "#" part;
  - request headers: Authorization, Cookie, a custom header, User-Agent, Referer, Host;
  - the request method itself (a nonstandard token -> _OTHER);
  - request bodies (POST and PUT /memories content);
  - responses only: a memory inserted in SQL before loupe started, then read with GET /memories/{id};
  - WebSocket: text and binary messages both ways (echoed), a fragmented message, a ping payload, a close reason;
  - SQL literals: /search?q=<canary> (the API's ILIKE literal) and a direct query with a string and a number.
Then /metrics (text 0.0.4, OpenMetrics, gzip), /status and loupe's whole stderr log (run at --log-level debug, read
after it stopped) must hold none of them, in any of these forms: as sent, lower or upper case, URL-encoded, and the
random part alone. loupe_redactions_total{kind="query"} must grow by at least the requests that had a query string.
"""
import asyncio
import gzip
import os
import random
import secrets
import string
import sys
import time
import traceback
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loupe_test import Loupe, select, value, wait_for  # noqa: E402
from e2e_support import ConnCounter, HttpConn, Workload, begin, stop_all  # noqa: E402

SVC = "api"
HTTP_COUNT = "http_server_request_duration_seconds_count"
OM_ACCEPT = "application/openmetrics-text; version=1.0.0"

SKIP_NAMES = [
    "workload and loupe start", "canary traffic answered as expected", "loupe saw every canary request",
    "loupe saw the WebSocket canary session", "no canary in /metrics (text)", "no canary in /metrics (OpenMetrics)",
    "no canary in /metrics (gzip)", "no canary in /status", "no canary in loupe's log",
    "letters-only segment of a redirected (307) path: not a label",
    "loupe_redactions_total{kind=query} grows by at least the requests with a query string",
]


def hexcanary(tag):
    return f"cnry{tag}" + secrets.token_hex(8)


def wordcanary(tag):
    return "cnry" + tag + "".join(random.SystemRandom().choice(string.ascii_lowercase) for _ in range(14))


def forms(c):
    """The ways a canary could show up: as is, case-folded, URL-encoded, and its random part alone."""
    out = [c, urllib.parse.quote(c, safe=""), urllib.parse.quote_plus(c)]
    core = c[len("cnry") + 1:].split("@")[0] if c.startswith("cnry") else c
    if len(core) >= 10:
        out.append(core)
    return list(dict.fromkeys(out))   # scan() compares case-insensitively


def scan(text, canaries, skip=()):
    """[(channel, form)] of every canary form found in text (case-insensitive)."""
    low = text.lower()
    hits = []
    for ch, c in canaries.items():
        if ch in skip:
            continue
        for f in forms(c):
            if f.lower() in low:
                hits.append((ch, f))
                break
    return hits


def where(text, form, width=80):
    i = text.lower().find(form.lower())
    return text[max(0, i - width):i + len(form) + width].replace("\n", "\\n") if i >= 0 else ""


async def ws_session(port, cn, headers):
    import websockets
    ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws?token={cn['ws_query']}", ping_interval=None,
                                  compression=None, open_timeout=10, close_timeout=10, extra_headers=headers)
    got = []
    try:
        for msg in (f"text {cn['ws_text']} end", cn["ws_binary"].encode() + b"\x00\x01"):
            await ws.send(msg)
            got.append(await asyncio.wait_for(ws.recv(), 10) == msg)
        frag = ["frag ", cn["ws_fragment"], " end"]
        await ws.send(iter(frag))
        got.append(await asyncio.wait_for(ws.recv(), 10) == "".join(frag))
        pong = await ws.ping(cn["ws_ping"][:100].encode())
        await asyncio.wait_for(pong, 10)
    finally:
        await ws.close(code=1000, reason=cn["ws_close_reason"])
    return all(got) and len(got) == 3, ws.close_code


def main():
    t = begin(SKIP_NAMES)
    wl = Workload("canary")
    L = None
    cn = {
        "path_token_404": hexcanary("a"), "path_token_422": hexcanary("b"), "path_word_404": wordcanary("c"),
        "path_word_422": wordcanary("d"), "path_email_404": hexcanary("e") + "@example.com",
        "path_email_422": hexcanary("f") + "@example.org", "path_number": str(random.randrange(10**11, 10**12)),
        "path_token_307": hexcanary("g"), "path_email_307": hexcanary("h") + "@example.net",
        "path_word_307": wordcanary("i"), "query_search": hexcanary("j"), "query_token": hexcanary("k"),
        "query_word": wordcanary("l"), "fragment": hexcanary("m"),
        "hdr_authorization": hexcanary("n"), "hdr_cookie": hexcanary("o"), "hdr_custom": hexcanary("p"),
        "hdr_user_agent": hexcanary("q"), "hdr_referer": hexcanary("r"), "hdr_host": hexcanary("s"),
        "method": "CNRYT" + secrets.token_hex(6).upper(),
        "body_post": hexcanary("u"), "body_put": hexcanary("v"), "response_only": hexcanary("w"),
        "ws_query": hexcanary("x"), "ws_header": hexcanary("y"), "ws_text": hexcanary("z"),
        "ws_binary": hexcanary("A"), "ws_fragment": hexcanary("B"), "ws_ping": hexcanary("C"),
        "ws_close_reason": hexcanary("D"), "sql_string": hexcanary("E"),
        "sql_number": str(random.randrange(10**14, 10**15)),
    }
    try:
        t0 = time.time()
        try:
            seeded = wl.start()
            # the response-only canary: stored before loupe starts, so loupe only ever sees it in a response
            pg = wl.pg_connect()
            try:
                with pg.cursor() as cur:
                    cur.execute("INSERT INTO memories (content, tags) VALUES (%s, '{}') RETURNING id",
                                (f"stored {cn['response_only']} end",))
                    resp_id = cur.fetchone()[0]
            finally:
                pg.close()
            L = Loupe(*wl.own_targets(), log_level="debug")
            L.start()
            if not wait_for(lambda: value(L.scrape(), "loupe_targets", service_name=SVC) >= 1, timeout=10):
                raise RuntimeError("loupe_targets{api} stayed 0")
        except Exception as e:  # noqa: BLE001
            t.ok(False, "workload and loupe start", e)
            return
        t.ok(True, "workload and loupe start")
        t.note(f"up in {time.time() - t0:.1f} s; canaries: {', '.join(f'{k}={v}' for k, v in cn.items())}")
        b = L.scrape()
        port, sid = wl.api_port, seeded["ids"][0]
        counter = ConnCounter()
        problems, sent, with_query = [], 0, 0

        c = HttpConn(port, counter=counter)

        def req(method, path, status, headers=None, body=None):
            nonlocal sent, with_query
            r = c.request(method, path, headers, body)
            sent += 1
            with_query += "?" in path
            if status is not None and r.status != status:
                problems.append(f"{method} {path}: {r.status}, want {status} ({r.body[:80]!r})")
            return r

        # admit the app's routes first, as real traffic would
        req("GET", "/healthz", 200)
        req("GET", f"/memories/{sid}", 200)
        # path segments
        req("GET", f"/nosuchpath/{cn['path_token_404']}", 404)
        req("GET", f"/nosuchpath/{cn['path_word_404']}", 404)
        req("GET", f"/nosuchpath/{cn['path_email_404']}", 404)
        req("GET", f"/memories/{cn['path_token_422']}", 422)
        req("GET", f"/memories/{cn['path_word_422']}", 422)
        req("GET", f"/memories/{cn['path_email_422']}", 422)
        req("GET", f"/memories/{cn['path_number']}", 404)
        req("GET", f"/memories/{cn['path_token_307']}/", 307)
        req("GET", f"/memories/{cn['path_email_307']}/", 307)
        # queries and a '#' in the target (clients never send fragments; a raw one is taken as part of the target)
        req("GET", f"/search?q={cn['query_search']}&limit=5", 200)
        req("GET", f"/healthz?token={cn['query_token']}", 200)
        req("GET", f"/healthz?name={cn['query_word']}", 200)
        req("GET", f"/healthz#{cn['fragment']}", None)
        # headers
        req("GET", "/healthz", 200, [("Authorization", f"Bearer {cn['hdr_authorization']}"),
                                     ("Cookie", f"session={cn['hdr_cookie']}; theme=dark"),
                                     ("X-Api-Key", cn["hdr_custom"]), ("User-Agent", f"agent/{cn['hdr_user_agent']}"),
                                     ("Referer", f"http://example.com/{cn['hdr_referer']}?a=1"),
                                     ("Host", f"{cn['hdr_host']}.example.com")])
        # method
        req(cn["method"], "/healthz", None)
        # bodies, and the response-only canary
        jh = [("Content-Type", "application/json")]
        r = req("POST", "/memories", 201, jh, b'{"content":"posted %s end","tags":["x"]}' % cn["body_post"].encode())
        new_id = r.json().get("id") if r.status == 201 else sid
        req("PUT", f"/memories/{new_id}", 200, jh, b'{"content":"put %s end"}' % cn["body_put"].encode())
        r = req("GET", f"/memories/{resp_id}", 200)
        if cn["response_only"].encode() not in r.body:
            problems.append(f"GET /memories/{resp_id} did not return the stored canary: {r.body[:120]!r}")
        r = req("GET", f"/memories/{new_id}", 200)
        if cn["body_put"].encode() not in r.body:
            problems.append(f"GET /memories/{new_id} did not return the PUT canary: {r.body[:120]!r}")
        c.close()

        # the letters-only segment behind a redirect, on its own connection and checked on its own (see below)
        c = HttpConn(port, counter=counter)
        req("GET", f"/memories/{cn['path_word_307']}/", 307)
        c.close()

        # SQL literals, straight to PostgreSQL (the server side is a target)
        pg = wl.pg_connect()
        try:
            with pg.cursor() as cur:
                cur.execute("SELECT %s::text, %s::bigint", (cn["sql_string"], int(cn["sql_number"])))
                if cur.fetchone()[0] != cn["sql_string"]:
                    problems.append("direct SQL did not return the canary")
        finally:
            pg.close()

        # WebSocket
        ws_ok, close_code = False, None
        try:
            ws_ok, close_code = asyncio.run(ws_session(port, cn, {"X-Ws-Token": cn["ws_header"]}))
        except Exception as e:  # noqa: BLE001
            problems.append(f"WebSocket session: {e!r}")
        sent += 1          # the upgrade request
        with_query += 1    # /ws?token=...
        if not ws_ok or close_code != 1000:
            problems.append(f"WebSocket session: echoes ok {ws_ok}, close code {close_code} (want 1000)")
        t.ok(not problems, "canary traffic answered as expected", "\n".join(problems))

        def http_delta(m):
            return value(m, HTTP_COUNT, service_name=SVC) - value(b, HTTP_COUNT, service_name=SVC)

        def ws_delta(m):
            return (value(m, "loupe_websocket_closes_total", service_name=SVC)
                    - value(b, "loupe_websocket_closes_total", service_name=SVC))
        wait_for(lambda: (lambda m: http_delta(m) >= sent and ws_delta(m) >= 2)(L.scrape()), timeout=8)
        time.sleep(0.3)
        a = L.scrape()
        t.ok(http_delta(a) == sent, "loupe saw every canary request",
             f"http_server_request_duration_seconds_count{{api}} grew by {http_delta(a):g}, want {sent} (the requests "
             f"sent, the WebSocket upgrade included): a request loupe did not parse would make this test vacuous")
        wsm = (value(a, "loupe_websocket_messages_total", service_name=SVC)
               - value(b, "loupe_websocket_messages_total", service_name=SVC))
        t.ok(ws_delta(a) == 2 and wsm >= 10, "loupe saw the WebSocket canary session",
             f"closes +{ws_delta(a):g} (want 2), messages +{wsm:g} (want >= 10: 3 data messages each way, ping, "
             f"pong, 2 closes)")

        # outputs
        outs = {}
        st, _, body = L.get("/metrics")
        outs["/metrics (text)"] = body.decode(errors="replace") if st == 200 else ""
        st, hd, body = L.get("/metrics", {"Accept": OM_ACCEPT})
        outs["/metrics (OpenMetrics)"] = body.decode(errors="replace") if st == 200 else ""
        st, hd, body = L.get("/metrics", {"Accept-Encoding": "gzip"})
        if st == 200 and {k.lower(): v for k, v in hd.items()}.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        outs["/metrics (gzip)"] = body.decode(errors="replace") if st == 200 else ""
        st, _, body = L.get("/status")
        outs["/status"] = body.decode(errors="replace") if st == 200 else ""
        rc = L.stop()
        outs["loupe's log"] = L.stderr()
        t.note("scanned: " + ", ".join(f"{k} {len(v)} bytes" for k, v in outs.items()) + f"; loupe exited {rc}")

        word307 = ("path_word_307",)
        for name, text in outs.items():
            hits = scan(text, cn, skip=word307)
            label = {"/metrics (text)": "no canary in /metrics (text)",
                     "/metrics (OpenMetrics)": "no canary in /metrics (OpenMetrics)",
                     "/metrics (gzip)": "no canary in /metrics (gzip)", "/status": "no canary in /status",
                     "loupe's log": "no canary in loupe's log"}[name]
            t.ok(text and not hits, label, (f"{name} is empty or did not answer 200" if not text else "") + "\n".join(
                f"channel {ch}: {f!r} in ...{where(text, f)}..." for ch, f in hits))

        # A letters-only path segment cannot be told from a route word (src/parsers/route.h says so); FastAPI's
        # redirect_slashes answers /memories/<anything>/ with 307. Only 1xx, 2xx and 5xx admit a template, so the
        # redirected path stays _unmatched.
        text = outs["/metrics (text)"] + outs["/status"] + outs["loupe's log"]
        hits = scan(text, cn, skip=set(cn) - set(word307))
        t.ok(not hits, "letters-only segment of a redirected (307) path: not a label",
             "\n".join(f"{f!r} in ...{where(text, f)}..." for _, f in hits) +
             "\nGET /memories/<letters-only canary>/ answered 307 (FastAPI's redirect_slashes): a redirect must not "
             "admit its template (route.h keeps letters-only segments literal)")

        q = value(a, "loupe_redactions_total", kind="query") - value(b, "loupe_redactions_total", kind="query")
        kinds = {d.get("kind"): v - value(b, "loupe_redactions_total", **d) for d, v in
                 select(a, "loupe_redactions_total")}
        t.note(f"loupe_redactions_total deltas by kind: {kinds}; requests with a query string: {with_query}")
        t.ok(q >= with_query, "loupe_redactions_total{kind=query} grows by at least the requests with a query string",
             f"grew by {q:g}, want >= {with_query}; all kinds (delta): {kinds}")
    except Exception:  # noqa: BLE001
        t.ok(False, "no unexpected error", traceback.format_exc())
    finally:
        stop_all(t, wl, L)


if __name__ == "__main__":
    main()
