#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""The command line and the daemon's lifecycle: bad input gets one line naming the problem and a non-zero exit;
--help and --version exit 0; SIGINT and SIGTERM detach everything and exit 0 within 2 s, leaving no BPF program
or link behind; logs are JSON lines; `loupe check` reports what the kernel really supports.

Usage errors, --help and --version need no privileges; everything that gets past the privilege check needs root
and is skipped (with the reason printed) otherwise.
"""
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loupe_test import LOUPE, Loupe, Tap, free_port, is_root, wait_for  # noqa: E402
from bpf_support import (BLOCKER, LOUPE_PROG_NAMES, Blocker, Workdir, bpf_fds, events, guarded,  # noqa: E402
                         json_lines, kill_all, live_links, live_progs, new_tag, orphan_loupe_objects, run_cli)

KERNEL_NAMES = ["btf", "tp_btf", "raw_tp", "fentry", "kprobe", "uprobe", "uprobe_multi", "perf_event", "ring_buffer"]
ISO_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def one_line_error(t, name, rc, out, err, *needles, json_ok=True):
    """Non-zero exit, nothing on stdout, exactly one line on stderr that contains every needle."""
    lines = [l for l in err.splitlines() if l.strip()]
    text = lines[0] if len(lines) == 1 else ""
    if json_ok and text.startswith("{"):
        try:
            text = json.loads(text).get("msg", "")
        except ValueError:
            pass
    ok = rc not in (0, None) and not out.strip() and len(lines) == 1 and all(n.lower() in text.lower() for n in needles)
    t.ok(ok, name, f"exit {rc}; stdout {out!r}; stderr ({len(lines)} lines) {err!r}; want {needles}")


# ---- no privileges needed ----

def test_help_version(t):
    for args in (["--help"], ["-h"], ["help"], ["run", "--help"], ["run", "-h"], ["check", "--help"], ["check", "-h"]):
        rc, out, err, _ = run_cli(args)
        t.ok(rc == 0 and out.startswith("Usage: loupe") and not err, f"loupe {' '.join(args)}: usage on stdout, exit 0",
             f"exit {rc}; stdout {out[:200]!r}; stderr {err!r}")
    rc, out, err, _ = run_cli(["run", "--help"])
    words = ("--listen", "--target", "comm:", "cmdline:", "exe:", "pid:", "cgroup:", "--tracepoints", "SIGTERM")
    t.ok(all(w in out for w in words), "loupe run --help documents every option and selector kind",
         f"missing {[w for w in words if w not in out]}")
    for args in (["--version"], ["-V"]):
        rc, out, err, _ = run_cli(args)
        t.ok(rc == 0 and re.match(r"^loupe \d+\.\d+\.\d+ \(\S+\)\n$", out) and not err,
             f"loupe {args[0]}: version on stdout, exit 0", f"exit {rc}; {out!r} {err!r}")


USAGE_ERRORS = [
    (["run", "--bogus"], "unknown flag", ["unknown option", "--bogus"]),
    (["--bogus"], "unknown flag (default command)", ["unknown option", "--bogus"]),
    (["check", "--bogus"], "unknown flag of check", ["unknown option", "--bogus"]),
    (["frobnicate"], "unknown command", ["unknown command", "frobnicate"]),
    (["run", "extra"], "stray argument", ["unexpected argument", "extra"]),
    (["run", "--listen"], "flag without its value", ["--listen", "value"]),
    (["run", "--target", "svc=foo:bar"], "bad selector kind", ["svc=foo:bar", "selector"]),
    (["run", "--target", "svc"], "target without =", ["svc", "NAME=KIND:ARG"]),
    (["run", "--target", "svc=comm:("], "bad comm regex", ["svc=comm:(", "regex"]),
    (["run", "--target", "svc=cmdline:a{2,1}"], "bad cmdline regex", ["regex"]),
    (["run", "--target", "9svc=comm:x"], "bad service name (starts with a digit)", ["9svc", "service name"]),
    (["run", "--target", "s vc=comm:x"], "bad service name (space)", ["service name"]),
    (["run", "--target", "svc=comm:"], "empty selector", ["svc=comm:", "empty"]),
    (["run", "--target", "svc=pid:12x"], "bad pid", ["pid"]),
    (["run", "--target", "svc=exe:bin/x"], "relative exe path", ["absolute path"]),
    (["run", "--tracepoints", "kprobe"], "bad --tracepoints", ["--tracepoints", "kprobe"]),
    (["run", "--log-level", "loud"], "bad --log-level", ["--log-level", "loud"]),
    (["run", "--series-budget", "0"], "bad --series-budget", ["--series-budget"]),
]


def test_usage_errors(t):
    for args, what, needles in USAGE_ERRORS:
        rc, out, err, _ = run_cli(args)
        one_line_error(t, f"{what}: `loupe {' '.join(args)}` -> one line naming it, exit 2", rc, out, err, *needles)
        if rc not in (0, 2):
            t.note(f"{what}: exit {rc} (usage errors exit 2)")


# ---- root ----

BAD_LISTEN = [
    ("127.0.0.1", "no port"),
    ("127.0.0.1:99999", "port out of range"),
    ("127.0.0.1:http", "port not a number"),
    ("[::1:9476", "unclosed IPv6 bracket"),
    ("10.255.255.1:9476", "address not on this host"),
]


def test_bad_listen(t):
    for addr, what in BAD_LISTEN:
        rc, out, err, _ = run_cli(["run", "--listen", addr, "--target", "x=comm:^nothing$"])
        one_line_error(t, f"bad listen address ({what}): one line naming {addr}, non-zero exit", rc, out, err, addr)
        # A malformed address is an argument error (exit 2, before anything starts); one that is well formed but
        # cannot be bound is a failure at start (exit 1).
        want = 1 if what == "address not on this host" else 2
        t.eq(rc, want, f"bad listen address ({what}): exit {want}")
    # Port in use.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        rc, out, err, _ = run_cli(["run", "--listen", f"127.0.0.1:{port}", "--target", "x=comm:^nothing$"])
        one_line_error(t, "port in use: one line saying so, non-zero exit", rc, out, err, f"127.0.0.1:{port}", "in use")
    finally:
        s.close()


def privdrop_copy():
    """A copy of the binary that an unprivileged user can execute (the build tree may not be reachable)."""
    d = tempfile.mkdtemp(prefix="loupe-cli-")
    os.chmod(d, 0o755)
    dst = os.path.join(d, "loupe")
    shutil.copy2(LOUPE, dst)
    os.chmod(dst, 0o755)
    return d, dst


def run_prefixed(prefix, binary, args, timeout=5):
    """Run binary under prefix; a process still running at timeout is killed and reported as rc None."""
    p = subprocess.Popen(prefix + [binary, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out, err
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGTERM)
        try:
            out, err = p.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        return None, out, err


def test_privileges(t):
    setpriv = shutil.which("setpriv")
    names = ["not root (nobody): run", "not root (nobody): check", "root without CAP_BPF+CAP_PERFMON+CAP_SYS_ADMIN",
             "root without CAP_PERFMON+CAP_SYS_ADMIN", "root without CAP_SYS_PTRACE (a warning)"]
    if not setpriv:
        for n in names:
            t.skip(n, "setpriv (util-linux) not installed")
        return
    d, binary = privdrop_copy()
    try:
        port = free_port()
        nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
        rc, out, err = run_prefixed(nobody, binary, ["run", "--listen", f"127.0.0.1:{port}"])
        one_line_error(t, "not root: `loupe run` -> one line naming CAP_BPF and CAP_PERFMON, non-zero exit",
                       rc, out, err, "CAP_BPF", "CAP_PERFMON")
        rc, out, err = run_prefixed(nobody, binary, ["check"])
        one_line_error(t, "not root: `loupe check` -> one line naming CAP_BPF and CAP_PERFMON, non-zero exit",
                       rc, out, err, "CAP_BPF", "CAP_PERFMON")
        drop = lambda caps: [setpriv, "--inh-caps=-all", "--ambient-caps=-all", f"--bounding-set={caps}"]
        rc, out, err = run_prefixed(drop("-bpf,-perfmon,-sys_admin"), binary, ["run", "--listen", f"127.0.0.1:{port}"])
        one_line_error(t, "root without CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN -> one line naming CAP_BPF and CAP_PERFMON",
                       rc, out, err, "CAP_BPF and CAP_PERFMON")
        rc, out, err = run_prefixed(drop("-perfmon,-sys_admin"), binary, ["run", "--listen", f"127.0.0.1:{port}"])
        one_line_error(t, "root with CAP_BPF but without CAP_PERFMON, CAP_SYS_ADMIN -> one line naming CAP_PERFMON",
                       rc, out, err, "CAP_PERFMON")
        # Without CAP_SYS_PTRACE, other users' /proc/PID/{maps,exe,mem} are unreadable: their stacks lose what needs
        # them (measured: tests/bpf/test_privileges.py), the rest runs. It must say so at start, not run blind.
        rc, out, err = run_prefixed(drop("-sys_ptrace"), binary, ["run", "--listen", f"127.0.0.1:{port}"], timeout=3)
        warn = [ln for ln in err.splitlines() if '"privileges_partial"' in ln and "CAP_SYS_PTRACE" in ln]
        t.ok(rc is None and len(warn) == 1, "root without CAP_SYS_PTRACE -> runs, with one warning naming "
             "CAP_SYS_PTRACE and what it costs", f"exit {rc}; {err[-1500:]}")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def no_btf_prefix():
    """Run in a private mount namespace where /sys/kernel/btf is an empty tmpfs."""
    return ["unshare", "-m", "--propagation", "private", "sh", "-c",
            'mount -t tmpfs loupe-no-btf /sys/kernel/btf && exec "$0" "$@"']


def test_no_btf(t):
    names = ["kernel without BTF: run", "kernel without BTF: check --json says btf false",
             "kernel without BTF: check agrees with run"]
    if not shutil.which("unshare"):
        for n in names:
            t.skip(n, "unshare (util-linux) not installed")
        return
    port = free_port()
    rc, out, err = run_prefixed(no_btf_prefix(), LOUPE, ["run", "--listen", f"127.0.0.1:{port}"])
    one_line_error(t, "kernel without BTF (/sys/kernel/btf hidden): `loupe run` -> one line naming BTF, non-zero exit",
                   rc, out, err, "BTF")
    run_rc = rc
    rc, out, err = run_prefixed(no_btf_prefix(), LOUPE, ["check", "--json"], timeout=20)
    try:
        j = json.loads(out)
    except ValueError:
        j = None
    t.ok(j is not None and j["kernel"]["btf"]["ok"] is False and j["kernel"]["tp_btf"]["ok"] is False,
         "kernel without BTF: `loupe check --json` reports btf and tp_btf false", out or err)
    if j is not None:
        t.ok(j["can_run"] == (run_rc == 0) and (rc == 0) == (run_rc == 0),
             "kernel without BTF: `loupe check` agrees with `loupe run` on whether loupe can run",
             f"check says can_run={j['can_run']} (exit {rc}) but `loupe run` exits {run_rc}; features {j['features']}")


def perf_event_works():
    """Can this process open a cpu-clock software perf event on CPU 0 (what loupe's perf_event probe needs)?"""
    libc = ctypes.CDLL(None, use_errno=True)
    attr = (ctypes.c_uint8 * 128)()
    ctypes.c_uint32.from_buffer(attr, 0).value = 1      # PERF_TYPE_SOFTWARE
    ctypes.c_uint32.from_buffer(attr, 4).value = 128    # size
    ctypes.c_uint64.from_buffer(attr, 8).value = 0      # PERF_COUNT_SW_CPU_CLOCK
    ctypes.c_uint64.from_buffer(attr, 40).value = 1     # disabled
    fd = libc.syscall(298, attr, -1, 0, -1, 8)          # perf_event_open(attr, pid -1, cpu 0, group -1, CLOEXEC)
    if fd >= 0:
        os.close(fd)
        return True
    return False


def test_check(t):
    rc, out, err, _ = run_cli(["check"])
    lines = out.splitlines()
    missing = [n for n in KERNEL_NAMES if not any(re.match(rf"^\s+{n}\s+(yes|no)\b", l) for l in lines)]
    t.ok(rc == 0 and not missing, "loupe check lists btf, tp_btf, raw_tp, fentry, kprobe, uprobe, uprobe_multi, perf_event, ring_buffer",
         f"exit {rc}; missing {missing}; output:\n{out}{err}")
    rc, out, err, _ = run_cli(["check", "--json"])
    try:
        j = json.loads(out)
    except ValueError:
        t.ok(False, "loupe check --json prints one JSON document", out + err)
        return
    k = j["kernel"]
    t.ok(all(n in k and isinstance(k[n].get("ok"), bool) for n in KERNEL_NAMES) and rc == (0 if j["can_run"] else 1),
         "loupe check --json: every kernel feature with a boolean, exit status follows can_run", j)
    btf = os.path.exists("/sys/kernel/btf/vmlinux")
    t.ok(k["btf"]["ok"] == btf, f"check --json btf={k['btf']['ok']} <=> /sys/kernel/btf/vmlinux exists ({btf})")
    kp = os.path.exists("/sys/bus/event_source/devices/kprobe")
    t.ok(kp or not k["kprobe"]["ok"],
         f"check --json kprobe={k['kprobe']['ok']} only if the kprobe PMU exists (exists: {kp})")
    up = os.path.exists("/sys/bus/event_source/devices/uprobe")
    t.ok(up or not k["uprobe"]["ok"], f"check --json uprobe={k['uprobe']['ok']} only if the uprobe PMU exists ({up})")
    pe = perf_event_works()
    t.ok(k["perf_event"]["ok"] == pe, f"check --json perf_event={k['perf_event']['ok']} <=> a cpu-clock perf event opens ({pe})")
    t.ok(not k["tp_btf"]["ok"] or k["btf"]["ok"], "check --json: tp_btf only with btf")
    t.ok(all(v["ok"] or v.get("detail") for v in k.values()), "check --json: every unsupported feature says why",
         {n: v for n, v in k.items() if not v["ok"]})
    stats = os.path.exists("/proc/sys/kernel/bpf_stats_enabled")
    t.ok(k.get("bpf_stats", {}).get("ok") == stats, "check --json bpf_stats <=> /proc/sys/kernel/bpf_stats_enabled exists")


def loupe_ids(pid):
    progs, links = bpf_fds(pid)
    lp = live_progs()
    return progs, links, {lp[i]["name"] for i in progs if i in lp}


def test_signals(t, w, tag):
    if not shutil.which("bpftool"):
        for s in ("SIGINT", "SIGTERM", "SIGTERM during scrapes"):
            t.skip(f"{s}: exit 0 within 2 s, nothing left behind", "bpftool not installed")
        return
    comm = f"lps{tag}"
    for signame, scraping in (("SIGINT", False), ("SIGTERM", False), ("SIGTERM", True)):
        label = signame + (" while /metrics is scraped in a loop" if scraping else "")
        sig = getattr(signal, signame)
        procs = []
        stop = threading.Event()
        L = Loupe("--target", f"sig=comm:^{comm}$")
        try:
            p = Blocker(w.link(comm), go=False, hold=True)
            procs.append(p)
            L.start()
            wait_for(lambda: "waiting_for_targets" not in L.status()["state"], timeout=3)
            progs, links, names = loupe_ids(L.proc.pid)
            n = len(LOUPE_PROG_NAMES["tp_btf"])
            # the CPU profiler: one perf event link per CPU for prof_sample, none for prof_session (no session runs)
            nl = n - 2 + len(os.sched_getaffinity(0))
            t.ok(names == LOUPE_PROG_NAMES["tp_btf"] and len(links) == nl,
                 f"{label}: before the signal loupe holds its {n} programs and {nl} links", f"{names}, links {links}")
            if scraping:
                def scraper():
                    while not stop.is_set():
                        try:
                            L.get("/metrics", timeout=2)
                        except OSError:
                            pass
                for _ in range(2):
                    threading.Thread(target=scraper, daemon=True).start()
                time.sleep(0.3)
            rc = L.stop(sig=sig, timeout=10)
            stop.set()
            t.ok(rc == 0 and L.stop_seconds <= 2.0, f"{label}: loupe exits 0 within 2 s",
                 f"exit {rc} after {L.stop_seconds:.2f}s")
            ev = events(L.stderr())
            t.ok("shutdown" in ev and ev[-1] == "stopped", f"{label}: logs shutdown, then stopped last", ev[-5:])

            def leftovers():
                lp, ll = live_progs(), live_links()
                return sorted(progs & set(lp)), sorted(links & set(ll))
            gone = wait_for(lambda: leftovers() == ([], []), timeout=2, interval=0.1)
            t.ok(gone, f"{label}: none of its BPF programs or links remains (bpftool prog/link show)",
                 f"left: {leftovers()}")
            orphans = wait_for(lambda: orphan_loupe_objects() == ([], []), timeout=2)
            t.ok(orphans, f"{label}: no loupe-named BPF program or link is left on the host without an owner",
                 orphan_loupe_objects())
            r = p.finish()
            t.ok(r["rc"] == 0, f"{label}: the target process was not disturbed", r)
        finally:
            stop.set()
            L.stop()  # no-op when it already exited
            kill_all(procs)


def signals_blocked(pid, sig):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigBlk:"):
                    return bool(int(line.split()[1], 16) & (1 << (sig - 1)))
    except OSError:
        pass
    return False


def test_signal_at_startup(t):
    """A signal that arrives while loupe is still probing the kernel and loading its objects (as soon as it
    has blocked SIGINT/SIGTERM for its signalfd) must also end in exit 0 with nothing left behind."""
    for signame in ("SIGINT", "SIGTERM"):
        sig = getattr(signal, signame)
        p = subprocess.Popen([LOUPE, "run", "--listen", f"127.0.0.1:{free_port()}", "--target", "x=comm:^lp-none$"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        blocked = wait_for(lambda: signals_blocked(p.pid, sig) or p.poll() is not None, timeout=5, interval=0.001)
        t0 = time.time()
        p.send_signal(sig)
        try:
            rc = p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = p.wait()
        secs = time.time() - t0
        err = p.stderr.read()
        ev = events(err)
        t.ok(blocked and rc == 0 and secs <= 2.0 and ev and ev[-1] == "stopped",
             f"{signame} during start-up (BPF objects loading): exit 0 within 2 s",
             f"exit {rc} after {secs:.2f}s; events {ev}")
        orphans = wait_for(lambda: orphan_loupe_objects() == ([], []), timeout=2)
        t.ok(orphans, f"{signame} during start-up: no loupe BPF program or link left behind", orphan_loupe_objects())


def test_logs(t, w, tag):
    comm = f"lpj{tag}"
    for level in ("info", "debug"):
        procs = []
        try:
            with Loupe("--target", f"log=comm:^{comm}$", log_level=level) as L:
                p = Blocker(w.link(comm), "--count", 1, "--fork", "--child-count", 1, "--enoent", 1)
                procs.append(p)
                wait_for(lambda: L.status()["state"] == "running", timeout=3)
                p.go()
                p.finish()
                L.scrape()
            text = L.stderr()
            objs, bad = json_lines(text)
            req = ("ts", "level", "event", "msg")
            wrong = [o for o in objs if not all(isinstance(o.get(k), str) for k in req)
                     or not ISO_TS.match(o["ts"]) or o["level"] not in ("debug", "info", "warn", "error")]
            t.ok(objs and not bad and not wrong,
                 f"--log-level {level}: every stderr line is a JSON object with ts, level, event, msg",
                 f"{len(objs)} objects; not JSON: {bad[:5]}; malformed: {wrong[:5]}")
            if level == "info":
                t.ok(not [o for o in objs if o["level"] == "debug"], "--log-level info: no debug records")
            else:
                t.ok(any(o["level"] == "debug" for o in objs), "--log-level debug: debug records appear",
                     [o["event"] for o in objs])
        finally:
            kill_all(procs)


def main():
    t = Tap()
    test_help_version(t)
    test_usage_errors(t)
    if not is_root():
        for n in ["bad listen address (5 cases)", "port in use", "not root / missing capabilities (5 cases)",
                  "kernel without BTF (3 checks)", "loupe check reports the kernel truthfully",
                  "SIGINT/SIGTERM: exit 0 within 2 s, nothing left behind", "logs are JSON lines"]:
            t.skip(n, "needs root: gets past the privilege check and loads BPF programs")
        t.done()
    for fn in (test_bad_listen, test_privileges, test_no_btf, test_check):
        guarded(t, f"{fn.__name__} ran to completion", fn, t)
    if not os.access(BLOCKER, os.X_OK):
        t.ok(False, "helper build/tests/blocker exists", "run `make tests` first")
        t.done()
    tag = new_tag()
    with Workdir() as w:
        for fn in (test_signals, test_logs):
            guarded(t, f"{fn.__name__} ran to completion", fn, t, w, tag)
    if shutil.which("bpftool"):
        guarded(t, "test_signal_at_startup ran to completion", test_signal_at_startup, t)
    else:
        t.skip("SIGINT/SIGTERM during start-up", "bpftool not installed")
    t.done()


if __name__ == "__main__":
    main()
