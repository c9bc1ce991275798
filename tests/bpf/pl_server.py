# SPDX-License-Identifier: BSD-2-Clause
"""A target TCP server whose socket calls are known exactly, for tests/bpf/test_payload.py.

    pl_server.py PORT TAG

Prints {"ready": true, "port": PORT} once listening, then serves one connection at a time. A client first sends one
line "MODE NREQ REQ RESP [FLOOD]\n" on a fresh connection (the server reads it with plain recv, then closes that
connection); the next connection is then served in MODE:
    read      read(2) requests, write(2) responses
    readv     readv(2) into iovecs of 100 bytes and REQ-100 bytes, writev(2) the response as head + body
    recvfrom  recv (recvfrom(2)), send (sendto(2))
    recvmsg   recvmsg(2) into two iovecs as readv, sendmsg(2) with two iovecs as writev
Each of the NREQ requests is REQ bytes, read by exactly one call of the mode (the client waits for each response
before it sends the next request); each response is RESP bytes: "HTTP/1.1 200 OK" headers and a body, written by
exactly one call, or, with FLOOD > 0, the head and then FLOOD write(2) calls of 200 body bytes each.
After the last request the server reads EOF (a call that returns 0 bytes) and closes. Every call's byte count is
checked; a short read or write exits with status 3 and a message. TAG only makes the command line unique.
"""
import json
import os
import socket
import sys


def response_parts(resp, flood):
    body_len = flood * 200 if flood else None
    if body_len is None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
        n = next(n for n in range(resp, -1, -1) if len(head % n) + n == resp)
        return head % n, b"b" * n
    h = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % body_len
    return h, None


def recv_exact_call(c, mode, req):
    fd = c.fileno()
    if mode == "read":
        data = os.read(fd, req)
    elif mode == "readv":
        a, b = bytearray(100), bytearray(req - 100)
        n = os.readv(fd, [a, b])
        data = bytes((a + b)[:n])
    elif mode == "recvfrom":
        data = c.recv(req)
    elif mode == "recvmsg":
        a, b = bytearray(100), bytearray(req - 100)
        n, _, _, _ = c.recvmsg_into([a, b])
        data = bytes((a + b)[:n])
    else:
        raise SystemExit(f"bad mode {mode}")
    return data


def send_call(c, mode, parts):
    fd = c.fileno()
    whole = b"".join(parts)
    if mode == "read":
        n = os.write(fd, whole)
    elif mode == "readv":
        n = os.writev(fd, parts)
    elif mode == "recvfrom":
        n = c.send(whole)
    else:
        n = c.sendmsg(parts)
    if n != len(whole):
        print(json.dumps({"error": f"short write {n}/{len(whole)}"}), flush=True)
        sys.exit(3)


def main():
    port = int(sys.argv[1])
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(16)
    print(json.dumps({"ready": True, "port": port}), flush=True)
    while True:
        ctl, _ = ls.accept()
        line = b""
        while not line.endswith(b"\n"):
            chunk = ctl.recv(256)
            if not chunk:
                break
            line += chunk
        ctl.close()
        words = line.decode().split()
        if not words or words[0] == "quit":
            return
        mode, nreq, req, resp = words[0], int(words[1]), int(words[2]), int(words[3])
        flood = int(words[4]) if len(words) > 4 else 0
        c, _ = ls.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(nreq):
            data = recv_exact_call(c, mode, req)
            if len(data) != req:
                print(json.dumps({"error": f"short read {len(data)}/{req} in {mode}"}), flush=True)
                sys.exit(3)
            head, body = response_parts(resp, flood)
            if body is not None:
                send_call(c, mode, [head, body])
            else:
                send_call(c, mode, [head])
                chunk = b"f" * 200
                for _ in range(flood):
                    if os.write(c.fileno(), chunk) != 200:
                        sys.exit(3)
        if recv_exact_call(c, mode, req) != b"":
            print(json.dumps({"error": "expected EOF"}), flush=True)
            sys.exit(3)
        c.close()
        print(json.dumps({"served": mode, "requests": nreq}), flush=True)


if __name__ == "__main__":
    main()
