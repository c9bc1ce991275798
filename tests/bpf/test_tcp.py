# SPDX-License-Identifier: BSD-2-Clause
"""TCP lifecycle against ground truth: connections, directions, peer classes, bytes, connect errors, resets.

Two target services on loopback, a server and a client (tcp_peer.py, found by a command-line tag unique to
this run), exchange a known number of connections and bytes; loupe must count exactly that, on both sides,
with each side's peer named by the other's service. Passive opens complete in softirq, so the server side also
checks attribution outside the application's task.
"""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loupe_test import Loupe, Tap, free_port, is_root, value, wait_for  # noqa: E402
from bpf_support import new_tag  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PY = "/usr/bin/python3"
PEER = os.path.join(HERE, "tcp_peer.py")


class Peer:
    def __init__(self, *args):
        self.p = subprocess.Popen([PY, PEER, *map(str, args)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
        assert json.loads(self.p.stdout.readline()).get("ready")

    def go(self):
        self.p.stdin.write("go\n")
        self.p.stdin.flush()

    def line(self):
        return json.loads(self.p.stdout.readline())

    def wait(self, timeout=20):
        out = [json.loads(l) for l in self.p.communicate(timeout=timeout)[0].splitlines() if l.strip()]
        return out[-1] if out else {}


def tcp(m, name, **labels):
    return value(m, name, **labels)


def main():
    t = Tap()
    if not is_root():
        t.skip("tcp lifecycle", "needs root to load BPF programs")
        t.done()
    tag = new_tag()
    srv_tag, cli_tag, other_tag = f"tcpsrv-{tag}", f"tcpcli-{tag}", f"tcpoth-{tag}"
    N, BYTES = 5, 3000
    with Loupe("--target", f"srv=cmdline:{srv_tag}", "--target", f"cli=cmdline:{cli_tag}") as L:
        port = free_port()
        srv = Peer("server", port, N + 2, srv_tag)
        cli = Peer("client", port, N, BYTES, cli_tag)
        other = Peer("client", port, 2, 100, other_tag)
        ok = wait_for(lambda: value(L.scrape(), "loupe_targets", service_name="srv") == 1 and
                      value(L.scrape(), "loupe_targets", service_name="cli") == 1, timeout=10)
        t.ok(ok, "server and client are targets before they touch the network")
        m0 = L.scrape()
        srv.go()
        t.eq(srv.line().get("listening"), port, "server listens")
        time.sleep(0.2)
        cli.go()
        res = cli.wait()
        t.eq(res, {"connections": N, "received": N * BYTES, "resets": 0}, "client exchanged its bytes")
        other.go()
        other.wait()
        sres = srv.wait()
        t.eq(sres.get("accepted"), N + 2, "server accepted every connection")

        def settled():
            m = L.scrape()
            return m if tcp(m, "loupe_tcp_connection_duration_seconds_count", service_name="srv") - \
                tcp(m0, "loupe_tcp_connection_duration_seconds_count", service_name="srv") >= N + 2 else None
        m1 = wait_for(settled, timeout=10) or L.scrape()
        d = lambda name, **lb: tcp(m1, name, **lb) - tcp(m0, name, **lb)
        t.eq(d("loupe_tcp_connections_total", service_name="cli", direction="outbound", peer="srv"), N,
             "client: N outbound connections to peer srv")
        t.eq(d("loupe_tcp_connections_total", service_name="srv", direction="inbound", peer="cli"), N,
             "server: N inbound connections from peer cli (passive open in softirq)")
        t.eq(d("loupe_tcp_connections_total", service_name="srv", direction="inbound", peer="loopback"), 2,
             "server: an untargeted local client is peer loopback")
        t.eq(d("loupe_tcp_connections_total", service_name="cli", direction="inbound"), 0,
             "client: no inbound connections")
        t.eq(tcp(m1, "loupe_tcp_connections_active", service_name="cli"), 0, "client: nothing active after close")
        t.eq(tcp(m1, "loupe_tcp_connections_active", service_name="srv"), 0, "server: nothing active after close")
        t.eq(d("loupe_tcp_connection_duration_seconds_count", service_name="cli", peer="srv"), N,
             "client: N connection durations")
        t.eq(d("loupe_tcp_connect_duration_seconds_count", service_name="cli", peer="srv"), N,
             "client: N connect latencies")
        t.eq(d("loupe_tcp_sent_bytes_total", service_name="cli", peer="srv"), N * BYTES,
             "client: data bytes sent")
        t.eq(d("loupe_tcp_received_bytes_total", service_name="cli", peer="srv"), N * BYTES,
             "client: bytes received")
        t.eq(d("loupe_tcp_received_bytes_total", service_name="srv", peer="cli"), N * BYTES,
             "server: bytes received from cli")
        t.eq(d("loupe_tcp_sent_bytes_total", service_name="srv", peer="cli"), N * BYTES,
             "server: bytes sent to cli")
        t.eq(d("loupe_tcp_srtt_seconds_count", service_name="srv"), N + 2, "server: an RTT per closed connection")

        # A connect to a port nobody listens on: refused (the reset arrives in SYN_SENT).
        dead = free_port()
        ref = Peer("refused", dead, cli_tag)
        wait_for(lambda: value(L.scrape(), "loupe_targets", service_name="cli") >= 1, timeout=5)
        m2 = L.scrape()
        ref.go()
        r = ref.wait()
        t.ok(r.get("errno") == 111, "refused connect fails with ECONNREFUSED", r)
        m3 = wait_for(lambda: (lambda m: m if tcp(m, "loupe_tcp_connect_errors_total", service_name="cli") >
                               tcp(m2, "loupe_tcp_connect_errors_total", service_name="cli") else None)(L.scrape()),
                      timeout=5) or L.scrape()
        t.eq(tcp(m3, "loupe_tcp_connect_errors_total", service_name="cli", peer="loopback") -
             tcp(m2, "loupe_tcp_connect_errors_total", service_name="cli", peer="loopback"), 1,
             "client: one connect error")
        t.eq(tcp(m3, "loupe_tcp_resets_received_total", service_name="cli") -
             tcp(m2, "loupe_tcp_resets_received_total", service_name="cli"), 1, "client: the refusal's reset received")

        # Resets sent: a server that closes with SO_LINGER 0.
        port2 = free_port()
        rsrv = Peer("server", port2, 1, srv_tag, "--rst")
        rcli = Peer("client", port2, 1, 10, cli_tag, "--wait-close")
        wait_for(lambda: value(L.scrape(), "loupe_targets", service_name="srv") >= 1 and
                 value(L.scrape(), "loupe_targets", service_name="cli") >= 1, timeout=5)
        m4 = L.scrape()
        rsrv.go()
        rsrv.line()
        rcli.go()
        rc = rcli.wait()
        rsrv.wait()
        m5 = wait_for(lambda: (lambda m: m if tcp(m, "loupe_tcp_resets_sent_total", service_name="srv") >
                               tcp(m4, "loupe_tcp_resets_sent_total", service_name="srv") else None)(L.scrape()),
                      timeout=5) or L.scrape()
        t.eq(tcp(m5, "loupe_tcp_resets_sent_total", service_name="srv") -
             tcp(m4, "loupe_tcp_resets_sent_total", service_name="srv"), 1, "server: one reset sent (SO_LINGER 0)")
        t.ok(rc.get("resets") == 1 or rc.get("received") == 10, "client saw the reset or the echo", rc)

        text = L.scrape_text()
        t.ok("127.0.0.1" not in text and str(port) not in text, "no address or port in /metrics")

    # Listening ports of targets that started before loupe are found from /proc.
    port3 = free_port()
    early = Peer("server", port3, 1, srv_tag)
    early.go()
    early.line()
    with Loupe("--target", f"srv=cmdline:{srv_tag}") as L2:
        c = Peer("client", port3, 1, 10, other_tag)
        m0 = L2.scrape()
        c.go()
        c.wait()
        early.wait()
        m1 = wait_for(lambda: (lambda m: m if value(m, "loupe_tcp_connections_total", service_name="srv") >
                               value(m0, "loupe_tcp_connections_total", service_name="srv") else None)(L2.scrape()),
                      timeout=5) or L2.scrape()
        t.eq(value(m1, "loupe_tcp_connections_total", service_name="srv", direction="inbound", peer="loopback") -
             value(m0, "loupe_tcp_connections_total", service_name="srv", direction="inbound", peer="loopback"), 1,
             "a port listened on before loupe started is attributed (seeded from /proc/net/tcp)")
    t.done()


if __name__ == "__main__":
    main()
