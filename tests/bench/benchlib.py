#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""Helpers for scripts/bench.sh: the arithmetic, parsing and reporting that are clumsy in bash.

    benchlib.py progstats PID           BPF programs on sys_enter/sys_exit held by PID, with run time and count
                                        (from /proc/PID/fdinfo), and the totals over every program PID holds
    benchlib.py foreign PID...          how many sys_enter/sys_exit links on the host are held by none of PIDs
    benchlib.py wrk FILE                wrk --latency output (with mix.lua's "loupe-wrk:" line) -> JSON
    benchlib.py times FILE              one duration in seconds a line -> JSON (n, median, p99, max in ms)
    benchlib.py pgbench FILE            pgbench's output -> JSON (tps without initial connection time,
                                        transactions processed and failed, latency, connection time)
    benchlib.py sample FILE NAME K=V..  value of one sample of a Prometheus text exposition (0 if absent)
    benchlib.py exposition FILE         lines, samples (series), families and bytes of an exposition
    benchlib.py snapshot FILE SERVICE   loupe's payload counters in an exposition -> JSON: HTTP requests of
                                        SERVICE (by status), WebSocket messages of SERVICE (by direction and
                                        opcode), payload records and bytes (all services), payload drops (by
                                        reason), parser resyncs, seconds BPF statistics were on; and the
                                        PostgreSQL statements (by operation and by normalised text),
                                        transactions (by outcome), errors, parser anomalies and unanswered
                                        queries of SERVICE
    benchlib.py snapdiff A B            B - A of two snapshots (JSON), key by key
    benchlib.py proc PID                utime+stime (s), run time of its threads (ns, schedstat), VmRSS and
                                        VmHWM (KiB) of PID
    benchlib.py cpu PID...              CPU time (s) of the whole host (non-idle, from /proc/stat) and of PIDs with
                                        their children and grandchildren (utime+stime, and cutime+cstime: the
                                        children they reaped)
    benchlib.py perfunder DATA [ROOT]   the samples of a perf.data (recorded with -a -g) whose call chain passes
                                        through ROOT (default bpf_trace_run3, the tracepoints' call into BPF
                                        programs) -> JSON: their share of all samples, and each function's share
                                        of them, inclusive and self (only below ROOT: a function that other kernel
                                        paths call too is not counted for them)
    benchlib.py pgwindows PROGRESS WINDOWS
                                        one pgbench run's per-second progress (-P 1 --progress-timestamp) cut into
                                        the windows of WINDOWS (JSON lines: cond, round, t0, t1, host_busy_s,
                                        loupe_cpu_s, in the order they ran) -> one JSON line per window that is
                                        not "off": its tps and transactions, and those of the off windows just
                                        before and after it (off_tps, off_host_cpu_us: its baseline)
    benchlib.py secwindows PREFIX WINDOWS [RATE COUNT]
                                        the same for one load run whose clients write what they did per wall-clock
                                        second to PREFIX.N (mix.lua with LOUPE_WRK_SECONDS=PREFIX, ws_client.py
                                        --seconds-file): RATE (default rps), COUNT (requests), off_RATE
    benchlib.py report RECORDS [--out FILE]
                                        results table on stdout (and JSON in FILE) from bench.sh's records

Records (one JSON object a line) are written by bench.sh; "part" says which measurement each belongs to.
"""
import glob
import json
import os
import random
import re
import statistics
import subprocess
import sys

SYSCALL_HOOKS = ("sys_enter", "sys_exit")


def fdinfo(pid):
    """Yield the key/value dict of every BPF fd (program or link) that pid holds."""
    base = f"/proc/{pid}/fdinfo"
    for fd in os.listdir(base):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            with open(f"{base}/{fd}") as f:
                text = f.read()
        except OSError:
            continue
        if not target.startswith("anon_inode:bpf"):
            continue
        info = {"kind": target.split(":", 1)[1]}
        for line in text.splitlines():
            k, _, v = line.partition(":")
            info[k.strip()] = v.strip()
        yield info


def progstats(pid):
    infos = list(fdinfo(pid))
    progs = {i["prog_id"]: i for i in infos if i["kind"] == "bpf-prog" and "prog_id" in i}
    out = {"total": {"run_time_ns": 0, "run_cnt": 0, "progs": len(progs)}}
    for p in progs.values():
        out["total"]["run_time_ns"] += int(p.get("run_time_ns", 0))
        out["total"]["run_cnt"] += int(p.get("run_cnt", 0))
    # Per program, by name (bpftool knows the names; fdinfo does not).
    res = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True)
    names = {str(x.get("id")): x.get("name", "?") for x in json.loads(res.stdout or "[]")}
    out["progs"] = {}
    for pid_, p in progs.items():
        name = names.get(pid_, f"id{pid_}")
        e = out["progs"].setdefault(name, {"run_time_ns": 0, "run_cnt": 0})
        e["run_time_ns"] += int(p.get("run_time_ns", 0))
        e["run_cnt"] += int(p.get("run_cnt", 0))
    for link in infos:
        if link["kind"] == "bpf_link" and link.get("tp_name") in SYSCALL_HOOKS:
            p = progs.get(link.get("prog_id"), {})
            out[link["tp_name"]] = {"prog_id": int(link["prog_id"]),
                                    "run_time_ns": int(p.get("run_time_ns", 0)),
                                    "run_cnt": int(p.get("run_cnt", 0))}
    return out


def foreign(pids):
    """sys_enter/sys_exit links on the host that none of pids holds: someone else's programs, which would
    make every condition of the syscall benchmark slower."""
    ours = set()
    for pid in pids:
        try:
            ours.update(i.get("link_id") for i in fdinfo(pid) if i["kind"] == "bpf_link")
        except OSError:
            pass
    res = subprocess.run(["bpftool", "-j", "link", "show"], capture_output=True, text=True, check=True)
    links = json.loads(res.stdout or "[]")
    return sum(1 for link in links
               if link.get("tp_name") in SYSCALL_HOOKS and str(link.get("id")) not in ours)


def parse_wrk(path):
    text = open(path).read()
    out = {}
    m = re.search(r"^loupe-wrk: (\{.*\})\s*$", text, re.M)
    if m:
        s = json.loads(m.group(1))
        out.update(requests=s["requests"], errors=s["errors"], errors_status=s["errors_status"],
                   duration_s=s["duration_s"])
        out["rps"] = s["requests"] / s["duration_s"] if s["duration_s"] else 0.0
    m = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    if m:
        out["wrk_rps"] = float(m.group(1))
        out.setdefault("rps", out["wrk_rps"])
    units = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        if m:
            out[f"p{pct}_ms"] = float(m.group(1)) * units[m.group(2)]
    return out


def percentile(values, p):
    """Nearest-rank percentile."""
    v = sorted(values)
    if not v:
        return None
    k = max(0, min(len(v) - 1, int(-(-p * len(v) // 100)) - 1))
    return v[k]


def times(path):
    vals = [float(x) * 1e3 for x in open(path).read().split()]
    if not vals:
        return {"n": 0}
    return {"n": len(vals), "median_ms": statistics.median(vals), "p99_ms": percentile(vals, 99),
            "max_ms": max(vals), "min_ms": min(vals)}


def parse_pgbench(path):
    """pgbench's summary (PostgreSQL 15): tps without the initial connection time, transactions processed and
    failed, average latency and initial connection time."""
    text = open(path).read()
    out = {}
    for key, pat, conv in (("tps", r"^tps = ([\d.]+) \(without initial connection time\)", float),
                           ("transactions", r"^number of transactions actually processed: (\d+)", int),
                           ("failed_transactions", r"^number of failed transactions: (\d+)", int),
                           ("latency_ms", r"^latency average = ([\d.]+) ms", float),
                           ("connection_ms", r"^initial connection time = ([\d.]+) ms", float),
                           ("clients", r"^number of clients: (\d+)", int),
                           ("duration_s", r"^duration: (\d+) s", int),
                           ("scale", r"^scaling factor: (\d+)", int)):
        m = re.search(pat, text, re.M)
        if m:
            out[key] = conv(m.group(1))
    return out


# pgbench's own start-up queries (the scale from pgbench_branches, the partitioning from pg_catalog), which are not
# part of its transactions: the built-in scripts have no count(...) and no pg_catalog.
PGBENCH_STARTUP = re.compile(r"count\(|pg_catalog", re.I)


def sample(path, name, labels):
    want = dict(kv.split("=", 1) for kv in labels)
    total = None
    for line in open(path):
        if not line.startswith(name) or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(got.get(k) == v for k, v in want.items()):
            total = (total or 0) + float(m.group(4))
    return total or 0


def series(path):
    """Yield (name, labels dict, value) for every sample of a Prometheus text exposition."""
    for line in open(path):
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)", line)
        if not m:
            continue
        try:
            v = float(m.group(4))
        except ValueError:
            continue
        yield m.group(1), dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or "")), v


def snapshot(path, service):
    """The counters bench.sh diffs over a run: what loupe's payload feature counted."""
    out = {"http_requests": 0.0, "http_requests_by_status": {}, "ws_messages": {"received": {}, "sent": {}},
           "payload_records": 0.0, "payload_records_service": 0.0, "payload_bytes": 0.0, "payload_drops": 0.0,
           "payload_drops_by_reason": {}, "payload_records_lost": 0.0, "bpf_stats_enabled_s": 0.0,
           "pg_statements": 0.0, "pg_statements_by_operation": {}, "pg_statements_by_query": {},
           "pg_transactions": {}, "pg_errors": 0.0, "pg_parser_anomalies": 0.0, "pg_parser_anomalies_by_kind": {},
           "pg_queries_unanswered": 0.0}
    samples = list(series(path))
    # Normalised text of each fingerprint of SERVICE (loupe_postgres_statement_info), to key statements by.
    texts = {lb.get("fingerprint"): lb.get("query", "") for name, lb, _ in samples
             if name == "loupe_postgres_statement_info" and lb.get("service_name") == service}
    for name, lb, v in samples:
        if lb.get("service_name") == service and name.startswith("loupe_postgres_"):
            if name == "loupe_postgres_query_duration_seconds_count":
                out["pg_statements"] += v
                op = lb.get("operation", "?")
                out["pg_statements_by_operation"][op] = out["pg_statements_by_operation"].get(op, 0.0) + v
                q = texts.get(lb.get("fingerprint")) or f"fingerprint {lb.get('fingerprint', '?')} ({op})"
                out["pg_statements_by_query"][q] = out["pg_statements_by_query"].get(q, 0.0) + v
            elif name == "loupe_postgres_transactions_total":
                o = lb.get("outcome", "?")
                out["pg_transactions"][o] = out["pg_transactions"].get(o, 0.0) + v
            elif name == "loupe_postgres_errors_total":
                out["pg_errors"] += v
            elif name == "loupe_postgres_parser_anomalies_total":
                out["pg_parser_anomalies"] += v
                k = lb.get("kind", "?")
                out["pg_parser_anomalies_by_kind"][k] = out["pg_parser_anomalies_by_kind"].get(k, 0.0) + v
            elif name == "loupe_postgres_queries_unanswered_total":
                out["pg_queries_unanswered"] += v
            continue
        if name == "http_server_request_duration_seconds_count" and lb.get("service_name") == service:
            out["http_requests"] += v
            st = lb.get("http_response_status_code", "?")
            out["http_requests_by_status"][st] = out["http_requests_by_status"].get(st, 0.0) + v
        elif name == "loupe_websocket_messages_total" and lb.get("service_name") == service:
            d = out["ws_messages"].setdefault(lb.get("direction", "?"), {})
            d[lb.get("opcode", "?")] = d.get(lb.get("opcode", "?"), 0.0) + v
        elif name == "loupe_payload_records_total":
            out["payload_records"] += v
            if lb.get("service_name") == service:
                out["payload_records_service"] += v
        elif name == "loupe_payload_captured_bytes_total":
            out["payload_bytes"] += v
        elif name == "loupe_events_dropped_total" and lb.get("feature") == "payload":
            out["payload_drops"] += v
            r = lb.get("reason", "?")
            out["payload_drops_by_reason"][r] = out["payload_drops_by_reason"].get(r, 0.0) + v
        elif name == "loupe_payload_records_lost_total":
            out["payload_records_lost"] += v
        elif name == "loupe_bpf_stats_enabled_seconds_total":
            out["bpf_stats_enabled_s"] += v
    return out


def snapdiff(a, b):
    """b - a, recursively (a key missing in a counts 0)."""
    if isinstance(b, dict):
        return {k: snapdiff(a.get(k, {} if isinstance(v, dict) else 0) if isinstance(a, dict) else 0, v)
                for k, v in b.items()}
    return b - (a or 0)


def exposition(path):
    data = open(path, "rb").read()
    lines = data.decode(errors="replace").splitlines()
    samples = [ln for ln in lines if ln and not ln.startswith("#")]
    families = [ln for ln in lines if ln.startswith("# TYPE ")]
    return {"bytes": len(data), "lines": len(lines), "samples": len(samples), "families": len(families)}


def proc(pid):
    tck = os.sysconf("SC_CLK_TCK")
    stat = open(f"/proc/{pid}/stat").read()
    fields = stat[stat.rindex(")") + 2:].split()
    cpu = (int(fields[11]) + int(fields[12])) / tck  # utime, stime (fields 14 and 15 of stat)
    # Per-thread run time in ns (schedstat) is far finer than the 10 ms ticks of utime/stime: summed over the live
    # threads (loupe's threads live as long as it does).
    run_ns = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            run_ns += int(open(f"/proc/{pid}/task/{tid}/schedstat").read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    out = {"cpu_s": cpu, "run_ns": run_ns}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            out[k.lower() + "_kib"] = int(v.split()[0])
    return out


def cpu(pids):
    """Host CPU (s, non-idle) and the CPU of a set of process trees, to tell how much CPU others took."""
    tck = os.sysconf("SC_CLK_TCK")
    f = open("/proc/stat").readline().split()[1:]
    busy = sum(int(x) for i, x in enumerate(f[:8]) if i not in (3, 4)) / tck  # all but idle, iowait
    stats = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                st = open(f"/proc/{d}/stat").read()
            except OSError:
                continue
            fields = st[st.rindex(")") + 2:].split()
            # utime+stime, plus cutime+cstime: the children it reaped (pgbench's backends come and go within a
            # run; their CPU then shows in the postmaster's cutime/cstime, not in any live process).
            stats[int(d)] = (int(fields[1]), sum(int(x) for x in fields[11:15]) / tck)
    tree = set(p for p in pids if p in stats)
    for _ in range(2):  # children and grandchildren (postgres backends, uvicorn workers)
        tree |= {p for p, (ppid, _) in stats.items() if ppid in tree}
    return {"host_s": busy, "ours_s": sum(stats[p][1] for p in tree), "procs": len(tree)}


# ---------------------------------------------------------------------------------------------- report

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(v, spec=".1f", unit=""):
    return "n/a" if v is None else f"{v:{spec}}{unit}"


def verdict(ok):
    return "n/a" if ok is None else ("MET" if ok else "NOT MET")


def ab_ratio(off, on, key):
    """Medians of key over the off and on runs, their ratio, the per-pair ratios (same run number) and a 95%
    bootstrap interval of the ratio of medians, resampling the ABBA pairs (as (b) does)."""
    m_off, m_on = med([r.get(key) for r in off]), med([r.get(key) for r in on])
    ratio = m_on / m_off if m_off and m_on else None
    pair_ratios = []
    for r in on:
        o = [x for x in off if x["run"] == r["run"]]
        if o and o[0].get(key):
            pair_ratios.append((r.get(key) or 0) / o[0][key])
    runs = sorted({r["run"] for r in on} & {r["run"] for r in off})
    rng = random.Random(1)
    boot = []
    for _ in range(2000 if len(runs) >= 3 else 0):
        pick = [rng.choice(runs) for _ in runs]
        mo = med([next(r.get(key) for r in off if r["run"] == k) for k in pick])
        mn = med([next(r.get(key) for r in on if r["run"] == k) for k in pick])
        boot.append(mn / mo if mo and mn is not None else None)
    boot = sorted(x for x in boot if x is not None)
    ci = [boot[int(0.025 * (len(boot) - 1))], boot[int(0.975 * (len(boot) - 1))]] if boot else None
    return m_off, m_on, ratio, pair_ratios, ci


def report(records_path, out_path=None):
    recs = [json.loads(ln) for ln in open(records_path) if ln.strip()]
    machine = next((r for r in recs if r["part"] == "machine"), {})
    params = next((r for r in recs if r["part"] == "params"), {})
    res = {"machine": machine, "params": params}
    goals = {}
    rows = []

    # (a) per-syscall cost ------------------------------------------------------------------------------
    # Each sample is one run of loupe-bench-sc: REPS repetitions, timed by the thread's CPU time. Two estimators
    # per condition: "median" (the sample's median repetition: the issue's figure) and "min" (its fastest
    # repetition: interference from other tasks only ever adds time, so this is the steadier estimate of the
    # intrinsic cost on a shared machine). A condition's ns/call is the median over rounds; its added cost is the
    # median over rounds of (condition - baseline of the same round), which cancels drift between rounds.
    # Samples taken while someone else's programs were on the hooks are left out when enough clean ones remain.
    a_all = [r for r in recs if r["part"] == "a" and r.get("kind") == "sample"]
    if a_all:
        conds = ["baseline", "floor", "floor_stats", "untargeted", "targeted", "targeted_untimed",
                 "untargeted_nostats", "targeted_nostats", "stats_pidtgid", "stats_lookup", "stats_task"]
        est = {"median": "median_ns", "min": "min_ns", "wall": "wall_median_ns"}
        clean = [r for r in a_all if not r.get("foreign")]
        use_clean = all(sum(1 for r in clean if r["cond"] == c) >= 3
                        for c in conds if any(r["cond"] == c for r in a_all))
        a = clean if use_clean else a_all
        sa = {}
        for c in conds:
            rs = [r for r in a if r["cond"] == c]
            if not rs:
                continue
            s = sa[c] = {"samples": len(rs),
                         "samples_dropped_foreign": sum(1 for r in a_all if r["cond"] == c and r.get("foreign"))
                         if use_clean else 0,
                         "samples_with_foreign_programs": 0 if use_clean else sum(1 for r in rs if r.get("foreign"))}
            for e, key in est.items():
                s[f"{e}_ns"] = med([r.get(key) for r in rs])
                s[f"{e}_rounds_ns"] = [round(r.get(key) or 0, 1) for r in rs]
            if c.startswith("targeted"):
                s["samples_not_targeted"] = sum(1 for r in rs if not r.get("target_ok"))
        base_by_round = {r["round"]: r for r in a if r["cond"] == "baseline"}
        for c, s in sa.items():
            for e, key in est.items():
                pairs = [r[key] - base_by_round[r["round"]][key] for r in a
                         if r["cond"] == c and r["round"] in base_by_round and r.get(key) is not None]
                s[f"{e}_added_ns"] = med(pairs)
                s[f"{e}_added_unpaired_ns"] = (None if "baseline" not in sa
                                               else s[f"{e}_ns"] - sa["baseline"][f"{e}_ns"])
        # Per program and run, from the kernel's own accounting (only where BPF statistics are on).
        for r in recs:
            if r["part"] == "a" and r.get("kind") == "progstats" and r["cond"] in sa and r.get("ns_per_run"):
                sa[r["cond"]].setdefault("bpf_ns_per_run", {}).setdefault(r["hook"], []).append(r["ns_per_run"])
        for s in sa.values():
            if "bpf_ns_per_run" in s:
                s["bpf_ns_per_run"] = {k: med(v) for k, v in s["bpf_ns_per_run"].items()}

        # 95% bootstrap intervals, resampling rounds (a round keeps its conditions together, so pairs stay pairs).
        by_round = {}
        for r in a:
            by_round.setdefault(r["round"], {})[r["cond"]] = r
        rounds = sorted(by_round)
        rng = random.Random(1)
        boots = [[rng.choice(rounds) for _ in rounds] for _ in range(2000)] if len(rounds) >= 3 else []

        def added(sel, c, key):
            return med([by_round[k][c][key] - by_round[k]["baseline"][key]
                        for k in sel if c in by_round[k] and "baseline" in by_round[k]])

        def interval(values):
            v = sorted(x for x in values if x is not None)
            return [v[int(0.025 * (len(v) - 1))], v[int(0.975 * (len(v) - 1))]] if len(v) > 10 else None

        for c, s in sa.items():
            if c != "baseline":
                for e, key in est.items():
                    s[f"{e}_added_ci95_ns"] = interval(added(b, c, key) for b in boots)

        def ratio_of(sel, key, floor, cond="untargeted"):
            fl, un = added(sel, floor, key), added(sel, cond, key)
            return un / fl if fl and un is not None and fl > 0 else None

        def ratio(e, floor="floor", cond="untargeted"):
            return ratio_of(rounds, est[e], floor, cond) if cond in sa else None
        ratios = {e: ratio(e) for e in est}
        ratios_stats = {e: ratio(e, "floor_stats") for e in est}
        ratio_ci = {e: interval(ratio_of(b, est[e], "floor") for b in boots) for e in est}
        ratios_nostats = {e: ratio(e, cond="untargeted_nostats") for e in est}
        ratio_nostats_ci = {e: interval(ratio_of(b, est[e], "floor", "untargeted_nostats") for b in boots)
                            if "untargeted_nostats" in sa else None for e in est}
        res["syscall"] = {"conditions": sa, "untargeted_over_floor": ratios, "untargeted_over_floor_ci95": ratio_ci,
                          "untargeted_over_floor_with_stats": ratios_stats,
                          "untargeted_no_bpf_stats_over_floor": ratios_nostats,
                          "untargeted_no_bpf_stats_over_floor_ci95": ratio_nostats_ci,
                          "clean_samples_only": use_clean}
        r = ratios["median"]
        goals["untargeted cost <= 1.2x floor"] = (r, None if r is None else r <= 1.2)
        labels = {"baseline": "nothing attached", "floor": "empty programs (floor)",
                  "floor_stats": "empty programs + BPF stats", "untargeted": "loupe, bench untargeted",
                  "targeted": "loupe, bench targeted",
                  "targeted_untimed": "loupe targeted, untimed",
                  "untargeted_nostats": "loupe untargeted, no stats", "targeted_nostats": "loupe targeted, no stats",
                  "stats_pidtgid": "(e) stats + pid_tgid helper",
                  "stats_lookup": "(e) stats + helper + array", "stats_task": "(e) stats + task storage"}
        rows.append("(a) syscall cost: getppid() ns per call by thread CPU time, "
                     f"{params.get('a_rounds', '?')} rounds x {params.get('sc_reps', '?')} reps x "
                     f"{params.get('sc_calls', '?')} calls; 'added' = median over rounds of (condition - baseline)")
        rows.append(f"    {'condition':<28} {'median':>7} {'added [95% CI]':>22} {'min':>7} {'added [95% CI]':>22}"
                     "  BPF ns/run enter, exit")
        for c in conds:
            if c not in sa:
                continue
            s = sa[c]
            pr = s.get("bpf_ns_per_run", {})
            prs = ", ".join(fmt(pr.get(h)) for h in SYSCALL_HOOKS) if pr else "-"
            note = ""
            if s.get("samples_dropped_foreign"):
                note += f"  [{s['samples_dropped_foreign']} samples dropped: foreign programs]"
            if s.get("samples_with_foreign_programs"):
                note += f"  [{s['samples_with_foreign_programs']} samples with foreign programs]"
            if s.get("samples_not_targeted"):
                note += f"  [{s['samples_not_targeted']} samples NOT targeted]"
            cols = []
            for e in ("median", "min"):
                cols.append(f"{fmt(s[f'{e}_ns']):>7}")
                ci = s.get(f"{e}_added_ci95_ns")
                txt = "" if c == "baseline" else fmt(s[f"{e}_added_ns"], "+.1f") + (
                    f" [{ci[0]:+.0f}, {ci[1]:+.0f}]" if ci else "")
                cols.append(f"{txt:>22}")
            rows.append(f"    {labels[c]:<28} {' '.join(cols)}  {prs}{note}")

        def ratio_txt(e, rs=ratios, cis=ratio_ci):
            ci = cis.get(e)
            return f"{e} {fmt(rs[e], '.2f')}" + (f" [95% CI {ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
        rows.append("    untargeted added / floor added: " + ", ".join(ratio_txt(e) for e in ("median", "min")) +
                     f"   (goal <= 1.2, judged on median: {verdict(goals['untargeted cost <= 1.2x floor'][1])})")
        if "untargeted_nostats" in sa:
            rows.append("    same with --no-bpf-stats: " +
                         ", ".join(ratio_txt(e, ratios_nostats, ratio_nostats_ci) for e in ("median", "min")))
        rows.append("    untargeted added / (floor + BPF stats) added: " +
                     ", ".join(f"{e} {fmt(ratios_stats[e], '.2f')}" for e in ("median", "min")))

    # (b) throughput, (c) agent cost ----------------------------------------------------------------------
    # The goal is judged on the ratio of the medians, as the issue asks. Shown too: the median of the per-pair
    # ratios (each loupe-on run against the loupe-off run next to it in time, which cancels slow drifts in what
    # else the host runs) and the CPU that other processes on the host took during the runs.
    b = [r for r in recs if r["part"] == "b"]
    if b:
        off = [r for r in b if r["cond"] == "off"]
        on = [r for r in b if r["cond"] == "on"]
        m_off, m_on = med([r.get("rps") for r in off]), med([r.get("rps") for r in on])
        ratio = m_on / m_off if m_off and m_on else None
        pair_ratios = []
        for r in on:
            o = [x for x in off if x["run"] == r["run"]]
            if o and o[0].get("rps"):
                pair_ratios.append(r.get("rps", 0) / o[0]["rps"])
        # 95% bootstrap interval of the ratio of medians, resampling the ABBA pairs.
        runs = sorted({r["run"] for r in on} & {r["run"] for r in off})
        rng = random.Random(1)
        boot = []
        for _ in range(2000 if len(runs) >= 3 else 0):
            pick = [rng.choice(runs) for _ in runs]
            mo = med([next(r["rps"] for r in off if r["run"] == k) for k in pick])
            mn = med([next(r["rps"] for r in on if r["run"] == k) for k in pick])
            boot.append(mn / mo if mo else None)
        boot = sorted(x for x in boot if x is not None)
        ratio_ci = [boot[int(0.025 * (len(boot) - 1))], boot[int(0.975 * (len(boot) - 1))]] if boot else None
        res["throughput"] = {
            "ratio_ci95": ratio_ci,
            "off": {"runs_rps": [round(r.get("rps", 0), 1) for r in off], "median_rps": m_off,
                    "median_p50_ms": med([r.get("p50_ms") for r in off]),
                    "median_p99_ms": med([r.get("p99_ms") for r in off]),
                    "others_cpu_pct": [round(r.get("foreign_cpu_pct", 0), 1) for r in off]},
            "on": {"runs_rps": [round(r.get("rps", 0), 1) for r in on], "median_rps": m_on,
                   "median_p50_ms": med([r.get("p50_ms") for r in on]),
                   "median_p99_ms": med([r.get("p99_ms") for r in on]),
                   "others_cpu_pct": [round(r.get("foreign_cpu_pct", 0), 1) for r in on]},
            "ratio_on_off": ratio,
            "pair_ratios": [round(x, 3) for x in pair_ratios],
            "median_pair_ratio": med(pair_ratios),
            "runs_with_errors": sum(1 for r in b if r.get("errors") or r.get("failed")),
            "on_runs_without_api_series": sum(1 for r in on if not r.get("api_observed")),
        }
        goals["API throughput ratio >= 0.97"] = (ratio, None if ratio is None else ratio >= 0.97)
        tg = params.get("targets")
        rows.append(f"(b) reference API under wrk ({params.get('b_duration', '?')} s, "
                     f"{params.get('b_conns', '?')} connections, {params.get('b_threads', '?')} threads, mix.lua), "
                     f"{len(off)} + {len(on)} runs alternating (ABBA)")
        if tg or params.get("settle_s") is not None:
            rows.append(f"    loupe-on runs: targets {'the bench API and cluster by pid' if tg == 'own' else tg or '?'}"
                         f"; load starts {params.get('settle_s', 0)} s after loupe is ready"
                         f"{'; extra options ' + params['loupe_bench_args'] if params.get('loupe_bench_args') else ''}")
        t = res["throughput"]
        for k, name in (("off", "loupe off"), ("on", "loupe on")):
            rows.append(f"    {name:<10} median {fmt(t[k]['median_rps'])} req/s   p50 {fmt(t[k]['median_p50_ms'], '.2f')} ms"
                         f"   p99 {fmt(t[k]['median_p99_ms'], '.2f')} ms   runs: {', '.join(str(x) for x in t[k]['runs_rps'])}")
            rows.append(f"    {'':<10} CPU others on the host took, % of one core: "
                         f"{', '.join(str(x) for x in t[k]['others_cpu_pct'])}")
        extra = ""
        if t["runs_with_errors"]:
            extra += f"  [{t['runs_with_errors']} runs with wrk errors]"
        if t["on_runs_without_api_series"]:
            extra += f"  [{t['on_runs_without_api_series']} loupe-on runs where loupe saw no API syscalls]"
        ci = f" [95% CI {ratio_ci[0]:.3f}, {ratio_ci[1]:.3f}]" if ratio_ci else ""
        rows.append(f"    ratio on/off (of medians) = {fmt(ratio, '.3f')}{ci}  (goal >= 0.97: "
                     f"{verdict(goals['API throughput ratio >= 0.97'][1])}); per pair: "
                     f"{', '.join(f'{x:.3f}' for x in pair_ratios)} (median {fmt(t['median_pair_ratio'], '.3f')}){extra}")
    # (b) what loupe's payload feature counted in its on-runs -------------------------------------------------
    # HTTP requests loupe counted (http_server_request_duration_seconds_count of service api, every status) against
    # the responses wrk counted; ring-buffer records per second and drops; BPF time per request. BPF statistics
    # are sampled by default, so the exact BPF time per request comes from one extra loupe-on run with
    # --bpf-stats always (cond "stats", not in the ratio); the on-runs give an estimate from their sampled windows
    # (run time in the windows / the requests made in the windows, assuming a steady request rate).
    bl = [r for r in b if r["cond"] in ("on", "stats") and "loupe" in r] if b else []
    if bl:
        def loupe_fig(r):
            L, req = r["loupe"], r.get("requests")
            wall = r.get("wall_s") or 0
            f = {"run": r["run"], "cond": r["cond"], "rps": r.get("rps"), "wrk_requests": req,
                 "loupe_requests": L["http_requests"], "loupe_requests_by_status": L["http_requests_by_status"],
                 "requests_diff_pct": (100 * (L["http_requests"] - req) / req) if req else None,
                 "payload_records": L["payload_records"], "payload_records_per_s": L["payload_records"] / wall
                 if wall else None, "payload_bytes": L["payload_bytes"], "payload_drops": L["payload_drops"],
                 "payload_drops_by_reason": {k: v for k, v in L["payload_drops_by_reason"].items() if v},
                 "payload_records_lost": L["payload_records_lost"], "bpf_run_time_ns": L.get("bpf_run_time_ns"),
                 "bpf_runs": L.get("bpf_runs"), "bpf_stats_enabled_s": L.get("bpf_stats_enabled_s"),
                 "settle_s": r.get("settle_s")}
            bns, en = L.get("bpf_run_time_ns") or 0, L.get("bpf_stats_enabled_s") or 0
            if r["cond"] == "stats":
                f["bpf_ns_per_request"] = bns / req if req else None
                f["bpf_hooks"] = {h: {"ns_per_request": v["run_time_ns"] / req if req else None,
                                      "ns_per_run": v["run_time_ns"] / v["runs"] if v["runs"] else None,
                                      "runs_per_request": v["runs"] / req if req else None}
                                  for h, v in (L.get("bpf_hooks") or {}).items()}
            else:  # sampled windows: requests in the windows ~ requests * enabled / wall
                f["bpf_ns_per_request_sampled"] = (bns / (req * min(en, wall) / wall)
                                                   if req and wall and en > 0.2 and bns else None)
            return f
        figs = [loupe_fig(r) for r in bl]
        bwall = {r["run"]: r.get("wall_s") for r in bl if r["cond"] == "stats"}
        onf = [f for f in figs if f["cond"] == "on"]
        stf = [f for f in figs if f["cond"] == "stats"]
        top = max(onf, key=lambda f: f["rps"] or 0) if onf else None
        pl = res["payload_b"] = {
            "runs": figs,
            "requests_diff_pct_median": med([f["requests_diff_pct"] for f in onf]),
            "payload_records_per_s_median": med([f["payload_records_per_s"] for f in onf]),
            "payload_drops_total": sum(f["payload_drops"] for f in onf),
            "payload_records_lost_total": sum(f["payload_records_lost"] for f in onf),
            "highest_load_run": top,
            "bpf_ns_per_request": med([f.get("bpf_ns_per_request") for f in stf]),
            "bpf_ns_per_request_sampled_median": med([f.get("bpf_ns_per_request_sampled") for f in onf]),
        }
        rows.append("    loupe-on runs: HTTP requests loupe counted (service api, all statuses) / wrk's responses:")
        rows.append("        " + ", ".join(
            f"{f['cond'] if f['cond'] != 'on' else ''}{f['run']}: {f['loupe_requests']:.0f}/{f['wrk_requests'] or 0:.0f}"
            f" ({fmt(f['requests_diff_pct'], '+.2f')}%)" for f in figs))
        statuses = {}
        for f in onf:
            for k, v in f["loupe_requests_by_status"].items():
                statuses[k] = statuses.get(k, 0) + v
        rows.append(f"        by status over the on-runs: "
                     f"{', '.join(f'{k}: {v:.0f}' for k, v in sorted(statuses.items()) if v) or '-'}")
        rows.append(f"    ring-buffer (payload) records/s median {fmt(pl['payload_records_per_s_median'], '.0f')}; "
                     f"payload drops {pl['payload_drops_total']:.0f}, parser resyncs (records lost) "
                     f"{pl['payload_records_lost_total']:.0f} over the on-runs")
        if top:
            rows.append(f"    at the highest load (on-run {top['run']}, {fmt(top['rps'], '.0f')} req/s): "
                         f"{fmt(top['payload_records_per_s'], '.0f')} records/s, {top['payload_drops']:.0f} drops"
                         + (f" ({', '.join(f'{k} {v:.0f}' for k, v in top['payload_drops_by_reason'].items())})"
                            if top['payload_drops_by_reason'] else "")
                         + f", {top['payload_records_lost']:.0f} resyncs")
        for f in stf:
            rows.append(f"    BPF time per request (all loupe programs, run with --bpf-stats always, not in the "
                         f"ratio): {fmt(f['bpf_ns_per_request'], '.0f')} ns   ({fmt(f['rps'], '.0f')} req/s, "
                         f"{f['bpf_runs'] or 0:.0f} program runs, "
                         f"{fmt(100 * (f['bpf_run_time_ns'] or 0) / 1e9 / bwall[f['run']] if bwall.get(f['run']) else None, '.1f')}"
                         f"% of one core, {fmt(f['payload_records_per_s'], '.0f')} records/s, "
                         f"{f['payload_drops']:.0f} drops)")
            for h, v in f.get("bpf_hooks", {}).items():
                rows.append(f"        {h}: {fmt(v['ns_per_request'], '.0f')} ns per request = "
                             f"{fmt(v['runs_per_request'], '.1f')} runs x {fmt(v['ns_per_run'], '.0f')} ns "
                             "(runs on every syscall of the host, targets or not)")
        rows.append(f"    BPF time per request estimated from the on-runs' sampled statistics windows: median "
                     f"{fmt(pl['bpf_ns_per_request_sampled_median'], '.0f')} ns"
                     f" ({sum(1 for f in onf if f.get('bpf_ns_per_request_sampled'))} of {len(onf)} runs had a window)")

    c = [r for r in recs if r["part"] == "c"]
    if c:
        cpu = med([r["cpu_pct"] for r in c])
        cpu_max = max(r["cpu_pct"] for r in c)
        # With sampled statistics (loupe's default) the programs' run time only grows in the windows: scale it to
        # the time the statistics were on during the run (bpf_stats_enabled_s, from loupe's own counter).
        for r in c:
            en, wall = r.get("bpf_stats_enabled_s"), r.get("wall_s")
            if en is not None and wall:
                r["bpf_cpu_pct_in_windows"] = r["bpf_cpu_pct"] * wall / min(en, wall) if en > 0.2 else None
        bpf = med([r.get("bpf_cpu_pct_in_windows", r.get("bpf_cpu_pct")) for r in c])
        rss = max(r["vmhwm_kib"] for r in c) / 1024
        res["agent"] = {"cpu_pct_median": cpu, "cpu_pct_max": cpu_max, "bpf_cpu_pct_median": bpf,
                        "rss_max_mib": rss, "runs": c}
        goals["RSS <= 64 MiB"] = (rss, rss <= 64)
        rows.append("(c) loupe during the loupe-on runs of (b)")
        rows.append(f"    daemon CPU {fmt(cpu, '.2f')} % of one core (median; max {fmt(cpu_max, '.2f')} %)"
                     f"   BPF programs in the kernel {fmt(bpf, '.2f')} % of one core (bpf_stats"
                     + (", over the time they were on" if any("bpf_cpu_pct_in_windows" in r for r in c) else "")
                     + ")")
        rows.append(f"    max RSS (VmHWM) {fmt(rss, '.1f')} MiB  (goal <= 64 MiB: {verdict(rss <= 64)})")

    # (d) scrape ---------------------------------------------------------------------------------------------
    # The goal is judged on the median of the idle scrapes (text and gzip: the worse of the two), for the
    # reference workload's series and for ~10k series; p99 is shown beside it. Scrapes under wrk load share the 2
    # CPUs with a load that saturates them and are shown for information.
    d = [r for r in recs if r["part"] == "d" and r.get("n")]
    if d:
        res["scrape"] = {r["kind"]: r for r in d}
        rows.append("(d) /metrics scrape time (curl, one keep-alive connection, sequential scrapes)")
        for r in d:
            rows.append(f"    {r['label']:<30} median {fmt(r['median_ms'], '6.2f')} ms  p99 {fmt(r['p99_ms'], '6.2f')} ms"
                         f"  max {fmt(r['max_ms'], '6.2f')} ms  ({r['n']} scrapes, {r['samples']} samples, "
                         f"{r.get('bytes', 0)} bytes)")
        for name, kinds in (("scrape < 10 ms (workload)", ("plain", "gzip")),
                            ("scrape < 10 ms (~10k series)", ("scale", "scale_gzip"))):
            got = [res["scrape"][k]["median_ms"] for k in kinds if k in res["scrape"]]
            p99 = [res["scrape"][k]["p99_ms"] for k in kinds if k in res["scrape"]]
            if got:
                worst = max(got)
                goals[name] = (worst, worst < 10)
                rows.append(f"    {name}: worst idle median {fmt(worst, '.2f')} ms: {verdict(worst < 10)}"
                             f" (worst idle p99 {fmt(max(p99), '.2f')} ms)")

    # (f) WebSocket message throughput -------------------------------------------------------------------------
    f_all = [r for r in recs if r["part"] == "f"]
    if f_all:
        off = [r for r in f_all if r["cond"] == "off"]
        on = [r for r in f_all if r["cond"] == "on"]
        m_off, m_on, ratio, pair_ratios, ratio_ci = ab_ratio(off, on, "messages_per_s")
        counted = []
        for r in on:
            L = r.get("loupe")
            if not L:
                continue
            rcv, snt = L["ws_messages"].get("received", {}), L["ws_messages"].get("sent", {})
            data_r = rcv.get("text", 0) + rcv.get("binary", 0)
            data_s = snt.get("text", 0) + snt.get("binary", 0)
            wall = r.get("wall_s") or 0
            counted.append({"run": r["run"], "client_sent": r.get("messages_sent"),
                            "client_received": r.get("messages_received"), "loupe_received": data_r,
                            "loupe_sent": data_s,
                            "loupe_control": {f"{d}_{k}": v for d, m in L["ws_messages"].items() for k, v in m.items()
                                              if k not in ("text", "binary") and v},
                            "payload_records_per_s": L["payload_records"] / wall if wall else None,
                            "payload_drops": L["payload_drops"], "payload_records_lost": L["payload_records_lost"],
                            "loupe_cpu_pct": r.get("loupe_cpu_pct")})
        res["websocket"] = {
            "off": {"runs_mps": [round(r.get("messages_per_s", 0), 1) for r in off], "median_mps": m_off,
                    "client_cpu_pct": [round(r.get("client_cpu_pct", 0), 1) for r in off],
                    "others_cpu_pct": [round(r.get("foreign_cpu_pct", 0), 1) for r in off]},
            "on": {"runs_mps": [round(r.get("messages_per_s", 0), 1) for r in on], "median_mps": m_on,
                   "client_cpu_pct": [round(r.get("client_cpu_pct", 0), 1) for r in on],
                   "others_cpu_pct": [round(r.get("foreign_cpu_pct", 0), 1) for r in on]},
            "ratio_on_off": ratio, "ratio_ci95": ratio_ci, "pair_ratios": [round(x, 3) for x in pair_ratios],
            "median_pair_ratio": med(pair_ratios), "counted": counted,
            "runs_with_errors": sum(1 for r in f_all if r.get("errors") or r.get("failed")),
            "client_cpu_pct_median": med([r.get("client_cpu_pct") for r in f_all]),
        }
        goals["WebSocket throughput ratio >= 0.97"] = (ratio, None if ratio is None else ratio >= 0.97)
        w = res["websocket"]
        rows.append(f"(f) WebSocket echo throughput (ws_client.py --throughput, {params.get('f_sessions', '?')} sessions, "
                     f"{params.get('f_duration', '?')} s, {params.get('f_size', '?')}-byte text messages, one round "
                     f"trip at a time per session), {len(off)} + {len(on)} runs alternating (ABBA)")
        for k, name in (("off", "loupe off"), ("on", "loupe on")):
            rows.append(f"    {name:<10} median {fmt(w[k]['median_mps'])} messages/s   runs: "
                         f"{', '.join(str(x) for x in w[k]['runs_mps'])}")
            rows.append(f"    {'':<10} CPU % of one core: client {', '.join(str(x) for x in w[k]['client_cpu_pct'])};"
                         f" others on the host {', '.join(str(x) for x in w[k]['others_cpu_pct'])}")
        ci = f" [95% CI {ratio_ci[0]:.3f}, {ratio_ci[1]:.3f}]" if ratio_ci else ""
        extra = f"  [{w['runs_with_errors']} runs with client errors]" if w["runs_with_errors"] else ""
        if (w["client_cpu_pct_median"] or 0) >= 80:
            extra += (f"  [the client took {w['client_cpu_pct_median']:.0f}% of a core (median): it, not the API, "
                      "may bound the rate]")
        rows.append(f"    ratio on/off (of medians) = {fmt(ratio, '.3f')}{ci}  (goal >= 0.97: "
                     f"{verdict(goals['WebSocket throughput ratio >= 0.97'][1])}); per pair: "
                     f"{', '.join(f'{x:.3f}' for x in pair_ratios)} (median {fmt(w['median_pair_ratio'], '.3f')}){extra}")
        if counted:
            rows.append("    loupe-on runs: data messages loupe counted received/sent (service api) vs the client's "
                         "sent/received:")
            for k in counted:
                ctl = ", ".join(f"{a} {v:.0f}" for a, v in k["loupe_control"].items())
                rows.append(f"        run {k['run']}: loupe {k['loupe_received']:.0f}/{k['loupe_sent']:.0f}, client "
                             f"{k['client_sent']}/{k['client_received']}; control frames: {ctl or 'none'}; "
                             f"{fmt(k['payload_records_per_s'], '.0f')} records/s, {k['payload_drops']:.0f} drops, "
                             f"{k['payload_records_lost']:.0f} resyncs; loupe daemon CPU "
                             f"{fmt(k['loupe_cpu_pct'], '.1f')} % of one core")

    # (g) pgbench TPS ---------------------------------------------------------------------------------------------
    # Per mode, as in (b): ratio of the medians (the goal), a 95% bootstrap interval resampling the ABBA pairs, the
    # per-pair ratios. For every on-run, what loupe counted on the server side (service postgres) against pgbench:
    # statements of pgbench's script (its start-up queries apart) vs transactions x statements per transaction,
    # committed transactions vs pgbench's (TPC-B: one each; select-only: none, no explicit transaction).
    g_all = [r for r in recs if r["part"] == "g"]
    if g_all:
        modes = (("select", "select-only", "select_only", 1, 0), ("tpcb", "TPC-B-like", "tpcb", 7, 1))
        res["pgbench"] = {}
        rows.append(f"(g) pgbench against the bench's cluster (scale {params.get('g_scale', '?')}, -M prepared, "
                     f"{params.get('g_clients', '?')} clients, {params.get('g_threads', '?')} threads, "
                     f"{params.get('g_duration', '?')} s, TCP), loupe off vs on, ABBA pairs; loupe-on runs target "
                     f"{'the cluster by pid' if params.get('targets', 'own') == 'own' else params.get('targets')}"
                     f" and start the load {params.get('settle_s', 0)} s after loupe is ready")
        for mode, label, key, per_tx, commits_per_tx in modes:
            gm = [r for r in g_all if r.get("mode") == mode]
            if not gm:
                continue
            off = [r for r in gm if r["cond"] == "off"]
            on = [r for r in gm if r["cond"] == "on"]
            m_off, m_on, ratio, pair_ratios, ratio_ci = ab_ratio(off, on, "tps")
            counted = []
            for r in on:
                L = r.get("loupe")
                if not L:
                    continue
                byq = L.get("pg_statements_by_query", {})
                startup = sum(v for q, v in byq.items() if PGBENCH_STARTUP.search(q))
                script = L.get("pg_statements", 0) - startup
                tx = r.get("transactions")
                want = tx * per_tx if tx is not None else None
                txn = L.get("pg_transactions", {})
                wall = r.get("wall_s") or 0
                counted.append({
                    "run": r["run"], "pgbench_transactions": tx, "pgbench_failed": r.get("failed_transactions"),
                    "statements_per_transaction": per_tx, "expected_statements": want,
                    "loupe_statements": script, "loupe_statements_startup": startup,
                    "loupe_statements_by_operation": {k: v for k, v in L.get("pg_statements_by_operation", {}).items()
                                                      if v},
                    "statements_diff": script - want if want is not None else None,
                    "expected_committed": tx * commits_per_tx if tx is not None else None,
                    "loupe_committed": txn.get("committed", 0), "loupe_rolled_back": txn.get("rolled_back", 0),
                    "loupe_errors": L.get("pg_errors", 0), "loupe_parser_anomalies": L.get("pg_parser_anomalies", 0),
                    "loupe_parser_anomalies_by_kind": {k: v for k, v in
                                                       L.get("pg_parser_anomalies_by_kind", {}).items() if v},
                    "loupe_queries_unanswered": L.get("pg_queries_unanswered", 0),
                    "payload_records_per_s": L["payload_records"] / wall if wall else None,
                    "payload_drops": L["payload_drops"],
                    "payload_drops_by_reason": {k: v for k, v in L["payload_drops_by_reason"].items() if v},
                    "payload_records_lost": L["payload_records_lost"], "loupe_cpu_pct": r.get("loupe_cpu_pct")})
            g = res["pgbench"][key] = {
                "off": {"runs_tps": [round(r.get("tps") or 0, 1) for r in off], "median_tps": m_off,
                        "pgbench_cpu_pct": [round(r.get("pgbench_cpu_pct", 0), 1) for r in off],
                        "others_cpu_pct": [round(r.get("foreign_cpu_pct", 0), 1) for r in off]},
                "on": {"runs_tps": [round(r.get("tps") or 0, 1) for r in on], "median_tps": m_on,
                       "pgbench_cpu_pct": [round(r.get("pgbench_cpu_pct", 0), 1) for r in on],
                       "others_cpu_pct": [round(r.get("foreign_cpu_pct", 0), 1) for r in on]},
                "ratio_on_off": ratio, "ratio_ci95": ratio_ci, "pair_ratios": [round(x, 3) for x in pair_ratios],
                "median_pair_ratio": med(pair_ratios), "counted": counted,
                "runs_failed": sum(1 for r in gm if r.get("failed") or r.get("failed_transactions")),
                "median_latency_ms": {"off": med([r.get("latency_ms") for r in off]),
                                      "on": med([r.get("latency_ms") for r in on])},
            }
            gname = f"pgbench {'select-only' if mode == 'select' else 'TPC-B'} TPS ratio >= 0.97"
            goals[gname] = (ratio, None if ratio is None else ratio >= 0.97)
            rows.append(f"    {label}: {len(off)} + {len(on)} runs")
            for k, name in (("off", "loupe off"), ("on", "loupe on")):
                rows.append(f"        {name:<10} median {fmt(g[k]['median_tps'])} tps   latency "
                             f"{fmt(g['median_latency_ms'][k], '.3f')} ms   runs: "
                             f"{', '.join(str(x) for x in g[k]['runs_tps'])}")
                rows.append(f"        {'':<10} CPU % of one core: pgbench "
                             f"{', '.join(str(x) for x in g[k]['pgbench_cpu_pct'])}; others on the host "
                             f"{', '.join(str(x) for x in g[k]['others_cpu_pct'])}")
            ci = f" [95% CI {ratio_ci[0]:.3f}, {ratio_ci[1]:.3f}]" if ratio_ci else ""
            extra = f"  [{g['runs_failed']} runs failed or with failed transactions]" if g["runs_failed"] else ""
            rows.append(f"        ratio on/off (of medians) = {fmt(ratio, '.3f')}{ci}  (goal >= 0.97: "
                         f"{verdict(goals[gname][1])}); per pair: {', '.join(f'{x:.3f}' for x in pair_ratios)}"
                         f" (median {fmt(g['median_pair_ratio'], '.3f')}){extra}")
            if counted:
                rows.append(f"        loupe-on runs: statements loupe counted (service postgres, pgbench's script, "
                             f"apart from its start-up queries) / pgbench's transactions x {per_tx}; committed "
                             "transactions loupe counted / "
                             + ("pgbench's transactions (one each):" if commits_per_tx
                                else "none expected (no explicit transaction block):"))
                for k in counted:
                    dr = ", ".join(f"{a} {v:.0f}" for a, v in k["payload_drops_by_reason"].items())
                    odd = ", ".join(f"{n.replace('_', ' ')} {k[f'loupe_{n}']:.0f}"
                                    for n in ("rolled_back", "errors", "queries_unanswered") if k[f"loupe_{n}"])
                    an = (", ".join(f"{a} {v:.0f}" for a, v in k["loupe_parser_anomalies_by_kind"].items())
                          or (f"{k['loupe_parser_anomalies']:.0f}" if k["loupe_parser_anomalies"] else ""))
                    rows.append(f"            run {k['run']}: statements {k['loupe_statements']:.0f} / "
                                 f"{fmt(k['expected_statements'], '.0f')} ({fmt(k['statements_diff'], '+.0f')}; "
                                 f"+{k['loupe_statements_startup']:.0f} start-up), committed "
                                 f"{k['loupe_committed']:.0f} / {fmt(k['expected_committed'], '.0f')}"
                                 f"{'; ' + odd if odd else ''}; parser anomalies {an or 'none'}; "
                                 f"{fmt(k['payload_records_per_s'], '.0f')} records/s, "
                                 f"{k['payload_drops']:.0f} drops{' (' + dr + ')' if dr else ''}, "
                                 f"{k['payload_records_lost']:.0f} resyncs; loupe daemon CPU "
                                 f"{fmt(k['loupe_cpu_pct'], '.1f')} % of one core")

    res["goals"] = {k: {"value": v, "met": ok} for k, (v, ok) in goals.items()}
    print(f"Loupe benchmark — {machine.get('date', '?')}")
    print(f"machine: {machine.get('cpu', '?')}, {machine.get('nproc', '?')} CPUs, {machine.get('mem', '?')} RAM, "
          f"Linux {machine.get('kernel', '?')}; loupe {machine.get('loupe', '?')}"
          f"{' (quick run)' if params.get('quick') else ''}")
    for text in rows:
        print(text)
    print("goals:")
    width = max([34] + [len(k) for k in goals])
    for k, (v, ok) in goals.items():
        print(f"    {k:<{width}} {verdict(ok)}")
    if out_path:
        with open(out_path, "w") as f:
            json.dump(res, f, indent=2, sort_keys=True)
            f.write("\n")
    return 0


def perfunder(path, root="bpf_trace_run3", top=16):
    out = subprocess.run(["perf", "script", "-i", path, "-F", "ip,sym"], capture_output=True, text=True,
                         check=True).stdout
    total = under = 0
    incl, self_ = {}, {}
    for block in out.split("\n\n"):
        frames = [ln.split(None, 1) for ln in block.strip().splitlines() if ln.strip()]
        if not frames:
            continue
        total += 1
        # "ffffffff81234567 name+0x12": the name, without the offset and a BPF program's tag.
        syms = [re.sub(r"^bpf_prog_[0-9a-f]{16}_", "bpf_prog_", (f[1] if len(f) > 1 else "?").split("+")[0].strip())
                for f in frames]
        if root not in syms:
            continue
        under += 1
        chain = syms[:syms.index(root) + 1]
        self_[chain[0]] = self_.get(chain[0], 0) + 1
        for name in set(chain):
            incl[name] = incl.get(name, 0) + 1
    funcs = sorted(incl, key=lambda k: -incl[k])[:top]
    return {"samples": total, "under": under, "share_pct": 100 * under / total if total else 0, "root": root,
            "funcs": [{"name": k, "incl_pct": 100 * incl[k] / under, "self_pct": 100 * self_.get(k, 0) / under}
                      for k in funcs]}


def pgwindows(progress, windows):
    """Conditions in windows of one pgbench run (pgbench -P 1 --progress-timestamp): see cond_windows."""
    secs = []  # (end of the second, tps)
    pat = re.compile(r"^progress: ([\d.]+) s, ([\d.]+) tps")
    for line in open(progress, errors="replace"):
        m = pat.match(line)
        if m:
            secs.append((float(m.group(1)), float(m.group(2))))
    return cond_windows(secs, windows, "tps", "transactions")


def secwindows(prefix, windows, rate="rps", count="requests"):
    """Conditions in windows of one load run whose clients append "UNIX_SECOND DONE" lines to prefix.N (mix.lua
    with LOUPE_WRK_SECONDS=prefix, one file a wrk thread; ws_client.py --seconds-file): see cond_windows. A second
    no client wrote a line for had nothing done."""
    per = {}
    for path in glob.glob(glob.escape(prefix) + ".*"):
        for line in open(path, errors="replace"):
            f = line.split()
            if len(f) == 2 and f[0].isdigit() and f[1].isdigit():
                per[int(f[0])] = per.get(int(f[0]), 0) + int(f[1])
    secs = [(t + 1.0, float(per.get(t, 0))) for t in range(min(per), max(per) + 1)] if per else []
    return cond_windows(secs, windows, rate, count)


def cond_windows(secs, windows, rate, count):
    """Conditions in windows of one load run: each condition's window is compared with the off windows beside it,
    seconds apart, so that what moves the load over minutes here (another guest's load; on two CPUs, the
    scheduler's placement of its threads and the server's) falls out of the ratio. secs: (end of the second, work
    done in it per second), windows: bench-cost.sh's win_close lines. Records carry the condition's `rate` (the
    median of its window's seconds), `count` (work done in the window) and off_`rate`, off_host_cpu_us."""
    wins = [json.loads(x) for x in open(windows) if x.strip()]
    for w in wins:
        # The seconds wholly inside the window.
        inside = [v for end, v in secs if end - 1.0 >= w["t0"] - 0.05 and end <= w["t1"] + 0.05]
        w["seconds"] = len(inside)
        # Throughput: the median of the window's seconds, so that one second stalled by the disk (a TPC-B commit's
        # flush behind a checkpoint's writes, 30-40% slower here) is not taken for the condition's. Work done
        # (for CPU per unit): all of it, the mean.
        w[rate] = statistics.median(inside) if inside else None
        w[count] = sum(inside) / len(inside) * (w["t1"] - w["t0"]) if inside else None
    out = []
    for i, w in enumerate(wins):
        if w["cond"] == "off" or not w[rate]:
            continue
        offs = [x for x in (wins[i - 1] if i else None, wins[i + 1] if i + 1 < len(wins) else None)
                if x and x["cond"] == "off" and x[rate]]
        if not offs:
            continue
        r = {k: w[k] for k in ("cond", "round", rate, count, "seconds", "host_busy_s", "loupe_cpu_s")}
        r["wall_s"] = w["t1"] - w["t0"]
        r["host_steal_s"] = w.get("host_steal_s", 0)
        r["off_" + rate] = sum(x[rate] for x in offs) / len(offs)
        r["off_host_cpu_us"] = (sum(x["host_busy_s"] for x in offs) / sum(x[count] for x in offs) * 1e6)
        out.append(r)
    return out


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "progstats":
        print(json.dumps(progstats(int(args[0]))))
    elif cmd == "foreign":
        print(foreign([int(p) for p in args]))
    elif cmd == "wrk":
        print(json.dumps(parse_wrk(args[0])))
    elif cmd == "times":
        print(json.dumps(times(args[0])))
    elif cmd == "pgbench":
        print(json.dumps(parse_pgbench(args[0])))
    elif cmd == "sample":
        v = sample(args[0], args[1], args[2:])
        print(int(v) if v == int(v) else v)
    elif cmd == "snapshot":
        print(json.dumps(snapshot(args[0], args[1])))
    elif cmd == "snapdiff":
        print(json.dumps(snapdiff(json.loads(args[0]), json.loads(args[1]))))
    elif cmd == "exposition":
        print(json.dumps(exposition(args[0])))
    elif cmd == "proc":
        print(json.dumps(proc(int(args[0]))))
    elif cmd == "cpu":
        print(json.dumps(cpu([int(p) for p in args if p.isdigit()])))
    elif cmd == "perfunder":
        print(json.dumps(perfunder(*args[:2])))
    elif cmd == "pgwindows":
        for r in pgwindows(args[0], args[1]):
            print(json.dumps(r))
    elif cmd == "secwindows":
        for r in secwindows(*args[:4]):
            print(json.dumps(r))
    elif cmd == "report":
        out = args[args.index("--out") + 1] if "--out" in args else None
        return report(args[0], out)
    else:
        sys.exit(f"benchlib.py: unknown command '{cmd}'\n{__doc__}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
