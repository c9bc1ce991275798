#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""End to end (root): loupe built with AddressSanitizer, LeakSanitizer and UBSan (`make asan`: build/asan/loupe,
every report fatal) runs with every feature on (--syscalls on, --offcpu, --pg-usdt-query, --bpf-stats always,
payload capture, the profiler) against the reference workload, under its mixed load, a connection storm, a
WebSocket storm, SQL errors, profile requests of every kind and malformed requests; then it is stopped with
SIGTERM. It must exit 0 with no sanitizer report: no memory error, no undefined behaviour, no leak (every link,
object and buffer freed at exit). Before it, the unit tests whose regressions only a sanitizer sees run in their
`make asan` build (build/asan/tests/). Prints TAP."""
import os
import re
import socket
import subprocess
import sys
import time
import traceback

TOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
ASAN_LOUPE = os.path.abspath(os.path.join(TOP, "build", "asan", "loupe"))
os.environ["LOUPE_BIN"] = ASAN_LOUPE  # before loupe_test reads it
os.environ["ASAN_OPTIONS"] = "detect_leaks=1:exitcode=99:abort_on_error=0:detect_stack_use_after_return=0"
os.environ["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1:exitcode=98"
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loupe_test import Loupe, Tap, WORKLOAD  # noqa: E402
from e2e_support import Workload, missing_requirements, skip_all, stop_all, terminate_on_signals  # noqa: E402

# Unit tests whose regressions only a sanitizer sees, built by `make asan`: the Makefile's ASAN_UNIT, read from it.
with open(os.path.join(TOP, "Makefile")) as _mk:
    ASAN_UNIT = next((m.group(1).split() for m in map(re.compile(r"^ASAN_UNIT\s*:=\s*(.*)$").match, _mk) if m), [])
NAMES = ["control: a leaking program built with the same flags is reported by LeakSanitizer here",
         *[f"build/asan/tests/{u}: passes with no sanitizer report" for u in ASAN_UNIT],
         "build/asan/loupe starts with every feature on", "the load, storms and bad input were served",
         "SIGTERM: exit 0", "no AddressSanitizer, LeakSanitizer or UBSan report"]
START, SERVED, EXITED, CLEAN = NAMES[-4:]
REPORTS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "SUMMARY: ")
BAD = ["/debug/pprof/profile?window=307445734561825861m", "/debug/pprof/profile?seconds=1%002",
       "/debug/pprof/profile?service=api%00", "/flamegraph.svg?kind=x", "/metrics?x=1",
       "/debug/pprof/profile?focus=%28", "/debug/pprof/profile?focus=" + "a" * 300, "/nope"]


def main():
    t = Tap()
    why = missing_requirements()
    if why:
        skip_all(t, why, NAMES)
    if not os.access(ASAN_LOUPE, os.X_OK):
        t.ok(False, "build/asan/loupe is built",
             f"{ASAN_LOUPE} not found: run `make asan` first (scripts/test.sh does)")
        t.done()
    # The control: without it, a clean run could mean LeakSanitizer is not working here (e.g. under ptrace).
    src = os.path.join(os.path.dirname(ASAN_LOUPE), "leak-control.c")
    with open(src, "w") as f:
        f.write("#include <stdlib.h>\nvoid *volatile g;\n__attribute__((noinline)) static void leak(void) "
                "{ g = malloc(4242); }\nint main(void) { leak(); g = 0; return 0; }\n")
    exe = src[:-2]
    r = subprocess.run(["cc", "-O1", "-g", "-fsanitize=address,undefined", "-o", exe, src], capture_output=True,
                       text=True)
    r = subprocess.run([exe], capture_output=True, text=True) if not r.returncode else r
    t.ok(r.returncode == 99 and "ERROR: LeakSanitizer" in r.stderr and "4242 byte(s)" in r.stderr, NAMES[0],
         f"exit {r.returncode}: {r.stderr[-1500:]}")
    for u in ASAN_UNIT:
        exe = os.path.join(os.path.dirname(ASAN_LOUPE), "tests", u)
        r = subprocess.run([exe], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "CMOCKA_MESSAGE_OUTPUT": "TAP"})
        found = [ln for ln in r.stderr.splitlines() if any(x in ln for x in REPORTS)]
        t.ok(r.returncode == 0 and "not ok" not in r.stdout and not found and "\nok " in "\n" + r.stdout,
             f"build/asan/tests/{u}: passes with no sanitizer report",
             f"exit {r.returncode}\n{r.stdout[-1500:]}\n{r.stderr[-3000:]}")
    terminate_on_signals()
    wl = Workload("asan")
    L = Loupe("--syscalls", "on", "--offcpu", "--pg-usdt-query", "--bpf-stats", "always")
    try:
        try:
            L.start(timeout=60)
            wl.start()
        except Exception as e:  # noqa: BLE001
            t.ok(False, START, e)
            return
        t.ok(True, START)
        load = wl.background([os.path.join(WORKLOAD, "demo-load.sh"), "-d", "25", "--rate", "40",
                              "--ws-reconnect", "3"])
        served = []
        # A connection storm on the API (each a new TCP connection: parser state created and freed).
        wl.http_plan("GET /memories/1=200,GET /fail=20,GET /slow=5,GET /healthz=100,GET /nope=20", connections=20)
        # WebSocket sessions closing with codes.
        wl.ws("--sessions", "10", "--messages", "20")
        # SQL errors and a rolled-back transaction straight to the backend.
        conn = wl.pg_connect()
        conn.autocommit = True
        with conn.cursor() as cur:
            for q in ("SELECT 1/0", "SELEC oops", "SELECT pg_sleep(0.05)"):
                try:
                    cur.execute(q)
                except Exception:  # noqa: BLE001 - the errors are the point
                    pass
        conn.close()
        # Profiles of every kind, an on-demand session, malformed requests and a burst of idle connections.
        for p in ("/debug/pprof/profile?window=1m", "/debug/pprof/profile?window=1m&format=folded",
                  "/flamegraph.svg?kind=cpu", "/flamegraph.svg?kind=offcpu", "/debug/pprof/offcpu?window=1m",
                  "/debug/pprof/profile?seconds=2&hz=99&service=api", "/status", "/metrics"):
            served.append((p, L.get(p, timeout=30)[0]))
        bad = [(p, L.get(p)[0]) for p in BAD]
        idle = []
        for _ in range(40):
            s = socket.socket()
            s.connect(("127.0.0.1", L.port))
            idle.append(s)
        time.sleep(2)
        for s in idle:
            s.close()
        load.wait(timeout=60)
        ok = all(st == 200 for _, st in served) and all(400 <= st < 500 for _, st in bad)
        t.ok(ok, SERVED, f"served: {served}; malformed: {bad}")
        rc = L.stop(timeout=30)
        rc = L.exit_code if L.exit_code is not None else rc
        t.ok(rc == 0, EXITED, f"exit {rc}\n{L.stderr()[-3000:]}")
        err = L.stderr()
        found = [ln for ln in err.splitlines() if any(r in ln for r in REPORTS)]
        t.ok(not found, CLEAN, "\n".join(found[:20]) + "\n" + err[-4000:])
    except Exception:  # noqa: BLE001 - an error in a check is a failure, with its traceback
        # Say whether the daemon is still running and what it printed: a sanitizer report ends it, and the
        # traceback alone (a refused connection) would not say why. The runner shows a failure's last lines.
        rc = L.proc.poll() if L.proc else None
        tail = "\n".join(L.stderr().splitlines()[-45:])
        if rc is None:  # its own account of its HTTP server
            try:
                tail += "\n" + "\n".join(ln for ln in L.scrape_text().splitlines()
                                         if ln.startswith(("loupe_http_connections", "loupe_http_requests_refused")))
            except Exception as e:  # noqa: BLE001
                tail += f"\n/metrics: {e}"
        here = [f for f in traceback.extract_tb(sys.exc_info()[2]) if f.filename == os.path.abspath(__file__)]
        where = f"at line {here[-1].lineno}: {here[-1].line}\n" if here else ""
        t.ok(False, "no unexpected error", where + "\n".join(traceback.format_exc().splitlines()[-3:]) +
             f"\nloupe: {'running' if rc is None else f'exited {rc}'}; the last lines of its stderr:\n{tail}")
    finally:
        stop_all(t, wl, L)


if __name__ == "__main__":
    main()
