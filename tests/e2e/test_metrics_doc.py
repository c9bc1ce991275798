#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""End to end (root): docs/metrics.md against a live scrape, so that the metric reference cannot drift.

The reference is the tables of docs/metrics.md whose header starts with `metric` (columns metric, type, labels,
meaning). A documented family is a name in backticks in the first column of such a table (one cell may list
several, comma-separated: the process_* row). It is the family's name as the Prometheus text format (0.0.4) writes
it on its `# TYPE` line: histograms by their base name (samples add _bucket/_sum/_count), counters with their
_total (OpenMetrics drops it from the TYPE line; samples keep it in both formats). Names in the prose around the
tables are not documentation of a family. A first-column cell that holds anything else than backticked metric
names and commas, a row without a type, or a family documented twice is a parse error, so a misspelt or renamed
row cannot slip by.

loupe runs with every option that adds families (--syscalls on, --offcpu, --pg-usdt-query, --bpf-stats always,
payload capture at its default 256 bytes, the CPU profiler at its default 19 Hz) on this run's reference workload
(a private PostgreSQL 15 and the uvicorn API, `own` targets), which gets HTTP traffic (2xx, 404, 500, slow
requests, a request whose client goes away before the answer), WebSocket sessions (text and binary messages,
client and server closes with codes 1000 and 4001), SQL from the API and directly to the backend (a syntax error,
a unique violation, a slow statement, committed and rolled-back transactions, an error inside a transaction, idle
time inside one), a lock wait and a CHECKPOINT (the USDT probes), and a third service of the test's own (a process
whose connects to a closed port are refused: loupe_tcp_connect_errors_total). Once loupe has counted all that,
/metrics is scraped and:
  (a) every exported family (every `# TYPE` line, and any sample without one) is documented;
  (b) every documented family is exported (loupe declares a family, with its HELP and TYPE lines, as soon as its
      collector runs, samples or not; ALLOWED_ABSENT lists the families that may be missing, with the reason);
  (c) the documented type equals the `# TYPE`;
  (d) the labels of the family's samples (`le` aside) are the documented labels, for families with samples.
One TAP line per family and check. LOUPE_METRICS_DOC=PATH checks another copy of the document (used to prove that
the test fails on drift).
"""
import os
import re
import subprocess
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loupe_test import Loupe, Tap, TOP, free_port, value, wait_for  # noqa: E402
from e2e_support import (PY, HttpConn, Workload, missing_requirements, require_build, skip_all,  # noqa: E402
                         stop_all, terminate_on_signals)

DOC = os.environ.get("LOUPE_METRICS_DOC", os.path.join(TOP, "docs", "metrics.md"))
TYPES = ("counter", "gauge", "histogram")
NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")

# Every option of `loupe run` that adds families or series (see `loupe run --help`); the rest stay at their defaults
# (--capture-bytes 256 and --profile-hz 19 are on by default).
LOUPE_ARGS = ["--syscalls", "on", "--offcpu", "--pg-usdt-query", "--bpf-stats", "always"]

# Documented families that may be missing from this run, and why. Empty: every family appears here (Debian's
# PostgreSQL 15 has its USDT probes, the kernel has what every feature needs). Keep it that way unless a family
# truly depends on a condition this test cannot create; each entry is printed as a TAP note.
ALLOWED_ABSENT = {}

# Features whose families may be absent when the environment cannot give them, keyed by the feature named in the
# doc section's heading, with the /status detail that proves it: a PostgreSQL built without --enable-dtrace (e.g.
# LOUPE_PG_BIN pointing at a source build) has no USDT probes, and pg_usdt then does not run.
ENV_OFF = {"pg_usdt": ("has no USDT probes", "the postgres binary has no USDT probes (built without --enable-dtrace)")}

N_SLOW, SLOW_MS = 2, 300
# A third service, of this test only: a process that connects to a closed loopback port (refused), for
# loupe_tcp_connect_errors_total, which neither the API nor PostgreSQL produce. Its marker is in its command line.
CONNECT_SVC = "mdoc_connect"
CONNECT_SCRIPT = ("import socket, sys, time\n"
                  "time.sleep(0.3)  # loupe matches the new process's command line first\n"
                  "for _ in range(10):\n"
                  "    s = socket.socket()\n"
                  "    try:\n"
                  "        s.connect(('127.0.0.1', int(sys.argv[1])))\n"
                  "    except OSError:\n"
                  "        pass\n"
                  "    s.close()\n"
                  "    time.sleep(0.2)\n")

GROUPS = ["docs/metrics.md parses", "workload, loupe and traffic", "every feature of this run is running",
          "loupe counted the traffic", "every exported family is documented", "every documented family is exported",
          "documented types match the TYPE lines", "documented labels match the samples' labels"]


# ---------------------------------------------------------------- the document ---

def split_row(line):
    """Cells of a Markdown table row: split on | outside backticks (and not escaped)."""
    cells, cur, code, i = [], "", False, 0
    s = line.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|") and not s.endswith("\\|"):
        s = s[:-1]
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s) and s[i + 1] == "|":
            cur += "|"
            i += 2
            continue
        if c == "`":
            code = not code
        if c == "|" and not code:
            cells.append(cur.strip())
            cur = ""
        else:
            cur += c
        i += 1
    cells.append(cur.strip())
    return cells


def parse_doc(text):
    """The families documented in the metric tables: ({name: {"type", "labels", "line", "feature", "section"}},
    number of metric tables, [problems])."""
    fams, problems, ntables = {}, [], 0
    lines = text.splitlines()
    section, feature, i = "", None, 0
    while i < len(lines):
        line = lines[i]
        h = re.match(r"^(#{1,6})\s+(.*)$", line)
        if h:
            section = h.group(2).strip()
            m = re.search(r"\(feature `([a-z_]+)`", section)
            feature = m.group(1) if m else None
            i += 1
            continue
        if not line.lstrip().startswith("|"):
            i += 1
            continue
        block = []
        while i < len(lines) and lines[i].lstrip().startswith("|"):
            block.append((i + 1, lines[i]))
            i += 1
        header = [c.lower() for c in split_row(block[0][1])]
        if not header or header[0] != "metric":
            continue  # not a metric table
        ntables += 1
        col = {name: header.index(name) for name in ("metric", "type", "labels") if name in header}
        if set(col) != {"metric", "type", "labels"}:
            problems.append(f"line {block[0][0]}: metric table without a {'/'.join(sorted({'type', 'labels'} - set(col)))}"
                            f" column: {block[0][1].strip()}")
            continue
        if len(block) < 2 or not re.fullmatch(r"\|?(\s*:?-+:?\s*\|)+\s*:?-*:?\s*\|?", block[1][1].strip()):
            problems.append(f"line {block[0][0]}: metric table without a separator row")
            continue
        for lineno, row in block[2:]:
            cells = split_row(row)
            if len(cells) != len(header):
                problems.append(f"line {lineno}: {len(cells)} cells, the header has {len(header)}: {row.strip()}")
                continue
            first = cells[col["metric"]]
            names = re.findall(r"`([^`]*)`", first)
            rest = re.sub(r"`[^`]*`", "", first)
            if not names or not re.fullmatch(r"[\s,]*", rest):
                problems.append(f"line {lineno}: the metric cell must hold only backticked names separated by "
                                f"commas: {first!r}")
            typ = cells[col["type"]].strip().strip("`")
            if typ not in TYPES:
                problems.append(f"line {lineno}: type {typ!r} is not one of {', '.join(TYPES)}: {first}")
            labels = [x.strip().strip("`") for x in cells[col["labels"]].split(",") if x.strip()]
            for lab in labels:
                if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", lab):
                    problems.append(f"line {lineno}: {lab!r} is not a label name: {first}")
            for n in names:
                if not NAME.fullmatch(n):
                    problems.append(f"line {lineno}: `{n}` is not a metric family name")
                    continue
                if n in fams:
                    problems.append(f"line {lineno}: {n} documented twice (also line {fams[n]['line']})")
                    continue
                fams[n] = {"type": typ, "labels": set(labels), "line": lineno, "feature": feature,
                           "section": section}
    return fams, ntables, problems


# ---------------------------------------------------------------- the scrape ---

def exposition_families(text):
    """Prometheus text 0.0.4 -> ({family: type} from the # TYPE lines, {family: [label-name sets of its samples]},
    [problems]). A sample belongs to the family whose TYPE names it, or, for histograms, its _bucket/_sum/_count;
    a sample of no TYPE'd family is its own family (type None)."""
    types, labels, problems = {}, {}, []
    sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+\S+(?:\s+\S+)?$')
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) != 4:
                problems.append(f"bad TYPE line {line!r}")
                continue
            if parts[2] in types:
                problems.append(f"second TYPE line for {parts[2]}")
            types[parts[2]] = parts[3]
            continue
        if not line or line.startswith("#"):
            continue
        m = sample.match(line)
        if not m:
            problems.append(f"unparseable sample line {line!r}")
            continue
        name = m.group(1)
        fam = name
        if name not in types:
            for suf in ("_bucket", "_sum", "_count"):
                if name.endswith(suf) and types.get(name[:-len(suf)]) == "histogram":
                    fam = name[:-len(suf)]
        if fam not in types:
            types[fam] = None
            problems.append(f"sample {name} has no TYPE line")
        keys = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"', m.group(2) or ""))
        if name.endswith("_bucket") and fam != name:
            keys.discard("le")
        labels.setdefault(fam, []).append(frozenset(keys))
    return types, labels, problems


# ---------------------------------------------------------------- traffic ---

def connect_marker(wl):
    return f"loupe-e2e-mdoc-connect-{wl.api_port}"


def make_traffic(wl, seeded):
    """HTTP, WebSocket, SQL and refused-connect traffic that gives series to the event families. Returns the
    ground truth the waits need: HTTP requests answered, WebSocket sessions, backend errors."""
    sid = seeded["ids"][0]
    closed = free_port()  # nobody listens there: the connects are refused
    r = subprocess.run([PY, "-c", CONNECT_SCRIPT, str(closed), connect_marker(wl)], capture_output=True, text=True,
                       timeout=30)
    if r.returncode:
        raise RuntimeError(f"the connecting helper exited {r.returncode}: {r.stderr[-500:]}")
    plan = (f"GET /memories/{sid}=10,GET /memories/999999=3,GET /fail=2,GET /slow?ms={SLOW_MS}={N_SLOW},"
            f"POST /memories=2,GET /search?q=graph=2,GET /cpu?n=200000=3,GET /healthz=3,GET /nosuchpath=2")
    res = wl.http_plan(plan, connections=2)
    answered = sum(sum(v["status"].values()) for v in res.values())
    # A request whose client leaves before the answer: loupe_http_requests_aborted_total.
    c = HttpConn(wl.api_port)
    c.send(HttpConn.build("GET", "/slow?ms=400"))
    time.sleep(0.1)
    c.close()
    ws = [wl.ws("--sessions", "2", "--messages", "5"), wl.ws("--sessions", "1", "--messages", "3", "--binary",
                                                            "--size", "300"),
          wl.ws("--sessions", "2", "--expect-close", "4001")]
    ws_errors = sum(w.get("errors", 0) for w in ws)

    import psycopg2
    conn = wl.pg_connect()  # the test is no target: the backend side sees these
    cur = conn.cursor()
    cur.execute("CREATE TABLE IF NOT EXISTS e2e_doc_uniq (k int PRIMARY KEY); "
                "CREATE TABLE IF NOT EXISTS e2e_doc_lock (id int)")
    errors = 0
    for sql in ("SELEC 1", "INSERT INTO e2e_doc_uniq VALUES (1)", "INSERT INTO e2e_doc_uniq VALUES (1)"):
        try:
            cur.execute(sql)
        except psycopg2.Error:
            errors += 1
    cur.execute("SELECT pg_sleep(0.3)")
    conn.autocommit = False
    cur.execute("SELECT count(*) FROM memories")
    time.sleep(0.2)  # idle in transaction
    conn.commit()
    cur.execute("SELECT 1")
    conn.rollback()
    try:
        cur.execute("SELECT 1/0")  # an error inside a transaction: aborted, then rolled back
    except psycopg2.Error:
        errors += 1
    conn.rollback()
    conn.autocommit = True

    # A lock wait (granted) and a checkpoint, for the USDT histograms; CHECKPOINT needs the superuser.
    su = psycopg2.connect(host="127.0.0.1", port=wl.pg_port, dbname="loupe", user="postgres", connect_timeout=10)
    su.autocommit = True
    a = wl.pg_connect()
    a.autocommit = False
    a.cursor().execute("LOCK TABLE e2e_doc_lock IN ACCESS EXCLUSIVE MODE")
    out = {}

    def waiter():
        try:
            b = wl.pg_connect()
            b.autocommit = False
            b.cursor().execute("LOCK TABLE e2e_doc_lock IN ACCESS EXCLUSIVE MODE")
            b.commit()
            b.close()
        except Exception as e:  # noqa: BLE001 - reported below
            out["error"] = e
    th = threading.Thread(target=waiter, daemon=True)
    th.start()

    def waiting():
        with su.cursor() as c:
            c.execute("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'e2e_doc_lock'::regclass")
            return c.fetchone()[0]
    seen = wait_for(lambda: waiting() >= 1, timeout=10, interval=0.02)
    time.sleep(0.1)
    a.commit()
    th.join(20)
    a.close()
    su.cursor().execute("CHECKPOINT")
    su.close()
    conn.close()
    if "error" in out or not seen:
        raise RuntimeError(f"lock wait: waiter seen waiting {seen}, error {out.get('error')}")
    return {"answered": answered, "ws_errors": ws_errors, "ws_sessions": 5, "pg_errors": errors, "http": res}


def counted(m, truth):
    """What loupe must have counted before the scrape is compared (and what it has so far)."""
    got = {
        "http": value(m, "http_server_request_duration_seconds_count", service_name="api"),
        "aborted": value(m, "loupe_http_requests_aborted_total", service_name="api"),
        "ws_sessions": value(m, "loupe_websocket_connections_total", service_name="api"),
        "ws_active": value(m, "loupe_websocket_connections_active", service_name="api"),
        "pg_errors": value(m, "loupe_postgres_errors_total", service_name="postgres", side="server"),
        "lock_waits": value(m, "loupe_postgres_lock_wait_seconds_count", service_name="postgres"),
        "checkpoints": value(m, "loupe_postgres_checkpoint_duration_seconds_count", service_name="postgres"),
        "profile_samples": value(m, "loupe_profile_samples_total", service_name="api"),
        "connect_errors": value(m, "loupe_tcp_connect_errors_total", service_name=CONNECT_SVC),
    }
    ok = (got["http"] >= truth["answered"] and got["aborted"] >= 1 and got["ws_sessions"] >= truth["ws_sessions"]
          and got["ws_active"] == 0 and got["pg_errors"] >= truth["pg_errors"] and got["lock_waits"] >= 1
          and got["checkpoints"] >= 1 and got["profile_samples"] >= 1 and got["connect_errors"] >= 1)
    return ok, got


# ---------------------------------------------------------------- main ---

def main():
    t = Tap()
    try:
        with open(DOC) as f:
            doc, ntables, problems = parse_doc(f.read())
    except OSError as e:
        doc, ntables, problems = {}, 0, [f"cannot read {DOC}: {e}"]
    rel = os.path.relpath(DOC, TOP) if DOC.startswith(TOP) else DOC
    t.ok(doc and not problems, f"{rel} parses: {len(doc)} families in {ntables} metric tables",
         "\n".join(problems) or "no family found")
    why = missing_requirements()
    if why:
        skip_all(t, why, GROUPS[1:])
    require_build(t)
    terminate_on_signals()
    if os.environ.pop("LOUPE_TEST_EXTRA_ARGS", None):
        t.note("LOUPE_TEST_EXTRA_ARGS ignored: this test runs loupe with every feature on")
    for name, reason in sorted(ALLOWED_ABSENT.items()):
        t.note(f"allowed to be absent: {name}: {reason}")
    wl = Workload("mdoc")
    L = Loupe(*wl.own_targets(), "--target", f"{CONNECT_SVC}=cmdline:{connect_marker(wl)}", *LOUPE_ARGS)
    try:
        try:
            L.start()  # before the workload: the API's pool connects (loupe_tcp_connect_duration_seconds)
            seeded = wl.start()
            truth = make_traffic(wl, seeded)
            ok = truth["ws_errors"] == 0
            t.ok(ok, "workload, loupe and traffic", f"WebSocket client errors: {truth['ws_errors']}")
        except Exception:  # noqa: BLE001
            t.ok(False, "workload, loupe and traffic", traceback.format_exc())
            return

        st = L.status()
        feats = {f.get("name"): f for f in st.get("features", [])}
        env_off, bad = {}, []
        for name, f in sorted(feats.items()):
            if f.get("state") == "running":
                continue
            detail = f.get("detail", "")
            if name in ENV_OFF and ENV_OFF[name][0] in detail:
                env_off[name] = ENV_OFF[name][1]
            else:
                bad.append(f"{name}: state {f.get('state')}, {detail}")
        t.ok(not bad and feats, "every feature of this run is running",
             "\n".join(bad) + f"\nfeatures: {sorted(feats)}")
        for name, reason in env_off.items():
            t.note(f"feature {name} does not run here: {reason}; its families are skipped")

        last = {}

        def settled():
            ok, got = counted(L.scrape(), truth)
            last.update(got)
            return ok
        t.ok(wait_for(settled, timeout=20, interval=0.5), "loupe counted the traffic",
             f"loupe has {last}; want http >= {truth['answered']}, aborted >= 1, ws sessions >= {truth['ws_sessions']}, "
             f"ws active 0, pg errors >= {truth['pg_errors']}, one lock wait, one checkpoint, CPU samples, a connect error")

        text = L.scrape_text()
        types, labels, problems = exposition_families(text)
        if problems:
            t.note("exposition: " + "; ".join(problems[:10]))

        # (a) every exported family is documented
        for fam in sorted(types):
            d = doc.get(fam)
            t.ok(d is not None, f"documented: {fam}",
                 f"{fam} ({types[fam]}) is exported but not in a metric table of {rel}")

        # (b) every documented family is exported
        for fam in sorted(doc):
            d = doc[fam]
            if fam in types:
                t.ok(True, f"exported: {fam}")
            elif fam in ALLOWED_ABSENT:
                t.skip(f"exported: {fam}", ALLOWED_ABSENT[fam])
            elif d["feature"] in env_off:
                t.skip(f"exported: {fam}", env_off[d["feature"]])
            else:
                t.ok(False, f"exported: {fam}", f"{fam} is documented ({rel} line {d['line']}, section "
                     f"{d['section']!r}) but this run exports no family of that name")

        # (c) the documented type is the exported one
        for fam in sorted(set(doc) & set(types)):
            t.ok(doc[fam]["type"] == types[fam], f"type: {fam} is {doc[fam]['type'] or '(none)'}",
                 f"{rel} line {doc[fam]['line']} says {doc[fam]['type'] or '(no type)'!r}, # TYPE says "
                 f"{types[fam]!r}")

        # (d) the documented labels are the labels of the samples
        empty = []
        for fam in sorted(set(doc) & set(types)):
            sets = set(labels.get(fam, []))
            if not sets:
                empty.append(fam)
                continue
            want = frozenset(doc[fam]["labels"])
            wrong = sorted(sorted(s) for s in sets if s != want)
            t.ok(not wrong, f"labels: {fam} {{{', '.join(sorted(want))}}}",
                 f"{rel} line {doc[fam]['line']} documents labels {sorted(want)}; samples have {wrong}")
        if empty:
            t.note(f"{len(empty)} families have no sample in this run (their labels are not checked): "
                   + ", ".join(empty))
    except Exception:  # noqa: BLE001 - an error in a check is a failure, with its traceback
        t.ok(False, "no unexpected error", traceback.format_exc())
    finally:
        stop_all(t, wl, L)


if __name__ == "__main__":
    main()
