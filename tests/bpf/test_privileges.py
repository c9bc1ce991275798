#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""Least privilege (root, to set the stage): which capability each feature needs, found by running loupe as an
unprivileged user (`loupe`, created if missing) with given capabilities, against the reference workload (its own
PostgreSQL and API), and checking each feature against ground truth this test creates:
  starts     loupe becomes ready (else it exits 1 naming the capability)
  targets    /status counts the API's processes exactly
  http       N requests to the API counted exactly (http_server_request_duration_seconds)
  sql        M statements counted exactly on the server side (loupe_postgres_query_duration_seconds)
  usdt       with --pg-usdt-query, M queries timed by PostgreSQL's USDT probes, exactly
  py_frames  the API hammered on /cpu: app.count_primes in its CPU profile (CPython frames read from its memory)
  pg_frames  a CPU-heavy query: PostgresMain in PostgreSQL's CPU profile (native unwinding, ELF symbols)
  kernel     off-CPU stacks name kernel functions (schedule...), not "[kernel]"
  session    an on-demand CPU session of the API (perf events opened after the drop) returns samples
  bpf_stats  loupe_bpf_program_run_seconds_total exported
The runs: the documented set (CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH, CAP_SYSLOG), that set
plus CAP_SYS_ADMIN, and that set without each of its capabilities. The matrix is printed and must equal the table
in docs/privileges.md ("Measured"), so the document is the measurement. Then the reduced set, as /proc/PID/status
shows it for every thread:
  - as that user: CapEff = CapPrm = what /status says is kept, nothing inheritable or ambient, NoNewPrivs 1;
  - as root: the same, and the bounding set reduced too; with --user nobody --bpf-stats always: uid 65534 and
    only the four capabilities the running daemon uses, every feature still running;
  - without CAP_SYS_ADMIN, BPF statistics are read when the host's kernel.bpf_stats_enabled is 1.
Prints TAP."""
import os
import pwd
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loupe_test import TOP, Loupe, value, wait_for  # noqa: E402
from e2e_support import Workload, begin, missing_requirements, stop_all  # noqa: E402

USER = "loupe"
# The documented set. CAP_SYS_ADMIN implies CAP_BPF and CAP_PERFMON, so it is measured as an addition, and each
# capability of the set as a removal from it.
BASE = ["bpf", "perfmon", "sys_ptrace", "dac_read_search", "syslog"]
FEATURES = ["starts", "targets", "http", "sql", "usdt", "py_frames", "pg_frames", "kernel", "session", "bpf_stats"]
RUNS = ["set+sys_admin", "set"] + [f"set-{c}" for c in BASE]


def run_caps(run):
    if run == "set+sys_admin":
        return BASE + ["sys_admin"]
    return [c for c in BASE if run == "set" or c != run[4:]]

N_HTTP = 40
N_SQL = 30
DOC = os.path.join(TOP, "docs", "privileges.md")
CAP_BITS = {"chown": 0, "dac_override": 1, "dac_read_search": 2, "setuid": 7, "setpcap": 8, "sys_ptrace": 19,
            "sys_admin": 21, "sys_resource": 24, "syslog": 34, "perfmon": 38, "bpf": 39}

NAMES = [f"as {USER} with {r}: the features measured" for r in RUNS] + [
    "the measured matrix is docs/privileges.md's table",
    f"as {USER}: every feature runs with the documented set (BPF statistics need CAP_SYS_ADMIN)",
    f"as {USER}: CapEff = CapPrm = the capabilities /status says are kept, none inheritable or ambient",
    f"as {USER}: every thread has that set, and NoNewPrivs is 1",
    "as root: CapEff, CapPrm and the bounding set reduced to what /status keeps; NoNewPrivs 1; every thread",
    "as root --user nobody --bpf-stats always: uid 65534, four capabilities, every feature running",
    "as root --user nobody: BPF program statistics still exported (the fd opened before the drop)",
    "as root --user nobody: SIGTERM exits 0",
    f"as {USER} without CAP_SYS_ADMIN, host kernel.bpf_stats_enabled=1: statistics read",
    "--user no-such-user: loupe exits 2 naming it (an argument error)",
]


def caps_arg(caps):
    return "-all" + "".join(f",+{c}" for c in caps)


def setpriv(caps, user=USER):
    c = caps_arg(caps)
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", f"--inh-caps={c}",
            f"--ambient-caps={c}", f"--bounding-set={c}"]


def mask(caps):
    return sum(1 << CAP_BITS[c] for c in caps)


def proc_caps(pid):
    """{thread id: {CapEff: int, ..., NoNewPrivs: int, Uid: str}} of every thread of pid."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        d = {}
        try:
            for ln in open(f"/proc/{pid}/task/{tid}/status"):
                k, _, v = ln.partition(":")
                if k.startswith("Cap"):
                    d[k] = int(v.strip(), 16)
                elif k in ("NoNewPrivs", "Uid"):
                    d[k] = v.split()[0] if k == "Uid" else int(v.strip())
        except OSError:
            continue
        out[tid] = d
    return out


def kept_caps(status):
    return sorted(k[4:] for k in status.get("privileges", {}).get("kept", {}))


class Hammer(threading.Thread):
    def __init__(self, url):
        super().__init__(daemon=True)
        self.url, self.halt = url, threading.Event()

    def run(self):
        while not self.halt.is_set():
            try:
                urllib.request.urlopen(self.url, timeout=10).read()
            except Exception:  # noqa: BLE001 - the measurement says what worked
                time.sleep(0.1)


def count(m, name, **labels):
    return sum(v for (n, lab), v in m.items() if n == name and all(dict(lab).get(k) == x for k, x in labels.items()))


def folded(L, path):
    code, _, body = L.get(path, timeout=30)
    return body.decode(errors="replace") if code == 200 else ""


def measure(wl, L):
    """Each feature of FEATURES (but starts): True when it matched the ground truth."""
    r = {}
    st = L.status()
    truth = len(wl.api_pids())
    r["targets"] = wait_for(lambda: L.status().get("targets", {}).get("api") == truth, timeout=5)
    m0 = L.scrape()
    wl.http_plan(f"GET /memories/1={N_HTTP}")
    c = wl.pg_connect()
    cur = c.cursor()
    for _ in range(N_SQL):
        cur.execute("SELECT 1")
    time.sleep(0.5)
    m1 = L.scrape()
    dh = count(m1, "http_server_request_duration_seconds_count", service_name="api") - \
        count(m0, "http_server_request_duration_seconds_count", service_name="api")
    # the API's own statements reach the server too: count only SELECT 1's fingerprint, from this connection
    dq = count(m1, "loupe_postgres_usdt_query_duration_seconds_count", service_name="postgres") - \
        count(m0, "loupe_postgres_usdt_query_duration_seconds_count", service_name="postgres")
    sel = [lab for (n, lab) in m1 if n == "loupe_postgres_statement_info" and dict(lab).get("query") == "SELECT $1"]
    fp = dict(sel[0]).get("fingerprint") if sel else None
    ds = count(m1, "loupe_postgres_query_duration_seconds_count", service_name="postgres", fingerprint=fp) - \
        count(m0, "loupe_postgres_query_duration_seconds_count", service_name="postgres", fingerprint=fp)
    r["http"] = dh == N_HTTP
    r["sql"] = fp is not None and ds == N_SQL
    pg = next((f for f in st["features"] if f["name"] == "pg_usdt"), {})
    # the API's requests each run their own statements through the server: at least N_SQL + 3 per request
    r["usdt"] = pg.get("state") == "running" and dq >= N_SQL + N_HTTP
    h = Hammer(f"http://127.0.0.1:{wl.api_port}/cpu?n=200000")
    h.start()
    for _ in range(3):
        cur.execute("SELECT count(*) FROM generate_series(1, 2000000)")
    sess = folded(L, "/debug/pprof/profile?seconds=2&hz=99&service=api&format=folded")
    time.sleep(1.5)
    h.halt.set()
    h.join()
    c.close()
    api = folded(L, "/debug/pprof/profile?window=1m&service=api&format=folded")
    pgp = folded(L, "/debug/pprof/profile?window=1m&service=postgres&format=folded")
    off = folded(L, "/debug/pprof/offcpu?window=1m&service=api&format=folded")
    r["py_frames"] = "app.count_primes" in api
    r["pg_frames"] = "PostgresMain" in pgp
    r["kernel"] = bool(re.search(r"(^|;)(__)?schedule[;\s]", off, re.M))
    r["session"] = bool(sess.strip())  # 200 with samples: perf events opened after the drop
    r["bpf_stats"] = any(n == "loupe_bpf_program_run_seconds_total" for n, _ in L.scrape())
    return r, (dh, ds, dq)


def doc_matrix():
    """docs/privileges.md's measured table: {run: {feature: bool}}."""
    rows, cols = {}, None
    try:
        text = open(DOC).read()
    except OSError:
        return rows
    sec = text.split("## Measured", 1)[-1]
    for ln in sec.splitlines():
        cells = [x.strip().strip("`") for x in ln.strip().strip("|").split("|")]
        if ln.startswith("| run"):
            cols = cells[1:]
        elif cols and ln.startswith("|") and not set(ln) <= set("|-: "):
            rows[cells[0]] = {c: v == "yes" for c, v in zip(cols, cells[1:])}
    return rows


def main():
    why = missing_requirements()
    if not why and not shutil.which("setpriv"):
        why = "setpriv (util-linux) missing"
    t = begin(NAMES, why)
    wl = Workload("privileges")
    L = None
    orig_stats = None
    try:
        try:
            pwd.getpwnam(USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
                           check=True)
        wl.start()
        targets = wl.own_targets()
        args = [*targets, "--pg-usdt-query", "--offcpu", "--bpf-stats", "always"]
        got = {}
        for k, run in enumerate(RUNS):
            caps = run_caps(run)
            L = Loupe(*args, prefix=setpriv(caps))
            res = {f: False for f in FEATURES}
            detail = ""
            try:
                L.start(timeout=25)
                res["starts"] = True
                meas, counts = measure(wl, L)
                res.update(meas)
                detail = f"http, sql, usdt deltas {counts}"
                if run == "set":
                    st = L.status()
                    running = all(f["state"] == "running" for f in st["features"])
                    # bpf_enable_stats() needs CAP_SYS_ADMIN, which the set leaves out (docs/privileges.md)
                    t.ok(running and all(v for f, v in res.items() if f != "bpf_stats"), NAMES[len(RUNS) + 1],
                         [(f["name"], f["state"], f.get("detail")) for f in st["features"]])
                    pc = proc_caps(L.proc.pid)
                    want = mask(kept_caps(st))
                    main_t = pc.get(str(L.proc.pid), {})
                    t.ok(main_t.get("CapEff") == want and main_t.get("CapPrm") == want and
                         main_t.get("CapInh") == 0 and main_t.get("CapAmb") == 0, NAMES[len(RUNS) + 2],
                         f"kept {kept_caps(st)}; status {main_t}")
                    t.ok(len(pc) > 1 and all(d.get("CapEff") == want and d.get("NoNewPrivs") == 1
                                             for d in pc.values()), NAMES[len(RUNS) + 3], pc)
            except RuntimeError as e:
                detail = str(e).splitlines()[0][:300] if str(e) else ""
                if run in ("set-bpf", "set-perfmon"):
                    detail += " | " + " ".join(ln for ln in L.stderr().splitlines() if "no_privileges" in ln)[:300]
            finally:
                L.stop()
                L = None
            got[run] = res
            t.ok(True, NAMES[k], f"{' '.join(f for f in FEATURES if res[f]) or 'nothing'}; {detail}")
        width = max(len(f) for f in FEATURES)
        t.note("measured (yes = works):")
        t.note(f"  {'run':18} " + " ".join(f"{f:>{width}}" for f in FEATURES))
        for run in RUNS:
            t.note(f"  {run:18} " + " ".join(f"{('yes' if got[run][f] else 'no'):>{width}}" for f in FEATURES))
        doc = doc_matrix()
        diff = [(run, f, got[run][f], doc.get(run, {}).get(f)) for run in RUNS for f in FEATURES
                if doc.get(run, {}).get(f) != got[run][f]]
        t.ok(not diff, NAMES[len(RUNS)], f"(run, feature, measured, documented) that differ: {diff}")

        # as root: everything dropped but what the running daemon uses
        with Loupe(*args) as L:
            st = L.status()
            pc = proc_caps(L.proc.pid)
            want = mask(kept_caps(st))
            t.ok(all(d.get("CapEff") == want and d.get("CapPrm") == want and d.get("CapBnd") == want and
                     d.get("CapInh") == 0 and d.get("CapAmb") == 0 and d.get("NoNewPrivs") == 1 for d in pc.values())
                 and st["privileges"]["uid"] == 0, NAMES[len(RUNS) + 4], f"kept {kept_caps(st)}; {pc}")
        L = Loupe(*targets, "--bpf-stats", "always", "--offcpu", "--user", "nobody")
        with L:
            st = L.status()
            pc = proc_caps(L.proc.pid)
            four = mask(["sys_ptrace", "dac_read_search", "perfmon", "syslog"])
            t.ok(all(d.get("Uid") == "65534" and d.get("CapEff") == four and d.get("CapPrm") == four
                     for d in pc.values()) and all(f["state"] == "running" for f in st["features"]),
                 NAMES[len(RUNS) + 5], f"{pc}; {[(f['name'], f['state']) for f in st['features']]}")
            wl.http_plan("GET /memories/1=5")
            t.ok(value(L.scrape(), "loupe_bpf_program_run_seconds_total", program="exec_btf") >= 0 and
                 any(n == "loupe_bpf_program_run_seconds_total" for n, _ in L.scrape()), NAMES[len(RUNS) + 6])
        t.eq(L.exit_code, 0, NAMES[len(RUNS) + 7])
        L = None

        # the host's sysctl as the fallback for bpf_enable_stats()
        orig_stats = open("/proc/sys/kernel/bpf_stats_enabled").read().strip()
        with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
            f.write("1")
        L = Loupe(*targets, prefix=setpriv(BASE))
        with L:
            m = L.scrape()
            t.ok(any(n == "loupe_bpf_program_run_seconds_total" for n, _ in m) and
                 "bpf_stats_host" in L.stderr(), NAMES[len(RUNS) + 8],
                 [ln for ln in L.stderr().splitlines() if "bpf_stats" in ln])
        L = None

        bad = subprocess.run([os.path.join(TOP, "build", "loupe"), "run", "--user", "no-such-user-loupe", *targets],
                             capture_output=True, text=True, timeout=60)
        t.ok(bad.returncode == 2 and "no-such-user-loupe" in bad.stderr, NAMES[len(RUNS) + 9],
             f"exit {bad.returncode}: {bad.stderr[-400:]}")
    finally:
        if orig_stats is not None:
            with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
                f.write(orig_stats)
        stop_all(t, wl, L)


if __name__ == "__main__":
    main()
