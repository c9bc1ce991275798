#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""Untimed syscalls (--untimed-syscalls) against ground truth (root): a target makes exactly N getpid() and M
failing futex(FUTEX_WAIT) calls (EAGAIN: the value differs), one thread, nothing else in between.

  default (futex,getpid,gettid,getppid,sched_yield untimed), tp_btf and raw_tp:
      loupe_syscall_untimed_total{getpid} = N and {futex} = M exactly, no duration series for either,
      loupe_syscall_errors_total{futex,EAGAIN} = M (errors are still counted), and a timed syscall of the same
      process (N x close of a bad fd, EBADF) still lands in loupe_syscall_duration_seconds with count N;
  --untimed-syscalls none: getpid and futex are in loupe_syscall_duration_seconds with counts N and M, and
      loupe_syscall_untimed_total has no series;
  --untimed-syscalls getpid: getpid untimed (N), futex timed (M);
  bad lists (an unknown name, an empty list): exit 2 and one line naming the problem; /status says the set.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loupe_test import LOUPE, Loupe, Tap, is_root, parse_metrics, select, value, wait_for  # noqa: E402
from bpf_support import new_tag  # noqa: E402

PY = "/usr/bin/python3"
N, M = 1000, 300
# One thread: after the go line, N getpid, M futex waits that fail at once with EAGAIN, N close(-1) (EBADF),
# then a line back, and it waits for the next line to exit. ctypes calls the raw syscall, so glibc adds nothing.
WORKER = f"""
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
word = ctypes.c_int(0)
sys.stdin.readline()
for _ in range({N}): libc.syscall(39)
for _ in range({M}): libc.syscall(202, ctypes.byref(word), 128, 1, None)
for _ in range({N}): libc.syscall(3, -1)
sys.stdout.write("done\\n"); sys.stdout.flush()
sys.stdin.readline()
"""
NAMES = ["default, {f}: getpid and futex counted exactly, not timed",
         "default, {f}: futex's EAGAIN errors still counted", "default, {f}: timed syscalls unaffected",
         "none: getpid and futex timed, with exact counts, nothing untimed",
         "getpid only: getpid untimed, futex timed", "/status shows the set",
         "bad lists: exit 2 and one line naming the problem"]


def duration_count(m, svc, sc):
    return value(m, "loupe_syscall_duration_seconds_count", service_name=svc, syscall=sc)


def run(tag, *args):
    """Start a worker, loupe with args targeting it, run the work; the scrape after it, and /status."""
    comm = f"lun{tag}"
    w = subprocess.Popen([PY, "-c", WORKER, comm], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        with Loupe("--target", f"w=cmdline:^{PY} -c .* {comm}$", *args) as L:
            if not wait_for(lambda: value(L.scrape(), "loupe_targets", service_name="w") == 1, timeout=10):
                return None, None
            w.stdin.write("go\n")
            w.stdin.flush()
            w.stdout.readline()
            m = L.scrape()
            st = L.status()
            w.stdin.write("end\n")
            w.stdin.flush()
            return m, st
    finally:
        if w.poll() is None:
            w.kill()
        w.wait()


def main():
    t = Tap()
    names = [n.format(f=f) for f in ("tp_btf", "raw_tp") for n in NAMES[:3]] + NAMES[3:]
    if not is_root():
        for n in names:
            t.skip(n, "needs root to load BPF programs")
        t.done()
    tag = new_tag()
    for f in ("tp_btf", "raw_tp"):
        m, st = run(tag, "--tracepoints", f)
        m = m or parse_metrics("")
        got = (value(m, "loupe_syscall_untimed_total", service_name="w", syscall="getpid"),
               value(m, "loupe_syscall_untimed_total", service_name="w", syscall="futex"),
               duration_count(m, "w", "getpid"), duration_count(m, "w", "futex"))
        t.ok(got == (N, M, 0, 0), NAMES[0].format(f=f), f"untimed getpid, futex; timed getpid, futex = {got}, "
             f"want ({N}, {M}, 0, 0)")
        eagain = value(m, "loupe_syscall_errors_total", service_name="w", syscall="futex", errno="EAGAIN")
        t.ok(eagain == M, NAMES[1].format(f=f), f"{eagain} EAGAIN, want {M}")
        close = duration_count(m, "w", "close")
        ebadf = value(m, "loupe_syscall_errors_total", service_name="w", syscall="close", errno="EBADF")
        t.ok(close >= N and ebadf == N, NAMES[2].format(f=f), f"close timed {close} (>= {N}), EBADF {ebadf}")
    m, _ = run(tag, "--untimed-syscalls", "none")
    m = m or parse_metrics("")
    got = (duration_count(m, "w", "getpid"), duration_count(m, "w", "futex"))
    untimed = select(m, "loupe_syscall_untimed_total")
    t.ok(got == (N, M) and not untimed, NAMES[3], f"timed getpid, futex = {got}, want ({N}, {M}); untimed {untimed}")
    m, st = run(tag, "--untimed-syscalls", "getpid")
    m = m or parse_metrics("")
    got = (value(m, "loupe_syscall_untimed_total", service_name="w", syscall="getpid"),
           duration_count(m, "w", "futex"), value(m, "loupe_syscall_untimed_total", service_name="w", syscall="futex"))
    t.ok(got == (N, M, 0), NAMES[4], f"untimed getpid, timed futex, untimed futex = {got}, want ({N}, {M}, 0)")
    sys_feat = [x for x in (st or {}).get("features", []) if x.get("name") == "syscalls"]
    t.ok(sys_feat and sys_feat[0].get("untimed_syscalls") == "getpid", NAMES[5], sys_feat)
    bad = []
    for arg, word in (("getpid,nosuchcall", "nosuchcall"), ("", "syscall names")):
        r = subprocess.run([LOUPE, "run", "--untimed-syscalls", arg], capture_output=True, text=True, timeout=10)
        bad.append((r.returncode == 2 and r.stderr.count("\n") == 1 and word in r.stderr, r.returncode, r.stderr))
    t.ok(all(ok for ok, _, _ in bad), NAMES[6], bad)
    t.done()


if __name__ == "__main__":
    main()
