#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""End to end (root): PostgreSQL internals from the USDT probes of the postgres binary (bpf/pgusdt.bpf.c) against
ground truth this test causes in a private PostgreSQL 15 cluster (tests/workload/pg-start.sh, run as postgres):

  - a lock wait of known length: session A holds ACCESS EXCLUSIVE on a table, session B's LOCK TABLE waits until
    A commits ~0.4 s after B was seen waiting in pg_locks -> exactly one lock wait, in the log2 bucket of its
    length, its _sum between the length seen from outside and B's own measured statement time; no abort.
  - a deadlock: two sessions update two rows in opposite orders -> deadlocks +1, aborts +1 (the victim, whose
    error aborts its transaction; its later ROLLBACK does not abort again), one lock wait (the survivor's,
    granted when the victim aborts; the victim's own wait ends in an error and PostgreSQL fires no
    lock__wait__done for it).
  - ROLLBACK of an open transaction -> aborts +1; COMMIT -> aborts +0.
  - CHECKPOINT -> one checkpoint, its duration no longer than the statement took.
  - per-query probes are off by default (no query series, /status says off); with --pg-usdt-query N simple
    queries give exactly N query durations and at least N commits.
  - a postgres binary that starts after loupe (a copy of the installation elsewhere: a new file, as after an upgrade
    in place) is found by the periodic rescan and its probes attached: N queries timed exactly.
  - a loupe whose targets include no postgres reports pg_usdt off, with the reason, in /status.
"""
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loupe_test import Loupe, hist_le, value, wait_for  # noqa: E402
from e2e_support import PG_BIN, Workload, begin, ere_escape, stop_all  # noqa: E402

LOCK = "loupe_postgres_lock_wait_seconds"
CKPT = "loupe_postgres_checkpoint_duration_seconds"
DEADLOCKS = "loupe_postgres_deadlocks_total"
ABORTS = "loupe_postgres_transaction_aborts_total"
QUERY = "loupe_postgres_usdt_query_duration_seconds"
COMMITS = "loupe_postgres_transaction_commits_total"
SVC = "postgres"
RARE = ("lock__wait__start", "lock__wait__done", "deadlock__found", "checkpoint__start", "checkpoint__done",
        "transaction__abort")
PER_QUERY = ("query__start", "query__done", "transaction__commit")
N_QUERIES = 200

NAMES = [
    "pg_usdt runs with the cluster's binary: /status lists the rare-event probes attached, per-query ones off",
    "lock wait: B waited for A's lock", "lock wait: exactly one observation",
    "lock wait: in the log2 bucket of its length", "lock wait: _sum between the outside view and B's own time",
    "lock wait: no transaction aborted", "deadlock: exactly one session got deadlock_detected",
    "deadlock: loupe_postgres_deadlocks_total +1", "deadlock: aborts +1 (the victim)",
    "deadlock: one granted lock wait (the survivor's)", "ROLLBACK: aborts +1", "COMMIT: aborts +0",
    "CHECKPOINT: one checkpoint observed", "CHECKPOINT: its duration is within the statement's time",
    "per-query probes off by default: no query series exported", "no drops",
] + [f"--pg-usdt-query --uprobe-attach {mode}: {what}" for mode in ("multi", "perf") for what in (
    "/status lists the per-query probes attached, through its kind of link",
    "exactly N query durations", "at least N commits")] + [
    "a postgres binary started after loupe (a copy elsewhere, as an upgrade in place runs a new file): attached "
    "within 10 s without CAP_BPF or CAP_SYS_ADMIN (dropped), /status counts two binaries",
    "that binary's server: exactly N query durations",
    "no postgres among the targets: pg_usdt is off and /status says why",
]


def hist_count(m, name):
    return value(m, name + "_count", service_name=SVC)


def hist_sum(m, name):
    return value(m, name + "_sum", service_name=SVC)


def slot(m, name, ns):
    up, low = hist_le(ns)
    hi = value(m, name + "_bucket", le=up, service_name=SVC)
    lo = value(m, name + "_bucket", le=low, service_name=SVC) if low else 0.0
    return hi - lo


def settle(L, cond, timeout=10):
    """Scrape until cond(m) holds (the probes update maps synchronously, so this is quick); the last scrape."""
    return wait_for(lambda: (lambda m: m if cond(m) else None)(L.scrape()), timeout=timeout) or L.scrape()


def pg_status(L):
    return next((f for f in L.status()["features"] if f["name"] == "pg_usdt"), {})


def connect(wl, autocommit=False):
    import psycopg2
    c = psycopg2.connect(host="127.0.0.1", port=wl.pg_port, dbname="loupe", user="postgres",
                         application_name="loupe-e2e-pgusdt", connect_timeout=10)
    c.autocommit = autocommit
    return c


def waiting_locks(admin):
    with admin.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                    "WHERE NOT l.granted AND a.application_name = 'loupe-e2e-pgusdt'")
        return cur.fetchone()[0]


def in_thread(fn):
    out = {}

    def run():
        t0 = time.monotonic()
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - reported by the caller
            out["error"] = e
        out["seconds"] = time.monotonic() - t0
    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th, out


def test_lock_wait(t, L, wl, admin):
    a, b = connect(wl), connect(wl)
    m0 = L.scrape()
    a.cursor().execute("LOCK TABLE pgu_lock IN ACCESS EXCLUSIVE MODE")
    th, res = in_thread(lambda: (b.cursor().execute("LOCK TABLE pgu_lock IN ACCESS EXCLUSIVE MODE"), b.commit()))
    seen = wait_for(lambda: waiting_locks(admin) == 1, timeout=10, interval=0.01)
    t_seen = time.monotonic()
    time.sleep(0.4)
    t_release = time.monotonic()
    a.commit()
    th.join(20)
    t.ok(seen and "error" not in res and not th.is_alive(), NAMES[1], res)
    m1 = settle(L, lambda m: hist_count(m, LOCK) > hist_count(m0, LOCK))
    lo, hi = t_release - t_seen, res.get("seconds", 0)
    t.eq(hist_count(m1, LOCK) - hist_count(m0, LOCK), 1, NAMES[2])
    up_lo, up_hi = hist_le(int(lo * 1e9))[0], hist_le(int(hi * 1e9))[0]
    if up_lo == up_hi:
        t.eq(slot(m1, LOCK, int(hi * 1e9)) - slot(m0, LOCK, int(hi * 1e9)), 1, NAMES[3] + f" (le={up_hi})")
    else:
        t.skip(NAMES[3], f"the wait ({lo:.3f}..{hi:.3f} s) straddles a bucket bound on this run")
    ds = hist_sum(m1, LOCK) - hist_sum(m0, LOCK)
    t.ok(lo <= ds <= hi, NAMES[4], f"sum grew by {ds:.6f}s, expected within [{lo:.6f}, {hi:.6f}]")
    t.eq(value(m1, ABORTS, service_name=SVC) - value(m0, ABORTS, service_name=SVC), 0, NAMES[5])
    a.close()
    b.close()


def test_deadlock(t, L, wl, admin):
    import psycopg2
    x, y = connect(wl), connect(wl)
    m0 = L.scrape()
    x.cursor().execute("UPDATE pgu_dl SET v = v + 1 WHERE id = 1")
    y.cursor().execute("UPDATE pgu_dl SET v = v + 1 WHERE id = 2")
    tx, rx = in_thread(lambda: x.cursor().execute("UPDATE pgu_dl SET v = v + 1 WHERE id = 2"))
    wait_for(lambda: waiting_locks(admin) == 1, timeout=10, interval=0.01)
    ty, ry = in_thread(lambda: y.cursor().execute("UPDATE pgu_dl SET v = v + 1 WHERE id = 1"))
    tx.join(30)
    ty.join(30)
    errs = [r.get("error") for r in (rx, ry)]
    victims = [e for e in errs if isinstance(e, psycopg2.errors.DeadlockDetected)]
    t.ok(len(victims) == 1 and errs.count(None) == 1, NAMES[6], errs)
    for c, r in ((x, rx), (y, ry)):
        if r.get("error"):
            c.rollback()
        else:
            c.commit()
    m1 = settle(L, lambda m: value(m, DEADLOCKS, service_name=SVC) > value(m0, DEADLOCKS, service_name=SVC) and
                hist_count(m, LOCK) > hist_count(m0, LOCK))
    t.eq(value(m1, DEADLOCKS, service_name=SVC) - value(m0, DEADLOCKS, service_name=SVC), 1, NAMES[7])
    t.eq(value(m1, ABORTS, service_name=SVC) - value(m0, ABORTS, service_name=SVC), 1, NAMES[8])
    t.eq(hist_count(m1, LOCK) - hist_count(m0, LOCK), 1, NAMES[9])
    x.close()
    y.close()


def test_rollback_commit(t, L, wl):
    c = connect(wl)
    m0 = L.scrape()
    c.cursor().execute("SELECT 1")
    c.rollback()
    m1 = settle(L, lambda m: value(m, ABORTS, service_name=SVC) > value(m0, ABORTS, service_name=SVC))
    t.eq(value(m1, ABORTS, service_name=SVC) - value(m0, ABORTS, service_name=SVC), 1, NAMES[10])
    c.cursor().execute("SELECT 1")
    c.commit()
    time.sleep(0.3)
    m2 = L.scrape()
    t.eq(value(m2, ABORTS, service_name=SVC) - value(m1, ABORTS, service_name=SVC), 0, NAMES[11])
    c.close()


def test_checkpoint(t, L, admin):
    m0 = L.scrape()
    t0 = time.monotonic()
    admin.cursor().execute("CHECKPOINT")
    wall = time.monotonic() - t0
    m1 = settle(L, lambda m: hist_count(m, CKPT) > hist_count(m0, CKPT))
    t.eq(hist_count(m1, CKPT) - hist_count(m0, CKPT), 1, NAMES[12])
    ds = hist_sum(m1, CKPT) - hist_sum(m0, CKPT)
    t.ok(0 < ds <= wall, NAMES[13], f"sum grew by {ds:.6f}s; CHECKPOINT took {wall:.6f}s")


def test_new_binary(t):
    """A second installation (a copy of PG_BIN's tree, share/ linked) started while loupe runs."""
    top = tempfile.mkdtemp(prefix="loupe-pgcopy-", dir="/tmp")
    os.chmod(top, 0o755)
    wl2 = None
    try:
        lib = os.path.dirname(os.path.dirname(PG_BIN))  # /usr/lib/postgresql
        ver = os.path.basename(os.path.dirname(PG_BIN))  # 15
        dst = os.path.join(top, "usr", "lib", "postgresql", ver)
        shutil.copytree(os.path.join(lib, ver), dst, symlinks=True)
        os.makedirs(os.path.join(top, "usr", "share", "postgresql"))
        os.symlink(f"/usr/share/postgresql/{ver}", os.path.join(top, "usr", "share", "postgresql", ver))
        wl2 = Workload("pgusdt-new-binary")
        wl2.env["LOUPE_PG_BIN"] = os.path.join(dst, "bin")
        rule = "postgres=cmdline:^" + ere_escape(os.path.join(dst, "bin", "postgres")) + " -D " + \
            ere_escape(wl2.pg_dir) + "( |$)"
        # --bpf-stats always: CAP_SYS_ADMIN is dropped too; the new binary attaches with what loupe keeps.
        with Loupe("--target", rule, "--pg-usdt-query", "--bpf-stats", "always") as L:
            kept = sorted(L.status().get("privileges", {}).get("kept", {}))
            before = pg_status(L).get("binaries")
            wl2.start_pg()
            ok = wait_for(lambda: pg_status(L).get("binaries") == 2 and "pg_usdt_new_binary" in L.stderr(), timeout=10)
            t.ok(before == 1 and ok and "cap_bpf" not in kept and "cap_sys_admin" not in kept, NAMES[-3],
                 f"kept {kept}; binaries {before} -> {pg_status(L).get('binaries')}; " +
                 " ".join(ln for ln in L.stderr().splitlines() if "pg_usdt" in ln)[-600:])
            c = connect(wl2, autocommit=True)
            cur = c.cursor()
            m0 = L.scrape()
            for _ in range(N_QUERIES):
                cur.execute("SELECT 1")
            m1 = settle(L, lambda m: hist_count(m, QUERY) - hist_count(m0, QUERY) >= N_QUERIES)
            t.eq(hist_count(m1, QUERY) - hist_count(m0, QUERY), N_QUERIES, NAMES[-2])
            c.close()
    finally:
        if wl2:
            problems = wl2.stop()
            if problems:
                t.note("cleanup: " + "; ".join(problems))
        shutil.rmtree(top, ignore_errors=True)


def main():
    t = begin(NAMES)
    wl = Workload("pgusdt")
    try:
        wl.start_pg()
        admin = connect(wl, autocommit=True)
        admin.cursor().execute("CREATE TABLE pgu_lock (id int); CREATE TABLE pgu_dl (id int PRIMARY KEY, v int); "
                               "INSERT INTO pgu_dl VALUES (1, 0), (2, 0)")
        with Loupe(*wl.own_targets()) as L:
            st = pg_status(L)
            probes = st.get("probes", {})
            t.ok(st.get("state") == "running" and st.get("hook") in ("uprobe_multi", "uprobe") and
                 all(probes.get(p) == "attached" for p in RARE) and all(probes.get(p) == "off" for p in PER_QUERY),
                 NAMES[0], st)
            for fn, args in ((test_lock_wait, (t, L, wl, admin)), (test_deadlock, (t, L, wl, admin)),
                             (test_rollback_commit, (t, L, wl)), (test_checkpoint, (t, L, admin))):
                try:
                    fn(*args)
                except Exception:  # noqa: BLE001
                    t.ok(False, f"{fn.__name__} ran to completion", traceback.format_exc())
            m = L.scrape()
            t.ok(not [k for k in m if k[0].startswith("loupe_postgres_usdt_query") or k[0] == COMMITS], NAMES[14])
            drops = {r: value(m, "loupe_events_dropped_total", feature="pg_usdt", reason=r)
                     for r in ("start_map_full", "done_without_start")}
            t.ok(not any(drops.values()), NAMES[15], drops)

        for k, (mode, hook) in enumerate((("multi", "uprobe_multi"), ("perf", "uprobe"))):
            with Loupe(*wl.own_targets(), "--pg-usdt-query", "--uprobe-attach", mode) as L:
                st = pg_status(L)
                t.ok(st.get("hook") == hook and
                     all(st.get("probes", {}).get(p) == "attached" for p in RARE + PER_QUERY), NAMES[16 + 3 * k], st)
                c = connect(wl, autocommit=True)
                cur = c.cursor()
                m0 = L.scrape()
                t0 = time.monotonic()
                for _ in range(N_QUERIES):
                    cur.execute("SELECT 1")
                t.note(f"{N_QUERIES} x SELECT 1 with per-query probes ({mode}): "
                       f"{(time.monotonic() - t0) / N_QUERIES * 1e6:.0f} us per query (round trip)")
                m1 = settle(L, lambda m: hist_count(m, QUERY) - hist_count(m0, QUERY) >= N_QUERIES)
                t.eq(hist_count(m1, QUERY) - hist_count(m0, QUERY), N_QUERIES, NAMES[17 + 3 * k])
                dc = value(m1, COMMITS, service_name=SVC) - value(m0, COMMITS, service_name=SVC)
                t.ok(dc >= N_QUERIES, NAMES[18 + 3 * k], f"commits grew by {dc}")
                c.close()
        admin.close()

        test_new_binary(t)

        with Loupe("--target", "nopg=comm:^loupe-no-such-comm$") as L:
            st = pg_status(L)
            t.ok(st.get("state") == "off" and "no postgres binary" in st.get("detail", ""), NAMES[-1], st)
    except Exception:  # noqa: BLE001
        t.ok(False, "test ran to completion", traceback.format_exc())
    finally:
        stop_all(t, wl)


if __name__ == "__main__":
    main()
