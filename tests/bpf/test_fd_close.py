#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""Every file descriptor loupe opens is closed once, never twice (root; strace is the ground truth).

A second close() of a number is a bug that only shows under a race: loupe is multithreaded (the HTTP server
accepts connections on its own thread), so between the two closes the number can be given to a connection just
accepted, which the second close then cuts, unanswered. That happened: the per-CPU perf events of the profiler
and of on-demand sessions were closed by libbpf when their links were destroyed, and again by loupe; a request
sent right after a session ended was sometimes answered with a closed connection (tests/e2e/test_asan.py saw it).

loupe runs under `strace -f` with every feature on, serves two on-demand sessions, profiles of every kind and
scrapes, and is stopped with SIGTERM. From strace's record of every call that returns a descriptor and of every
close(): no close() fails with EBADF (a second close with nothing opened in between), and every connection the
HTTP server accepted is closed by its own thread (what a second close does when the race is lost).
Prints TAP."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loupe_test import Loupe, Tap, is_root, value, wait_for  # noqa: E402
from bpf_support import new_tag  # noqa: E402

PY = "/usr/bin/python3"
NAMES = ["loupe starts under strace with every feature on", "two on-demand sessions and the profiles answered 200",
         "SIGTERM: exit 0", "strace saw the sessions' perf events opened and closed",
         "no close() failed with EBADF",
         "every connection the HTTP server accepted was closed by the thread that accepted it"]
# Calls that return a new descriptor (strace prints "= N"), and those that write two into their arguments.
RETURNS_FD = {"open", "openat", "openat2", "creat", "socket", "accept", "accept4", "perf_event_open", "bpf",
              "epoll_create", "epoll_create1", "eventfd", "eventfd2", "timerfd_create", "signalfd", "signalfd4",
              "memfd_create", "dup", "dup2", "dup3", "fcntl", "inotify_init", "inotify_init1", "pidfd_open",
              "pidfd_getfd", "userfaultfd", "fanotify_init", "open_tree", "fsopen", "fsmount", "fspick"}
RETURNS_PAIR = {"pipe", "pipe2", "socketpair"}
LINE = re.compile(r"^(\d+) +(\w+)\((.*)\) += (-?\d+)")
# strace -f splits a call another thread interleaves: "PID name(args <unfinished ...>", later
# "PID <... name resumed>rest) = N". The call's effect is taken at its return.
UNFINISHED = re.compile(r"^(\d+) +(\w+)\((.*) <unfinished \.\.\.>$")
RESUMED = re.compile(r"^(\d+) +<\.\.\. (\w+) resumed>(.*)\) += (-?\d+)")


def calls(path):
    """(pid, name, args, return value, line) of every finished call in strace -f's output, in order of return."""
    pending = {}
    with open(path, errors="replace") as f:
        for raw in f:
            raw = raw.rstrip("\n")
            m = LINE.match(raw)
            if m:
                yield m.group(1), m.group(2), m.group(3), int(m.group(4)), raw
                continue
            m = UNFINISHED.match(raw)
            if m:
                pending[m.group(1)] = (m.group(2), m.group(3))
                continue
            m = RESUMED.match(raw)
            if m:
                name, args = pending.pop(m.group(1), (m.group(2), ""))
                yield m.group(1), name, args + m.group(3), int(m.group(4)), raw


def audit(path):
    """From strace's -f output: (perf events opened, perf events closed, connections accepted, failed closes
    (EBADF: closed twice), connections closed by another thread than the one that accepted them)."""
    accepted = {}  # fd -> the thread that accepted it
    perf_fds = set()
    opened = closed = conns = 0
    ebadf, stolen = [], []
    for tid, name, args, rc, raw in calls(path):
        if name == "close":
            fd = int(args)
            if rc < 0:
                if "EBADF" in raw:
                    ebadf.append(raw.strip())
                continue
            if fd in accepted and accepted.pop(fd) != tid:
                stolen.append(raw.strip())
            if fd in perf_fds:
                closed += 1
                perf_fds.discard(fd)
        elif name in RETURNS_FD and rc >= 0:
            accepted.pop(rc, None)
            if name in ("accept", "accept4"):
                accepted[rc] = tid
                conns += 1
            if name == "perf_event_open":
                opened += 1
                perf_fds.add(rc)
            else:
                perf_fds.discard(rc)
        elif name in RETURNS_PAIR and rc == 0:
            pm = re.search(r"\[(\d+), (\d+)\]", args)
            if pm:
                for fd in map(int, pm.groups()):
                    accepted.pop(fd, None)
                    perf_fds.discard(fd)
    return opened, closed, conns, ebadf, stolen


def stop_traced(L, sig=signal.SIGTERM):
    """Signal loupe itself (strace's child: strace, signalled, would detach and leave it running); strace then
    exits with loupe's status. (that status or a reason, loupe's pids)."""
    kids = subprocess.run(["pgrep", "-P", str(L.proc.pid)], capture_output=True, text=True).stdout.split()
    for k in kids:
        try:
            os.kill(int(k), sig)
        except OSError:
            pass
    try:
        return (L.proc.wait(timeout=30) if kids else None), kids
    except subprocess.TimeoutExpired:
        L.proc.kill()
        L.proc.wait()
        return "none within 30 s", kids


def main():
    t = Tap()
    why = ("needs root to load BPF programs and open perf events" if not is_root() else
           "" if shutil.which("strace") else "strace is not installed (scripts/deps.sh installs it)")
    if why:
        for n in NAMES:
            t.skip(n, why)
        t.done()
    tag = new_tag()
    spin = subprocess.Popen([PY, "-c", "import sys, time\nt = time.time()\nwhile time.time() - t < 60: pass\n",
                             f"spin-{tag}"])
    trace = tempfile.NamedTemporaryFile(prefix="loupe-strace-", suffix=".txt", delete=False).name
    L = Loupe("--target", f"spin=cmdline:^{PY} -c .* spin-{tag}$", "--offcpu", "--bpf-stats", "always",
              prefix=["strace", "-f", "-qq", "-o", trace, "-e", "trace=%desc,%net,bpf,perf_event_open"])
    try:
        try:
            L.start(timeout=60)
            t.ok(True, NAMES[0])
        except Exception as e:  # noqa: BLE001
            t.ok(False, NAMES[0], e)
            t.done()
        wait_for(lambda: value(L.scrape(), "loupe_targets", service_name="spin") == 1, timeout=15)
        got = []
        for p in ("/debug/pprof/profile?seconds=1&hz=99", "/status",
                  "/flamegraph.svg?kind=cpu&seconds=1&hz=49", "/metrics", "/debug/pprof/profile?window=1m",
                  "/debug/pprof/offcpu?window=1m", "/flamegraph.svg?kind=offcpu"):
            got.append((p, L.get(p, timeout=30)[0]))
        t.ok(all(st == 200 for _, st in got), NAMES[1], got)
        rc, kids = stop_traced(L)
        t.ok(rc == 0, NAMES[2], f"exit {rc} (loupe: {kids})\n{L.stderr()[-2000:]}")
        opened, closed, conns, ebadf, stolen = audit(trace)
        ncpu = os.cpu_count() or 1
        # The continuous profiler's events (one per CPU) and each session's: at least 3 x ncpu opened, all closed.
        t.ok(opened >= 3 * ncpu and closed == opened, NAMES[3], f"{opened} perf events opened, {closed} closed")
        t.ok(not ebadf, NAMES[4], "\n".join(ebadf[:20]))
        t.ok(conns >= len(got) and not stolen, NAMES[5],
             f"{conns} connections accepted (at least {len(got)} made)\n" + "\n".join(stolen[:20]))
    finally:
        if L.proc and L.proc.poll() is None:
            stop_traced(L, sig=signal.SIGKILL)
        spin.kill()
        spin.wait()
        try:
            os.unlink(trace)
        except OSError:
            pass
    t.done()


if __name__ == "__main__":
    main()
