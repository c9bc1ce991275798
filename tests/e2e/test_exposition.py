#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""End to end (root): loupe's HTTP endpoints on a real scrape while the reference workload (PostgreSQL + the
uvicorn API) runs under known traffic, with default targets.

/metrics is Prometheus text 0.0.4 that `promtool check metrics` passes without a word; gzip when the client
accepts it; OpenMetrics 1.0 when Accept asks for it (checked with the python3-prometheus-client OpenMetrics parser
when it is installed); /healthz, /readyz, 404 and 405; /status is JSON with features and their state, kernel
support, drops and targets per service, and holds no pid, path or address.
"""
import gzip
import json
import os
import re
import subprocess
import sys
import traceback
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loupe_test import Loupe, Tap, TOP, parse_metrics, select, value, wait_for  # noqa: E402
from e2e_support import (PG_BIN, Workload, json_leaks, loupe_version_revision, metrics_leaks,  # noqa: E402
                         missing_requirements, require_build, skip_all, stop_all,
                         terminate_on_signals)

TEXT_CT = "text/plain; version=0.0.4; charset=utf-8"
OM_ACCEPT = "application/openmetrics-text; version=1.0.0"
# What Prometheus 2.x sends (scrape.go, acceptHeader): OpenMetrics preferred, text 0.0.4 as fallback.
PROM_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
               "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")

SKIP_NAMES = [
    "workload and loupe start", "/metrics: 200, text 0.0.4, not compressed unasked",
    "promtool check metrics: clean on a real scrape", "every sample has HELP and TYPE, families are contiguous",
    "counters end in _total, no duplicate series", "histograms: cumulative buckets, +Inf equals _count, _sum present",
    "service metrics carry service_name; api and postgres both have syscall histograms",
    "gzip: Content-Encoding gzip when accepted, decompresses to the same families",
    "gzip: not used when refused (q=0) or not offered", "OpenMetrics: content type and # EOF at the end",
    "OpenMetrics: counter TYPE lines drop _total, samples keep it", "OpenMetrics: parsed by prometheus_client",
    "OpenMetrics: chosen for Prometheus's own Accept header", "OpenMetrics: not chosen for text/plain, */* or q=0",
    "OpenMetrics with gzip", "HEAD /metrics answers 200", "/healthz 200", "/readyz 200", "unknown path 404",
    "POST /metrics and POST /status 405", "/status: JSON, ready, running", "/status: kernel map of booleans",
    "/status: every feature running with its hook, as loupe_feature_enabled says",
    "/status: drops by feature.reason, as loupe_events_dropped_total", "/status: targets per service",
    "/status: targets agree with loupe_targets", "version and revision agree: loupe_build_info, /status, --version",
    "no pid, path or address in /metrics", "no pid, path or address in /status",
]


def fetch(port, path, headers=None, method="GET"):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def families(text):
    """TYPE name -> type, and the family each sample line belongs to, in order."""
    types, helps, order, problems = {}, set(), [], []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helps.add(line.split()[2])
        elif line.startswith("# TYPE "):
            _, _, name, typ = line.split(None, 3)
            if name in types:
                problems.append(f"second TYPE line for {name}")
            types[name] = typ
        elif line and not line.startswith("#"):
            name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
            fam = name
            for suf in ("_bucket", "_sum", "_count", "_total", "_created"):
                if name.endswith(suf) and name[:-len(suf)] in types:
                    fam = name[:-len(suf)]
            if fam not in types:
                fam = name
            order.append(fam)
    return types, helps, order, problems


def check_structure(t, text, m):
    types, helps, order, problems = families(text)
    for fam in dict.fromkeys(order):
        if fam not in types:
            problems.append(f"{fam}: sample without a TYPE line")
        if fam not in helps:
            problems.append(f"{fam}: no HELP line")
    seen, prev = set(), None
    for fam in order:
        if fam != prev and fam in seen:
            problems.append(f"{fam}: samples not contiguous")
        seen.add(fam)
        prev = fam
    t.ok(not problems, "every sample has HELP and TYPE, families are contiguous", "\n".join(problems[:20]))

    problems = [f"counter {n} does not end in _total" for n, ty in types.items() if ty == "counter"
                and not n.endswith("_total")]
    keys = [line.rsplit(" ", 1)[0] for line in text.splitlines() if line and not line.startswith("#")]
    dups = {k for k in keys if keys.count(k) > 1} if len(keys) < 20000 else set()
    problems += [f"duplicate series {k}" for k in sorted(dups)[:10]]
    t.ok(not problems, "counters end in _total, no duplicate series", "\n".join(problems[:20]))

    problems = []
    for fam, ty in types.items():
        if ty != "histogram":
            continue
        series = {}
        for (name, labels), v in m.items():
            if name == fam + "_bucket":
                d = dict(labels)
                le = d.pop("le")
                series.setdefault(frozenset(d.items()), []).append((float(le), v))
        for key, buckets in series.items():
            buckets.sort()
            vals = [v for _, v in buckets]
            if any(b > a for a, b in zip(vals[1:], vals)):
                problems.append(f"{fam}{dict(key)}: buckets not cumulative")
            if buckets[-1][0] != float("inf"):
                problems.append(f"{fam}{dict(key)}: no +Inf bucket")
            cnt = m.get((fam + "_count", key))
            if cnt is None or cnt != vals[-1]:
                problems.append(f"{fam}{dict(key)}: _count {cnt} != +Inf bucket {vals[-1]}")
            if (fam + "_sum", key) not in m:
                problems.append(f"{fam}{dict(key)}: no _sum")
    t.ok(not problems and "histogram" in types.values(),
         "histograms: cumulative buckets, +Inf equals _count, _sum present", "\n".join(problems[:20]) or types)

    problems = []
    for (name, labels), _ in m.items():
        # The timing mode's two families describe loupe, not a service (--syscalls: docs/metrics.md).
        if name in ("loupe_syscall_timing_duty_ratio", "loupe_syscall_timing_seconds_total"):
            continue
        if name.startswith(("loupe_syscall_", "loupe_targets")) and "service_name" not in dict(labels):
            problems.append(f"{name}{dict(labels)} has no service_name")
    svcs = {d["service_name"] for d, _ in select(m, "loupe_syscall_duration_seconds_count")}
    t.ok(not problems and {"api", "postgres"} <= svcs,
         "service metrics carry service_name; api and postgres both have syscall histograms",
         "\n".join(problems[:10]) + f"\nservices with syscall histograms: {sorted(svcs)}")
    return types


def check_metrics(t, L, wl):
    port = L.port
    st, h, body = fetch(port, "/metrics")
    text = body.decode()
    t.ok(st == 200 and h.get("content-type") == TEXT_CT and "content-encoding" not in h,
         "/metrics: 200, text 0.0.4, not compressed unasked", f"status {st}, headers {h}")
    r = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
    out = (r.stdout + r.stderr).decode(errors="replace").strip()
    t.ok(r.returncode == 0 and out == "", "promtool check metrics: clean on a real scrape",
         f"exit {r.returncode}; promtool said:\n{out}")
    m = parse_metrics(text)
    types = check_structure(t, text, m)

    st, h, gz = fetch(port, "/metrics", {"Accept-Encoding": "gzip"})
    try:
        unz = gzip.decompress(gz).decode()
        fams_gz = set(families(unz)[0]) if parse_metrics(unz) else set()
        err = ""
    except (OSError, EOFError, UnicodeDecodeError, ValueError) as e:
        fams_gz, err = set(), f"body is not a gzipped exposition: {e}"
    t.ok(st == 200 and h.get("content-encoding") == "gzip" and h.get("content-type") == TEXT_CT
         and fams_gz == set(types), "gzip: Content-Encoding gzip when accepted, decompresses to the same families",
         f"status {st}, headers {h}; {err or f'families that differ: {sorted(fams_gz ^ set(types))}'}")
    bad = {}
    for ae in ("gzip;q=0", "identity", "br"):
        st, h, b = fetch(port, "/metrics", {"Accept-Encoding": ae})
        if st != 200 or "content-encoding" in h or not b.startswith(b"# HELP"):
            bad[ae] = (st, h.get("content-encoding"), b[:20])
    t.ok(not bad, "gzip: not used when refused (q=0) or not offered", bad)

    st, h, b = fetch(port, "/metrics", {"Accept": OM_ACCEPT})
    om = b.decode()
    t.ok(st == 200 and h.get("content-type", "").startswith("application/openmetrics-text; version=1.0.0")
         and om.endswith("\n# EOF\n") and om.count("# EOF") == 1,
         "OpenMetrics: content type and # EOF at the end", f"status {st}, content-type {h.get('content-type')}, "
         f"ends {om[-40:]!r}")
    om_types = families(om)[0]
    problems = []
    for n, ty in types.items():
        if ty == "counter":
            base = n[:-len("_total")]
            if om_types.get(base) != "counter" or n in om_types:
                problems.append(f"{n}: OpenMetrics TYPE lines {[k for k in om_types if k.startswith(base)]}")
            # A family with no series yet (e.g. no connect error so far) has no sample in either format.
            has_sample = re.search(rf"^{re.escape(n)}[ {{]", text, re.M)
            if has_sample and not re.search(rf"^{re.escape(n)}[ {{]", om, re.M):
                problems.append(f"{n}: no sample named {n} in OpenMetrics")
    t.ok(not problems and om_types, "OpenMetrics: counter TYPE lines drop _total, samples keep it",
         "\n".join(problems[:20]))
    try:
        from prometheus_client.openmetrics.parser import text_string_to_metric_families
    except ImportError:
        t.skip("OpenMetrics: parsed by prometheus_client",
               "python3-prometheus-client not installed (apt-get install python3-prometheus-client)")
    else:
        try:
            parsed = {f.name: f.type for f in text_string_to_metric_families(om)}
            err = "" if parsed == om_types else f"families differ: {parsed} vs {om_types}"
        except Exception as e:  # noqa: BLE001 - the parser's verdict is the detail
            err = f"{type(e).__name__}: {e}"
        t.ok(not err, "OpenMetrics: parsed by prometheus_client", err)
    st, h, _ = fetch(port, "/metrics", {"Accept": PROM_ACCEPT})
    t.ok(h.get("content-type", "").startswith("application/openmetrics-text"),
         "OpenMetrics: chosen for Prometheus's own Accept header", h.get("content-type"))
    bad = {}
    for acc in ("text/plain", "*/*", "application/openmetrics-text;q=0", "application/json"):
        st, h, _ = fetch(port, "/metrics", {"Accept": acc})
        if st != 200 or h.get("content-type") != TEXT_CT:
            bad[acc] = (st, h.get("content-type"))
    t.ok(not bad, "OpenMetrics: not chosen for text/plain, */* or q=0", bad)
    st, h, b = fetch(port, "/metrics", {"Accept": OM_ACCEPT, "Accept-Encoding": "gzip"})
    try:
        ok = gzip.decompress(b).decode().endswith("# EOF\n")
    except (OSError, EOFError, UnicodeDecodeError):
        ok = False
    t.ok(ok and h.get("content-encoding") == "gzip" and h.get("content-type", "").startswith(
        "application/openmetrics-text"), "OpenMetrics with gzip", h)
    st, h, b = fetch(port, "/metrics", method="HEAD")
    t.ok(st == 200 and b == b"", "HEAD /metrics answers 200", f"status {st}, {len(b)} body bytes")
    return text, m


def check_endpoints(t, L):
    for path, want in (("/healthz", 200), ("/readyz", 200)):
        st, _, b = fetch(L.port, path)
        t.eq(st, want, f"{path} {want}")
    st, _, _ = fetch(L.port, "/no/such/path")
    t.eq(st, 404, "unknown path 404")
    got = [fetch(L.port, p, method="POST")[0] for p in ("/metrics", "/status")]
    t.eq(got, [405, 405], "POST /metrics and POST /status 405")


def check_status(t, L, wl, m):
    st, h, raw = fetch(L.port, "/status")
    try:
        s = json.loads(raw)
    except ValueError as e:
        t.ok(False, "/status: JSON, ready, running", f"not JSON ({e}): {raw[:300]!r}")
        return None
    t.ok(st == 200 and h.get("content-type", "").startswith("application/json") and s.get("ready") is True
         and s.get("state") == "running", "/status: JSON, ready, running",
         f"status {st}, content-type {h.get('content-type')}, ready {s.get('ready')}, state {s.get('state')}")
    k = s.get("kernel")
    t.ok(isinstance(k, dict) and k and all(isinstance(v, bool) for v in k.values()) and k.get("btf") is True,
         "/status: kernel map of booleans", k)
    feats = s.get("features") or []
    enabled = {d["feature"]: (d["hook"], v) for d, v in select(m, "loupe_feature_enabled")}
    problems = [f"{f.get('name')}: state {f.get('state')}, hook {f.get('hook')}" for f in feats
                if f.get("state") != "running" or
                f.get("hook") not in ("tp_btf", "raw_tp", "uprobe", "uprobe_multi", "perf_event")]
    problems += [f"{f.get('name')}: loupe_feature_enabled says {enabled.get(f.get('name'))}" for f in feats
                 if enabled.get(f.get("name")) != (f.get("hook"), 1.0)]
    names = {f.get("name") for f in feats}
    t.ok(not problems and {"targets", "syscalls"} <= names and names == set(enabled),
         "/status: every feature running with its hook, as loupe_feature_enabled says",
         "\n".join(problems) + f"\nfeatures {sorted(names)}, loupe_feature_enabled {enabled}")
    drops = s.get("drops")
    metric_drops = {f"{d['feature']}.{d['reason']}" for d, _ in select(m, "loupe_events_dropped_total")}
    t.ok(isinstance(drops, dict) and set(drops) == metric_drops and drops
         and all(isinstance(v, (int, float)) and v >= 0 for v in drops.values()),
         "/status: drops by feature.reason, as loupe_events_dropped_total", f"{drops} vs {sorted(metric_drops)}")
    tg = s.get("targets")
    want_min = {"api": len(wl.api_pids()), "postgres": len(wl.pg_pids())}
    t.ok(isinstance(tg, dict) and set(tg) == {"api", "postgres"}
         and all(isinstance(v, int) and v >= want_min[k] >= 1 for k, v in tg.items()),
         "/status: targets per service", f"{tg}; this workload alone has {want_min}")

    def agree():
        a = L.status()["targets"]
        b = {svc: int(value(L.scrape(), "loupe_targets", service_name=svc)) for svc in a}
        c = L.status()["targets"]
        return a == b == c
    t.ok(wait_for(agree, timeout=8, interval=0.3), "/status: targets agree with loupe_targets",
         f"/status {L.status()['targets']} vs loupe_targets {select(L.scrape(), 'loupe_targets')}")
    return s


def main():
    t = Tap()
    why = missing_requirements()
    if not why and not os.access("/usr/bin/promtool", os.X_OK):
        why = "/usr/bin/promtool missing (apt-get install prometheus)"
    if why:
        skip_all(t, why, SKIP_NAMES)
    require_build(t)
    terminate_on_signals()
    wl = Workload("expo")
    L = Loupe()
    try:
        try:
            L.start()
            seeded = wl.start()
            sid = seeded["ids"][0]
            res = wl.http_plan(f"GET /memories/{sid}=10,GET /memories/999999=3,GET /fail=2,GET /slow?ms=30=2,"
                               f"POST /memories=2,GET /search?q=graph=2,GET /cpu?n=2000=1,GET /healthz=3",
                               connections=2)
            wsr = wl.ws("--sessions", "2", "--messages", "5")
        except Exception as e:  # noqa: BLE001
            t.ok(False, "workload and loupe start", e)
            return
        statuses = {k: v["status"] for k, v in res.items()}
        t.ok(statuses["GET /fail"] == {"500": 2} and statuses["GET /memories/999999"] == {"404": 3}
             and wsr["errors"] == 0, "workload and loupe start", f"{statuses}, ws {wsr}")
        text, m = check_metrics(t, L, wl)
        check_endpoints(t, L)
        s = check_status(t, L, wl, m)

        bi = select(m, "loupe_build_info")
        ver, rev = loupe_version_revision()
        got = {"loupe_build_info": (bi[0][0].get("version"), bi[0][0].get("revision")) if bi else None,
               "/status": ((s or {}).get("version"), (s or {}).get("revision")), "--version": (ver, rev)}
        t.ok(len(set(got.values())) == 1 and None not in got.values(),
             "version and revision agree: loupe_build_info, /status, --version",
             f"{got} (one cause: objects compiled at different commits carry different LOUPE_COMMIT values; "
             f"the Makefile does not rebuild them when HEAD moves)")

        pids = wl.pg_pids() | wl.api_pids() | {L.proc.pid, os.getpid()}
        secrets = [wl.root, "127.0.0.1", TOP, PG_BIN, "/proc/", "/usr/", "/tmp/"]
        problems = metrics_leaks(L.scrape_text(), pids, secrets)
        problems += metrics_leaks(fetch(L.port, "/metrics", {"Accept": OM_ACCEPT})[2].decode(), pids, secrets)
        t.ok(not problems, "no pid, path or address in /metrics", "\n".join(problems[:20]))
        raw = fetch(L.port, "/status")[2].decode()
        problems = json_leaks(json.loads(raw), pids, secrets)
        problems += [f"/status contains {x!r}" for x in secrets + ["/"] if x in raw]
        t.ok(not problems, "no pid, path or address in /status", "\n".join(problems[:20]))
    except Exception:  # noqa: BLE001 - an error in a check is a failure, with its traceback
        t.ok(False, "no unexpected error", traceback.format_exc())
    finally:
        stop_all(t, wl, L)


if __name__ == "__main__":
    main()
