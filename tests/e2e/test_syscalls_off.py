#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""HTTP, WebSocket and PostgreSQL signals without any syscall hook: the ground-truth tests of requests, messages
and statements (tests/bpf/test_payload.py, tests/e2e/test_http_ws.py, tests/e2e/test_postgres.py) run again with
every loupe they start given `--syscalls off` (LOUPE_TEST_EXTRA_ARGS, read by tests/lib/loupe_test.py), and every
one of their checks must pass: payload capture rides on the socket tracepoints (bpf/payload.bpf.c), not on
sys_enter/sys_exit. Their TAP lines are relayed here with a prefix; a test that skips here skips there.
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PAYLOAD = os.path.join(HERE, "..", "bpf", "test_payload.py")
# (test, options): test_payload.py also with the raw_tp programs, whose capture reads kernel memory otherwise.
TESTS = [(PAYLOAD, "--syscalls off"), (PAYLOAD, "--syscalls off --tracepoints raw_tp"),
         (os.path.join(HERE, "test_http_ws.py"), "--syscalls off"), (os.path.join(HERE, "test_postgres.py"), "--syscalls off")]


def main():
    n = failed = 0
    for path, extra in TESTS:
        env = dict(os.environ, LOUPE_TEST_EXTRA_ARGS=extra)
        name = os.path.basename(path)
        r = subprocess.run(["/usr/bin/python3", path], env=env, capture_output=True, text=True, timeout=600)
        seen = 0
        for line in r.stdout.splitlines():
            if line.startswith(("ok ", "not ok ")):
                n += 1
                seen += 1
                ok = line.startswith("ok ")
                failed += not ok
                rest = line.split(" - ", 1)[1] if " - " in line else line
                print(f"{'ok' if ok else 'not ok'} {n} - {extra}: {name}: {rest}", flush=True)
            elif line.startswith("#"):
                print(line, flush=True)
        if r.returncode != 0 or not seen:
            n += 1
            failed += 1
            print(f"not ok {n} - {extra}: {name} exited {r.returncode} after {seen} checks", flush=True)
            for line in (r.stderr or "").splitlines()[-15:]:
                print(f"# {line}", flush=True)
    print(f"1..{n}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
