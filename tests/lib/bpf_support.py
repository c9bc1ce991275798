# SPDX-License-Identifier: BSD-2-Clause
"""Helpers shared by the BPF tests (tests/bpf/test_*.py): the blocker helper, histogram deltas, the BPF
programs and links a process holds, and running the loupe CLI.

Every test run picks a random tag and gives its helper processes distinctive comms (symlinks to
build/tests/blocker named after the tag), so that concurrent runs of the suite, or other loupe instances on the
host, never see each other's processes.
"""
import json
import os
import random
import select as _select
import shutil
import subprocess
import tempfile
import time
import traceback

from loupe_test import HELPERS, LOUPE, bucket, hist_le, select, value

BLOCKER = os.path.join(HELPERS, "blocker")
HIST = "loupe_syscall_duration_seconds"
ERRORS = "loupe_syscall_errors_total"
MS = 1000000


def guarded(t, name, fn, *args):
    """Run one group of checks; an exception (loupe failed to start, a helper hung...) is one failure with its
    traceback, and the other groups still run. Returns fn's result, or None."""
    try:
        return fn(*args)
    except Exception:
        t.ok(False, name, traceback.format_exc())
        return None


def new_tag():
    """Five hex digits, unique enough per run: comm names are at most 15 characters."""
    return "%05x" % random.randrange(16 ** 5)


class Workdir:
    """A temporary directory of symlinks to the blocker: the link name becomes the comm at exec."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="loupe-bpf-")
        os.chmod(self.dir, 0o755)

    def link(self, name):
        assert len(name) <= 15, name
        path = os.path.join(self.dir, name)
        if not os.path.exists(path):
            os.symlink(BLOCKER, path)
        return path

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()


class Blocker:
    """One blocker process. With go=True (the default) it waits on stdin before working; hold=True keeps it
    alive after its work until release(). Its stdout is one JSON object a line, by role."""

    def __init__(self, path, *args, go=True, hold=False):
        argv = [path]
        if go:
            argv += ["--wait-go", "-"]
        if hold:
            argv += ["--hold"]
        argv += [str(a) for a in args]
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.pid = self.proc.pid
        self.out = None
        self.stderr = b""
        self.early = []  # reports read by wait_line() before finish()

    def go(self):
        try:
            self.proc.stdin.write(b"g")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, AttributeError):
            pass  # it died early: finish() reports how

    def release(self):
        """Close stdin: ends --hold and --child-hold."""
        if self.proc.stdin:
            try:
                self.proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            self.proc.stdin = None  # communicate() must not touch it

    def wait_line(self, timeout=10):
        """Read one stdout line (a JSON report) without ending the process; None on timeout/EOF."""
        r, _, _ = _select.select([self.proc.stdout], [], [], timeout)
        if not r:
            return None
        line = self.proc.stdout.readline()
        if not line.strip():
            return None
        obj = json.loads(line)
        self.early.append(obj)
        return obj

    def finish(self, timeout=30):
        """Release, wait for exit, parse output: {"main": {...}, "child": {...}, "rc": N, "all": [reports]}."""
        self.release()
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        self.stderr = err
        res = {"rc": self.proc.returncode}
        objs = list(self.early)
        for line in out.decode(errors="replace").splitlines():
            try:
                objs.append(json.loads(line))
            except ValueError:
                pass
        for obj in objs:  # a later report of a role wins (an exec'd child reports as "main" before its parent)
            res[obj.get("role", "?")] = obj
        res["all"] = objs
        self.out = res
        return res

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.release()
        self.proc.wait()


def kill_all(blockers):
    for b in blockers:
        try:
            b.kill()
        except Exception:
            pass


# ---- histograms ----

LE_50MS, LE_BELOW_50MS = hist_le(50 * MS)


def bucket_only(metrics, service, syscall, le=LE_50MS, le_below=LE_BELOW_50MS):
    """Observations in the one bucket (le_below, le] (cumulative le minus the bucket below)."""
    return (bucket(metrics, HIST, le, service_name=service, syscall=syscall) -
            bucket(metrics, HIST, le_below, service_name=service, syscall=syscall))


def delta(m0, m1, fn, *args, **kw):
    return fn(m1, *args, **kw) - fn(m0, *args, **kw)


def count_of(metrics, service, syscall):
    return value(metrics, HIST + "_count", service_name=service, syscall=syscall)


def sum_of(metrics, service, syscall):
    return value(metrics, HIST + "_sum", service_name=service, syscall=syscall)


def count_all_services(metrics, syscall):
    return value(metrics, HIST + "_count", syscall=syscall)


def errors_of(metrics, syscall, errno, service=None):
    """loupe_syscall_errors_total of a syscall (and errno, unless None), summed over services unless given."""
    kw = {"syscall": syscall}
    if errno is not None:
        kw["errno"] = errno
    if service:
        kw["service_name"] = service
    return value(metrics, ERRORS, **kw)


def targets_of(metrics, service):
    return value(metrics, "loupe_targets", default=-1, service_name=service)


def expect_in_bucket(durations_ns, le=LE_50MS):
    """How many blocking calls surely landed in the bucket whose upper bound is le: the kernel-side duration
    lies between the requested sleep and the duration measured around the syscall, so a call measured below
    the bound is certain; one measured above it (an overloaded host) may be on either side."""
    bound = float(le) * 1e9
    return sum(1 for d in durations_ns if d < bound)


def check_histogram_shape(metrics):
    """Every loupe_syscall_duration_seconds series: buckets non-decreasing, +Inf == _count. Returns problems."""
    series = {}
    for (name, ls), v in metrics.items():
        if name == HIST + "_bucket":
            d = dict(ls)
            key = (d.get("service_name"), d.get("syscall"))
            series.setdefault(key, []).append((float("inf") if d["le"] == "+Inf" else float(d["le"]), v))
    problems = []
    for key, pts in series.items():
        pts.sort()
        vals = [v for _, v in pts]
        if any(b < a for a, b in zip(vals, vals[1:])):
            problems.append(f"{key}: buckets decrease: {vals}")
        cnt = value(metrics, HIST + "_count", service_name=key[0], syscall=key[1], default=None)
        if cnt is None or pts[-1][0] != float("inf") or pts[-1][1] != cnt:
            problems.append(f"{key}: +Inf bucket {pts[-1]} != _count {cnt}")
    return problems


def check_latency(t, m0, m1, service, syscall, work, what):
    """Assert the exact ground truth of one blocker work report (count, bucket, sum) under `service`."""
    n = work["count"]
    durs = work["durations_ns"]
    dc = delta(m0, m1, count_of, service, syscall)
    db = delta(m0, m1, bucket_only, service, syscall)
    ds = delta(m0, m1, sum_of, service, syscall)
    sure = expect_in_bucket(durs)
    t.ok(work["bad"] == 0, f"{what}: the helper blocked {n} x {work['sleep_ms']} ms in {syscall}", work)
    t.ok(dc == n, f"{what}: {syscall} _count of service {service} grew by exactly {n}", f"grew by {dc}")
    t.ok(sure <= db <= n and (sure < n or db == n),
         f"{what}: {n} observations in the 50 ms bucket le={LE_50MS} (minus le={LE_BELOW_50MS})",
         f"bucket grew by {db}; {sure} of {n} calls surely in it; measured durations {durs}")
    lo = n * work["sleep_ms"] / 1000.0
    hi = sum(durs) / 1e9
    t.ok(lo - 1e-9 <= ds <= hi + 1e-6, f"{what}: _sum grew by between {n} x {work['sleep_ms']} ms and the measured total",
         f"sum grew by {ds:.9f}s, expected within [{lo:.9f}, {hi:.9f}]")


# ---- BPF programs and links ----

def bpf_fds(pid):
    """(prog ids, link ids) that process pid holds open, from /proc/PID/fdinfo."""
    progs, links = set(), set()
    fddir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fddir)
    except OSError:
        return progs, links
    for fd in fds:
        try:
            target = os.readlink(os.path.join(fddir, fd))
            if target not in ("anon_inode:bpf-prog", "anon_inode:bpf_link"):
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                info = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
        except OSError:
            continue
        if target == "anon_inode:bpf-prog" and "prog_id" in info:
            progs.add(int(info["prog_id"]))
        elif target == "anon_inode:bpf_link" and "link_id" in info:
            links.add(int(info["link_id"]))
    return progs, links


def bpftool_json(*args):
    out = subprocess.run(["bpftool", "-j", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"bpftool {' '.join(args)}: {out.stderr.strip()}")
    return json.loads(out.stdout or "[]")


def live_progs():
    """{id: prog json} of every BPF program loaded on the host."""
    return {p["id"]: p for p in bpftool_json("prog", "show")}


def live_links():
    return {l["id"]: l for l in bpftool_json("link", "show")}


# Programs that run in every test scenario (targets and syscalls), and all of loupe's programs (tcp too: its
# retransmit and reset hooks only run when such events happen).
CORE_PROG_NAMES = {
    "tp_btf": {"fork_btf", "exec_btf", "exit_btf", "sys_enter_btf", "sys_exit_btf"},
    "raw_tp": {"fork_raw", "exec_raw", "exit_raw", "sys_enter_raw", "sys_exit_raw"},
}
LOUPE_PROG_NAMES = {
    flavour: names | {f"tcp_{p}_{suffix}" for p in ("state", "retx", "rst_tx", "rst_rx")} | {f"pl_{p}_{suffix}" for p in ("state", "recv", "send")}
    | {"prof_sample", "prof_session"}
    for flavour, names, suffix in (("tp_btf", CORE_PROG_NAMES["tp_btf"], "btf"),
                                   ("raw_tp", CORE_PROG_NAMES["raw_tp"], "raw"))
}
# pg_usdt (bpf/pgusdt.bpf.c): uprobes on the postgres binary, loaded only when loupe finds one for its targets.
PGUSDT_PROG_NAMES = {"pg_lock_start", "pg_lock_done", "pg_ckpt_start", "pg_ckpt_done", "pg_deadlock", "pg_xact_abort",
                     "pg_query_start", "pg_query_done", "pg_xact_commit"}
ALL_LOUPE_NAMES = set().union(*LOUPE_PROG_NAMES.values()) | PGUSDT_PROG_NAMES


def held_bpf_ids():
    """(prog ids, link ids) held open by any process on the host."""
    progs, links = set(), set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            p, l = bpf_fds(int(d))
            progs |= p
            links |= l
    return progs, links


def orphan_loupe_objects():
    """Loupe-named BPF programs, and links to them, that no process holds: what a loupe that exited left
    behind (pinned or leaked links keep them alive). Robust to other loupe instances running meanwhile."""
    lp, ll = live_progs(), live_links()
    ours = {i for i, p in lp.items() if p.get("name") in ALL_LOUPE_NAMES}
    held_p, held_l = held_bpf_ids()
    held_p |= {l.get("prog_id") for i, l in ll.items() if i in held_l}
    orphan_links = sorted(i for i, l in ll.items() if l.get("prog_id") in ours and i not in held_l)
    orphan_progs = sorted(lp[i]["name"] + f"#{i}" for i in ours - held_p)
    return orphan_progs, orphan_links


# ---- the CLI ----

def run_cli(args, timeout=20, prefix=None, env=None):
    """Run loupe (optionally under a prefix command); returns (rc, stdout, stderr, seconds)."""
    cmd = (prefix or []) + [LOUPE, *args]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    return p.returncode, p.stdout, p.stderr, time.time() - t0


def json_lines(text):
    """Parse every non-empty line as JSON; returns (objects, bad lines)."""
    objs, bad = [], []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            o = json.loads(line)
            if isinstance(o, dict):
                objs.append(o)
            else:
                bad.append(line)
        except ValueError:
            bad.append(line)
    return objs, bad


def events(text):
    return [o.get("event") for o in json_lines(text)[0]]
