#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""Helpers of scripts/soak.sh.
    soak.py sample PID PORT    one JSON line: loupe's RSS, open fds, CPU seconds, the fill of its hash maps
                               (entries / max_entries, from bpftool) and its drop counters (/status)
    soak.py report FILE        the soak's verdict from its samples: RSS and fd growth after warm-up, CPU, the
                               fullest map, drops; exits 1 when RSS or fds grew by 1% or more
Warm-up is the first sixth of the run (at least 5 minutes of a run that long); growth compares the median of the
last tenth of the samples with the median of the tenth that ends the warm-up."""
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import fdinfo  # noqa: E402

HASH_TYPES = {"hash", "lru_hash", "percpu_hash", "lru_percpu_hash", "task_storage", "sk_storage"}


def sample(pid, port):
    with open(f"/proc/{pid}/status") as f:
        rss_kb = next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:"))
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    hz = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / hz
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    maps, seen = {}, set()
    for info in fdinfo(pid):
        mid = info.get("map_id")
        if info["kind"] != "bpf-map" or not mid or mid in seen:
            continue
        seen.add(mid)
        r = subprocess.run(["bpftool", "-j", "map", "show", "id", mid], capture_output=True, text=True)
        try:
            m = json.loads(r.stdout)
        except ValueError:
            continue
        if m.get("type") not in HASH_TYPES or not m.get("max_entries"):
            continue
        d = subprocess.run(["bpftool", "-j", "map", "dump", "id", mid], capture_output=True, text=True)
        try:
            n = len(json.loads(d.stdout or "[]"))
        except ValueError:
            continue
        maps[m.get("name", mid)] = round(n / m["max_entries"], 4)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as r:
            drops = json.loads(r.read()).get("drops", {})
    except (OSError, ValueError):
        drops = None
    return {"t": time.time(), "rss_kb": rss_kb, "fds": fds, "cpu_s": cpu, "maps": maps, "drops": drops}


def report(path):
    recs = [json.loads(ln) for ln in open(path) if ln.strip()]
    s = [r for r in recs if "rss_kb" in r]
    events = [r for r in recs if "event" in r]
    if len(s) < 20:
        print(f"soak: only {len(s)} samples: too short to judge")
        return 1
    t0, t1 = s[0]["t"], s[-1]["t"]
    warm_end = t0 + max(min(300, (t1 - t0) / 2), (t1 - t0) / 6)
    tenth = max(3, len(s) // 10)
    after = [r for r in s if r["t"] >= warm_end]
    base, last = after[:tenth], s[-tenth:]
    out = {"hours": round((t1 - t0) / 3600, 2), "samples": len(s), "warm_up_min": round((warm_end - t0) / 60, 1),
           "events": {e: sum(1 for r in events if r["event"] == e) for e in sorted({r["event"] for r in events})}}
    ok = True
    for k in ("rss_kb", "fds"):
        b, l_ = statistics.median(r[k] for r in base), statistics.median(r[k] for r in last)
        growth = (l_ - b) / b * 100 if b else 0.0
        out[k] = {"after_warm_up": b, "end": l_, "growth_pct": round(growth, 2), "max": max(r[k] for r in s)}
        ok &= growth < 1.0
    span = s[-1]["t"] - after[0]["t"]
    out["cpu_pct_of_a_core"] = round((s[-1]["cpu_s"] - after[0]["cpu_s"]) / span * 100, 2) if span else None
    fills = {}
    for r in s:
        for m, f in (r.get("maps") or {}).items():
            fills[m] = max(fills.get(m, 0), f)
    out["map_fill_max"] = dict(sorted(fills.items(), key=lambda kv: -kv[1])[:5])
    d0, d1 = s[0].get("drops") or {}, s[-1].get("drops") or {}
    out["drops"] = {k: d1[k] - d0.get(k, 0) for k in d1 if d1[k] - d0.get(k, 0)}
    out["verdict"] = "PASS: RSS and fd growth under 1% after warm-up" if ok else "FAIL: RSS or fds grew by 1% or more"
    print(json.dumps(out, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "sample":
        print(json.dumps(sample(int(sys.argv[2]), int(sys.argv[3]))))
    elif len(sys.argv) == 3 and sys.argv[1] == "report":
        sys.exit(report(sys.argv[2]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
