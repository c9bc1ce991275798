#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""tests/bench/costreport.py, the cost benchmark's report, on records this test writes with known figures: a goal is met
or missed only when its quartiles over rounds lie on one side of it (else unresolved); a goal met prints no
breakdown; a goal missed or unresolved prints where its cost goes, each figure the one the records imply (host CPU
added against the goal's budget, BPF run time per program group from (b), the dispatch of the capture hooks and of
the default's syscall windows, loupe's CPU and its functions, and the rest). Prints TAP."""
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loupe_test import Tap, TOP  # noqa: E402

t = Tap()

OFF_CPU = 20.0  # host CPU us per transaction in the off windows
TX = 100000     # transactions in a window
# host CPU us added per transaction, per condition (the same in every round, so the medians are these)
ADDED = {"floor": 1.0, "sockfloor": 0.2, "on": 3.0, "sampled": 1.5, "sysoff": 1.5}
LOUPE_US = {"on": 0.3, "sampled": 0.25, "sysoff": 0.25}
RATIO = {"floor": 0.95, "sockfloor": 0.99, "on": 0.85, "sampled": 0.93, "sysoff": 0.93}


def window(mode, cond, rnd, off_tps, wall=4.0, ratio=None):
    tps = off_tps * (RATIO[cond] if ratio is None else ratio)
    n = tps * wall
    return {"part": "p", "mode": mode, "cond": cond, "round": rnd, "tps": tps, "off_tps": off_tps,
            "transactions": n, "host_busy_s": (OFF_CPU + ADDED[cond]) * n / 1e6, "wall_s": wall,
            "loupe_cpu_s": LOUPE_US.get(cond, 0) * n / 1e6, "off_host_cpu_us": OFF_CPU}


recs = [{"part": "machine", "date": "test", "git": "test", "default_syscalls": "sampled", "busy_before_pct": 0}]
# TPC-B-like: --syscalls off at 0.98, 0.985, 0.995 and 1.0 in four rounds (quartiles 0.981 and 0.999 straddle
# 0.99: unresolved); sampled and on at 1.0 in every round (the default 1.0: met against 0.97)
TPCB_SYSOFF = [0.98, 0.985, 0.995, 1.0]
for rnd in (1, 2, 3, 4):
    for cond in ADDED:
        recs.append(window("select", cond, rnd, 40000.0))
        ratio = TPCB_SYSOFF[rnd - 1] if cond == "sysoff" else 1.0 if cond in ("sampled", "on") else None
        recs.append(window("tpcb", cond, rnd, 4000.0, ratio=ratio))
# (b) under pgbench -S with loupe's defaults: 2 pl_recv runs of 300 ns and 1 pl_send of 500 ns a transaction,
# 0.5 sys_enter/sys_exit runs of 100 ns (the windows), a profiler sample of 10 us every 1000 transactions.
recs.append({"part": "b", "kind": "bpf", "load": "pgbench-select", "mode": "default", "unit": "transactions",
             "requests": TX, "progs": [
                 {"name": "pl_recv_btf", "runs": 2 * TX, "run_time_ns": 2 * TX * 300},
                 {"name": "pl_send_btf", "runs": TX, "run_time_ns": TX * 500},
                 {"name": "sys_enter_btf", "runs": TX // 2, "run_time_ns": TX // 2 * 100},
                 {"name": "sys_exit_btf", "runs": TX // 2, "run_time_ns": TX // 2 * 100},
                 {"name": "prof_sample", "runs": TX // 1000, "run_time_ns": TX // 1000 * 10000},
                 {"name": "exec_btf", "runs": 0, "run_time_ns": 0}]})
recs.append({"part": "b", "kind": "perf", "load": "pgbench-select", "mode": "default",
             "top": ["99.00%     0.10%  [.] daemon__run   -   -"],
             "self": ["40.00%  [.] consume   -   -", "20.00%  [.] on_record   -   -", "10.00%  [k] finish_task_switch   -   -",
                      "5.00%  [.] series_get   -   -"]})

with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
    for r in recs:
        f.write(json.dumps(r) + "\n")
    path = f.name
p = subprocess.run(["/usr/bin/python3", os.path.join(TOP, "tests", "bench", "costreport.py"), path],
                   capture_output=True, text=True)
os.unlink(path)
out = p.stdout
t.eq(p.returncode, 0, "the report runs")
goals = out[out.find("## goals"):out.find("\nsummary:")]


def block(name):
    """The lines of one goal: its line and its breakdown's."""
    m = re.search(r"^  (MET|MISSED|UNRESOLVED) +" + re.escape(name) + r".*?(?=^  [A-Z]|\Z)", goals, re.S | re.M)
    return m.group(0) if m else ""


def num(text, pattern):
    m = re.search(pattern, text)
    return float(m.group(1)) if m else None


off = block("pgbench select with --syscalls off >= 0.99")
dflt = block("pgbench select with loupe's default >= 0.97")
t.ok(off.startswith("  MISSED") and "0.930 [0.930, 0.930]" in off, "sysoff at 0.93 is missed against 0.99", off)
t.ok(dflt.startswith("  MISSED"), "the default (0.9 x 0.93 + 0.1 x 0.85 = 0.922) is missed against 0.97", dflt)

# sysoff: 1.5 us added of 20; budget 20 x (1/0.99 - 1) = 0.202
t.eq(num(off, r"added per transaction: \+([0-9.]+) us \[1\.50, 1\.50\] of 20\.0"), 1.5, "sysoff: host CPU added per transaction")
t.eq(num(off, r"the goal allows ([0-9.]+) us"), 0.2, "sysoff: the goal's budget, 20 x (1/0.99 - 1)")
# BPF: capture 2 x 300 + 500 = 1.1 us; no syscall programs with --syscalls off; other 0.01 us
t.eq(num(off, r"capture programs ([0-9.]+) us"), 1.1, "sysoff: the capture programs' run time per transaction")
t.ok("syscall windows" not in off, "sysoff: no syscall programs counted (none is attached)", off)
t.eq(num(off, r"other programs ([0-9.]+) us"), 0.01, "sysoff: the other programs' run time")
t.eq(num(off, r"dispatch of the capture hooks .*?: ([0-9.]+) us"), 0.2, "sysoff: the capture hooks' dispatch (sockfloor)")
t.ok("syscall hooks in the default" not in off, "sysoff: no syscall windows' dispatch", off)
t.eq(num(off, r"loupe's own CPU: ([0-9.]+) us"), 0.25, "sysoff: loupe's CPU per transaction")
t.ok(re.search(r"consume 40% 0\.100, on_record 20% 0\.050, series_get 5% 0\.013", off) is not None,
     "sysoff: loupe's functions by self time, as us per transaction (its own code; the kernel's apart)", off)
t.ok("the kernel on its behalf 10%" in off, "sysoff: the kernel's share of loupe's samples", off)
# rest: 1.5 - (1.1 + 0.01 + 0.2 + 0.25) = -0.06
t.eq(num(off, r"the rest .*?: ([+-][0-9.]+) us"), -0.06, "sysoff: the rest is what the parts leave of the added CPU")

# default: 0.9 x 1.5 + 0.1 x 3.0 = 1.65 added; budget 20 x (1/0.97 - 1) = 0.619; the syscall programs 0.1 us;
# the windows' dispatch 0.1 x the floor's 1.0; loupe 0.25 (sampled's)
t.eq(num(dflt, r"added per transaction: \+([0-9.]+) us"), 1.65, "default: host CPU added, duty-weighted")
t.eq(num(dflt, r"the goal allows ([0-9.]+) us"), 0.62, "default: the goal's budget, 20 x (1/0.97 - 1)")
t.eq(num(dflt, r"syscall windows programs ([0-9.]+) us"), 0.1, "default: the syscall programs of its windows")
t.eq(num(dflt, r"dispatch of the syscall hooks in the default's windows .*?: ([0-9.]+) us"), 0.1,
     "default: the syscall hooks' dispatch over its windows (0.1 x the floor)")
# rest: 1.65 - (1.1 + 0.1 + 0.01 + 0.2 + 0.1 + 0.25) = -0.11
t.eq(num(dflt, r"the rest .*?: ([+-][0-9.]+) us"), -0.11, "default: the rest")

# Quartiles on both sides of a goal: unresolved, and broken down; a goal met: no breakdown.
tpcb_off = block("pgbench tpcb with --syscalls off >= 0.99")
tpcb_dflt = block("pgbench tpcb with loupe's default >= 0.97")
t.ok(tpcb_off.startswith("  UNRESOLVED") and "host CPU added per transaction" in tpcb_off,
     "quartiles straddling the goal (0.981 and 0.999 against 0.99): unresolved, with its breakdown", tpcb_off)
t.ok(tpcb_dflt.startswith("  MET") and "host CPU added" not in tpcb_dflt,
     "the default at 1.000 in every round: met against 0.97, no breakdown", tpcb_dflt)

# A run without (a) or (w) has no goal of theirs.
t.ok("API" not in goals and "WebSocket" not in goals, "no goal of a part that did not run", goals)
t.done()
