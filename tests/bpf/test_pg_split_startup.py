#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""A PostgreSQL server that reads the startup packet in two calls (its 4-byte length, then the rest) and every
message as header then body is still recognised and parsed (root). The server is a small target process speaking
the v3 protocol (this file, run with --serve); the client is this test, not a target. It sends the startup packet,
then 40 simple queries 20 ms apart, each answered with RowDescription, DataRow, CommandComplete and ReadyForQuery. Loupe must
count the connection as postgresql and exactly 40 statements on the server side, for the split reads and, as a
control, for a server that reads the startup packet in one call. Before the fix, the 4-byte first read made
detection give the connection to HTTP, which dropped it: ~600 of 30,000 statements were counted.
"""
import os
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loupe_test import Loupe, Tap, free_port, is_root, value, wait_for  # noqa: E402

N = 40


def msg(t, body):
    return t + struct.pack("!I", len(body) + 4) + body


def serve(port, split):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(1)
    print("ready", flush=True)
    c, _ = ls.accept()

    def exact(n):
        b = b""
        while len(b) < n:
            r = c.recv(n - len(b))
            if not r:
                return None
            b += r
        return b
    if split:
        n = struct.unpack("!I", exact(4))[0]
        exact(n - 4)
    else:
        c.recv(4096)  # the client sends the packet in one write
    c.sendall(msg(b"R", struct.pack("!I", 0)) + msg(b"Z", b"I"))
    reply = (msg(b"T", struct.pack("!H", 1) + b"v\0" + struct.pack("!IhIhih", 0, 0, 23, 4, -1, 0))
             + msg(b"D", struct.pack("!HI", 1, 1) + b"1") + msg(b"C", b"SELECT 1\0") + msg(b"Z", b"I"))
    while True:
        h = exact(5)
        if not h or h[:1] == b"X":
            return
        exact(struct.unpack("!I", h[1:])[0] - 4)
        c.sendall(reply)


def scenario(t, split):
    port = free_port()
    label = "split startup read" if split else "whole startup read"
    srv = subprocess.Popen(["/usr/bin/python3", __file__, "--serve", str(port), "1" if split else "0"],
                           stdout=subprocess.PIPE, text=True)
    try:
        with Loupe("--target", f"pgs=pid:{srv.pid}") as L:
            srv.stdout.readline()
            s = socket.create_connection(("127.0.0.1", port))
            params = b"user\0u\0database\0d\0\0"
            s.sendall(struct.pack("!II", 8 + len(params), 196608) + params)
            s.recv(4096)
            for i in range(N):
                time.sleep(0.02)  # over ~1 s: long after loupe has read the first records and decided
                s.sendall(msg(b"Q", b"SELECT v FROM kv WHERE k = %d\0" % i))
                got = b""
                while not got.endswith(b"Z\0\0\0\x05I"):
                    got += s.recv(4096)
            s.sendall(msg(b"X", b""))
            s.close()
            name = "loupe_postgres_query_duration_seconds_count"
            wait_for(lambda: value(L.scrape(), name, service_name="pgs") >= N, timeout=5)
            m = L.scrape()
            n = value(m, name, service_name="pgs")
            conns = value(m, "loupe_payload_connections_total", service_name="pgs", protocol="postgresql")
            t.ok(conns == 1 and n == N, f"{label}: the connection is postgresql and its {N} statements are counted",
                 f"postgresql connections {conns}, statements {n}; classes "
                 f"{[(d['protocol'], v) for d, v in ((dict(k[1]), v) for k, v in m.items() if k[0] == 'loupe_payload_connections_total') if d.get('service_name') == 'pgs' and v]}")
    finally:
        srv.kill()
        srv.wait()


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), sys.argv[3] == "1")
        return 0
    t = Tap()
    if not is_root():
        for label in ("split startup read", "whole startup read"):
            t.skip(f"{label}: the connection is postgresql and its {N} statements are counted", "needs root (BPF)")
        return t.done()
    for split in (True, False):
        scenario(t, split)
    return t.done()


if __name__ == "__main__":
    sys.exit(main())
