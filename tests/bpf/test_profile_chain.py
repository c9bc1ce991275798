#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""Symbolised CPU profiles against a known call chain: build/tests/chain (frame pointers) spins in
main -> chain_alpha -> chain_beta -> chain_gamma; loupe samples it at 99 Hz and serves the continuous profile.

  - /debug/pprof/profile?window=1m&service=chain&format=folded: as many samples as the CPU time the spin got (the
    chain prints it) x 99 Hz, within 20%, and at least 90% of them carry that exact chain, ending in chain_gamma;
  - /debug/pprof/profile (pprof, gzip) decoded by an independent decoder, protoc --decode with proto/profile.proto:
    the functions are named, sample types are samples/count and cpu/nanoseconds, the service label is set;
  - /flamegraph.svg is well-formed XML (xmllint) and names the frames;
  - an on-demand session, /debug/pprof/profile?seconds=2&hz=99 (net/http/pprof's semantics: the answer comes when
    the session ends), sampled at its own rate while the continuous profile goes on: >= 90% of the chain, about
    the chain's CPU seconds in those 2 s (/proc/PID/task/*/schedstat) x 99 samples; /healthz answers meanwhile;
  - bad parameters get a 400 with the reason;
  - focus=REGEX keeps exactly the stacks (of the same window) with a frame it matches;
  - short-lived processes are symbolised: 12 copies of the chain each spin 30 ms and exit (a comm target, matched at
    exec); at least half their samples show the chain, since loupe is woken for a process's first record and
    snapshots its mappings while it lives (other records wait for the next 100 ms read, when these processes are
    gone: without that wakeup 11-25% showed it; with a wakeup per record, as before, 72-84%; now 81-92%. The
    rest are "[unknown]": a process whose mappings were read after it had exited).
"""
import gzip
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loupe_test import TOP, Loupe, Tap, cpu_seconds, is_root, value, wait_for  # noqa: E402
from bpf_support import new_tag  # noqa: E402

CHAIN = os.path.join(TOP, "build", "tests", "chain")
PROTO = os.path.join(TOP, "proto", "profile.proto")
HZ, SPIN_S = 99, 4
WANT = "main;chain_alpha;chain_beta;chain_gamma"
NAMES = ["the chain is a target", f"about CPU seconds x {HZ} samples, at least 90% of them show {WANT}",
         "pprof decoded by protoc --decode: functions, sample types, service label",
         "flame graph: well-formed SVG naming the frames", "bad window: 400 with the reason",
         "on-demand session (?seconds=2&hz=99): answered after 2 s, >= 90% of the chain, about CPU seconds x 99 samples",
         "/healthz answers while a session runs", "bad seconds or hz: 400 with the reason",
         "SIGTERM during a session: loupe exits 0 within 2 s",
         f"short-lived processes (12 x 30 ms): their samples are symbolised, >= 50% show {WANT}",
         "focus=chain_beta: exactly the window's stacks through chain_beta; a bad regex is a 400 naming focus"]


def get(L, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{L.port}{path}", timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def main():
    t = Tap()
    if not is_root():
        for n in NAMES:
            t.skip(n, "needs root to load BPF programs and open perf events")
        t.done()
    tag = new_tag()
    d = tempfile.mkdtemp(prefix="loupe-chain-")
    exe = os.path.join(d, f"chain-{tag}")
    shutil.copy(CHAIN, exe)
    p = subprocess.Popen([exe, str(SPIN_S)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        with Loupe("--target", f"chain=pid:{p.pid}", "--profile-hz", str(HZ)) as L:
            t.ok(wait_for(lambda: value(L.scrape(), "loupe_targets", service_name="chain") == 1, timeout=10),
                 NAMES[0])
            p.stdin.write("go\n")
            p.stdin.flush()
            session = {}

            def run_session():
                t0, c0 = time.time(), cpu_seconds(p.pid)
                session["resp"] = get(L, "/debug/pprof/profile?seconds=2&hz=99&service=chain&format=folded")
                session["secs"] = time.time() - t0
                session["cpu"] = cpu_seconds(p.pid) - c0  # the chain spins 4 s: still alive after 2
            th = threading.Thread(target=run_session)
            th.start()
            time.sleep(0.5)
            t0 = time.time()
            hz_status, _ = get(L, "/healthz")
            health_s = time.time() - t0
            th.join(timeout=30)
            spin_cpu = float(p.communicate(timeout=30)[0] or 0)  # the chain prints the CPU time its spin got
            time.sleep(0.3)
            st, body = get(L, "/debug/pprof/profile?window=1m&service=chain&format=folded")
            lines = [ln.rsplit(" ", 1) for ln in body.decode().splitlines() if ln.strip()]
            total = sum(int(n) for _, n in lines)
            good = sum(int(n) for stack, n in lines if stack.endswith(WANT))
            want = spin_cpu * HZ
            t.ok(st == 200 and abs(total - want) <= 0.2 * want and good >= 0.9 * total, NAMES[1],
                 f"HTTP {st}; {good} of {total} samples end in {WANT}, want about {want:.0f} "
                 f"({spin_cpu:.2f} s of CPU x {HZ} Hz); folded:\n" + body.decode()[:1500])

            st, body = get(L, "/debug/pprof/profile?window=1m")
            if not shutil.which("protoc"):
                t.skip(NAMES[2], "protoc missing (apt-get install protobuf-compiler)")
            else:
                r = subprocess.run(["protoc", f"--proto_path={os.path.dirname(PROTO)}",
                                    "--decode=perftools.profiles.Profile", os.path.basename(PROTO)],
                                   input=gzip.decompress(body) if st == 200 else b"", capture_output=True)
                text = r.stdout.decode(errors="replace")
                t.ok(st == 200 and r.returncode == 0 and all(f'"{n}"' in text for n in
                     ("chain_gamma", "chain_beta", "chain_alpha", "samples", "count", "cpu", "nanoseconds",
                      "service_name", "chain")), NAMES[2], f"HTTP {st}; protoc rc {r.returncode} "
                     f"{r.stderr.decode()[-300:]}\n{text[:800]}")

            st, body = get(L, "/flamegraph.svg?window=1m&service=chain")
            xml_ok = True
            if shutil.which("xmllint"):
                xml_ok = subprocess.run(["xmllint", "--noout", "-"], input=body, capture_output=True).returncode == 0
            t.ok(st == 200 and xml_ok and b"<svg" in body and b"chain_gamma" in body, NAMES[3],
                 f"HTTP {st}, xmllint ok {xml_ok}, {len(body)} bytes")
            st, body = get(L, "/debug/pprof/profile?window=20m")
            t.ok(st == 400 and b"window" in body, NAMES[4], f"HTTP {st}: {body[:200]!r}")
            # focus=REGEX: exactly the stacks through a matching frame (ground truth: the same window unfocused)
            st0, all_body = get(L, "/debug/pprof/profile?window=1m&service=chain&format=folded")
            stf, foc_body = get(L, "/debug/pprof/profile?window=1m&service=chain&format=folded&focus=chain_beta")
            stb, bad_body = get(L, "/debug/pprof/profile?window=1m&focus=%28")
            rows = [ln.rsplit(" ", 1) for ln in all_body.decode().splitlines() if ln.strip()]
            frows = [ln.rsplit(" ", 1) for ln in foc_body.decode().splitlines() if ln.strip()]
            want_f = sorted((s_, n) for s_, n in rows if "chain_beta" in s_.split(";"))
            t.ok(st0 == stf == 200 and frows and sorted((s_, n) for s_, n in frows) == want_f and stb == 400
                 and b"focus" in bad_body, NAMES[10],
                 f"HTTP {st0}/{stf}/{stb}; {len(frows)} focused stacks, {len(want_f)} expected; {bad_body[:120]!r}")
            st, body = session.get("resp", (0, b""))
            lines = [ln.rsplit(" ", 1) for ln in body.decode().splitlines() if ln.strip()]
            total = sum(int(n) for _, n in lines)
            good = sum(int(n) for stack, n in lines if stack.endswith(WANT))
            want = session.get("cpu", 0) * 99
            t.ok(st == 200 and session["secs"] >= 2 and total and good >= 0.9 * total and
                 abs(total - want) <= 0.2 * want + 5, NAMES[5],
                 f"HTTP {st} after {session.get('secs', 0):.2f} s; {good} of {total} samples, want about {want:.0f} "
                 f"({session.get('cpu', 0):.2f} s of CPU in the session x 99 Hz)")
            t.ok(hz_status == 200 and health_s < 1, NAMES[6], f"HTTP {hz_status} in {health_s:.3f} s")
            res = [get(L, q) for q in ("/debug/pprof/profile?seconds=0", "/debug/pprof/profile?seconds=1&hz=5000")]
            t.ok(all(st == 400 and (b"seconds" in b or b"hz" in b) for st, b in res), NAMES[7], res)

            # SIGTERM while a session's connection is suspended: loupe still stops at once and cleanly.
            late = {}
            th = threading.Thread(target=lambda: late.update(r=get(L, "/debug/pprof/profile?seconds=30")))
            th.start()
            time.sleep(0.5)
            t0 = time.time()
            L.proc.send_signal(signal.SIGTERM)
            try:
                code = L.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = None
            took = time.time() - t0
            th.join(timeout=10)
            t.ok(code == 0 and took < 2, NAMES[8], f"exit {code} after {took:.2f} s; the client got {late.get('r')}")

        brief = os.path.join(d, f"b-{tag}")
        shutil.copy(CHAIN, brief)
        with Loupe("--target", f"brief=comm:^b-{tag}$", "--profile-hz", str(HZ)) as L:
            for _ in range(12):
                subprocess.run([brief, "0.03"], input="go\n", capture_output=True, text=True, timeout=10)
            time.sleep(0.3)
            st, body = get(L, "/debug/pprof/profile?window=1m&service=brief&format=folded")
            lines = [ln.rsplit(" ", 1) for ln in body.decode().splitlines() if ln.strip()]
            total = sum(int(n) for _, n in lines)
            good = sum(int(n) for stack, n in lines if stack.endswith(WANT))
            t.ok(st == 200 and total >= 5 and good >= 0.5 * total, NAMES[9],
                 f"HTTP {st}; {good} of {total} samples end in {WANT}; folded:\n" + body.decode()[:800])
    finally:
        if p.poll() is None:
            p.kill()
        shutil.rmtree(d, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()
