#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""--syscalls on|sampled|off against ground truth (root). build/tests/blocker sleeps 100 ms in clock_nanosleep 40
times (4 s; 120 times, 12 s, in sampled mode, so that the second window falls inside the work whatever the
start-up took) and fails openat with ENOENT 9 times, after loupe is ready:

  on       every call timed: the histogram's count and loupe_syscall_calls_total are both 40; duty ratio 1.
  sampled  sys_exit always attached, sys_enter for 1 s of every 10 s (the first window opens at attach): the
           calls and errors stay exact (120 and 9), the histogram holds only the calls that began in a window
           (at least 1, fewer than 120), and the timed ones plus those counted outside the windows are the 120;
           loupe_syscall_timing_duty_ratio is 0.1 and loupe_syscall_timing_seconds_total the two 1 s windows; outside the
           window loupe holds a sys_exit program and no sys_enter one (checked with bpftool).
  off      the syscalls feature is off, loupe holds neither program, and no syscall family is exported.
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loupe_test import Loupe, Tap, is_root, value, wait_for  # noqa: E402
from bpf_support import (Blocker, Workdir, bpf_fds, count_of, errors_of, guarded, kill_all,  # noqa: E402
                         live_links, live_progs, new_tag, targets_of)

CALLS = "loupe_syscall_calls_total"
N = {"on": 40, "sampled": 120, "off": 40}


def held_prog_names(pid):
    """Names of the programs attached through links that process pid holds (a loaded program whose link is
    gone does not run)."""
    progs, links = live_progs(), live_links()
    _, ids = bpf_fds(pid)
    return {progs[links[i]["prog_id"]]["name"] for i in ids if i in links and links[i].get("prog_id") in progs}


def run_mode(t, mode):
    tag = new_tag()
    comm = f"lsm{tag}"
    procs = []
    with Workdir() as w:
        try:
            b = Blocker(w.link(comm), "--count", N[mode], "--sleep-ms", 100, "--enoent", 9)
            procs.append(b)
            with Loupe("--target", f"m=comm:^{comm}$", "--syscalls", mode) as L:
                wait_for(lambda: targets_of(L.scrape(), "m") == 1, timeout=5)
                st = L.status()
                feats = {f["name"]: f for f in st["features"]}
                m0 = L.scrape()
                b.go()
                r = b.finish()
                time.sleep(0.2)
                m1 = L.scrape()
                names = held_prog_names(L.proc.pid)
                st1 = L.status()
        finally:
            kill_all(procs)
    n = N[mode]
    t.ok(r["rc"] == 0 and r["main"]["enoent"] == 9,
         f"[{mode}] the helper did its {n} sleeps and 9 failed openat", r)
    sys_feat = feats.get("syscalls", {})
    calls = value(m1, CALLS, service_name="m", syscall="clock_nanosleep") - \
        value(m0, CALLS, service_name="m", syscall="clock_nanosleep")
    timed = count_of(m1, "m", "clock_nanosleep") - count_of(m0, "m", "clock_nanosleep")
    errs = errors_of(m1, "openat", "ENOENT", service="m") - errors_of(m0, "openat", "ENOENT", service="m")
    duty = value(m1, "loupe_syscall_timing_duty_ratio", default=None)
    secs = value(m1, "loupe_syscall_timing_seconds_total", default=None)
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
    t.ok(calls == n, f"[{mode}] loupe_syscall_calls_total{{clock_nanosleep}} grew by exactly {n}", f"grew by {calls}")
    t.ok(errs == 9, f"[{mode}] loupe_syscall_errors_total{{openat,ENOENT}} grew by exactly 9", f"grew by {errs}")
    if mode == "on":
        t.ok(timed == 40, "[on] every call is timed: the histogram's count grew by 40", f"grew by {timed}")
        t.ok(duty == 1, "[on] loupe_syscall_timing_duty_ratio is 1", duty)
        t.ok({"sys_enter_btf", "sys_exit_btf"} <= names, "[on] loupe has sys_enter and sys_exit programs attached",
             sorted(names))
        return
    t.ok(1 <= timed < n, f"[sampled] only the calls that began in a sampling window are timed (1 to {n - 1} of {n})",
         f"histogram count grew by {timed}")
    unsampled = calls - timed
    t.ok(unsampled >= 1 and timed + unsampled == n,
         f"[sampled] the timed calls and those counted outside the windows add up to the {n}", (timed, unsampled))
    t.ok(duty == 0.1, "[sampled] loupe_syscall_timing_duty_ratio is 0.1", duty)
    t.ok(secs is not None and 1.8 <= secs <= 2.4,
         "[sampled] loupe_syscall_timing_seconds_total is the two 1 s windows", secs)
    t.ok("sys_exit_btf" in names and "sys_enter_btf" not in names and st1.get("features") and
         not next(f for f in st1["features"] if f["name"] == "syscalls").get("timing_now"),
         "[sampled] outside the window loupe has sys_exit attached and not sys_enter (/status timing_now false)",
         sorted(names))


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
