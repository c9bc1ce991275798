#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""Profiler sampling against ground truth (groundwork of the profiling issue): a target thread that spins for a
known time gets cpu-clock samples at the chosen rate, a target thread that sleeps a known time is counted off CPU
for that time, and an untargeted spinner is not sampled.

    spinner: busy loop for SPIN_S seconds -> loupe_profile_samples_total = the CPU seconds it got (it prints
             time.process_time(); on a busy machine that is less than SPIN_S) x HZ, within 15% (the perf event's
             frequency mode adjusts its period as it goes)
    sleeper: N sleeps of SLEEP_MS -> loupe_offcpu_seconds_total at least N x SLEEP_MS and at most the wall time
             the sleeps took (it prints that; more than asked on a busy machine: waiting for a CPU after wakeup)
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loupe_test import Loupe, Tap, is_root, select, value, wait_for  # noqa: E402
from bpf_support import new_tag  # noqa: E402

PY = "/usr/bin/python3"
HZ, SPIN_S, N, SLEEP_MS = 49, 3.0, 10, 100
SPIN = ("import sys, time\nsys.stdin.readline()\nt, c = time.time(), time.process_time()\n"
        "while time.time() - t < %f: pass\nprint(time.process_time() - c)\n")
SLEEP = ("import sys, time\nsys.stdin.readline()\nt = time.monotonic()\nfor _ in range(%d): time.sleep(%f)\n"
         "print(time.monotonic() - t)\n")


def spawn(code, tag):
    return subprocess.Popen([PY, "-c", code, tag], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def spun(p):
    """Wait for a spinner (or the sleeper); the seconds it printed (CPU time spun, or wall time slept)."""
    out = p.communicate(timeout=30)[0].strip()
    return float(out) if out else 0.0


def main():
    t = Tap()
    if not is_root():
        for n in ("samples of a spinning target", "no samples of an untargeted spinner",
                  "without --profile-all: untargeted threads are not profiled", "off-CPU time of a sleeper",
                  "with --profile-all: an untargeted spinner is sampled"):
            t.skip(n, "needs root to load BPF programs and open perf events")
        t.done()
    tag = new_tag()
    spin, sleep_, other = f"spin-{tag}", f"sleep-{tag}", f"other-{tag}"
    procs = [spawn(SPIN % SPIN_S, spin), spawn(SLEEP % (N, SLEEP_MS / 1000), sleep_), spawn(SPIN % SPIN_S, other)]
    try:
        with Loupe("--target", f"spin=cmdline:^{PY} -c .* {spin}$", "--target",
                   f"sleep=cmdline:^{PY} -c .* {sleep_}$", "--profile-hz", str(HZ), "--offcpu") as L:
            ok = wait_for(lambda: value(L.scrape(), "loupe_targets", service_name="spin") == 1 and
                          value(L.scrape(), "loupe_targets", service_name="sleep") == 1, timeout=10)
            t.ok(ok, "spinner and sleeper are targets")
            for p in procs:
                p.stdin.write("go\n")
                p.stdin.flush()
            cpu = [spun(p) for p in procs]
            time.sleep(0.3)
            m = L.scrape()
            got = value(m, "loupe_profile_samples_total", service_name="spin")
            want = cpu[0] * HZ
            t.ok(abs(got - want) <= 0.15 * want + 3, "samples of a spinning target",
                 f"{got:.0f} samples for {cpu[0]:.2f} s of CPU ({SPIN_S} s spin) at {HZ} Hz, want {want:.0f} +-15%")
            total = sum(value(m, "loupe_profile_samples_total", service_name=s) for s in ("spin", "sleep"))
            t.ok(total - got <= 2, "no samples of an untargeted spinner",
                 f"samples of other services: {total - got:.0f} (the sleeper may be caught once or twice)")
            st, _, body = L.get("/debug/pprof/profile?window=1m&service=_untargeted&format=folded")
            t.ok(st == 400, "without --profile-all: untargeted threads are not profiled", f"HTTP {st}")
            off = value(m, "loupe_offcpu_seconds_total", service_name="sleep")
            want_off, took = N * SLEEP_MS / 1000, cpu[1]  # the sleeper prints the wall time its sleeps took
            late = select(m, "loupe_offcpu_late_blocks_total", service_name="sleep")
            t.ok(want_off <= off <= took + 0.005 and late, "off-CPU time of a sleeper",
                 f"{off:.3f} s for {N} x {SLEEP_MS} ms, want {want_off} .. {took + 0.005:.3f} (the time they took); "
                 f"blocks valued late {late}; profiler drops {select(m, 'loupe_events_dropped_total', feature='profiler')}")
        # --profile-all: every process is sampled; threads of no service under _untargeted.
        lone = spawn(SPIN % SPIN_S, f"lone-{tag}")
        procs.append(lone)
        with Loupe("--target", f"none=comm:^nothing-{tag}$", "--profile-all", "--profile-hz", str(HZ)) as L:
            lone.stdin.write("go\n")
            lone.stdin.flush()
            lone_cpu = spun(lone)
            time.sleep(0.3)
            st, _, body = L.get("/debug/pprof/profile?window=1m&service=_untargeted&format=folded")
            total = sum(int(ln.rsplit(" ", 1)[1]) for ln in body.decode().splitlines() if ln.strip()) if st == 200 else 0
            t.ok(st == 200 and total >= 0.8 * lone_cpu * HZ, "with --profile-all: an untargeted spinner is sampled",
                 f"HTTP {st}; {total} samples under _untargeted, want >= {0.8 * lone_cpu * HZ:.0f} "
                 f"({lone_cpu:.2f} s of CPU)")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    t.done()


if __name__ == "__main__":
    main()
