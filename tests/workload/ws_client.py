#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""WebSocket client for the Loupe reference workload (python3-websockets 10.4, asyncio).

Count mode (default): open M sessions to /ws at once, send K messages in each (waiting
for every echo and checking it byte for byte), close with code 1000.
    ws_client.py --sessions 5 --messages 20 [--binary] [--size 32] [--subscribe]

Continuous mode: M sessions send R messages per second each for S seconds (S = 0: until
SIGINT/SIGTERM), optionally reconnecting every N seconds; used by demo-load.sh.
    ws_client.py --sessions 3 --duration 60 --rate 2 [--reconnect-every 10] [--subscribe]

Close-code mode: each session connects to /ws/close/CODE and checks the server closes with CODE.
    ws_client.py --sessions 2 --expect-close 4001

Throughput mode: M sessions connect, then each sends messages back to back for S seconds, awaiting (and
checking) every echo before the next send; then they close with 1000. Used by scripts/bench.sh (f).
    ws_client.py --sessions 8 --throughput --duration 10 [--size 32] [--binary]
The summary then also has "throughput": {"messages":N (echoed round trips), "window_s":.., "messages_per_s":..,
"client_cpu_s":..}: the window runs from the moment every session is connected to the last echo, so it leaves
out the handshakes and closes; every message sent in it is echoed before the session closes.
--seconds-file FILE (throughput mode) appends "UNIX_SECOND ECHOES" to FILE for every wall-clock second as it ends
(flushed then: a client that is stopped leaves every finished second; bench-cost.sh's windows).

--subscribe sends the text "subscribe" first: the server then pushes
{"event":"update","seq":k} every 100 ms, counted as updates_received.
Pings are off and compression is not negotiated (--deflate to enable it), so every
data message is exactly one uncompressed frame on the wire.

Prints one JSON summary on stdout:
    {"sessions":M,"messages_sent":N,"messages_received":N,"errors":0, "echo_mismatches":0,
     "updates_received":N, "close_codes":{"1000":M}, "duration_s":..}
messages_sent counts every data message the client sent ("subscribe" included);
messages_received counts every data message received (echoes and updates).
Exit 1 on any error (connect failure, missing/wrong echo, unexpected close code); 2 on bad usage.
Host/port default to LOUPE_API_HOST (127.0.0.1) / LOUPE_API_PORT (18080).
"""

import argparse
import asyncio
import json
import os
import signal
import sys
import time

try:
    import websockets
    from websockets.exceptions import ConnectionClosed
except ImportError:
    sys.exit("ws_client.py: error: websockets not importable; run with /usr/bin/python3")


class Summary:
    def __init__(self, sessions):
        self.sessions = sessions
        self.connections = 0
        self.sent = 0
        self.received = 0
        self.updates = 0
        self.mismatches = 0
        self.errors = 0
        self.close_codes = {}
        # throughput mode
        self.echoes = 0
        self.go = None
        self.connected = 0
        self.t_start = None
        self.last_echo = 0.0
        self.sec_file = None  # --seconds-file: echoes per wall-clock second
        self.sec_now = 0
        self.sec_n = 0

    def echoed(self):
        self.echoes += 1
        if self.sec_file:
            now = int(time.time())
            if now != self.sec_now:
                if self.sec_n:
                    self.sec_file.write(f"{self.sec_now} {self.sec_n}\n")
                    self.sec_file.flush()
                self.sec_now, self.sec_n = now, 0
            self.sec_n += 1

    def ready(self):
        """A throughput session is connected: when all are, start the clock and the sending."""
        self.connected += 1
        if self.connected == self.sessions:
            self.t_start = time.monotonic()
            self.go.set()

    def error(self, sid, msg):
        self.errors += 1
        print(f"ws_client.py: session {sid}: {msg}", file=sys.stderr)

    def closed(self, code):
        k = str(code)
        self.close_codes[k] = self.close_codes.get(k, 0) + 1


def is_update(msg) -> bool:
    if not isinstance(msg, str) or not msg.startswith('{"event"'):
        return False
    try:
        return json.loads(msg).get("event") == "update"
    except ValueError:
        return False


def make_message(args, sid: int, i: int):
    if args.binary:
        return bytes((sid * 31 + i * 7 + j) % 256 for j in range(args.size))
    head = f"loupe-ws s{sid} m{i} "
    return (head + "x" * max(0, args.size - len(head))) if args.size > len(head) else head


class Session:
    def __init__(self, args, summary, sid, stop):
        self.args, self.s, self.sid, self.stop = args, summary, sid, stop

    async def connect(self, path):
        a = self.args
        ws = await websockets.connect(
            f"ws://{a.host}:{a.port}{path}", ping_interval=None, open_timeout=a.timeout,
            close_timeout=a.timeout, compression="deflate" if a.deflate else None,
            max_size=2 ** 24)
        self.s.connections += 1
        return ws

    async def send(self, ws, msg):
        await ws.send(msg)
        self.s.sent += 1

    async def recv_echo(self, ws, expected) -> bool:
        """Wait for the echo of `expected`, counting pushed updates on the way."""
        while True:
            got = await asyncio.wait_for(ws.recv(), self.args.timeout)
            self.s.received += 1
            if got == expected:
                return True
            if self.args.subscribe and is_update(got):
                self.s.updates += 1
                continue
            self.s.mismatches += 1
            self.s.error(self.sid, f"echo mismatch: sent {expected!r:.60} got {got!r:.60}")
            return False

    async def close(self, ws):
        if ws.closed:  # already closed by the server or lost: the caller reports why
            self.s.closed(ws.close_code)
            return
        await ws.close(code=1000)
        self.s.closed(ws.close_code)
        if ws.close_code != 1000:
            self.s.error(self.sid, f"server answered close with code {ws.close_code}, want 1000")

    async def open_session(self, ws):
        if self.args.subscribe:
            await self.send(ws, "subscribe")
            await self.recv_echo(ws, "subscribe")

    async def run_count(self):
        ws = await self.connect("/ws")
        try:
            await self.open_session(ws)
            for i in range(self.args.messages):
                msg = make_message(self.args, self.sid, i)
                await self.send(ws, msg)
                if not await self.recv_echo(ws, msg):
                    break
        finally:
            await self.close(ws)

    async def run_continuous(self):
        a = self.args
        period = 1.0 / a.rate
        i = 0
        while not self.stop.is_set():
            ws = await self.connect("/ws")
            opened = time.monotonic()
            try:
                await self.open_session(ws)
                nxt = time.monotonic() + (self.sid % 10) * period / 10  # spread sessions
                while not self.stop.is_set():
                    if a.reconnect_every and time.monotonic() - opened >= a.reconnect_every:
                        break
                    delay = nxt - time.monotonic()
                    if delay > 0:
                        try:
                            await asyncio.wait_for(self.stop.wait(), delay)
                            break
                        except asyncio.TimeoutError:
                            pass
                    nxt += period
                    msg = make_message(a, self.sid, i)
                    i += 1
                    await self.send(ws, msg)
                    if not await self.recv_echo(ws, msg):
                        break
            finally:
                await self.close(ws)
            if self.s.errors:
                return

    async def run_throughput(self, ready, go):
        """Connect, wait until every session is connected (go), then send back to back until stop."""
        a = self.args
        ws = await self.connect("/ws")
        try:
            await self.open_session(ws)
            ready()
            await go.wait()
            i = 0
            while not self.stop.is_set():
                msg = make_message(a, self.sid, i)
                i += 1
                await self.send(ws, msg)
                if not await self.recv_echo(ws, msg):
                    break
                self.s.echoed()
            self.s.last_echo = max(self.s.last_echo, time.monotonic())
        finally:
            await self.close(ws)

    async def run_expect_close(self):
        code = self.args.expect_close
        ws = await self.connect(self.args.path or f"/ws/close/{code}")
        try:
            got = await asyncio.wait_for(ws.recv(), self.args.timeout)
            self.s.received += 1
            self.s.error(self.sid, f"expected close {code}, got a message {got!r:.60}")
        except ConnectionClosed:
            pass
        await ws.wait_closed()
        self.s.closed(ws.close_code)
        if ws.close_code != code:
            self.s.error(self.sid, f"server closed with code {ws.close_code}, want {code}")

    async def run(self):
        try:
            if self.args.expect_close is not None:
                await self.run_expect_close()
            elif self.args.throughput:
                await self.run_throughput(self.s.ready, self.s.go)
            elif self.args.duration is not None:
                await self.run_continuous()
            else:
                await self.run_count()
        except asyncio.TimeoutError:
            self.s.error(self.sid, f"timeout after {self.args.timeout}s waiting for the server")
        except ConnectionClosed as exc:
            hint = " (server went away without a close handshake: API stopped?)" if exc.code == 1006 else ""
            self.s.error(self.sid, f"connection closed unexpectedly: {exc}{hint}")
        except (OSError, websockets.exceptions.WebSocketException) as exc:
            self.s.error(self.sid, f"{exc.__class__.__name__}: {exc}")


async def amain(args) -> Summary:
    summary = Summary(args.sessions)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.throughput:
        summary.go = asyncio.Event()
        if args.seconds_file:
            summary.sec_file = open(args.seconds_file, "a")
        sessions = [Session(args, summary, sid, stop) for sid in range(args.sessions)]
        runs = asyncio.gather(*(s.run() for s in sessions))
        # The clock starts when every session is connected (or gives up after --timeout).
        try:
            await asyncio.wait_for(summary.go.wait(), args.timeout)
        except asyncio.TimeoutError:
            summary.go.set()
            summary.t_start = summary.t_start or time.monotonic()
        loop.call_later(args.duration, stop.set)
        await runs
        return summary
    if args.duration:
        loop.call_later(args.duration, stop.set)
    sessions = [Session(args, summary, sid, stop) for sid in range(args.sessions)]
    await asyncio.gather(*(s.run() for s in sessions))
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=1)
    ap.add_argument("--messages", type=int, default=10, help="messages per session (count mode)")
    ap.add_argument("--binary", action="store_true", help="send binary messages instead of text")
    ap.add_argument("--size", type=int, default=32, help="message size in bytes (default 32)")
    ap.add_argument("--subscribe", action="store_true", help='send "subscribe" first (server pushes updates)')
    ap.add_argument("--duration", type=float, default=None,
                    help="continuous mode for S seconds (0 = until SIGINT/SIGTERM)")
    ap.add_argument("--rate", type=float, default=1.0, help="continuous mode: messages/s per session")
    ap.add_argument("--reconnect-every", type=float, default=0.0,
                    help="continuous mode: close and reopen each session every S seconds")
    ap.add_argument("--throughput", action="store_true",
                    help="throughput mode: send back to back (no --rate) for --duration S seconds")
    ap.add_argument("--seconds-file", default=None, metavar="FILE",
                    help="throughput mode: append each wall-clock second's echoes to FILE as it ends")
    ap.add_argument("--expect-close", type=int, default=None, metavar="CODE",
                    help="connect to /ws/close/CODE and check the server's close code")
    ap.add_argument("--path", default=None, help="path for --expect-close (default /ws/close/CODE)")
    ap.add_argument("--deflate", action="store_true", help="negotiate permessage-deflate")
    ap.add_argument("--timeout", type=float, default=10.0, help="per-operation timeout (s)")
    ap.add_argument("--host", default=os.environ.get("LOUPE_API_HOST", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("LOUPE_API_PORT", "18080")))
    args = ap.parse_args()
    if args.host not in ("localhost", "::1") and not args.host.startswith("127."):
        ap.error(f"--host {args.host} is not a loopback address")
    if args.sessions < 1 or args.messages < 0 or args.size < 1:
        ap.error("--sessions must be >= 1, --messages >= 0, --size >= 1")
    if args.duration is not None and (args.duration < 0 or args.rate <= 0):
        ap.error("--duration must be >= 0 and --rate > 0")
    if args.throughput and (not args.duration or args.duration <= 0 or args.expect_close is not None):
        ap.error("--throughput needs --duration S > 0 (and no --expect-close)")

    t0 = time.monotonic()
    cpu0 = time.process_time()
    s = asyncio.run(amain(args))
    out = {"sessions": s.sessions, "messages_sent": s.sent, "messages_received": s.received,
           "errors": s.errors, "echo_mismatches": s.mismatches, "updates_received": s.updates,
           "connections": s.connections, "close_codes": dict(sorted(s.close_codes.items())),
           "duration_s": round(time.monotonic() - t0, 3)}
    if args.throughput:
        window = (s.last_echo - s.t_start) if s.t_start and s.last_echo > s.t_start else 0.0
        out["throughput"] = {"messages": s.echoes, "window_s": round(window, 3),
                             "messages_per_s": round(s.echoes / window, 1) if window else 0.0,
                             "client_cpu_s": round(time.process_time() - cpu0, 3)}
    print(json.dumps(out))
    return 1 if s.errors else 0


if __name__ == "__main__":
    sys.exit(main())
