#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""Capture records of one connection written to different CPUs' rings reach the parsers in the order they were made.

Payload capture writes each record to the ring of the CPU it runs on (bpf/payload.bpf.c, pl_rings), and loupe
merges the rings by timestamp (src/lib/cpurings.c). Here a target server moves itself to another CPU between each
read and its write (sched_setaffinity), so every request and its response sit in different rings. Connection i
is read on CPU i % 2 and answered on the other, so whichever ring a reader took first, half of the responses would
come before their requests. A connection whose first record the HTTP parser sees is a response is not HTTP to it
(a server speaking first): it stops the capture, and its requests are not counted. So the ground truth is exact:
CONNS connections of NREQ requests each, every one counted with its route, none classified other than http, and
every request took at least the server's HOLD between its read and its write.
"""
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loupe_test import Loupe, Tap, free_port, is_root, value, wait_for  # noqa: E402
from bpf_support import new_tag  # noqa: E402

PY = "/usr/bin/python3"
CONNS, NREQ, HOLD = 60, 5, 0.002
SIDE = ("even", "odd")  # routes of the connections read on the first CPU and on the second
DUR = "http_server_request_duration_seconds"

SERVER = r'''
import os, socket, sys, time
port, conns, nreq, hold = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
cpus = sorted(os.sched_getaffinity(0))[:2]
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port)); ls.listen(64)
print("ready", flush=True)
body = b"ok"
resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n" + body
for i in range(conns):
    c, _ = ls.accept()
    for k in range(nreq):
        os.sched_setaffinity(0, {cpus[i % 2]})
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = c.recv(4096)
            if not d:
                raise SystemExit("client closed early")
            buf += d
        time.sleep(hold)
        os.sched_setaffinity(0, {cpus[(i + 1) % 2]})
        c.sendall(resp)
    c.recv(1)
    c.close()
'''


def main():
    t = Tap()
    if not is_root():
        t.skip("ring order", "needs root to load BPF programs")
        t.done()
    if len(os.sched_getaffinity(0)) < 2:
        t.skip("ring order", "needs two CPUs (one ring per CPU: with one there is nothing to merge)")
        t.done()
    tag = f"ringord-{new_tag()}"
    port = free_port()
    rule = f"srv=cmdline:ringorder {tag}"
    with Loupe("--target", rule, "--syscalls", "off") as L:
        srv = subprocess.Popen([PY, "-c", SERVER, str(port), str(CONNS), str(NREQ), str(HOLD), "ringorder", tag],
                               stdout=subprocess.PIPE, text=True)
        try:
            t.ok(srv.stdout.readline().strip() == "ready", "the server listens")
            t.ok(wait_for(lambda: value(L.scrape(), "loupe_targets", service_name="srv") == 1, timeout=10),
                 "the server is a target")
            before = L.scrape()
            for i in range(CONNS):
                with socket.create_connection(("127.0.0.1", port)) as s:
                    for k in range(NREQ):
                        s.sendall(f"GET /order/{SIDE[i % 2]} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                        got = b""
                        while not got.endswith(b"ok"):
                            d = s.recv(4096)
                            if not d:
                                raise RuntimeError("server closed early")
                            got += d
                    s.shutdown(socket.SHUT_WR)
                    s.recv(1)
            t.eq(srv.wait(timeout=30), 0, "the server served every connection")
            time.sleep(0.3)
            after = L.scrape()
        finally:
            if srv.poll() is None:
                srv.kill()

    def d(name, **kw):
        return value(after, name, service_name="srv", **kw) - value(before, name, service_name="srv", **kw)
    for r in (0, 1):
        t.eq(d(f"{DUR}_count", http_route=f"/order/{SIDE[r]}", http_response_status_code="200"), CONNS // 2 * NREQ,
             f"every request of the connections read on CPU {r} and answered on the other is counted ({SIDE[r]})")
    t.eq(d("loupe_payload_connections_total", protocol="http"), CONNS, f"all {CONNS} connections parsed as HTTP")
    others = sum(d("loupe_payload_connections_total", protocol=p) for p in ("unknown", "tls", "http2"))
    t.eq(others, 0, "no connection classified as another protocol (a response seen before its request)")
    fast = sum(value(after, f"{DUR}_bucket", service_name="srv", http_route=f"/order/{SIDE[r]}", le="0.001")
               - value(before, f"{DUR}_bucket", service_name="srv", http_route=f"/order/{SIDE[r]}", le="0.001")
               for r in (0, 1))
    t.eq(fast, 0, f"no request measured shorter than the server's {HOLD * 1000:.0f} ms hold (records out of order)")
    t.eq(value(after, "loupe_payload_records_lost_total", service_name="srv"), 0, "no records lost")
    t.done()


if __name__ == "__main__":
    main()
