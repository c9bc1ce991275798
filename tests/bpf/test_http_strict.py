#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""Malformed requests replayed against a running daemon (root): every query parameter of every endpoint is parsed
strictly, and what is refused gets its 4xx at once, naming the parameter:
- a value with a sign, a space, a NUL byte (%00), a unit it does not take, out of range or overflowing; a repeated,
  empty or unknown parameter; window and seconds together; hz without seconds -> 400 naming the parameter;
- a request URI over 2048 bytes or with more than 16 parameters -> 414 within a second (it used to get no answer
  and hold its socket for 30 s), and so do oversized headers (431);
- the well-formed forms still work, and the daemon answers /healthz after all of it;
- no warning is logged at a normal start (libmicrohttpd's option-order warning is gone).
Prints TAP."""
import os
import socket
import sys
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loupe_test import Loupe, Tap, is_root, value  # noqa: E402

# (path and query, the parameter the 400 must name)
BAD = [
    ("/debug/pprof/profile?window=307445734561825861m", "window"),  # used to overflow to 44 s
    ("/debug/pprof/profile?window=9999999999m", "window"),
    ("/debug/pprof/profile?window=11m", "window"),
    ("/debug/pprof/profile?window=0s", "window"),
    ("/debug/pprof/profile?window=5h", "window"),
    ("/debug/pprof/profile?window=%2B5m", "window"),
    ("/debug/pprof/profile?window=5m&window=1m", "window"),
    ("/debug/pprof/profile?window=", "window"),
    ("/debug/pprof/profile?seconds=%2B5", "seconds"),
    ("/debug/pprof/profile?seconds=%205", "seconds"),
    ("/debug/pprof/profile?seconds=5%20", "seconds"),
    ("/debug/pprof/profile?seconds=1%002", "seconds"),
    ("/debug/pprof/profile?seconds=-1", "seconds"),
    ("/debug/pprof/profile?seconds=0", "seconds"),
    ("/debug/pprof/profile?seconds=601", "seconds"),
    ("/debug/pprof/profile?seconds=4294967297", "seconds"),
    ("/debug/pprof/profile?seconds=5s", "seconds"),
    ("/debug/pprof/profile?seconds=2&hz=0", "hz"),
    ("/debug/pprof/profile?seconds=2&hz=1001", "hz"),
    ("/debug/pprof/profile?seconds=2&hz=%2B99", "hz"),
    ("/debug/pprof/profile?hz=99", "hz"),
    ("/debug/pprof/profile?seconds=2&window=1m", "window"),
    ("/debug/pprof/profile?service=api%00", "service"),
    ("/debug/pprof/profile?service=a%2Fb", "service"),
    ("/debug/pprof/profile?service=" + "a" * 32, "service"),
    ("/debug/pprof/profile?service", "service"),
    ("/debug/pprof/profile?format=svg", "format"),
    ("/debug/pprof/profile?format=folded%00", "format"),
    ("/debug/pprof/profile?kind=cpu", "kind"),  # kind belongs to /flamegraph.svg
    ("/debug/pprof/offcpu?focus=a%0Ab", "focus"),
    ("/debug/pprof/profile?focus=" + "a" * 257, "focus"),
    ("/flamegraph.svg?kind=offcpu%00", "kind"),
    ("/flamegraph.svg?kind=disk", "kind"),
    ("/flamegraph.svg?format=folded", "format"),  # format belongs to the pprof endpoints
    ("/debug/pprof/profile?bogus=1", "bogus"),
    ("/metrics?x=1", "x"),
    ("/healthz?verbose", "verbose"),
    ("/readyz?a=b", "a"),
    ("/status?pretty=1", "pretty"),
]
# Well-formed: what must still be answered 200.
GOOD = ["/debug/pprof/profile?window=90", "/debug/pprof/profile?window=90s&format=folded",
        "/debug/pprof/profile?window=10m&format=pprof", "/flamegraph.svg?window=1s&kind=cpu",
        "/debug/pprof/profile?window=007s", "/metrics", "/healthz", "/status"]


def raw(port, data, timeout=10):
    """Send raw bytes; (seconds until the server closed or answered in full, bytes received)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    t0 = time.time()
    got = b""
    try:
        s.sendall(data)
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
    except OSError as e:
        got += f" [{e}]".encode()
    finally:
        s.close()
    return time.time() - t0, got


def main():
    t = Tap()
    names = ["malformed query parameters: 400 naming the parameter", "well-formed parameters still answer 200",
             "480 query parameters: 414 within 1 s", "a 5000-byte URI: 414 within 1 s",
             "480 request headers: 431 within 1 s", "/healthz answers after the malformed requests",
             "no warning at a normal start",
             'loupe_http_connections_refused_total{reason="uri_too_long"} counts the two 414s']
    if not is_root():
        for n in names:
            t.skip(n, "needs root (loads BPF programs)")
        t.done()
    L = Loupe("--target", "none=comm:^loupe-no-such$", "--syscalls", "off")
    try:
        L.start()
        problems = []
        for path, param in BAD:
            st, _, body = L.get(path)
            if st != 400 or param.encode() not in body:
                problems.append(f"{path[:80]}: HTTP {st} {body[:100]!r}, want 400 naming {param}")
        t.ok(not problems, names[0], "\n".join(problems))
        t.note(f"{len(BAD)} malformed requests")
        bad = [(p, L.get(p)[0]) for p in GOOD]
        t.ok(all(st == 200 for _, st in bad), names[1], bad)

        query = "&".join(f"p{i}=v{i}" for i in range(480))
        secs, got = raw(L.port, f"GET /metrics?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        t.ok(got.startswith(b"HTTP/1.1 414") and secs < 1, names[2], f"{secs:.2f} s: {got[:120]!r}")
        secs, got = raw(L.port, b"GET /metrics?" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        t.ok(got.startswith(b"HTTP/1.1 414") and secs < 1, names[3], f"{secs:.2f} s: {got[:120]!r}")
        hdrs = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 50) for i in range(480))
        secs, got = raw(L.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + hdrs + b"\r\n")
        t.ok(got.startswith(b"HTTP/1.1 431") and secs < 1, names[4], f"{secs:.2f} s: {got[:120]!r}")
        t0 = time.time()
        st = L.get("/healthz", timeout=5)[0]
        t.ok(st == 200 and time.time() - t0 < 1, names[5], f"HTTP {st} in {time.time() - t0:.2f} s")
        start_log = L.stderr().split('"event":"listening"')[0]
        warns = [ln for ln in L.stderr().splitlines() if '"level":"warn"' in ln and '"event":"http"' in ln
                 and "option" in ln.lower()] + [ln for ln in start_log.splitlines() if '"level":"warn"' in ln]
        t.ok(not warns, names[6], "\n".join(warns[:5]))
        n = value(L.scrape(), "loupe_http_connections_refused_total", default=-1, reason="uri_too_long")
        t.eq(n, 2, names[7])
    except Exception:  # noqa: BLE001 - an error in a check is a failure, with its traceback
        t.ok(False, "no unexpected error", traceback.format_exc())
    finally:
        L.stop()
    t.done()


if __name__ == "__main__":
    main()
