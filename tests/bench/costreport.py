#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""The report of scripts/bench-cost.sh: costreport.py RECORDS.jsonl

Every figure is a median over rounds of a quantity paired within its round (a condition against "off" measured
minutes apart in the same round; in parts p, a and w, against the off windows just before and after the
condition's, seconds apart), with its quartiles over rounds in brackets. "default" is loupe's default
--syscalls mode; when that is sampled, its figure is the duty-weighted one (0.9 x sampled measured outside the
windows + 0.1 x on, per round)."""
import json
import statistics
import sys

CONDS = ["floor", "sockfloor", "on", "sampled", "sysoff", "nocapture", "noprofile", "bare", "basesysoff"]
# (b)'s loads: what each is and its unit. Records without a mode (before 2026-12-06 22:00) ran the API with
# loupe's defaults and pgbench -S (load "pgbench") with --syscalls off; the host rounds still do.
LOADS = {"api": ("the API load", "request", "default"),
         "pgbench": ("pgbench -S", "transaction", "off"),
         "pgbench-select": ("pgbench -S", "transaction", "default"),
         "pgbench-tpcb": ("pgbench TPC-B-like", "transaction", "default")}
# The (b) load that breaks down each throughput goal's part and mode.
GOAL_LOAD = {("p", "select"): "pgbench-select", ("p", "tpcb"): "pgbench-tpcb", ("a", None): "api"}
DUTY = 0.1  # include/syscalls.h: SYSCALL_SAMPLE_ON_MS / SYSCALL_SAMPLE_PERIOD_MS


def quart(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None, None, None
    if len(xs) < 4:
        return statistics.median(xs), xs[0], xs[-1]
    q = statistics.quantiles(xs, n=4)
    return statistics.median(xs), q[0], q[2]


def fmt(t, spec):
    m, lo, hi = t
    if m is None:
        return "-"
    return f"{m:{spec}} [{lo:{spec}}, {hi:{spec}}]"


def by_round(recs, key):
    """{round: {cond: value}}"""
    out = {}
    for r in recs:
        v = key(r)
        if v is not None:
            out.setdefault(r["round"], {})[r["cond"]] = v
    return out


def cond_of(mode):
    """The condition that runs loupe in --syscalls MODE."""
    return "sysoff" if mode == "off" else mode


def paired(rounds, cond, op, default_mode):
    """Per round op(cond value, off value); cond "default" is the default mode (weighted when sampled)."""
    vals = []
    for conds in rounds.values():
        if "off" not in conds:
            continue
        if cond == "default" and default_mode == "sampled":
            if "sampled" in conds and "on" in conds:
                vals.append((1 - DUTY) * op(conds["sampled"], conds["off"]) + DUTY * op(conds["on"], conds["off"]))
            continue
        c = cond_of(default_mode) if cond == "default" else cond
        if c in conds:
            vals.append(op(conds[c], conds["off"]))
    return vals


def perf_under(r, load):
    """A perfunder record: the BPF programs' share of the host's samples under a load, and their functions."""
    print(f"\n## ({r['part']}) where the capture programs' time goes under {load}: the host, perf -a -g, cpu-clock")
    print(f"  samples through {r['root']} (the socket tracepoints' call into BPF): {r['share_pct']:.2f}% of all "
          f"{r['samples']} samples")
    print(f"  {'inclusive':>9} {'self':>7}  function (% of those samples; counted only below {r['root']})")
    for f in r["funcs"]:
        print(f"  {f['incl_pct']:8.1f}% {f['self_pct']:6.1f}%  {f['name']}")


def verdict(q, ok):
    """MET or MISSED when the quartiles (or, with fewer than 4 rounds, the extremes) both pass or both fail the goal
    test ok, UNRESOLVED when they straddle it: a median alone on the right side of a goal does not meet it."""
    m, lo, hi = q
    if m is None:
        return "UNRESOLVED"
    passes = [ok(x) for x in (lo, hi)]
    return "MET" if all(passes) else "MISSED" if not any(passes) else "UNRESOLVED"


def load_title(r):
    """(b)'s load of a record, with the mode loupe ran in."""
    what, unit, mode = LOADS.get(r.get("load", "api"), LOADS["api"])
    mode = r.get("mode", mode)
    return f"{what}, " + ("loupe's defaults" if mode == "default" else f"--syscalls {mode}"), unit


def self_funcs(lines, n=8):
    """From a perf self listing of loupe: its own functions by self time, [(name, pct)] (at most n), and the kernel's
    share (the [k] lines: the reader's syscalls and their scheduling)."""
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) < 3 or not parts[0].endswith("%"):
            continue
        out.append((parts[2] if parts[1] in ("[.]", "[k]") else parts[1], float(parts[0].rstrip("%")), parts[1] == "[k]"))
    user = [(nm, pct) for nm, pct, k in out if not k]
    kern = sum(pct for nm, pct, k in out if k)
    return user[:n], kern


def breakdown(g, summary, bpf, perf, dmode):
    """Where the cost of a throughput goal not met (missed or unresolved) goes, all from this run: host CPU added per unit against the goal's
    budget, BPF run time per program ((b), --bpf-stats always), the hooks' dispatch (sockfloor, and the floor over
    the default's windows), loupe's own CPU and its functions ((b)'s perf), and what is left."""
    part, script, cond, goal, unit = g["part"], g["script"], g["cond"], g["goal_ratio"], g["unit"]
    fig = summary.get(part, {}).get(script or "all", {})
    off_cpu = fig.get("off_host_cpu_us")
    added = (fig.get(cond) or {}).get("host_cpu_added_us")
    if off_cpu is None or added is None:
        print("      (no host CPU figures for this goal in the run)")
        return
    budget = off_cpu * (1 / goal - 1)
    q = (fig.get(cond) or {}).get("host_cpu_added_q")
    print(f"      host CPU added per {unit}: {added:+.2f} us" + (f" [{q[1]:.2f}, {q[2]:.2f}]" if q else "")
          + f" of {off_cpu:.1f} (off); the goal allows {budget:.2f} us")
    parts = []
    load = GOAL_LOAD.get((part, script))
    b = bpf.get(load)
    if b and b.get("requests"):
        n = b["requests"]
        progs = [p for p in b["progs"] if p["runs"]]
        if cond == "sysoff":  # no syscall hook is attached with --syscalls off
            progs = [p for p in progs if not p["name"].startswith("sys_")]
        groups = {}
        for p in progs:
            grp = ("capture" if p["name"].startswith("pl_") else "syscall windows" if p["name"].startswith("sys_")
                   else "other")
            groups.setdefault(grp, []).append(p)
        print(f"      BPF run time per {unit} ((b) under {load_title(b)[0]}, --bpf-stats always, whose own clock reads it "
              "includes):")
        for grp in ("capture", "syscall windows", "other"):
            ps = groups.get(grp)
            if not ps:
                continue
            us = sum(p["run_time_ns"] for p in ps) / n / 1e3
            parts.append(us)
            detail = ", ".join(f"{p['name']} {p['runs'] / n:.2f} runs x {p['run_time_ns'] / p['runs']:.0f} ns"
                               for p in sorted(ps, key=lambda p: -p["run_time_ns"])[:3])
            print(f"        {grp} programs {us:.2f} us: {detail}")
    else:
        print(f"      BPF: no (b) record of {load} in this run")
    disp = (fig.get("sockfloor") or {}).get("host_cpu_added_us")
    if disp is not None:
        parts.append(disp)
        q = fig["sockfloor"].get("host_cpu_added_q")
        print(f"      dispatch of the capture hooks (sockfloor: empty programs on them): {disp:.2f} us"
              + (f" [{q[1]:.2f}, {q[2]:.2f}]" if q else ""))
    if cond == "default" and dmode == "sampled":
        fl = (fig.get("floor") or {}).get("host_cpu_added_us")
        if fl is not None:
            parts.append(DUTY * fl)
            print(f"      dispatch of the syscall hooks in the default's windows ({DUTY:g} x the floor): {DUTY * fl:.2f} us")
    lus = (fig.get(cond) or {}).get("loupe_us_per_unit")
    if lus is not None:
        parts.append(lus)
        line = f"      loupe's own CPU: {lus:.2f} us"
        pf = perf.get(load)
        if pf and pf.get("self"):
            funcs, kern = self_funcs(pf["self"])
            line += "; by function (self time in (b)'s perf, as us per " + unit + "): " + ", ".join(
                f"{nm} {pct:.0f}% {lus * pct / 100:.3f}" for nm, pct in funcs)
            line += f"; the kernel on its behalf {kern:.0f}%"
        print(line)
    if parts:
        print(f"      the rest (cache and scheduling effects, noise): {added - sum(parts):+.2f} us")


def main(path):
    recs = [json.loads(line) for line in open(path) if line.strip()]
    machine = next((r for r in recs if r.get("part") == "machine"), {})
    dmode = machine.get("default_syscalls") or "on"
    present = {r.get("cond") for r in recs}
    need = {"on", "sampled"} if dmode == "sampled" else {cond_of(dmode)}  # the conditions "default" is made of
    conds = [c for c in CONDS if c in present] + (["default"] if need <= present else [])
    goals = []
    summary = {"default_syscalls": dmode}
    print(f"# Cost benchmark, {machine.get('date', '?')}, git {machine.get('git', '?')}, Linux {machine.get('kernel', '?')}, "
          f"{machine.get('nproc', '?')} CPUs; loupe's default: --syscalls {dmode}")
    if machine.get("busy_before_pct") is not None:
        b = machine["busy_before_pct"]
        print(f"# the host was {b}% busy before the benchmark began" + (" (not quiet: noisy figures)" if b >= 10 else ""))
    print("# median over rounds of the per-round difference (or ratio) against off, [quartiles]")

    m = [r for r in recs if r.get("part") == "m" and "wl" in r and "kind" not in r]
    if m:
        print("\n## (m) micro-workloads: ns added per operation (wall), host CPU ns added per operation")
        for wl, unit in (("syscall_u", "syscall (untargeted)"), ("syscall_t", "syscall (targeted)"),
                         ("sock_u", "socket write + read, Unix socketpair (untargeted)"),
                         ("http", "HTTP request"), ("pg", "SQL statement")):
            rs = [r for r in m if r["wl"] == wl]
            if not rs:
                continue
            wall = by_round(rs, lambda r: r["wall_ns_per_op"])
            host = by_round(rs, lambda r: r["host_cpu_ns_per_op"])
            base = quart([c["off"] for c in wall.values() if "off" in c])
            print(f"\n{unit}: off {fmt(base, '.0f')} ns per operation")
            print(f"  {'condition':9} {'ns added (wall)':>28} {'host CPU ns added':>30}")
            for c in conds:
                a = quart(paired(wall, c, lambda x, y: x - y, dmode))
                h = quart(paired(host, c, lambda x, y: x - y, dmode))
                label = c if c != "default" else f"default ({dmode})"
                print(f"  {label:9} {fmt(a, '10.1f'):>28} {fmt(h, '10.0f'):>30}")
                summary.setdefault("m", {}).setdefault(wl, {})[c] = {"wall_added_ns": a[0], "host_cpu_added_ns": h[0]}
            if wl == "syscall_u":
                floor_r = {k: v for k, v in wall.items() if "floor" in v and "off" in v}
                ratios = []
                for k, v in floor_r.items():
                    fl = v["floor"] - v["off"]
                    if fl <= 0:
                        continue
                    if dmode == "sampled" and "sampled" in v and "on" in v:
                        add = (1 - DUTY) * (v["sampled"] - v["off"]) + DUTY * (v["on"] - v["off"])
                    elif cond_of(dmode) in v:
                        add = v[cond_of(dmode)] - v["off"]
                    else:
                        continue
                    ratios.append(add / fl)
                q = quart(ratios)
                print(f"  untargeted syscall, loupe's default over the floor: {fmt(q, '.2f')}")
                goals.append(("untargeted syscall cost <= 1.2x the floor (default mode)", q, lambda x: x <= 1.2))
        counts = [r for r in recs if r.get("part") == "m" and r.get("kind") == "count"]
        if counts:
            exact = sum(r["want"] == r["got"] for r in counts)
            print(f"\nloupe's counts of the pairs' requests and statements: exact in {exact} of {len(counts)} runs"
                  + "".join(f"\n  {r['cond']} round {r['round']} {r['wl']}: {r['got']} of {r['want']}"
                            f" ({r.get('drops', '?')} capture records dropped, counted in loupe_events_dropped_total)"
                            for r in counts if r["want"] != r["got"]))
        print("\nloupe's own CPU per operation, warm-up included (us; its threads' schedstat run time over the workload)")
        for wl in ("http", "pg"):
            cells = []
            for c in ("on", "sampled", "sysoff"):
                xs = [r["loupe_cpu_s"] / (r["ops"] + r["warmup_ops"]) * 1e6 for r in m if r["wl"] == wl and r["cond"] == c and "loupe_cpu_s" in r]
                if xs:
                    cells.append(f"{c} {fmt(quart(xs), '.2f')}")
                    summary.setdefault("m_loupe_cpu_us_per_op", {}).setdefault(wl, {})[c] = quart(xs)[0]
            print(f"  {wl}: " + "; ".join(cells))

    def throughput(part, key, name, unit_key, unit_name, goal_default=None, goal_sysoff=None, modes=(None,)):
        rs = [r for r in recs if r.get("part") == part]
        for mode in modes:
            ms = [r for r in rs if mode is None or r.get("mode") == mode]
            if not ms:
                continue
            label = name if mode is None else f"{name} {mode}"
            loupe = by_round(ms, lambda r: 100 * r["loupe_cpu_s"] / r["wall_s"] if r.get("wall_s") else None)
            loupe_unit = by_round(ms, lambda r: r["loupe_cpu_s"] / r[unit_key] * 1e6 if r.get(unit_key) else None)
            cpu_of = lambda r: (r["host_busy_s"] / r[unit_key] * 1e6) if r.get(unit_key) else None
            # Windows of one run (parts p, a and w): each condition's record carries its own off baseline, the off
            # windows beside it. As rounds whose off is the unit, paired() reads them like the others.
            off_key = "off_" + key
            tput, cpu = {}, {}
            for r in ms:
                if r.get(key) and r.get(off_key):
                    tput.setdefault(r["round"], {"off": 1.0})[r["cond"]] = r[key] / r[off_key]
                if cpu_of(r) is not None and r.get("off_host_cpu_us") is not None:
                    cpu.setdefault(r["round"], {"off": 0.0})[r["cond"]] = cpu_of(r) - r["off_host_cpu_us"]
            base = quart([r[off_key] for r in ms if r.get(off_key)])
            cbase = quart([r["off_host_cpu_us"] for r in ms if r.get("off_host_cpu_us") is not None])
            print(f"\n{label}: off {fmt(base, '.0f')} per s; host CPU {fmt(cbase, '.1f')} us per {unit_name}")
            summary.setdefault(part, {}).setdefault(mode or "all", {})["off_host_cpu_us"] = cbase[0]
            print(f"  {'condition':9} {'throughput ratio':>24} {'host CPU us added per ' + unit_name:>34} {'loupe CPU %':>12}"
                  f" {'loupe us per ' + unit_name:>22}")
            for c in conds:
                rr = quart(paired(tput, c, lambda x, y: x / y, dmode))
                ca = quart(paired(cpu, c, lambda x, y: x - y, dmode))
                lk = cond_of(dmode) if c == "default" else c
                no_loupe = c in ("floor", "sockfloor")  # loupe does not run: the empty programs' own process
                lcpu = [v[lk] for v in loupe.values() if lk in v] if not no_loupe else []
                lq = statistics.median(lcpu) if lcpu else None
                lu = quart([v[lk] for v in loupe_unit.values() if lk in v] if not no_loupe else [])
                lab = c if c != "default" else f"default ({dmode})"
                print(f"  {lab:9} {fmt(rr, '.3f'):>24} {fmt(ca, '.2f'):>34} {'-' if lq is None else f'{lq:.2f}':>12}"
                      f" {fmt(lu, '.2f'):>22}")
                summary.setdefault(part, {}).setdefault(mode or "all", {})[c] = {
                    "ratio": rr[0], "host_cpu_added_us": ca[0], "loupe_cpu_pct": lq, "loupe_us_per_unit": lu[0],
                    "ratio_q": rr, "host_cpu_added_q": ca, "loupe_us_q": lu}
                if c == "default" and goal_default:
                    goals.append((f"{label} with loupe's default >= {goal_default}", rr, lambda x, g=goal_default: x >= g,
                                  {"part": part, "script": mode, "cond": "default", "goal_ratio": goal_default, "unit": unit_name}))
                    if part == "a":
                        goals.append(("loupe's own CPU under the API load < 1% of a core", quart(lcpu), lambda x: x < 1))
                if c == "sysoff" and goal_sysoff:
                    goals.append((f"{label} with --syscalls off >= {goal_sysoff}", rr, lambda x, g=goal_sysoff: x >= g,
                                  {"part": part, "script": mode, "cond": "sysoff", "goal_ratio": goal_sysoff, "unit": unit_name}))
            # An A/A check of the run's resolution: between its windows, --syscalls sampled runs the programs
            # --syscalls off runs (since 04c18a8 neither syscall hook is attached there), so their ratio per round
            # would be 1 on a machine without noise.
            aa = [v["sampled"] / v["sysoff"] for v in tput.values() if v.get("sampled") and v.get("sysoff")]
            if aa:
                q = quart(aa)
                print(f"  A/A: sampled (between its windows) / sysoff, the same programs, per round: {fmt(q, '.3f')};"
                      f" a difference of this size between two conditions here is noise")
                summary.setdefault(part, {}).setdefault(mode or "all", {})["aa_sampled_over_sysoff"] = q[0]
            bb = [v["sysoff"] / v["basesysoff"] for v in tput.values() if v.get("sysoff") and v.get("basesysoff")]
            if bb:
                q = quart(bb)
                print(f"  this build / the --base build, both --syscalls off, per round: {fmt(q, '.3f')}")
                summary.setdefault(part, {}).setdefault(mode or "all", {})["sysoff_over_base"] = q[0]
            lb = [v["sysoff"] / v["basesysoff"] for v in loupe_unit.values() if v.get("sysoff") and v.get("basesysoff")]
            if lb:
                q = quart(lb)
                print(f"  loupe's CPU per {unit_name}, this build / the --base build, per round: {fmt(q, '.3f')}")
                summary.setdefault(part, {}).setdefault(mode or "all", {})["loupe_sysoff_over_base"] = q[0]

    if any(r.get("part") == "p" for r in recs):
        print("\n## (p) pgbench, 4 clients, -M prepared: each condition in windows of one run, against the off windows beside it")
        throughput("p", "tps", "pgbench", "transactions", "transaction", 0.97, 0.99, modes=("select", "tpcb"))
    if any(r.get("part") == "a" for r in recs):
        print("\n## (a) reference API under wrk (mix)")
        throughput("a", "rps", "API", "requests", "request", 0.98)
    if any(r.get("part") == "w" for r in recs):
        print("\n## (w) WebSocket echo")
        throughput("w", "messages_per_s", "WebSocket", "messages", "message", 0.97)

    cperf = [r for r in recs if r.get("part") == "c" and r.get("kind") in ("perf", "perfunder")]
    c = [r for r in recs if r.get("part") == "c" and r.get("kind") not in ("perf", "perfunder")]
    if c:
        builds = [x for x in ("new", "base") if any(r["build"] == x for r in c)]
        print("\n## (c) capture programs' run time per record: pinned pairs, both ends targets, --syscalls off "
              "--bpf-stats always")
        print("  build: new is this tree's loupe" + (", base the --base binary" if "base" in builds else ""))
        print(f"  {'pair':5} {'program':14} {'build':5} {'runs/op':>8} {'ns/run':>22}")
        for wl in ("http", "pg"):
            rs = [r for r in c if r["wl"] == wl]
            names = sorted({p["name"] for r in rs for p in r["progs"] if p["runs"]})
            for name in names:
                for bld in builds:
                    ps = [(r, p) for r in rs if r["build"] == bld for p in r["progs"] if p["name"] == name and p["runs"]]
                    runs = quart([p["runs"] / r["ops"] for r, p in ps])
                    ns = quart([p["run_time_ns"] / p["runs"] for r, p in ps])
                    print(f"  {wl:5} {name:14} {bld:5} {runs[0] or 0:8.2f} {fmt(ns, '.0f'):>22}")
            per_op = {}
            for r in rs:
                per_op.setdefault(r["round"], {})[r["build"]] = sum(p["run_time_ns"] for p in r["progs"]) / r["ops"]
            tot = {bld: quart([v[bld] for v in per_op.values() if bld in v]) for bld in builds}
            line = ", ".join(f"{bld} {fmt(tot[bld], '.0f')}" for bld in builds)
            entry = {bld: tot[bld][0] for bld in builds}
            if "base" in builds:
                ratio = quart([v["new"] / v["base"] for v in per_op.values() if "new" in v and "base" in v and v["base"]])
                line += f"; new/base per round {fmt(ratio, '.3f')}"
                entry["ratio"] = ratio[0]
            print(f"  {wl:5} capture ns per operation (both programs): {line}")
            summary.setdefault("c", {})[wl] = entry
    for r in cperf:
        if r.get("kind") == "perfunder":
            perf_under(r, "the PostgreSQL pair")
            continue
        # Records made before 2026-12-06 14:30: a function's share of all samples, the TCP stack's calls included.
        print("\n## (c) where a capture's time goes: the host under the PostgreSQL pair, loupe --syscalls off (perf -a, "
              "cpu-clock, inclusive % of all samples, self %)")
        run3 = next((float(line.split("%")[0]) for line in r["top"] if line.endswith("bpf_trace_run3")), None)
        if run3:
            print("  the last column: % of bpf_trace_run3's inclusive time (the tracepoints' call into the programs)")
        for line in r["top"]:
            share = f"{float(line.split('%')[0]) / run3 * 100:6.1f}%" if run3 else ""
            print(f"  {line:60} {share}")

    b = [r for r in recs if r.get("part") == "b"]
    bperf, bloupe, bpf_of, perf_of = [], [], {}, {}
    for r in b:
        title, unit = load_title(r)
        if r.get("kind") == "bpf":
            bpf_of[r.get("load", "api")] = r
            n = r.get("requests") or 0
            print(f"\n## (b) BPF run time per program under {title} ({n} {unit}s, --bpf-stats always)")
            print(f"  {'program':18} {'runs/' + unit:>13} {'ns/run':>8} {'us/' + unit:>11}")
            tot = 0
            for p in sorted(r["progs"], key=lambda p: -p["run_time_ns"]):
                if not p["runs"]:
                    continue
                tot += p["run_time_ns"]
                print(f"  {p['name']:18} {p['runs'] / n if n else 0:13.1f} {p['run_time_ns'] / p['runs']:8.0f} "
                      f"{p['run_time_ns'] / n / 1e3 if n else 0:11.2f}")
            print(f"  {'total':18} {'':13} {'':8} {tot / n / 1e3 if n else 0:11.2f}")
        elif r.get("kind") == "perfunder":
            bperf.append(r)
        elif r.get("kind") == "hostloupe":
            bloupe.append(r)
        elif r.get("kind") == "perf":
            perf_of[r.get("load", "api")] = r
            print(f"\n## (b) loupe's CPU by function under {title} (perf, DWARF call chains: inclusive %, self %)")
            for line in r["top"]:
                print("  " + line)
            if r.get("self"):
                print(f"\n## (b) loupe's CPU by function under {title}: self time (perf, the functions at 1% or more)")
                for line in r["self"]:
                    print("  " + line)

    if bperf:
        load = load_title(bperf[0])[0]
        builds = [x for x in ("new", "base") if any(r.get("build", "new") == x for r in bperf)]
        print(f"\n## (b) the capture programs' share of the host's samples under {load} (--bpf-stats "
              "off; perf -a -g, cpu-clock; samples through bpf_trace_run3), per round")
        for bld in builds:
            rs = [r for r in bperf if r.get("build", "new") == bld]
            shares = [r["share_pct"] for r in rs]
            print(f"  {bld:5} {fmt(quart(shares), '.2f')}%  rounds: {', '.join(f'{x:.2f}' for x in shares)}")
            summary.setdefault("b_capture_share_pct", {})[bld] = quart(shares)[0]
        for bld in builds:
            perf_under([r for r in bperf if r.get("build", "new") == bld][0], f"{load} ({bld}, round 1)")
    if bloupe:
        builds = [x for x in ("new", "base") if any(r["build"] == x for r in bloupe)]
        print("\n## (b) loupe's own CPU per transaction in the same rounds (its threads' run time over the pgbench run)")
        per = {}
        for bld in builds:
            per[bld] = {r["round"]: r["loupe_cpu_s"] * 1e6 / r["transactions"] for r in bloupe
                        if r["build"] == bld and r.get("transactions")}
            xs = list(per[bld].values())
            print(f"  {bld:5} {fmt(quart(xs), '.3f')} us  rounds: {', '.join(f'{x:.3f}' for x in xs)}")
            summary.setdefault("b_loupe_us_per_tx", {})[bld] = quart(xs)[0]
        if len(builds) == 2:
            ratios = [per["new"][k] / per["base"][k] for k in per["new"] if k in per["base"] and per["base"][k]]
            print(f"  new / base, per round: {fmt(quart(ratios), '.3f')}")
    print("\n## goals: MET or MISSED when the quartiles over rounds lie on one side of the goal, UNRESOLVED when they "
          "straddle it;\n## under each one not met, where its cost goes, from this run's figures")
    verdicts = []
    for name, q, ok, *info in goals:
        v = verdict(q, ok)
        verdicts.append({"goal": name, "value": q[0], "quartiles": [q[1], q[2]], "verdict": v})
        print(f"  {v:10} {name}: {fmt(q, '.3f')}")
        if v != "MET" and info:
            breakdown(info[0], summary, bpf_of, perf_of, dmode)
    summary["goals"] = verdicts
    print("\nsummary: " + json.dumps(summary))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
