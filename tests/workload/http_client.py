#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""Send an exact number of HTTP requests per endpoint (ground truth for tests).

    http_client.py --plan 'GET /memories/1=10,GET /fail=3,GET /slow=2' [--connections N]
                   [--order sequential|interleave] [--body JSON] [--host H] [--port P]

Plan: comma- or semicolon-separated "METHOD PATH=COUNT" entries (a path containing
commas: separate entries with ';'). POST/PUT send --body (default
{"content":"http_client memory","tags":["test"]}) as application/json.
Requests go over plain http.client keep-alive connections (default 1; with
--connections N, N threads each with its own connection share the work).

Prints one JSON object on stdout, keyed by plan entry:
    {"GET /fail": {"sent": 3, "status": {"500": 3}, "errors": 0,
                   "latency_ms": {"min": .., "mean": .., "max": ..}}, ...}
Exit 1 if any request failed at the transport level (connection refused/reset,
timeout, bad response); 2 on bad usage.
Host/port default to LOUPE_API_HOST (127.0.0.1) / LOUPE_API_PORT (18080).
"""

import argparse
import http.client
import json
import os
import queue
import re
import sys
import threading
import time
from collections import OrderedDict

DEFAULT_BODY = '{"content":"http_client memory","tags":["test"]}'
METHODS = {"GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"}


def parse_plan(text: str):
    sep = ";" if ";" in text else ","
    plan = OrderedDict()
    for raw in text.split(sep):
        raw = raw.strip()
        if not raw:
            continue
        m = re.fullmatch(r"([A-Za-z]+)\s+(/\S*)\s*=\s*(\d+)", raw)
        if not m:
            raise ValueError(f"bad plan entry {raw!r} (want 'METHOD /path=COUNT')")
        method, path, count = m.group(1).upper(), m.group(2), int(m.group(3))
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r} in {raw!r}")
        key = f"{method} {path}"
        if key in plan:
            raise ValueError(f"duplicate plan entry {key!r}")
        plan[key] = (method, path, count)
    if not plan:
        raise ValueError("empty plan")
    return plan


class Stats:
    def __init__(self, count):
        self.planned = count
        self.sent = 0
        self.status = {}
        self.errors = 0
        self.lat = []


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plan", required=True)
    ap.add_argument("--host", default=os.environ.get("LOUPE_API_HOST", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("LOUPE_API_PORT", "18080")))
    ap.add_argument("--connections", type=int, default=1, help="parallel keep-alive connections")
    ap.add_argument("--order", choices=("sequential", "interleave"), default="sequential",
                    help="sequential: all of entry 1, then entry 2...; interleave: round-robin")
    ap.add_argument("--body", default=DEFAULT_BODY, help="JSON body for POST/PUT/PATCH")
    ap.add_argument("--timeout", type=float, default=30.0, help="per-request timeout (s)")
    args = ap.parse_args()

    if args.host not in ("localhost", "::1") and not args.host.startswith("127."):
        ap.error(f"--host {args.host} is not a loopback address")
    if args.connections < 1:
        ap.error("--connections must be >= 1")
    try:
        plan = parse_plan(args.plan)
        json.loads(args.body)
    except ValueError as exc:
        ap.error(str(exc))

    stats = OrderedDict((k, Stats(c)) for k, (_, _, c) in plan.items())
    work = []
    if args.order == "sequential":
        for key, (method, path, count) in plan.items():
            work += [(key, method, path)] * count
    else:
        left = {k: c for k, (_, _, c) in plan.items()}
        while any(left.values()):
            for key, (method, path, _) in plan.items():
                if left[key]:
                    work.append((key, method, path))
                    left[key] -= 1
    jobs = queue.Queue()
    for w in work:
        jobs.put(w)

    lock = threading.Lock()
    body = args.body.encode()

    def worker():
        conn = None
        while True:
            try:
                key, method, path = jobs.get_nowait()
            except queue.Empty:
                break
            st = stats[key]
            with lock:
                st.sent += 1
            headers = {}
            payload = None
            if method in ("POST", "PUT", "PATCH"):
                payload = body
                headers["Content-Type"] = "application/json"
            t0 = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(args.host, args.port, timeout=args.timeout)
                conn.request(method, path, body=payload, headers=headers)
                resp = conn.getresponse()
                resp.read()
                ms = (time.perf_counter() - t0) * 1000
                with lock:
                    code = str(resp.status)
                    st.status[code] = st.status.get(code, 0) + 1
                    st.lat.append(ms)
                if resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    st.errors += 1
                print(f"http_client.py: {key}: transport error: {exc.__class__.__name__}: {exc}",
                      file=sys.stderr)
                if conn is not None:
                    conn.close()
                conn = None  # reconnect for the next request; never retry (counts stay exact)
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(args.connections, len(work) or 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    out = OrderedDict()
    errors = 0
    for key, st in stats.items():
        errors += st.errors
        entry = {"sent": st.sent, "status": dict(sorted(st.status.items())), "errors": st.errors}
        if st.lat:
            entry["latency_ms"] = {"min": round(min(st.lat), 3),
                                   "mean": round(sum(st.lat) / len(st.lat), 3),
                                   "max": round(max(st.lat), 3)}
        out[key] = entry
    print(json.dumps(out))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
