#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""Every BPF object loads and attaches on this kernel (root): the feature probes of `loupe check`
(bpf/probe.bpf.c), and targets + syscalls (bpf/targets.bpf.c, bpf/syscalls.bpf.c) with each tracepoint flavour
(auto, tp_btf and the raw_tp fallback forced with --tracepoints raw_tp). Checked from outside: the programs and
links the loupe process holds (/proc/PID/fdinfo + bpftool), what they attach to, that each one runs, and what
/status and loupe_feature_enabled say. Ground truth for the data under each flavour: test_syscall_latency.py.
"""
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loupe_test import Loupe, Tap, is_root, value, wait_for  # noqa: E402
from bpf_support import (BLOCKER, CORE_PROG_NAMES, LOUPE_PROG_NAMES, Blocker, Workdir, bpf_fds, guarded,  # noqa: E402
                         kill_all, live_links, live_progs, new_tag, run_cli)

TRACEPOINTS = {"sched_process_fork", "sched_process_exec", "sched_process_exit", "sys_enter", "sys_exit",
               "inet_sock_set_state", "tcp_retransmit_skb", "tcp_send_reset", "tcp_receive_reset", "sock_recv_length",
               "sock_send_length"}
FEATURES = ("targets", "syscalls", "tcp", "payload")
PERF_EVENT_PROGS = {"prof_sample", "prof_session"}  # the continuous profile's; sessions attach their own


def test_check(t):
    before = {i for i, p in live_progs().items() if p.get("name", "").startswith("probe_")}
    rc, out, err, secs = run_cli(["check", "--json"])
    try:
        j = json.loads(out)
    except ValueError:
        t.ok(False, "loupe check --json runs", out + err)
        return None
    k, f = j["kernel"], j["features"]
    t.ok(rc == 0 and j["can_run"], "loupe check: loupe can run on this kernel (exit 0)", j)
    t.ok(all(f.get(n, {}).get("runs") for n in FEATURES), "loupe check: targets and syscalls features are runnable", f)
    want_hook = "tp_btf" if k["tp_btf"]["ok"] else "raw_tp"
    t.ok(all(f.get(n, {}).get("hook") == want_hook for n in FEATURES),
         f"loupe check: features use {want_hook} (tp_btf when the kernel supports it)", f)
    # Facts of the machines this project runs on (DESIGN.md §1): tp_btf, raw_tp, perf events, uprobes work.
    facts = {n: k[n]["ok"] for n in ("btf", "tp_btf", "raw_tp", "uprobe", "perf_event", "ring_buffer")}
    t.ok(all(facts.values()), "loupe check: btf, tp_btf, raw_tp, uprobe, perf_event, ring_buffer all load here "
         "(bpf/probe.bpf.c programs load and attach)", facts)

    def new_probes():
        return {i for i, p in live_progs().items() if p.get("name", "").startswith("probe_")} - before
    t.ok(wait_for(lambda: not new_probes(), timeout=2), "loupe check leaves no probe_* program loaded",
         sorted(new_probes()))
    return k


def test_flavour(t, w, tag, flavour, kernel):
    want = flavour if flavour != "auto" else ("tp_btf" if kernel and kernel["tp_btf"]["ok"] else "raw_tp")
    label = f"--tracepoints {flavour}"
    comm = f"lpo{tag}"
    args = ["--target", f"obj=comm:^{comm}$"] + ([] if flavour == "auto" else ["--tracepoints", flavour])
    procs = []
    try:
        with Loupe(*args) as L:
            st = L.status()
            feats = {x["name"]: x for x in st["features"]}
            # pg_usdt is off here (no postgres among the targets): tests/e2e/test_pgusdt.py covers it
            t.ok(set(feats) >= set(FEATURES) and all(feats[n]["state"] == "running" for n in FEATURES),
                 f"{label}: /status reports every feature running", st["features"])
            t.ok(all(feats.get(n, {}).get("hook") == want for n in FEATURES), f"{label}: /status hook is {want}",
                 st["features"])
            if kernel:
                t.ok(st["kernel"] == {n: v["ok"] for n, v in kernel.items()},
                     f"{label}: /status kernel features agree with loupe check", (st["kernel"], kernel))
            m = L.scrape()
            en = {n: value(m, "loupe_feature_enabled", default=-1, feature=n, hook=want) for n in FEATURES}
            t.ok(all(v == 1 for v in en.values()), f"{label}: loupe_feature_enabled{{hook={want}}} is 1 per feature", en)

            progs, links = bpf_fds(L.proc.pid)
            lp, ll = live_progs(), live_links()
            names = {lp[i]["name"] for i in progs if i in lp}
            t.ok(names == LOUPE_PROG_NAMES[want],
                 f"{label}: loupe holds exactly the {want} programs {sorted(LOUPE_PROG_NAMES[want])}", sorted(names))
            lk = [ll[i] for i in links if i in ll]
            perf = [l for l in lk if l.get("type") == "perf_event"]  # the profiler's cpu-clock events
            tpl = [l for l in lk if l.get("type") != "perf_event"]
            tps = {l.get("tp_name") for l in tpl}
            t.ok(len(tpl) == len(names - PERF_EVENT_PROGS) and tps == TRACEPOINTS and
                 all(l.get("prog_id") in progs for l in lk),
                 f"{label}: one link per tracepoint program, to the tracepoints {sorted(TRACEPOINTS)}", tpl)
            t.ok(len(perf) == len(os.sched_getaffinity(0)) and
                 {lp.get(l.get("prog_id"), {}).get("name") for l in perf} == {"prof_sample"},
                 f"{label}: the CPU profiler is attached to one perf event per CPU", perf)

            # Make every hook fire for a target: fork (child), exec (the blocker itself), exit, syscalls.
            p = Blocker(w.link(comm), "--fork", "--count", 1)
            procs.append(p)
            wait_for(lambda: L.status()["targets"].get("obj") == 1, timeout=5)
            p.go()
            r = p.finish()
            m = L.scrape()
            runs = {n: value(m, "loupe_bpf_program_runs_total", default=0, program=n) for n in CORE_PROG_NAMES[want]}
            t.ok(r["rc"] == 0 and all(v > 0 for v in runs.values()), f"{label}: every program has run",
                 f"{runs}; helper {r}")
            cnt = value(m, "loupe_syscall_duration_seconds_count", service_name="obj", syscall="clock_nanosleep")
            t.ok(cnt == 1, f"{label}: the data path works (1 clock_nanosleep of the target counted)", cnt)
            t.ok(not [x for x in st.get("drops", {}).values() if x], f"{label}: no drops reported", st.get("drops"))
    finally:
        kill_all(procs)


def main():
    t = Tap()
    if not is_root():
        for n in ("loupe check: loupe can run", "loupe check: features runnable", "loupe check: probe objects load",
                  "loupe check leaves nothing loaded", "--tracepoints auto: objects load and attach",
                  "--tracepoints tp_btf: objects load and attach", "--tracepoints raw_tp: objects load and attach"):
            t.skip(n, "needs root: loads BPF programs")
        t.done()
    if not shutil.which("bpftool"):
        t.skip("BPF objects load and attach", "bpftool not installed: cannot inspect loaded programs")
        t.done()
    if not os.access(BLOCKER, os.X_OK):
        t.ok(False, "helper build/tests/blocker exists", "run `make tests` first")
        t.done()
    kernel = guarded(t, "test_check ran to completion", test_check, t)
    tag = new_tag()
    with Workdir() as w:
        for flavour in ("auto", "tp_btf", "raw_tp"):
            guarded(t, f"--tracepoints {flavour}: checks ran to completion", test_flavour, t, w, tag, flavour, kernel)
    t.done()


if __name__ == "__main__":
    main()
