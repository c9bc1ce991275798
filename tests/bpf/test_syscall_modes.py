#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""--syscalls on|sampled|off against ground truth (root). build/tests/blocker sleeps 100 ms in clock_nanosleep 40
times (4 s) and fails openat with ENOENT 9 times, after loupe is ready:

  on       every call timed: the histogram's count and loupe_syscall_calls_total are both 40; duty ratio 1.
  off      the syscalls feature is off, loupe holds neither program, and no syscall family is exported.

  sampled  sys_enter and sys_exit attached for 1 s of every 10 s only (the first window opens at attach). The test
           waits for a window to open (/status timing_now), then starts two helpers: one fails openat 9 times at
           once, one sleeps 100 ms 120 times (12 s, so that the next window falls inside its work). Checks: the 9
           errors, made inside the window, are all counted; the calls counted are those that ended in a window, as
           many as the windows' time between the two scrapes (loupe_syscall_timing_seconds_total) holds 100 ms
           sleeps, within one call per window edge; all of them timed but at most the one in flight as each window
           opened; every timed call took its 100 ms (the histogram's mean: a start time left by an earlier window
           and taken for a later call's would add seconds); loupe_syscall_timing_duty_ratio is 0.1; between windows
           loupe holds neither program (bpftool) and /status says timing_now false.
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loupe_test import Loupe, Tap, is_root, value, wait_for  # noqa: E402
from bpf_support import (Blocker, Workdir, bpf_fds, count_of, errors_of, guarded, kill_all,  # noqa: E402
                         live_links, live_progs, new_tag, sum_of, targets_of)

CALLS = "loupe_syscall_calls_total"
N = {"on": 40, "sampled": 120, "off": 40}
WINDOW_S, PERIOD_S = 1.0, 10.0


def held_prog_names(pid):
    """Names of the programs attached through links that process pid holds (a loaded program whose link is
    gone does not run)."""
    progs, links = live_progs(), live_links()
    _, ids = bpf_fds(pid)
    return {progs[links[i]["prog_id"]]["name"] for i in ids if i in links and links[i].get("prog_id") in progs}


def timing_now(L):
    return next((f for f in L.status().get("features", []) if f["name"] == "syscalls"), {}).get("timing_now")


def run_mode(t, mode):
    tag = new_tag()
    comm = f"lsm{tag}"
    procs = []
    sampled = mode == "sampled"
    with Workdir() as w:
        try:
            b = Blocker(w.link(comm), "--count", N[mode], "--sleep-ms", 100, *([] if sampled else ["--enoent", 9]))
            procs.append(b)
            if sampled:
                e = Blocker(w.link(comm), "--count", 0, "--enoent", 9)
                procs.append(e)
            with Loupe("--target", f"m=comm:^{comm}$", "--syscalls", mode) as L:
                wait_for(lambda: targets_of(L.scrape(), "m") == len(procs), timeout=5)
                st = L.status()
                feats = {f["name"]: f for f in st["features"]}
                if sampled:
                    # A window that has just opened: the errors fall inside it, and the sleeps span the next one.
                    wait_for(lambda: timing_now(L) is False, timeout=PERIOD_S + 2, interval=0.02)
                    wait_for(lambda: timing_now(L) is True, timeout=PERIOD_S + 2, interval=0.02)
                m0 = L.scrape()
                b.go()
                if sampled:
                    e.go()
                    re = e.finish()
                r = b.finish()
                time.sleep(0.2)
                m1 = L.scrape()
                names = held_prog_names(L.proc.pid)
                now = timing_now(L)
        finally:
            kill_all(procs)
    n = N[mode]
    if sampled:
        t.ok(r["rc"] == 0 and re["rc"] == 0 and re["main"]["enoent"] == 9,
             f"[{mode}] the helpers did their {n} sleeps and 9 failed openat", (r, re))
    else:
        t.ok(r["rc"] == 0 and r["main"]["enoent"] == 9,
             f"[{mode}] the helper did its {n} sleeps and 9 failed openat", r)
    sys_feat = feats.get("syscalls", {})
    calls = value(m1, CALLS, service_name="m", syscall="clock_nanosleep") - \
        value(m0, CALLS, service_name="m", syscall="clock_nanosleep")
    timed = count_of(m1, "m", "clock_nanosleep") - count_of(m0, "m", "clock_nanosleep")
    timed_s = sum_of(m1, "m", "clock_nanosleep") - sum_of(m0, "m", "clock_nanosleep")
    errs = errors_of(m1, "openat", "ENOENT", service="m") - errors_of(m0, "openat", "ENOENT", service="m")
    duty = value(m1, "loupe_syscall_timing_duty_ratio", default=None)
    secs = value(m1, "loupe_syscall_timing_seconds_total", default=0) - \
        value(m0, "loupe_syscall_timing_seconds_total", default=0)
    if mode == "off":
        t.ok(sys_feat.get("state") == "off" and feats.get("payload", {}).get("state") == "running",
             "[off] the syscalls feature is off and payload capture runs", st["features"])
        t.ok(not names & {"sys_enter_btf", "sys_exit_btf", "sys_enter_raw", "sys_exit_raw"},
             "[off] loupe has no sys_enter or sys_exit program attached", sorted(names))
        t.ok(not [k for k in m1 if k[0].startswith("loupe_syscall_")],
             "[off] no loupe_syscall_* family is exported", sorted({k[0] for k in m1 if "syscall" in k[0]}))
        return
    t.ok(sys_feat.get("state") == "running" and sys_feat.get("mode") == mode,
         f"[{mode}] /status: the syscalls feature runs in mode {mode}", sys_feat)
    if mode == "on":
        t.ok(calls == n, f"[on] loupe_syscall_calls_total{{clock_nanosleep}} grew by exactly {n}", f"grew by {calls}")
        t.ok(errs == 9, "[on] loupe_syscall_errors_total{openat,ENOENT} grew by exactly 9", f"grew by {errs}")
        t.ok(timed == 40, "[on] every call is timed: the histogram's count grew by 40", f"grew by {timed}")
        t.ok(duty == 1, "[on] loupe_syscall_timing_duty_ratio is 1", duty)
        t.ok({"sys_enter_btf", "sys_exit_btf"} <= names, "[on] loupe has sys_enter and sys_exit programs attached",
             sorted(names))
        return
    t.ok(errs == 9, "[sampled] the 9 errors made inside a window are all counted (loupe_syscall_errors_total)",
         f"grew by {errs}")
    # Two windows fall between the scrapes: the rest of the one just opened, and the next one.
    t.ok(1.5 <= secs <= 2.2, "[sampled] loupe_syscall_timing_seconds_total grew by about two windows", secs)
    t.ok(abs(calls - secs / 0.1) <= 3 and calls < n,
         f"[sampled] the calls counted are the 100 ms sleeps that ended in a window: {secs:.2f} s of windows, "
         f"about {secs / 0.1:.0f} of the {n}", f"counted {calls}")
    t.ok(timed >= 1 and 0 <= calls - timed <= 2,
         "[sampled] all of them are timed but the one in flight as the second window opened (at most one a window)",
         (timed, calls))
    t.ok(timed >= 1 and 0.099 <= timed_s / timed <= 0.13,
         "[sampled] every timed call took its 100 ms: no start time from an earlier window (the histogram's mean)",
         timed_s / timed if timed else None)
    t.ok(duty == 0.1, "[sampled] loupe_syscall_timing_duty_ratio is 0.1", duty)
    t.ok(not names & {"sys_enter_btf", "sys_exit_btf"} and now is False,
         "[sampled] between windows loupe holds neither sys_enter nor sys_exit (/status timing_now false)",
         (sorted(names), now))


def main():
    t = Tap()
    if not is_root():
        for mode in ("on", "sampled", "off"):
            t.skip(f"[{mode}] --syscalls {mode} against ground truth", "needs root (BPF)")
        return t.done()
    for mode in ("on", "sampled", "off"):
        guarded(t, f"[{mode}] scenario", run_mode, t, mode)
    return t.done()


if __name__ == "__main__":
    sys.exit(main())
