#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""End to end (root): loupe finds the api and postgres services of the reference workload (tests/workload: a
private PostgreSQL 15 cluster and the uvicorn FastAPI app with 2 workers) and its syscall histograms match what
known traffic must have caused.

Three loupe instances watch the same workload:
  - `def`: default targets (api = uvicorn/gunicorn/hypercorn programs, postgres = comm ^postgres$), started before
    the workload. Other people's APIs and clusters on this machine are targets too, so its syscall counts are only
    checked as lower bounds ("at least what our traffic caused").
  - `own`: --target rules naming this run's uvicorn (by port) and postmaster (by data dir) api and postgres, also
    started before the workload: the workload becomes a target through exec classification (uvicorn, postmaster)
    and fork inheritance (uvicorn workers, every PostgreSQL child). Nobody else's processes count, so its deltas
    are exact where the traffic fixes them.
  - `late`: the same rules, started after the workload is up (the /proc scan at start).

Ground truth, found with strace on this machine (Debian 12: python 3.11, uvicorn 0.17 on asyncio without uvloop
or httptools, psycopg2 2.9, PostgreSQL 15):
  - time.sleep(0.2) in /slow is one clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME); nothing else in the API
    calls clock_nanosleep (the event loop sleeps in epoll_wait, idle threads in futex).
  - asyncio accepts with accept4 in a loop until EAGAIN; it reads and writes sockets with recvfrom and sendto
    (h11 sends a response as headers + body). Threadpool endpoints wake the loop through its self-pipe, which it
    drains with recvfrom until EAGAIN.
  - app.py's pool runs each request's SQL as BEGIN, the statement, COMMIT (psycopg2 opens a transaction): three
    simple-protocol queries, each one recv and at least one send by the backend (recvfrom, sendto).
  - pg_sleep(0.75) is one epoll_wait(…, 750) in the backend (WaitLatch). The postmaster accepts with accept(2)
    and forks a backend per connection, whose first syscall is set_robust_list (glibc's fork), then setsid.
"""
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loupe_test import Loupe, TOP, value, wait_for  # noqa: E402
from e2e_support import (PG_BIN, PG_POSTGRES, Workload, begin, describe_pids, json_leaks,  # noqa: E402
                         loupe_target_pids, metrics_leaks, proc_table, sc_count, sc_errors, sc_slot, stable,
                         stop_all)

MS = 1000000
K_SLOW = 5          # GET /slow requests (200 ms each)
K_PGSLEEP = 5       # concurrent connections running SELECT pg_sleep(0.75)
API_WORKERS = 2

SKIP_NAMES = [
    "workload starts after loupe", "own rules: loupe_targets{postgres} equals the cluster's live processes",
    "own rules: loupe_targets{api} equals the API's live processes (uvicorn, workers, resource tracker)",
    "own rules: the workload became a target through exec classification", "own rules: /status targets agree",
    "default rules: loupe_targets{postgres} equals all live processes named postgres",
    "default rules: loupe_targets{api} counts at least this API's processes",
    "loupe started after the workload: loupe_targets{postgres} equals the cluster's live processes "
    "(children inherit at the scan)",
    "loupe started after the workload: loupe_targets{api} equals the API's processes (workers inherit at the scan)",
    "GET /slow x5 answered 200", "api clock_nanosleep: exactly 5 new observations, all in the 200 ms bucket",
    "default rules: api clock_nanosleep gains at least 5 in the 200 ms bucket",
    "HTTP plan answered as planned", "api accept4: successful calls equal the new TCP connections",
    "api accept4 ends each accept loop with EAGAIN", "api recvfrom grows by at least the requests",
    "api sendto grows by at least the responses", "api recvfrom EAGAIN (asyncio self-pipe drained)",
    "postgres recvfrom grows by at least one per query", "postgres sendto grows by at least one per query",
    "default rules: api and postgres socket syscalls grow at least as much",
    "5 x pg_sleep(0.75) ran", "postgres epoll_wait gains at least 5 in the 750 ms bucket",
    "postgres epoll_wait time grows by at least 5 x 0.75 s",
    "default rules: postgres epoll_wait gains at least 5 in the 750 ms bucket",
    "postmaster accept(2) counts the new connections",
    "new backends counted from their first syscall (set_robust_list)", "new backends counted: setsid",
    "a postgres that exits before loupe classifies its exec is not left as a target",
    "no pid, path or address in /metrics (own rules)", "no pid, path or address in /metrics (default rules)",
    "no pid, path or address in /status", "loupe exits 0 on SIGTERM",
]


def delta(after, before, fn, *args):
    return fn(after, *args) - fn(before, *args)


def target_diff(L, service, truth_pids):
    """Failure detail: which pids loupe tracks for `service` that the ground truth does not have, and the reverse."""
    ids = {name: i + 1 for i, name in enumerate(L.status()["targets"])}  # service ids follow /status order
    tracked = {p for p, svc in loupe_target_pids(L.proc.pid).items() if svc == ids.get(service)}
    truth = truth_pids()
    return (f"\ntracked but not in the ground truth: {describe_pids(tracked - truth) or '-'}"
            f"\nin the ground truth but not tracked: {describe_pids(truth - tracked) or '-'}")


def check_targets(t, L_own, L_def, wl):
    pg_truth = lambda: len(wl.pg_pids())  # noqa: E731
    api_truth = lambda: len(wl.api_pids())  # noqa: E731
    tg = lambda L, svc: value(L.scrape(), "loupe_targets", default=-1, service_name=svc)  # noqa: E731
    named_pg = lambda: {p for p, i in proc_table().items() if i["comm"] == "postgres"}  # noqa: E731

    ok, got, want = stable(pg_truth, lambda: tg(L_own, "postgres"))
    t.ok(ok and got >= 6, "own rules: loupe_targets{postgres} equals the cluster's live processes",
         f"loupe_targets={got}, live postmaster + children={want}" + ("" if ok else
                                                                      target_diff(L_own, "postgres", wl.pg_pids)))
    ok, got, want = stable(api_truth, lambda: tg(L_own, "api"))
    t.ok(ok and got >= 1 + API_WORKERS,
         "own rules: loupe_targets{api} equals the API's live processes (uvicorn, workers, resource tracker)",
         f"loupe_targets={got}, live processes in the API's process group={want} (want >= {1 + API_WORKERS})"
         + ("" if ok else target_diff(L_own, "api", wl.api_pids)))
    feats = {f["name"]: f for f in L_own.status()["features"]}
    classified = feats.get("targets", {}).get("execs_classified", 0)
    t.ok(classified >= 2, "own rules: the workload became a target through exec classification",
         f"/status targets.execs_classified={classified}, want >= 2 (uvicorn and the postmaster)")

    def status_and_metrics():
        m = L_own.scrape()
        return (L_own.status()["targets"], {s: value(m, "loupe_targets", default=-1, service_name=s)
                                            for s in ("api", "postgres")})
    ok = wait_for(lambda: (lambda s, m: s == m)(*status_and_metrics()), timeout=5)
    t.ok(ok, "own rules: /status targets agree", status_and_metrics())

    ok, got, want = stable(lambda: len(named_pg()), lambda: tg(L_def, "postgres"))
    t.ok(ok, "default rules: loupe_targets{postgres} equals all live processes named postgres",
         f"loupe_targets={got}, processes with comm postgres={want}" + ("" if ok else
                                                                        target_diff(L_def, "postgres", named_pg)))
    ok = wait_for(lambda: tg(L_def, "api") >= api_truth() >= 1 + API_WORKERS, timeout=5)
    t.ok(ok, "default rules: loupe_targets{api} counts at least this API's processes",
         f"loupe_targets={tg(L_def, 'api')}, this API's processes={api_truth()}")

    # A loupe started while the workload runs finds it by scanning /proc: the processes that match a rule (the
    # postmaster, uvicorn), and their children, which inherit the service (PostgreSQL's children and uvicorn's
    # workers have command lines of their own that match no rule).
    L_late = Loupe(*wl.own_targets())
    try:
        L_late.start()
        ok, got, want = stable(pg_truth, lambda: tg(L_late, "postgres"))
        t.ok(ok, "loupe started after the workload: loupe_targets{postgres} equals the cluster's live processes "
                 "(children inherit at the scan)",
             f"loupe_targets={got}, live postmaster + children={want}" + ("" if ok else
                                                                          target_diff(L_late, "postgres", wl.pg_pids)))
        ok, got, want = stable(api_truth, lambda: tg(L_late, "api"))
        t.ok(ok, "loupe started after the workload: loupe_targets{api} equals the API's processes "
                 "(workers inherit at the scan)",
             f"loupe_targets={got}, live processes in the API's group={want}" + ("" if ok else
                                                                                 target_diff(L_late, "api",
                                                                                             wl.api_pids)))
    finally:
        L_late.stop()


def check_slow(t, L_own, L_def, wl):
    b_own, b_def = L_own.scrape(), L_def.scrape()
    res = wl.http_plan(f"GET /slow={K_SLOW}")
    a_own, a_def = L_own.scrape(), L_def.scrape()
    t.eq(res["GET /slow"]["status"], {"200": K_SLOW}, f"GET /slow x{K_SLOW} answered 200")
    in_slot = delta(a_own, b_own, sc_slot, "api", "clock_nanosleep", 200 * MS)
    calls = delta(a_own, b_own, sc_count, "api", "clock_nanosleep")
    t.ok(in_slot == K_SLOW and calls == K_SLOW,
         f"api clock_nanosleep: exactly {K_SLOW} new observations, all in the 200 ms bucket",
         f"new in the bucket holding 200 ms: {in_slot}, new calls: {calls}, want {K_SLOW} and {K_SLOW} "
         f"(client latencies {res['GET /slow'].get('latency_ms')})")
    in_slot = delta(a_def, b_def, sc_slot, "api", "clock_nanosleep", 200 * MS)
    t.ok(in_slot >= K_SLOW, f"default rules: api clock_nanosleep gains at least {K_SLOW} in the 200 ms bucket",
         f"gained {in_slot}")


def check_http_and_sql(t, L_own, L_def, wl, seed_id):
    plan = {f"GET /memories/{seed_id}": 12, "GET /memories/999999": 4, "GET /healthz": 6}
    extra_conns = 3  # three more runs of one GET /healthz, each on its own connection
    n_req = sum(plan.values()) + extra_conns
    n_conns = 1 + extra_conns
    db_requests = plan[f"GET /memories/{seed_id}"] + plan["GET /memories/999999"]
    queries = 3 * db_requests  # BEGIN, SELECT, COMMIT each

    b_own, b_def = L_own.scrape(), L_def.scrape()
    res = wl.http_plan(",".join(f"{k}={v}" for k, v in plan.items()))
    extra = [wl.http_plan("GET /healthz=1") for _ in range(extra_conns)]
    got = {k: res[k]["status"] for k in plan} | {"extra": [e["GET /healthz"]["status"] for e in extra]}
    want = {f"GET /memories/{seed_id}": {"200": 12}, "GET /memories/999999": {"404": 4}, "GET /healthz": {"200": 6},
            "extra": [{"200": 1}] * extra_conns}
    t.eq(got, want, "HTTP plan answered as planned")

    def accepted(m):
        return sc_count(m, "api", "accept4") - sc_errors(m, "api", "accept4")
    # the self-pipe drain that ends each threadpool request may come a loop turn after the response
    wait_for(lambda: delta(L_own.scrape(), b_own, sc_errors, "api", "recvfrom", "EAGAIN") >= 1, timeout=3)
    a_own, a_def = L_own.scrape(), L_def.scrape()

    d = delta(a_own, b_own, accepted)
    t.ok(d == n_conns, "api accept4: successful calls equal the new TCP connections",
         f"accept4 calls - accept4 errors grew by {d}, want {n_conns} connections "
         f"(calls +{delta(a_own, b_own, sc_count, 'api', 'accept4')}, "
         f"errors +{delta(a_own, b_own, sc_errors, 'api', 'accept4')})")
    d = delta(a_own, b_own, sc_errors, "api", "accept4", "EAGAIN")
    t.ok(d >= 1, "api accept4 ends each accept loop with EAGAIN",
         f"loupe_syscall_errors_total{{api,accept4,EAGAIN}} grew by {d}, want >= 1")
    d = delta(a_own, b_own, sc_count, "api", "recvfrom")
    t.ok(d >= n_req, "api recvfrom grows by at least the requests", f"+{d}, want >= {n_req}")
    d = delta(a_own, b_own, sc_count, "api", "sendto")
    t.ok(d >= n_req, "api sendto grows by at least the responses", f"+{d}, want >= {n_req}")
    d = delta(a_own, b_own, sc_errors, "api", "recvfrom", "EAGAIN")
    t.ok(d >= 1, "api recvfrom EAGAIN (asyncio self-pipe drained)",
         f"loupe_syscall_errors_total{{api,recvfrom,EAGAIN}} grew by {d}, want >= 1")
    d = delta(a_own, b_own, sc_count, "postgres", "recvfrom")
    t.ok(d >= queries, "postgres recvfrom grows by at least one per query",
         f"+{d}, want >= {queries} ({db_requests} requests x BEGIN/SELECT/COMMIT)")
    d = delta(a_own, b_own, sc_count, "postgres", "sendto")
    t.ok(d >= queries, "postgres sendto grows by at least one per query", f"+{d}, want >= {queries}")
    got = {(s, sc): delta(a_def, b_def, sc_count, s, sc)
           for s, sc in (("api", "recvfrom"), ("api", "sendto"), ("postgres", "recvfrom"), ("postgres", "sendto"))}
    want = {("api", "recvfrom"): n_req, ("api", "sendto"): n_req, ("postgres", "recvfrom"): queries,
            ("postgres", "sendto"): queries}
    t.ok(all(got[k] >= want[k] for k in want), "default rules: api and postgres socket syscalls grow at least as much",
         f"deltas {got}, want at least {want}")


def check_pg_sleep(t, L_own, L_def, wl):
    b_own, b_def = L_own.scrape(), L_def.scrape()
    errors, done = [], []

    def one():
        try:
            c = wl.pg_connect()
            try:
                with c.cursor() as cur:
                    cur.execute("SELECT pg_sleep(0.75)")
                    cur.fetchall()
                done.append(1)
            finally:
                c.close()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))
    threads = [threading.Thread(target=one) for _ in range(K_PGSLEEP)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    t.ok(len(done) == K_PGSLEEP and not errors, f"{K_PGSLEEP} x pg_sleep(0.75) ran", errors)
    a_own, a_def = L_own.scrape(), L_def.scrape()

    d = delta(a_own, b_own, sc_slot, "postgres", "epoll_wait", 750 * MS)
    t.ok(d >= K_PGSLEEP, f"postgres epoll_wait gains at least {K_PGSLEEP} in the 750 ms bucket", f"gained {d}")
    s = (value(a_own, "loupe_syscall_duration_seconds_sum", service_name="postgres", syscall="epoll_wait")
         - value(b_own, "loupe_syscall_duration_seconds_sum", service_name="postgres", syscall="epoll_wait"))
    t.ok(s >= K_PGSLEEP * 0.74, f"postgres epoll_wait time grows by at least {K_PGSLEEP} x 0.75 s", f"grew {s:.3f} s")
    d = delta(a_def, b_def, sc_slot, "postgres", "epoll_wait", 750 * MS)
    t.ok(d >= K_PGSLEEP, f"default rules: postgres epoll_wait gains at least {K_PGSLEEP} in the 750 ms bucket",
         f"gained {d}")
    d = delta(a_own, b_own, sc_count, "postgres", "accept")
    t.ok(d >= K_PGSLEEP, "postmaster accept(2) counts the new connections", f"+{d}, want >= {K_PGSLEEP}")
    d = delta(a_own, b_own, sc_count, "postgres", "set_robust_list")
    t.ok(d >= K_PGSLEEP, "new backends counted from their first syscall (set_robust_list)",
         f"+{d}, want >= {K_PGSLEEP}: a backend forked by a target must be a target before it runs")
    d = delta(a_own, b_own, sc_count, "postgres", "setsid")
    t.ok(d >= K_PGSLEEP, "new backends counted: setsid", f"+{d}, want >= {K_PGSLEEP}")


def check_short_lived(t):
    """initdb and pg_ctl run short-lived postgres processes (postgres -V, --check, --boot, --single) through popen:
    each one may exit, and wait as a zombie for its parent, before loupe reads /proc to classify its exec. Make that
    certain by stopping loupe while they run, and check that none of them stays counted once they are gone. The
    processes run the postgres binary through a symlink with a name of this run's own, so that their comm matches
    a comm: rule (the default postgres rule is one; a zombie still has its comm, not its command line) and nobody
    else's processes do."""
    comm = "pgv%06x" % random.randrange(16 ** 6)
    d = tempfile.mkdtemp(prefix="loupe-e2e-pgv-")
    link = os.path.join(d, comm)
    os.symlink(PG_POSTGRES, link)
    n = 10
    L = Loupe("--target", f"pgv=comm:^{comm}$")
    procs = []
    try:
        L.start()
        seen0 = L.status()["features"][0].get("execs_seen", 0)
        os.kill(L.proc.pid, signal.SIGSTOP)
        try:
            procs = [subprocess.Popen([link, "-V"], stdout=subprocess.DEVNULL) for _ in range(n)]
            exited = wait_for(lambda: all(proc_table().get(p.pid) is None for p in procs), timeout=10)
        finally:
            os.kill(L.proc.pid, signal.SIGCONT)
        # loupe now reads the exec records while the processes are zombies; then their parent (we) reaps them
        wait_for(lambda: L.status()["features"][0].get("execs_seen", 0) >= seen0 + n, timeout=5)
        time.sleep(0.2)
        for p in procs:
            p.wait()
        gone = wait_for(lambda: value(L.scrape(), "loupe_targets", service_name="pgv") == 0, timeout=3)
        t.ok(exited and gone, "a postgres that exits before loupe classifies its exec is not left as a target",
             f"loupe_targets{{pgv}}={value(L.scrape(), 'loupe_targets', service_name='pgv')} after all {n} "
             f"'postgres -V' processes exited and were reaped, want 0 (all had exited before loupe read /proc: "
             f"{exited}): src/collectors/targets.c track() checks only the start time in /proc/PID/stat, which a zombie still "
             f"has, so a process that exited before it was classified stays in target_procs and target_svc")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if L.proc and L.proc.poll() is None:
            os.kill(L.proc.pid, signal.SIGCONT)
        L.stop()
        shutil.rmtree(d, ignore_errors=True)


def check_privacy(t, L_own, L_def, wl):
    pids = wl.pg_pids() | wl.api_pids() | {L_own.proc.pid, L_def.proc.pid, os.getpid()}
    secrets = [wl.root, "127.0.0.1", TOP, PG_BIN, f":{wl.pg_port}", f":{wl.api_port}"]
    for L, who in ((L_own, "own rules"), (L_def, "default rules")):
        problems = metrics_leaks(L.scrape_text(), pids, secrets)
        t.ok(not problems, f"no pid, path or address in /metrics ({who})", "\n".join(problems[:20]))
    problems = []
    for L in (L_own, L_def):
        raw = L.get("/status")[2].decode()
        problems += json_leaks(L.status(), pids, secrets)
        problems += [f"/status contains {s!r}" for s in secrets if s in raw]
    t.ok(not problems, "no pid, path or address in /status", "\n".join(problems[:20]))


def main():
    t = begin(SKIP_NAMES)
    wl = Workload("workload", api_workers=API_WORKERS)
    L_def, L_own = Loupe(), Loupe(*wl.own_targets())
    try:
        L_def.start()
        L_own.start()
        t0 = time.time()
        try:
            seeded = wl.start()
        except Exception as e:  # noqa: BLE001
            t.ok(False, "workload starts after loupe", e)
            return
        t.ok(True, "workload starts after loupe")
        t.note(f"workload up in {time.time() - t0:.1f} s: postgres 127.0.0.1:{wl.pg_port}, api 127.0.0.1:"
               f"{wl.api_port} ({API_WORKERS} workers), seed ids {seeded['ids']}")
        check_targets(t, L_own, L_def, wl)
        check_slow(t, L_own, L_def, wl)
        check_http_and_sql(t, L_own, L_def, wl, seeded["ids"][0])
        check_pg_sleep(t, L_own, L_def, wl)
        check_short_lived(t)
        check_privacy(t, L_own, L_def, wl)
        rc = L_own.stop()
        t.ok(rc == 0, "loupe exits 0 on SIGTERM", f"exit code {rc}; log tail: {L_own.stderr()[-1000:]}")
    except Exception:  # noqa: BLE001 - an error in a check is a failure, with its traceback
        t.ok(False, "no unexpected error", traceback.format_exc())
    finally:
        stop_all(t, wl, L_own, L_def)


if __name__ == "__main__":
    main()
