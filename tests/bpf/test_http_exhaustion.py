#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""Connection exhaustion (root): 200 idle connections and 100 slowloris clients (a request line, then one header
line a second) from one address (127.0.0.2) against a running daemon, while a prober on another address
(127.0.0.1, as a kubelet or Prometheus would be) asks /healthz every 0.2 s with a 1 s timeout:
- every probe is answered 200 within 1 s, throughout (it used to take 28-70 s to get through);
- the attacking address holds at most 16 connections at a time (the others are closed as they arrive);
- trickling does not keep a connection: every attacking connection is closed within the 10 s head deadline
  (plus the guard's period) of its start, although it sends a byte every second;
- a well-behaved keep-alive client (requests back to back on one connection) is served throughout.
Prints TAP."""
import os
import socket
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loupe_test import Loupe, Tap, is_root, value  # noqa: E402

ATTACKER = "127.0.0.2"
IDLE, SLOW = 200, 100
PER_CLIENT, HEAD_DEADLINE = 16, 10.0  # src/server/httpd.c
DURATION = 25.0


class Attacker:
    """One connection from ATTACKER: idle (sends nothing) or slowloris (a header line a second)."""

    def __init__(self, port, slow):
        self.opened = self.closed = None
        self.sent = 0
        self.slow = slow
        self.port = port

    def run(self, stop):
        s = socket.socket()
        try:
            s.bind((ATTACKER, 0))
            s.connect(("127.0.0.1", self.port))
            self.opened = time.time()
            s.settimeout(1.0)
            if self.slow:
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            while not stop.is_set():
                try:
                    if not s.recv(4096):  # the server closed it
                        break
                except socket.timeout:
                    pass
                if self.slow:
                    s.sendall(b"X-Trickle-%d: a\r\n" % self.sent)
                    self.sent += 1
        except OSError:
            pass
        finally:
            self.closed = time.time()
            s.close()


def main():
    t = Tap()
    names = ["/healthz from another address answered 200 within 1 s throughout",
             f"the attacking address holds at most {PER_CLIENT} connections at a time",
             "trickling does not keep a connection: each is closed within the head deadline",
             "a keep-alive client is served throughout",
             'loupe_http_connections_refused_total{reason="head_deadline"} counts the connections shut']
    if not is_root():
        for n in names:
            t.skip(n, "needs root (loads BPF programs)")
        t.done()
    L = Loupe("--target", "none=comm:^loupe-no-such$", "--syscalls", "off")
    stop = threading.Event()
    threads = []
    try:
        L.start()
        # Interleaved, so that both kinds are among the connections the address is allowed to hold.
        attackers = [Attacker(L.port, slow=i % 3 == 0) for i in range(IDLE + SLOW)]
        t0 = time.time()
        for a in attackers:
            th = threading.Thread(target=a.run, args=(stop,), daemon=True)
            th.start()
            threads.append(th)
        probes, keepalive = [], []

        def keepalive_client():
            s = socket.create_connection(("127.0.0.1", L.port), timeout=2)
            try:
                while not stop.is_set():
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    got = s.recv(4096)
                    keepalive.append(got.startswith(b"HTTP/1.1 200"))
                    time.sleep(0.5)
            except OSError:
                keepalive.append(False)
            finally:
                s.close()
        kt = threading.Thread(target=keepalive_client, daemon=True)
        kt.start()
        peak = 0
        while time.time() - t0 < DURATION:
            t1 = time.time()
            try:
                st = L.get("/healthz", timeout=1)[0]
            except OSError as e:
                st = str(e)
            probes.append((round(t1 - t0, 1), st, time.time() - t1))
            now = time.time()
            if now - t0 > 2:  # after the first burst of connects, refused ones included, has settled
                peak = max(peak, sum(1 for a in attackers if a.opened and (a.closed is None or a.closed > now)))
            time.sleep(0.2)
        t_stop = time.time()
        stop.set()
        kt.join(timeout=5)
        bad = [p for p in probes if p[1] != 200 or p[2] >= 1]
        t.ok(probes and not bad, names[0], f"{len(bad)} of {len(probes)} probes failed or were slow: {bad[:10]}")
        t.note(f"{len(probes)} probes, slowest {max(p[2] for p in probes):.3f} s")

        def life(a):  # how long the server kept it, up to the end of the run
            end = a.closed if a.closed and a.closed <= t_stop else t_stop
            return end - a.opened
        opened = [a for a in attackers if a.opened]
        held = [a for a in opened if life(a) > 1.0]  # the ones not refused at once
        t.ok(peak <= PER_CLIENT + 2 and held, names[1],
             f"peak {peak} open at once (client side); {len(held)} held more than 1 s")
        # Every connection that had the time to exceed the deadline was closed within it.
        judged = [a for a in held if a.opened < t_stop - HEAD_DEADLINE - 2]
        too_long = [round(life(a), 1) for a in judged if life(a) > HEAD_DEADLINE + 2]
        trickled = max((a.sent for a in attackers), default=0)
        t.ok(judged and not too_long and trickled >= 3, names[2],
             f"{len(judged)} connections old enough to judge; held longer than {HEAD_DEADLINE + 2:.0f} s: "
             f"{too_long[:10]}; most header lines trickled on one: {trickled}")
        t.ok(keepalive and all(keepalive) and len(keepalive) >= DURATION, names[3],
             f"{sum(keepalive)} of {len(keepalive)} keep-alive requests answered")
        # The guard shut at least the judged ones, and no more than the connections it was given.
        shut = value(L.scrape(), "loupe_http_connections_refused_total", default=-1, reason="head_deadline")
        t.ok(len(judged) <= shut <= len(held) + 2, names[4],
             f"counted {shut}; {len(judged)} judged connections were shut, {len(held)} were held")
    except Exception:  # noqa: BLE001 - an error in a check is a failure, with its traceback
        t.ok(False, "no unexpected error", traceback.format_exc())
    finally:
        stop.set()
        for th in threads:
            th.join(timeout=3)
        L.stop()
    t.done()


if __name__ == "__main__":
    main()
