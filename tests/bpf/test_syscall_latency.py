#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""Syscall latency and errors against ground truth (root): build/tests/blocker blocks 50 ms in one known
syscall N times and fails a known syscall K times with a known errno; loupe must count exactly that, under the
right service, and nothing for an identical untargeted process.

Scenario, run once with tp_btf programs and once with the raw_tp fallback (--tracepoints raw_tp):
  A   comm lpb<tag>, started BEFORE loupe (found by the /proc scan), service blk:
      5 x clock_nanosleep 50 ms, 7 x openat -> ENOENT, 4 x read -> EAGAIN, and a forked child (raw clone) whose
      first syscall is personality() and which then does 3 x ppoll 50 ms (inherits blk)
  U1  comm lpu<tag>, same work as A, started before loupe, untargeted
  B   comm lpl<tag>, started AFTER loupe (classified at exec), service late: 3 x clock_nanosleep 50 ms
  U2  comm lpu<tag>, same work as B, started after loupe, untargeted
  E   comm lpe<tag>, started after loupe, service exe: 1 x clock_nanosleep, and a forked child that execs the
      blocker under the untargeted name lpu<tag> and does 2 x ppoll 50 ms: it keeps its parent's service
  I   comm lpi<tag>, started after loupe, service intr: 3 x ppoll cut short by a SIGALRM handler, so ppoll
      returns EINTR to the program 3 times (the kernel says -ERESTARTNOHAND at sys_exit and converts it on the
      way out; the handler returns through rt_sigreturn, which restores -EINTR in rax without failing)
Every process waits for a go signal, so all the measured work happens after loupe tracks what it should.
"""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loupe_test import Loupe, Tap, is_root, select, wait_for  # noqa: E402
from bpf_support import (BLOCKER, Blocker, Workdir, guarded, check_histogram_shape, check_latency, count_all_services,  # noqa: E402
                         count_of, delta, errors_of, kill_all, new_tag, targets_of, ERRORS, HIST)

FLAVOURS = ("tp_btf", "raw_tp")
CHECKS = [
    "loupe runs with {f} programs", "the /proc scan finds the process started before loupe",
    "exec classification finds the processes started after loupe", "process found by the /proc scan (4 checks)",
    "forked child (4 checks)", "forked child: its first syscall is counted", "ENOENT errors counted exactly",
    "EAGAIN errors counted exactly", "untargeted twin adds no error", "process started after loupe (4 checks)",
    "exec'd child of a target keeps the service (4 checks)", "interrupted ppoll counted as EINTR",
    "rt_sigreturn not counted as failing", "no kernel-internal errno exported", "untargeted processes add nothing",
    "histogram shape", "only configured services appear",
]


def scenario(t, flavour):
    tag = new_tag()
    svc = {"blk": f"lpb{tag}", "late": f"lpl{tag}", "exe": f"lpe{tag}", "intr": f"lpi{tag}"}
    untargeted = f"lpu{tag}"
    procs = []
    with Workdir() as w:
        try:
            a_args = ["--count", 5, "--enoent", 7, "--eagain", 4, "--fork", "--child-count", 3]
            A = Blocker(w.link(svc["blk"]), *a_args)
            U1 = Blocker(w.link(untargeted), *a_args)
            procs += [A, U1]
            targets = [x for name, comm in svc.items() for x in ("--target", f"{name}=comm:^{comm}$")]
            with Loupe("--tracepoints", flavour, *targets) as L:
                st = L.status()
                feats = {f["name"]: (f["state"], f["hook"]) for f in st["features"]}
                t.ok(feats.get("targets") == ("running", flavour) and feats.get("syscalls") == ("running", flavour),
                     f"[{flavour}] loupe runs with {flavour} programs", st["features"])
                m = L.scrape()
                t.ok(targets_of(m, "blk") == 1, f"[{flavour}] the /proc scan finds the process started before loupe",
                     f"loupe_targets{{blk}} = {targets_of(m, 'blk')}")

                B = Blocker(w.link(svc["late"]), "--count", 3)
                U2 = Blocker(w.link(untargeted), "--count", 3)
                E = Blocker(w.link(svc["exe"]), "--count", 1, "--fork", "--exec-child", "--",
                            w.link(untargeted), "--count", 2, "--method", "ppoll")
                I = Blocker(w.link(svc["intr"]), "--eintr", 3)
                procs += [B, U2, E, I]
                late = ("late", "exe", "intr")
                ok = wait_for(lambda: (lambda m: all(targets_of(m, s) == 1 for s in late))(L.scrape()), timeout=5)
                m = L.scrape()
                t.ok(ok, f"[{flavour}] exec classification finds the processes started after loupe",
                     f"loupe_targets {[(s, targets_of(m, s)) for s in late]}")

                m0 = L.scrape()
                for p in procs:
                    p.go()
                res = {name: p.finish() for name, p in zip(("A", "U1", "B", "U2", "E", "I"), procs)}
                m1 = L.scrape()
        finally:
            kill_all(procs)

    for name, r in res.items():
        if r["rc"] != 0 or "main" not in r:
            t.note(f"helper {name} exited {r['rc']}: {r}")
    try:
        assertions(t, flavour, res, m0, m1, svc, untargeted)
    except (KeyError, TypeError) as e:
        t.ok(False, f"[{flavour}] every helper reported its work", f"missing {e!r} in {res}")


def assertions(t, flavour, res, m0, m1, svc, untargeted):
    a = res["A"]
    check_latency(t, m0, m1, "blk", "clock_nanosleep", a["main"]["work"],
                  f"[{flavour}] process found by the /proc scan")
    check_latency(t, m0, m1, "blk", "ppoll", a["child"]["work"], f"[{flavour}] forked child")
    dp = delta(m0, m1, count_of, "blk", "personality")
    t.ok(a["child"]["personality_ok"] and dp == 1,
         f"[{flavour}] forked child: its first syscall (personality) is counted under the parent's service",
         f"personality _count grew by {dp}")

    de = delta(m0, m1, errors_of, "openat", "ENOENT", service="blk")
    t.ok(a["main"]["enoent"] == 7 and de == 7, f"[{flavour}] 7 openat ENOENT -> loupe_syscall_errors_total += 7",
         f"helper saw {a['main']['enoent']}, counter grew by {de}")
    dg = delta(m0, m1, errors_of, "read", "EAGAIN", service="blk")
    t.ok(a["main"]["eagain"] == 4 and dg == 4, f"[{flavour}] 4 read EAGAIN -> loupe_syscall_errors_total += 4",
         f"helper saw {a['main']['eagain']}, counter grew by {dg}")
    dall = delta(m0, m1, errors_of, "openat", "ENOENT")
    t.ok(res["U1"]["main"]["enoent"] == 7 and dall == 7,
         f"[{flavour}] the untargeted twin's 7 ENOENT errors are not counted anywhere",
         f"ENOENT over all services grew by {dall}")

    check_latency(t, m0, m1, "late", "clock_nanosleep", res["B"]["main"]["work"],
                  f"[{flavour}] process started after loupe")

    # E's stdout has two "main" reports: the exec'd child's (an lpu<tag> image) and then E's own.
    e_main = res["E"].get("main", {})
    exec_child = next((r for r in res["E"]["all"] if r.get("pid") and r.get("pid") == e_main.get("child_pid")), None)
    if exec_child is None:
        t.ok(False, f"[{flavour}] exec'd child of a target reported its work", res["E"])
    else:
        check_latency(t, m0, m1, "exe", "ppoll", exec_child["work"],
                      f"[{flavour}] exec'd child (comm {untargeted}) of a target keeps its parent's service")
    t.ok(delta(m0, m1, count_of, "exe", "clock_nanosleep") == 1, f"[{flavour}] the exec'd child's parent counted once",
         e_main)

    # Interrupted syscalls: the errno is the one the program sees.
    i_main = res["I"].get("main", {})
    di = delta(m0, m1, errors_of, "ppoll", "EINTR", service="intr")
    t.ok(i_main.get("eintr") == 3 and di == 3,
         f"[{flavour}] 3 ppoll interrupted by a signal handler -> errors{{syscall=ppoll,errno=EINTR}} += 3",
         f"helper saw EINTR {i_main.get('eintr')} times; counter grew by {di}; intr's errors now: "
         f"{[(d['syscall'], d['errno'], v) for d, v in select(m1, ERRORS, service_name='intr')]}")
    dr = delta(m0, m1, errors_of, "rt_sigreturn", None, service="intr")
    t.ok(dr == 0, f"[{flavour}] rt_sigreturn (returning from the handler) is not counted as a failing syscall",
         f"errors{{syscall=rt_sigreturn}} grew by {dr}")
    internal = sorted({d["errno"] for d, _ in select(m1, ERRORS) if re.fullmatch(r"E5(1[2-9]|2\d|30)", d["errno"])})
    t.ok(not internal, f"[{flavour}] no kernel-internal errno (ERESTART*, 512-516) is exported", internal)

    n_sleep = delta(m0, m1, count_all_services, "clock_nanosleep")
    n_ppoll = delta(m0, m1, count_all_services, "ppoll") - delta(m0, m1, count_of, "intr", "ppoll")
    t.ok(n_sleep == 5 + 3 + 1 and n_ppoll == 3 + 2,
         f"[{flavour}] untargeted processes (started before and after loupe) add nothing",
         f"clock_nanosleep grew by {n_sleep} (want 9), ppoll by {n_ppoll} (want 5)")

    problems = check_histogram_shape(m1)
    t.ok(not problems, f"[{flavour}] every histogram is cumulative and +Inf equals _count", "\n".join(problems))
    services = {d.get("service_name") for d, _ in select(m1, HIST + "_count")}
    t.ok(services <= set(svc), f"[{flavour}] only configured services appear in loupe_syscall_duration_seconds",
         services)


def main():
    t = Tap()
    if not is_root():
        for f in FLAVOURS:
            for c in CHECKS:
                t.skip(f"[{f}] " + c.format(f=f), "needs root: loads BPF programs")
        t.done()
    if not os.access(BLOCKER, os.X_OK):
        t.ok(False, "helper build/tests/blocker exists", "run `make tests` first")
        t.done()
    for f in FLAVOURS:
        guarded(t, f"[{f}] scenario ran to completion", scenario, t, f)
    t.done()


if __name__ == "__main__":
    main()
