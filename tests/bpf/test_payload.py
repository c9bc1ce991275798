#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""Payload capture against ground truth: every captured syscall, the capture limit, iovec gathering, the kernel
stopping capture of connections no parser wants, and the count of records lost when the ring buffer is full.

pl_server.py is a target whose socket calls are known exactly (one call per request and per response, in each of
the read/write, readv/writev, recvfrom/sendto and recvmsg/sendmsg pairs). The client is this test (not a target).
Requests are HTTP ("GET /m/MODE ..."), so the HTTP parser must also find each request's route in the bytes
gathered from two iovecs: a wrong gather shows up as a wrong route.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loupe_test import Loupe, Tap, free_port, is_root, value, wait_for  # noqa: E402
from bpf_support import new_tag  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PY = "/usr/bin/python3"
MODES = ["read", "readv", "recvfrom", "recvmsg"]
REQ, RESP, NREQ = 300, 500, 3
REC = "loupe_payload_records_total"
BYTES = "loupe_payload_captured_bytes_total"
DUR = "http_server_request_duration_seconds_count"


def request(mode, size):
    head = f"GET /m/{mode} HTTP/1.1\r\nHost: t\r\nX-Pad: ".encode()
    pad = size - len(head) - 4
    return head + b"p" * pad + b"\r\n\r\n"


class Server:
    def __init__(self, tag):
        self.port = free_port()
        self.p = subprocess.Popen([PY, os.path.join(HERE, "pl_server.py"), str(self.port), tag],
                                  stdout=subprocess.PIPE, text=True)
        assert json.loads(self.p.stdout.readline())["ready"]

    def control(self, line):
        with socket.create_connection(("127.0.0.1", self.port)) as s:
            s.sendall(line.encode() + b"\n")

    def session(self, mode, reqs, resp, flood=0, after_first=None):
        """One served connection: send each request, read its response in full (after the first, call
        after_first()); returns bytes read."""
        self.control(f"{mode} {len(reqs)} {len(reqs[0])} {resp} {flood}")
        got = 0
        with socket.create_connection(("127.0.0.1", self.port)) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for r in reqs:
                s.sendall(r)
                want = resp if not flood else None
                buf = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        raise RuntimeError("server closed early")
                    buf += chunk
                    if want is not None and len(buf) >= want:
                        break
                    if want is None and b"\r\n\r\n" in buf:
                        head, _, body = buf.partition(b"\r\n\r\n")
                        if len(body) >= flood * 200:
                            break
                got += len(buf)
                if after_first:
                    after_first()
                    after_first = None
            s.shutdown(socket.SHUT_WR)
            s.recv(1)
        line = json.loads(self.p.stdout.readline())
        if "error" in line:
            raise RuntimeError(line["error"])
        return got

    def stop(self):
        try:
            self.control("quit")
        except OSError:
            pass
        try:
            self.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.p.kill()


def main():
    t = Tap()
    if not is_root():
        t.skip("payload capture", "needs root to load BPF programs")
        t.done()
    tag = f"plsrv-{new_tag()}"
    srv = None
    # The rule must not match the loupe instances' own command lines (they would be each other's targets).
    rule = f"srv=cmdline:pl_server[.]py [0-9]+ {tag}"
    with Loupe("--target", rule) as L, Loupe("--target", rule, "--capture-bytes", "1024") as L1k, \
            Loupe("--target", rule, "--capture-bytes", "64") as L64:
        srv = Server(tag)
        try:
            ok = wait_for(lambda: value(L.scrape(), "loupe_targets", service_name="srv") == 1 and
                          value(L1k.scrape(), "loupe_targets", service_name="srv") == 1 and
                          value(L64.scrape(), "loupe_targets", service_name="srv") == 1, timeout=10)
            t.ok(ok, "the server is a target of all three loupe instances")
            run(t, srv, L, L1k, L64)
        finally:
            srv.stop()
    t.done()


def scrape3(*ls):
    return [x.scrape() for x in ls]


def delta(after, before, name, **labels):
    return value(after, name, **labels) - value(before, name, **labels)


def run(t, srv, L, L1k, L64):
    # Control connections are read by plain recv: they are captured too (one record each, then classified as
    # not HTTP and stopped). Count them so the data-connection figures stay exact.
    for mode in MODES:
        before = scrape3(L, L1k, L64)
        srv.session(mode, [request(mode, REQ)] * NREQ, RESP)
        time.sleep(0.3)
        after = scrape3(L, L1k, L64)
        d = lambda i, name, **kw: delta(after[i], before[i], name, service_name="srv", **kw)  # noqa: E731
        # Data connection: NREQ reads and NREQ writes (the EOF read moves no bytes: not captured).
        # Control connection: one recvfrom of its line, then the kernel stops capturing it (not HTTP).
        ctl_line = len(f"{mode} {NREQ} {REQ} {RESP} 0\n")
        t.eq(d(0, REC, direction="received"), NREQ + 1, f"{mode}: {NREQ} request reads + 1 control read captured")
        t.eq(d(0, REC, direction="sent"), NREQ, f"{mode}: {NREQ} response writes captured")
        t.eq(d(0, BYTES, direction="received"), NREQ * 256 + ctl_line, f"{mode}: 256 bytes of each {REQ}-byte read")
        t.eq(d(0, BYTES, direction="sent"), NREQ * 256, f"{mode}: 256 bytes of each {RESP}-byte write")
        t.eq(d(1, BYTES, direction="received"), NREQ * REQ + ctl_line,
             f"{mode}: --capture-bytes 1024 captures whole {REQ}-byte reads")
        t.eq(d(1, BYTES, direction="sent"), NREQ * RESP, f"{mode}: --capture-bytes 1024 captures whole writes")
        t.eq(d(2, BYTES, direction="received"), NREQ * 64 + ctl_line, f"{mode}: --capture-bytes 64 keeps 64")
        for i, name in ((0, "256"), (1, "1024")):
            t.eq(d(i, DUR, http_request_method="GET", http_route=f"/m/{mode}", http_response_status_code="200"), NREQ,
                 f"{mode}: capture {name}: {NREQ} requests with route /m/{mode} (bytes gathered in order)")
        t.eq(d(0, "loupe_payload_connections_total", protocol="unknown"), 1,
             f"{mode}: the control connection was classified as not HTTP")

    # A TLS connection: its first read is captured and classified, and from then on the kernel captures nothing
    # of it. The server answers the first record at once, before loupe can have decided: that write may be
    # captured; the client sends the rest only once loupe reports the classification.
    before = scrape3(L)[0]
    tls = b"\x16\x03\x01\x01\x27\x01\x00\x01\x23\x03\x03" + b"r" * (REQ - 11)
    tls0 = value(before, "loupe_payload_connections_total", service_name="srv", protocol="tls")
    classified = []
    srv.session("recvfrom", [tls] * NREQ, RESP, after_first=lambda: classified.append(wait_for(
        lambda: value(L.scrape(), "loupe_payload_connections_total", service_name="srv", protocol="tls") > tls0)))
    time.sleep(0.3)
    after = scrape3(L)[0]
    d = lambda name, **kw: delta(after, before, name, service_name="srv", **kw)  # noqa: E731
    t.ok(classified == [True], "a TLS client hello is classified as tls after its first read")
    t.eq(d("loupe_payload_connections_total", protocol="tls"), 1, "one connection classified as tls")
    t.eq(d(REC, direction="received"), 1 + 1,
         f"TLS: only the first of its {NREQ} reads is captured (plus the control read)")
    t.ok(d(REC, direction="sent") <= 1, f"TLS: none of its {NREQ} writes after the classification is captured",
         f"{d(REC, direction='sent')} captured")

    # Lost records are counted: with loupe stopped, FLOOD writes of 200 bytes (10 MB) overflow the rings (4 MiB in
    # all, one per CPU).
    FLOOD = 40000
    before = L.scrape()
    drops0 = value(before, "loupe_events_dropped_total", feature="payload", reason="ringbuf_full")
    os.kill(L.proc.pid, signal.SIGSTOP)
    try:
        srv.session("read", [request("flood", REQ)], 0, flood=FLOOD)
    finally:
        os.kill(L.proc.pid, signal.SIGCONT)
    time.sleep(0.5)
    after = L.scrape()
    d = lambda name, **kw: delta(after, before, name, service_name="srv", **kw)  # noqa: E731
    drops = value(after, "loupe_events_dropped_total", feature="payload", reason="ringbuf_full") - drops0
    seen = d(REC, direction="sent")
    t.ok(drops > 0, "a flood while loupe is stopped overflows the ring buffer", f"drops {drops}")
    t.eq(seen + drops, FLOOD + 1, f"every write is either delivered or counted as dropped ({FLOOD} + 1 head)")
    t.ok(value(after, "loupe_payload_records_lost_total", service_name="srv") >= 1,
         "the parser was told that records were lost (flag on the close record)")
    t.eq(d(DUR, http_request_method="GET", http_route="/m/flood", http_response_status_code="200"), 1,
         "the flooded request is still counted once")


if __name__ == "__main__":
    main()
