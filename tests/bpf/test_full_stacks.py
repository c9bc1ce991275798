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
  - a CPython loupe has no layout for (3.9) is named in /status and the log, and its native frames are profiled;
  - --focus REGEX keeps exactly the stacks through a matching function (every stack of the focused profile has one).
"""
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
from loupe_test import LOUPE, Loupe, TOP, Tap, is_root, pprof_text, wait_for  # noqa: E402
from e2e_support import Workload, missing_requirements  # noqa: E402

HELPERS = os.path.join(TOP, "build", "tests")
STACKS_PY = os.path.join(TOP, "tests", "bpf", "py", "stacks.py")
DEEP = ["main", "dc_main_a", "dc_lib_b", "dc_main_c", "dc_lib_d", "dc_leaf"]
OUTER_LINE = next(i for i, ln in enumerate(open(STACKS_PY), 1) if ln.startswith("def outer("))


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
            if stack:  # an interpreted frame reads "module.qualname (file.py:LINE)": compared by its name
                rows.append(([f.split(" (")[0] for f in stack.split(";")], int(n)))
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


def pprof_function(text, name):
    """The function named name in protoc's text: (filename, start_line), or None."""
    strings = re.findall(r'^string_table: "(.*)"$', text, re.M)
    for body in re.findall(r"^function \{(.*?)^\}", text, re.M | re.S):
        f = dict(re.findall(r"(\w+): (\d+)", body))
        if int(f.get("name", 0)) < len(strings) and strings[int(f["name"])] == name:
            fn = int(f.get("filename", 0))
            return (strings[fn] if fn < len(strings) else None, int(f.get("start_line", 0)))
    return None


class Hammer(threading.Thread):
    """GET url in a loop on one connection until stopped."""

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url, self.stop, self.n, self.err = url, threading.Event(), 0, None

    def run(self):
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=30) as r:
                    r.read()
                self.n += 1
            except Exception as e:  # noqa: BLE001 - reported by the test
                self.err = e
                time.sleep(0.1)


def profiled(argv, out, *args, procs):
    """Run argv (released when loupe profile has attached) under loupe profile --pid; (rc, stderr, rows of out,
    what argv printed at its end)."""
    h = Held(argv)
    procs.append(h.p)
    rc, se = profile(h.p.pid, out, *args, go=h.go)
    res = h.result()
    return rc, se, folded(out), res


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
            rc, se, rows, _ = profiled([exe, "4"], os.path.join(d, f"{name}.folded"), "--seconds", 3, "--format",
                                       "folded", procs=procs)
            hit, total = share(rows, DEEP)
            t.ok(rc == 0 and total >= 100 and hit >= 0.9 * total, label,
                 f"rc {rc} {se[-200:]}; {hit} of {total}; top {top_stacks(rows)}")

        # -- CPython, every interpreter present --
        for label, py in interpreters():
            ver = re.search(r"(3\.\d+)", label).group(1)
            inner = ("stacks.Worker.inner",) if ver != "3.10" else ("stacks.inner", "stacks.Worker.inner")
            chain = ["stacks.<module>", "stacks.main", "stacks.outer", "stacks.middle", inner, "stacks.spin"]
            out = os.path.join(d, f"py-{label}.folded")
            rc, se, rows, _ = profiled([py, STACKS_PY, "cpu", "4"], out, "--seconds", 3, "--format", "folded",
                                       procs=procs)
            hit, total = share(rows, chain)
            tagged = f"stacks.outer (stacks.py:{OUTER_LINE})" in (open(out).read() if os.path.exists(out) else "")
            t.ok(rc == 0 and total >= 100 and hit >= 0.9 * total and tagged,
                 f"{label}: >= 90% of the samples show <module> -> main -> outer -> middle -> Worker.inner -> spin, "
                 "Python frames written 'module.qualname (file:first line)'",
                 f"rc {rc} {se[-200:]}; {hit} of {total}; tagged {tagged}; top {top_stacks(rows)}")

            achain = [("base_events.run_forever", "base_events.run_until_complete", "runners.run"),
                      "stacks.task_a", "stacks.task_b", "stacks.task_c", "stacks.spin"]
            rc, se, rows, _ = profiled([py, STACKS_PY, "asyncio", "4"], os.path.join(d, f"pya-{label}.folded"),
                                       "--seconds", 3, "--format", "folded", procs=procs)
            hit, total = share(rows, achain)
            t.ok(rc == 0 and total >= 100 and hit >= 0.9 * total,
                 f"{label}: asyncio: >= 90% of the samples show the event loop -> task_a -> task_b -> task_c -> spin",
                 f"rc {rc} {se[-200:]}; {hit} of {total}; top {top_stacks(rows)}")

            rc, se, rows, res = profiled([py, STACKS_PY, "sleep", "2"], os.path.join(d, f"pys-{label}.folded"),
                                         "--seconds", 4, "--kind", "offcpu", "--format", "folded", procs=procs)
            slept = res[1] if len(res) == 2 else 0
            blocked = sum(n for s, n in rows if has_chain(s, ["stacks.outer_sleep", "stacks.blocked_sleep"])) / 1e9
            t.ok(rc == 0 and slept > 1 and abs(blocked - slept) <= 0.1 * slept,
                 f"{label}: off-CPU: outer_sleep -> blocked_sleep blocked within 10% of the time it slept",
                 f"rc {rc} {se[-200:]}; {blocked:.3f} s attributed, slept {slept:.3f} s; top {top_stacks(rows)}")
        # -- a CPython loupe cannot read (3.9): named in /status and the log, its native frames still shown --
        old = sorted(glob.glob("/root/.pyenv/versions/3.9.*/bin/python3.9"))
        name = "CPython 3.9: named in /status and the log as unreadable; its native frames are still profiled"
        if not old:
            t.skip(name, "no CPython 3.9 here (pyenv install 3.9)")
        else:
            h = Held([old[0], STACKS_PY, "cpu", "4"])
            procs.append(h.p)
            with Loupe("--target", f"old=pid:{h.p.pid}", "--profile-hz", "49") as L:
                h.go()
                prof = lambda: next((f for f in L.status()["features"] if f["name"] == "profiler"), {})  # noqa: E731
                wait_for(lambda: prof().get("python", {}).get("unreadable", 0) >= 1, timeout=10)
                time.sleep(2)
                st = prof().get("python", {})
                body = urllib.request.urlopen(f"http://127.0.0.1:{L.port}/debug/pprof/profile?window=1m&format=folded",
                                              timeout=10).read().decode()
                log = L.stderr()
            h.result()
            native = "_PyEval_EvalFrameDefault" in body and "Py_RunMain" in body
            t.ok("CPython 3.9" in st.get("unreadable_reason", "") and "CPython 3.9" in log and native
                 and "stacks.spin" not in body, name,
                 f"status {st}; native frames {native}; log has it: {'CPython 3.9' in log}; {body[:300]!r}")

        # -- PostgreSQL and the reference API --
        why = missing_requirements()
        pg_names = ["postgres: >= 90% of a CPU-heavy query's samples go from PostgresMain down to the executor",
                    "API /cpu: the handler app.cpu -> app.count_primes in >= 50% of the API's samples",
                    "API pprof (protoc): app.count_primes with its file app.py and first line",
                    "API flame graph in Chromium: its search finds app.count_primes in >= 50%, drawn as Python (green)",
                    "--focus 'count_primes': a profile of stacks that all go through count_primes"]
        if why:
            for n in pg_names:
                t.skip(n, why)
        else:
            wl = Workload("fullstacks")
            try:
                wl.start(seed=False)
                import psycopg2
                conn = psycopg2.connect(host="127.0.0.1", port=wl.pg_port, dbname="loupe", user="postgres")
                cur = conn.cursor()
                cur.execute("SELECT pg_backend_pid()")
                backend = cur.fetchone()[0]
                q = threading.Thread(target=lambda: cur.execute(
                    "SELECT count(*) FROM generate_series(1, 60000000) a WHERE a % 7 = 3"), daemon=True)
                q.start()
                time.sleep(0.3)
                out = os.path.join(d, "pg.folded")
                rc, se = profile(backend, out, "--seconds", 2, "--format", "folded")
                q.join(timeout=120)
                conn.close()
                rows = folded(out)
                hit, total = share(rows, ["PostgresMain", ("standard_ExecutorRun", "ExecutorRun")])
                t.ok(rc == 0 and total >= 100 and hit >= 0.9 * total, pg_names[0],
                     f"rc {rc} {se[-200:]}; {hit} of {total}; top {top_stacks(rows)}")

                api = wl.api_pid()
                h = Hammer(f"http://127.0.0.1:{wl.api_port}/cpu?n=200000")
                h.start()
                time.sleep(0.5)
                outs = {f: os.path.join(d, f"api.{f}") for f in ("folded", "pprof", "svg")}
                res = {f: profile(api, outs[f], "--seconds", 3, "--format", f) for f in outs}
                focused = os.path.join(d, "api-focus.folded")
                rcf, sef = profile(api, focused, "--seconds", 3, "--format", "folded", "--focus", "count_primes")
                h.stop.set()
                h.join(timeout=60)
                rows = folded(outs["folded"])
                hit, total = share(rows, ["app.cpu", "app.count_primes"])
                t.ok(res["folded"][0] == 0 and h.n > 0 and total >= 50 and hit >= 0.5 * total, pg_names[1],
                     f"rc {res['folded']} {h.n} requests ({h.err}); {hit} of {total}; top {top_stacks(rows)}")
                text = pprof_text(outs["pprof"])
                if text is None:
                    t.skip(pg_names[2], "protoc missing (apt-get install protobuf-compiler)")
                else:
                    fn = pprof_function(text, "app.count_primes")
                    line = next(i for i, ln in enumerate(open(os.path.join(TOP, "tests", "workload", "app.py")), 1)
                                if ln.startswith("def count_primes"))
                    t.ok(fn == ("app.py", line), pg_names[2], f"{fn}, want ('app.py', {line}); rc {res['pprof'][0]}")
                chromium = shutil.which("chromium") or shutil.which("chromium-browser")
                body = open(outs["svg"]).read() if os.path.exists(outs["svg"]) else ""
                green = re.search(r"<title>app\.count_primes\n[^<]*</title><rect[^>]*fill=\"rgb\((\d+),(\d+),(\d+)\)",
                                  body)
                if not chromium:
                    t.skip(pg_names[3], "chromium missing (apt-get install chromium)")
                else:
                    r = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                                        f"file://{outs['svg']}?s=app.count_primes"], capture_output=True, text=True,
                                       timeout=120)
                    m = re.search(r"Matched: ([0-9.]+)%", r.stdout)
                    is_green = green and int(green.group(2)) > int(green.group(1)) and int(green.group(2)) > int(
                        green.group(3))
                    t.ok(r.returncode == 0 and m and float(m.group(1)) >= 50 and is_green, pg_names[3],
                         f"rc {r.returncode}; matched {m.group(1) if m else None}; colour {green.groups() if green else None}")
                frows = folded(focused)
                t.ok(rcf == 0 and frows and all(any("count_primes" in f for f in s) for s, _ in frows), pg_names[4],
                     f"rc {rcf} {sef[-200:]}; {len(frows)} stacks; {top_stacks(frows)}")
            finally:
                wl.stop()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        shutil.rmtree(d, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()
