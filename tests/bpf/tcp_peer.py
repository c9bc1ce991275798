# SPDX-License-Identifier: BSD-2-Clause
"""A TCP server or client with exact, reported behaviour, for tests/bpf/test_tcp.py.

    tcp_peer.py server PORT N TAG [--rst]     listen, accept N connections, echo every byte, close (--rst: with
                                              SO_LINGER 0, so the close sends a reset)
    tcp_peer.py client PORT N BYTES TAG       N connections, each sends BYTES bytes, reads them back, closes
    tcp_peer.py refused PORT TAG              one connect to a port with no listener

Each waits for a line on stdin before it touches the network (so the test can make sure loupe has classified
it first), then prints one JSON line with what it did. TAG is only there to make the command line unique.
"""
import json
import socket
import struct
import sys


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()
    if mode == "server":
        n, rst = int(sys.argv[3]), "--rst" in sys.argv
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", port))
        ls.listen(64)
        print(json.dumps({"listening": port}), flush=True)
        echoed = 0
        for _ in range(n):
            c, _ = ls.accept()
            while True:
                b = c.recv(65536)
                if not b:
                    break
                c.sendall(b)
                echoed += len(b)
                if rst:
                    break
            if rst:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
        ls.close()
        print(json.dumps({"accepted": n, "echoed": echoed}), flush=True)
    elif mode == "client":
        n, nbytes = int(sys.argv[3]), int(sys.argv[4])
        got = 0
        resets = 0
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"x" * nbytes)
            this = 0
            try:
                while this < nbytes:
                    b = s.recv(65536)
                    if not b:
                        break
                    this += len(b)
                if this == nbytes and "--wait-close" in sys.argv:
                    s.recv(1)  # the server's close (or reset) arrives before ours
            except ConnectionResetError:
                resets += 1
            got += this
            s.close()
        print(json.dumps({"connections": n, "received": got, "resets": resets}), flush=True)
    elif mode == "refused":
        s = socket.socket()
        err = s.connect_ex(("127.0.0.1", port))
        print(json.dumps({"errno": err}), flush=True)


if __name__ == "__main__":
    main()
