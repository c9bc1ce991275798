#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""Target tracking (root): loupe_targets and /status count live processes per service; fork, exec and exit are
followed; exited targets are forgotten (even before they are reaped) and their pid, when reused by another
process, is not labelled; with no target loupe waits for one and picks it up.

Helper processes are build/tests/blocker run through symlinks whose names (comms) carry a random tag.
"""
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loupe_test import Loupe, Tap, is_root, wait_for  # noqa: E402
from bpf_support import (BLOCKER, Blocker, Workdir, guarded, count_all_services, count_of, delta, events,  # noqa: E402
                         kill_all, new_tag, targets_of)

SKIP_NAMES = [
    "loupe_targets counts 3 live processes", "loupe_targets goes down as they exit", "/status targets agrees",
    "an exited but unreaped target is forgotten", "fork: child tracked from its first syscall",
    "exec'd child and its own child keep the service", "exec into another service's image moves", "threads exiting do not forget the process",
    "pid reuse (comm selector): new untargeted process at the dead target's pid is not labelled",
    "pid reuse (pid selector): new process at the dead target's pid is not labelled",
    "waiting for targets: log event and /status state", "waiting target picked up when it starts",
    "default targets: waiting when no api or postgres runs",
    "child forked right after its parent's exec is tracked",
]


def status_targets(L, service):
    return L.status().get("targets", {}).get(service)


def test_counts(t, w, tag):
    comm = f"lpc{tag}"
    procs = []
    try:
        with Loupe("--target", f"cnt=comm:^{comm}$") as L:
            procs = [Blocker(w.link(comm), go=False, hold=True) for _ in range(3)]
            ok = wait_for(lambda: targets_of(L.scrape(), "cnt") == 3, timeout=5)
            st = L.status()
            t.ok(ok, "loupe_targets{service_name=cnt} counts 3 live processes", f"got {targets_of(L.scrape(), 'cnt')}")
            t.ok(st["targets"].get("cnt") == 3 and st["state"] == "running",
                 "/status targets.cnt is 3 and state is running", st)
            seen = []
            for i, p in enumerate(procs):
                p.finish()  # exits and is reaped
                want = 2 - i
                wait_for(lambda: targets_of(L.scrape(), "cnt") == want, timeout=3)
                seen.append((targets_of(L.scrape(), "cnt"), status_targets(L, "cnt")))
            t.ok(seen == [(2, 2), (1, 1), (0, 0)], "loupe_targets and /status go 3 -> 2 -> 1 -> 0 as they exit", seen)
            st = L.status()
            t.ok(st["state"] == "waiting_for_targets", "/status state is waiting_for_targets after the last exits",
                 st["state"])

            # An exited target that its parent has not reaped yet (a zombie) is already gone.
            z = Blocker(w.link(comm), go=False, hold=True)
            procs.append(z)
            wait_for(lambda: targets_of(L.scrape(), "cnt") == 1, timeout=5)
            before = targets_of(L.scrape(), "cnt")
            z.release()  # it exits; nobody waits for it

            def zombie():
                try:
                    with open(f"/proc/{z.pid}/stat") as f:
                        return f.read().rsplit(")", 1)[1].split()[0] == "Z"
                except OSError:
                    return False
            is_zombie = wait_for(zombie, timeout=3)
            after = wait_for(lambda: targets_of(L.scrape(), "cnt") == 0, timeout=2)
            t.ok(before == 1 and is_zombie and after, "an exited target is forgotten at exit, before it is reaped",
                 f"before={before} zombie={is_zombie} after={targets_of(L.scrape(), 'cnt')}")
            z.finish()
    finally:
        kill_all(procs)


def test_fork_exec_threads(t, w, tag):
    svc_comm, other, mover = f"lpf{tag}", f"lpx{tag}", f"lpm{tag}"
    procs = []
    try:
        with Loupe("--target", f"frk=comm:^{svc_comm}$", "--target", f"mov=comm:^{mover}$") as L:
            # Parent and forked child both held alive: 2 targets; the child's first syscall is counted.
            P = Blocker(w.link(svc_comm), "--fork", "--child-hold", "--child-count", 1)
            procs.append(P)
            wait_for(lambda: targets_of(L.scrape(), "frk") == 1, timeout=5)
            m0 = L.scrape()
            P.go()
            child = P.wait_line(timeout=5)
            m1 = L.scrape()
            t.ok(child is not None and child.get("role") == "child" and targets_of(m1, "frk") == 2,
                 "fork: parent and child are 2 targets while both live",
                 f"loupe_targets={targets_of(m1, 'frk')} child={child}")
            dp = delta(m0, m1, count_of, "frk", "personality")
            t.ok(dp == 1, "fork: the child's first syscall (personality, right after clone) is counted",
                 f"personality _count grew by {dp}")
            P.finish()
            ok = wait_for(lambda: targets_of(L.scrape(), "frk") == 0, timeout=3)
            t.ok(ok, "fork: both forgotten once they exit", f"loupe_targets={targets_of(L.scrape(), 'frk')}")

            # A target's child execs an untargeted image, which forks again: all three keep the service.
            E = Blocker(w.link(svc_comm), "--fork", "--exec-child", "--", w.link(other), "--fork", "--child-hold",
                        "--child-count", 1, "--hold")
            procs.append(E)
            wait_for(lambda: targets_of(L.scrape(), "frk") == 1, timeout=5)
            m0 = L.scrape()
            E.go()
            gchild = E.wait_line(timeout=5)
            m1 = L.scrape()
            t.ok(gchild is not None and targets_of(m1, "frk") == 3,
                 "exec'd child (untargeted comm) and its own forked child keep the parent's service",
                 f"loupe_targets={targets_of(m1, 'frk')} grandchild={gchild}")
            dpp = delta(m0, m1, count_of, "frk", "ppoll")
            t.ok(dpp == 1, "the grandchild's ppoll is counted under the service", f"ppoll grew by {dpp}")
            E.finish()
            wait_for(lambda: targets_of(L.scrape(), "frk") == 0, timeout=3)

            # A target's child that execs an image of another service moves to that service.
            M = Blocker(w.link(svc_comm), "--fork", "--exec-child", "--", w.link(mover), "--hold")
            procs.append(M)
            wait_for(lambda: targets_of(L.scrape(), "frk") == 1, timeout=5)
            M.go()
            rep = M.wait_line(timeout=5)
            ok = wait_for(lambda: (lambda m: targets_of(m, "frk") == 1 and targets_of(m, "mov") == 1)(L.scrape()),
                          timeout=3)
            m = L.scrape()
            t.ok(rep is not None and ok, "a target's child that execs another service's image moves to that service",
                 f"loupe_targets frk={targets_of(m, 'frk')} mov={targets_of(m, 'mov')}; report {rep}")
            M.finish()
            wait_for(lambda: targets_of(L.scrape(), "frk") + targets_of(L.scrape(), "mov") == 0, timeout=3)

            # Threads: three threads exit long before the process; the process stays tracked.
            T = Blocker(w.link(svc_comm), "--threads", 3, "--thread-count", 1, "--count", 1, hold=True)
            procs.append(T)
            wait_for(lambda: targets_of(L.scrape(), "frk") == 1, timeout=5)
            m0 = L.scrape()
            T.go()
            rep = T.wait_line(timeout=5)
            time.sleep(0.05)
            m1 = L.scrape()
            t.ok(rep is not None and rep.get("threads") == 3 and targets_of(m1, "frk") == 1,
                 "threads exiting do not forget their process (loupe_targets stays 1)",
                 f"loupe_targets={targets_of(m1, 'frk')} report={rep}")
            d_pp, d_ns = delta(m0, m1, count_of, "frk", "ppoll"), delta(m0, m1, count_of, "frk", "clock_nanosleep")
            t.ok(d_pp == 3 and d_ns == 1, "threads' syscalls count under the service (3 ppoll, 1 clock_nanosleep)",
                 f"ppoll +{d_pp}, clock_nanosleep +{d_ns}")
            T.finish()
            ok = wait_for(lambda: targets_of(L.scrape(), "frk") == 0, timeout=3)
            t.ok(ok, "the multi-threaded process is forgotten when its last thread exits",
                 f"loupe_targets={targets_of(L.scrape(), 'frk')}")
    finally:
        kill_all(procs)


def test_scan_descendants(t, w, tag):
    """Started before loupe: a target and its child that exec'd another image (as uvicorn's or gunicorn's
    workers do: `python -c from multiprocessing.spawn ...` does not match api=cmdline:uvicorn). Children inherit
    their parent's service when loupe sees the fork; the /proc scan at start must give the same answer, or a
    restart of loupe loses every worker of the API."""
    comm, other = f"lpd{tag}", f"lpy{tag}"
    procs = []
    try:
        P = Blocker(w.link(comm), "--fork", "--exec-child", "--", w.link(other), "--hold", go=False)
        procs.append(P)
        rep = P.wait_line(timeout=5)  # the exec'd child is running its new image
        with Loupe("--target", f"scn=comm:^{comm}$") as L:
            n = targets_of(L.scrape(), "scn")
            t.ok(rep is not None and n == 2,
                 "/proc scan at start: a target's child that exec'd another image is tracked (children inherit)",
                 f"loupe_targets={n} (want 2: parent {P.pid} and child {rep and rep.get('pid')})")
    finally:
        kill_all(procs)


def reuse_pid(L, service, pid, argv):
    """Start the blocker at exactly `pid` (clone3 set_tid), directly or exec'ing an image; it waits for go, so
    loupe has 0.3 s to (wrongly) label it before it works. Returns (reused pid or None if taken, targets while
    it waited, clock_nanosleep count delta over all services, report)."""
    b = Blocker(BLOCKER, "--as-pid", pid, *argv, go=False)
    try:
        time.sleep(0.3)
        if b.proc.poll() == 3:
            return None, None, None, b.finish()
        n_waiting = targets_of(L.scrape(), service)
        m0 = L.scrape()
        b.go()  # read by the process at `pid` (stdin is inherited through clone3 and exec)
        r = b.finish()
        m1 = L.scrape()
        return r.get("main", {}).get("pid"), n_waiting, delta(m0, m1, count_all_services, "clock_nanosleep"), r
    finally:
        b.kill()


def test_pid_reuse(t, w, tag):
    tcomm, ucomm = f"lpr{tag}", f"lpq{tag}"
    procs = []
    try:
        # Comm selector: the target exits, then an untargeted process gets its pid, (a) by fork from an
        # untargeted parent, (b) by exec of an untargeted image.
        with Loupe("--target", f"reu=comm:^{tcomm}$") as L:
            for how in ("fork", "exec"):
                T = Blocker(w.link(tcomm), "--count", 1)
                procs.append(T)
                wait_for(lambda: targets_of(L.scrape(), "reu") == 1, timeout=5)
                T.go()
                T.finish()
                pid = T.pid
                wait_for(lambda: targets_of(L.scrape(), "reu") == 0, timeout=3)
                work = ["--wait-go", "-", "--count", 2]
                argv = work if how == "fork" else ["--exec-child", "--", w.link(ucomm), *work]
                got, n_waiting, d, r = reuse_pid(L, "reu", pid, argv)
                name = f"pid reuse ({how}): an untargeted process at the dead target's pid is not labelled"
                if got is None:
                    t.skip(name, f"pid {pid} was taken by another process before the test could reuse it: {r}")
                    continue
                t.ok(got == pid and n_waiting == 0 and d == 0, name,
                     f"reused pid {got} (target was {pid}); loupe_targets while it lived {n_waiting}; "
                     f"clock_nanosleep grew by {d}")

        # pid selector: `pid:N` names one process (and its children). Once it is gone, a new process that
        # gets pid N by exec is a different process and must not be labelled.
        T = Blocker(w.link(ucomm), "--count", 1)
        procs.append(T)
        pid = T.pid
        with Loupe("--target", f"byp=pid:{pid}") as L:
            t0 = targets_of(L.scrape(), "byp")
            T.go()
            T.finish()
            wait_for(lambda: targets_of(L.scrape(), "byp") == 0, timeout=3)
            got, n_waiting, d, r = reuse_pid(L, "byp", pid,
                                             ["--exec-child", "--", w.link(ucomm), "--wait-go", "-", "--count", 2])
            name = "pid reuse (pid:N selector): a new process exec'd at pid N after the target died is not labelled"
            if got is None:
                t.skip(name, f"pid {pid} was taken by another process before the test could reuse it: {r}")
            else:
                t.ok(t0 == 1 and got == pid and n_waiting == 0 and d == 0, name,
                     f"target found at start: {t0 == 1}; new process at pid {got}: loupe_targets{{byp}} while it "
                     f"lived {n_waiting}; its 2 clock_nanosleep calls were counted {int(d)} times under byp")
    finally:
        kill_all(procs)


def test_waiting(t, w, tag):
    comm = f"lpw{tag}"
    procs = []
    try:
        with Loupe("--target", f"wai=comm:^{comm}$") as L:
            st = L.status()
            # The event is logged right after the HTTP server is ready (which is when Loupe.start returns).
            wait_for(lambda: "waiting_for_targets" in events(L.stderr()), timeout=3)
            ev = events(L.stderr())
            t.ok("waiting_for_targets" in ev and st["state"] == "waiting_for_targets" and st["targets"] == {"wai": 0},
                 "no target process: log event waiting_for_targets, /status state waiting_for_targets",
                 f"events {ev}; status {st}")
            p = Blocker(w.link(comm), go=False, hold=True)
            procs.append(p)
            ok = wait_for(lambda: L.status()["state"] == "running", timeout=5)
            st = L.status()
            m = L.scrape()
            t.ok(ok and st["targets"] == {"wai": 1} and targets_of(m, "wai") == 1,
                 "a target that starts later is picked up: state running, loupe_targets 1",
                 f"status {st}; loupe_targets {targets_of(m, 'wai')}")
            t.ok(wait_for(lambda: "service_found" in events(L.stderr()), timeout=3),
                 "the log says the service was found", events(L.stderr()))
            p.finish()
            ok = wait_for(lambda: L.status()["state"] == "waiting_for_targets", timeout=3)
            t.ok(ok and "service_gone" in events(L.stderr()),
                 "when it exits, state goes back to waiting_for_targets and the log says so",
                 f"{L.status()['state']}; events {events(L.stderr())}")
    finally:
        kill_all(procs)

    # The default targets (api=cmdline:(uvicorn|gunicorn|hypercorn), postgres=comm:^postgres$).
    busy = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/comm") as f:
                c = f.read().strip()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cl = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if c == "postgres" or re.search(r"uvicorn|gunicorn|hypercorn", cl):
            busy.append(d)
    name = "default targets, no api or postgres on the host: loupe starts and waits for them"
    if busy:
        t.skip(name, f"{len(busy)} api/postgres process(es) run on this host now")
        return
    with Loupe() as L:
        st = L.status()
        t.ok(st["state"] == "waiting_for_targets" and st["targets"] == {"api": 0, "postgres": 0}
             and "waiting_for_targets" in events(L.stderr()), name, st)


def test_exec_fork_race(t, w, tag):
    """A target that forks right after its exec: the child must be tracked however late loupe's userspace
    classifies the exec. The BPF fork hook only lets a child inherit from a parent that is already a target, and
    the parent becomes one only when userspace has read the exec record and /proc; until then its children are
    lost for good. Userspace lag is made deterministic by stopping loupe (SIGSTOP: its BPF programs keep running
    in the kernel) while the process execs and forks, as a busy or CPU-starved agent would be. (Without SIGSTOP,
    concurrent /metrics scrapes, which hold the daemon lock, lose 10-80 % of such children on this VM.)"""
    comm = f"lpe{tag}"
    procs = []
    results = []
    with Loupe("--target", f"rac=comm:^{comm}$") as L:
        try:
            for _ in range(3):
                os.kill(L.proc.pid, signal.SIGSTOP)
                try:
                    p = Blocker(w.link(comm), "--fork", "--child-hold", go=False, hold=True)
                    procs.append(p)
                    child = p.wait_line(timeout=5)  # the child exists (forked right after exec) and reported
                finally:
                    os.kill(L.proc.pid, signal.SIGCONT)
                wait_for(lambda: targets_of(L.scrape(), "rac") == 2, timeout=2)
                results.append((child is not None, targets_of(L.scrape(), "rac")))
                p.finish()
                wait_for(lambda: targets_of(L.scrape(), "rac") == 0, timeout=3)
        finally:
            os.kill(L.proc.pid, signal.SIGCONT)
            kill_all(procs)
    missed = sum(1 for _, n in results if n != 2)
    t.ok(all(c for c, _ in results) and missed == 0,
         "a child forked right after its parent's exec is tracked, even when loupe classifies the exec late",
         f"{missed} of {len(results)} children were never tracked (loupe_targets while parent and child live: "
         f"{[n for _, n in results]}; want 2): they were forked before userspace classified the parent's exec")


def main():
    t = Tap()
    if not is_root():
        for n in SKIP_NAMES:
            t.skip(n, "needs root: loads BPF programs")
        t.done()
    if not os.access(BLOCKER, os.X_OK):
        t.ok(False, "helper build/tests/blocker exists", "run `make tests` first")
        t.done()
    tag = new_tag()
    with Workdir() as w:
        for fn in (test_counts, test_fork_exec_threads, test_scan_descendants, test_pid_reuse, test_waiting,
                   test_exec_fork_race):
            guarded(t, f"{fn.__name__} ran to completion", fn, t, w, tag)
    t.done()


if __name__ == "__main__":
    main()
