#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""End to end (root): the monitoring stack of scripts/stack.sh (`make stack`), run as a user runs it, on free
ports, with Alertmanager sending to a webhook receiver this test runs. Through Prometheus' HTTP API it asserts:
- every scrape target is up and every service's health check passes (blackbox probes, pg_up);
- every panel query of every dashboard in dashboards/ returns data;
- under the stack's own demo load none of the alerts this test provokes is firing;
- four provoked faults bring their alert to firing within one minute of the fault's start, and each alert reaches
  the webhook behind Alertmanager: an error storm (GET /fail) -> ApiErrorRatioHigh; a slow-endpoint storm
  (GET /slow?ms=2000) -> ApiRouteP95High on route /slow and ApiHighAverageLatency; a slow statement
  (SELECT pg_sleep) -> PostgresStatementP95High on that statement's fingerprint; the API stopped ->
  TargetServiceDown for service api;
- once the faults stop (the API restarted), every one of those alerts resolves, in Prometheus and at the webhook.
The times from fault to firing are printed. The stack is stopped with SIGTERM, as Ctrl-C would, and must leave
no process behind."""
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loupe_test import Tap, TOP, WORKLOAD, free_port, wait_for  # noqa: E402
from e2e_support import (DASHBOARDS, grafana_to_promql, missing_requirements, panel_queries,  # noqa: E402
                         prom_api, prom_query, require_build, skip_all, terminate_on_signals)

STACK = os.path.join(TOP, "scripts", "stack.sh")
BINARIES = ["/usr/bin/prometheus", "/usr/bin/prometheus-alertmanager", "/usr/bin/prometheus-node-exporter",
            "/usr/bin/prometheus-postgres-exporter", "/usr/bin/prometheus-blackbox-exporter", "/usr/bin/wrk"]
FIRE_WITHIN = 60.0     # seconds from a fault's start to its alert firing (issue 13's target)
RATE_INTERVAL = "30s"  # Grafana's $__rate_interval for a 5 s scrape interval
FAULT_ALERTS = ["ApiErrorRatioHigh", "ApiRouteP95High", "ApiHighAverageLatency", "PostgresStatementP95High",
                "TargetServiceDown"]
SKIP_NAMES = ["stack starts", "every scrape target is up", "every service's health check passes",
              "dashboard panel queries return data", "no provoked alert fires under the demo load",
              "error storm: ApiErrorRatioHigh", "slow-endpoint storm: ApiRouteP95High on /slow",
              "slow-endpoint storm: ApiHighAverageLatency", "slow statement: PostgresStatementP95High",
              "API stopped: TargetServiceDown", "faults stopped: every provoked alert resolves",
              "the stack stops on SIGTERM and leaves no process"]


class Webhook:
    """Alertmanager's receiver: keeps (time received, status, labels) of every alert notified."""

    def __init__(self):
        self.got = []
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                with hook.lock:
                    for a in body.get("alerts", []):
                        hook.got.append((time.time(), a.get("status"), a.get("labels", {})))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def first(self, status, alertname, since, **labels):
        with self.lock:
            for ts, st, lab in self.got:
                if ts >= since and st == status and lab.get("alertname") == alertname and \
                        all(lab.get(k) == v for k, v in labels.items()):
                    return ts
        return None

    def stop(self):
        self.server.shutdown()


class Stack:
    def __init__(self, webhook):
        self.dir = tempfile.mkdtemp(prefix="loupe-e2e-stack-")
        self.ports = {k: free_port() for k in ("PROMETHEUS", "ALERTMANAGER", "NODE", "POSTGRES_EXPORTER", "BLACKBOX",
                                               "LOUPE", "WEBHOOK")}
        self.api_port, self.pg_port = free_port(), free_port()
        # loupe watches this stack's workload only, not every PostgreSQL and API on the host (its defaults): other
        # tests' or people's services would add their requests to this API's figures.
        targets = (f"--target postgres=cmdline:{os.path.join(self.dir, 'pg')} "
                   f"--target api=cmdline:--port.{self.api_port}")  # (the option list is split at spaces)
        self.env = dict(os.environ, LOUPE_API_PORT=str(self.api_port), LOUPE_PG_PORT=str(self.pg_port),
                        LOUPE_API_HOST="127.0.0.1", LOUPE_PG_HOST="127.0.0.1", LOUPE_STACK_LOUPE_ARGS=targets,
                        **{f"LOUPE_STACK_{k}_PORT": str(v) for k, v in self.ports.items()})
        # What the workload scripts need to find this stack's API and cluster (stack.sh sets the same).
        self.wl_env = dict(self.env, LOUPE_RUN_DIR=os.path.join(self.dir, "workload"),
                           LOUPE_PG_DIR=os.path.join(self.dir, "pg"))
        self.webhook = webhook
        self.proc = None
        self.log = os.path.join(self.dir, "stack.out")

    def start(self, timeout=240):
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([STACK, "--run-dir", self.dir, "--webhook", self.webhook.url],
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        ok = wait_for(lambda: self.proc.poll() is not None or "The stack is up" in self.output(), timeout=timeout,
                      interval=0.5)
        if not ok or self.proc.poll() is not None:
            raise RuntimeError(f"stack.sh did not come up (exit {self.proc.poll()}):\n{self.output()[-2500:]}")

    def output(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def api(self, path, **params):
        return prom_api(self.ports["PROMETHEUS"], path, **params)

    def query(self, q):
        return prom_query(self.ports["PROMETHEUS"], q)

    def alerts(self, state="firing"):
        return [a for a in self.api("alerts").get("data", {}).get("alerts", []) if a.get("state") == state]

    def firing(self, alertname, **labels):
        return any(a["labels"].get("alertname") == alertname and all(a["labels"].get(k) == v for k, v in labels.items())
                   for a in self.alerts())

    def script(self, name):
        return subprocess.run([os.path.join(WORKLOAD, name)], env=self.wl_env, capture_output=True, text=True,
                              timeout=90)

    def group_alive(self):
        if not self.proc:
            return []
        out = subprocess.run(["ps", "-e", "-o", "pid=,pgid=,stat=,args="], capture_output=True, text=True).stdout
        return [ln.strip() for ln in out.splitlines()
                if ln.split()[1] == str(self.proc.pid) and not ln.split()[2].startswith("Z")]

    def stop(self):
        """SIGTERM, as Ctrl-C; then whatever is left of its process group is killed (and reported by the test)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        left = self.group_alive()
        if self.proc:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            if self.proc.poll() is None:
                self.proc.wait()
        # A cluster or API that outlived the script would hold the ports: stop them by their own scripts too.
        for s in ("api-stop.sh", "pg-stop.sh"):
            try:
                self.script(s)
            except (OSError, subprocess.SubprocessError):
                pass
        return left


class Storm:
    """n threads calling fn() in a loop until stop()."""

    def __init__(self, fn, n):
        self.halt = threading.Event()
        self.errors = 0

        def loop():
            while not self.halt.is_set():
                try:
                    fn()
                except Exception:  # noqa: BLE001 - a failed call is part of a storm; counted, not fatal
                    self.errors += 1
                    time.sleep(0.05)
        self.threads = [threading.Thread(target=loop, daemon=True) for _ in range(n)]
        for th in self.threads:
            th.start()

    def stop(self):
        self.halt.set()
        for th in self.threads:
            th.join(timeout=10)


def http_get(port, path, timeout=10):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            r.read()
    except urllib.error.HTTPError as e:
        e.read()


def main():
    t = Tap()
    why = missing_requirements(need_prometheus=True)
    if not why:
        missing = [b for b in BINARIES if not os.access(b, os.X_OK)]
        if missing:
            why = f"{', '.join(missing)} missing (scripts/deps.sh test installs them)"
    if why:
        skip_all(t, why, SKIP_NAMES)
    require_build(t)
    terminate_on_signals()
    hook = Webhook()
    stack = Stack(hook)
    resolved_pending = {}  # alertname -> (labels, time its fault stopped)
    try:
        try:
            t0 = time.time()
            stack.start()
        except Exception as e:  # noqa: BLE001
            t.ok(False, "stack starts", e)
            return
        t.ok(True, "stack starts")
        t.note(f"stack.sh up in {time.time() - t0:.0f} s; Prometheus on 127.0.0.1:{stack.ports['PROMETHEUS']}")

        # Every job's targets up, every health check passing (a few scrapes in).
        def targets():
            return stack.api("targets").get("data", {}).get("activeTargets", [])
        want_jobs = {"loupe", "node", "postgres", "blackbox-http", "blackbox-tcp", "blackbox", "alertmanager",
                     "prometheus"}
        ok = wait_for(lambda: {x["labels"]["job"] for x in targets() if x["health"] == "up"} >= want_jobs
                      and all(x["health"] == "up" for x in targets()), timeout=60, interval=1)
        t.ok(ok, "every scrape target is up", "\n".join(f"{x['labels']['job']} {x['scrapeUrl']}: {x['health']} "
                                                       f"{x.get('lastError', '')}" for x in targets()))

        def health():
            res, _ = stack.query("probe_success")
            pg, _ = stack.query("pg_up")
            got = {(r[0].get("service"), r[0].get("endpoint", "")): r[1] for r in res}
            return got, [r[1] for r in pg]
        ok = wait_for(lambda: (lambda g, p: set(s for s, _ in g) == {"api", "loupe", "postgres"}
                               and all(v == 1 for v in g.values()) and p == [1])(*health()), timeout=30, interval=1)
        t.ok(ok, "every service's health check passes", f"probe_success, pg_up: {health()}")

        # Rates over the dashboards' interval need a few scrapes of the demo load.
        time.sleep(max(0.0, 45 - (time.time() - t0)))
        problems, n = [], 0
        for path in DASHBOARDS:
            for title, expr in panel_queries(path):
                n += 1
                q = grafana_to_promql(expr, RATE_INTERVAL)
                res, err = stack.query(q)
                finite = [v for _, v in res if not math.isnan(v) and not math.isinf(v)]
                if err or not finite:
                    problems.append(f"{os.path.basename(path)} / {title}: {q}\n    -> "
                                    f"{err or ('no series' if not res else 'only NaN/Inf values')}")
        t.ok(n > 0 and not problems, "dashboard panel queries return data",
             f"{len(problems)} of {n} queries returned nothing:\n" + "\n".join(problems))
        t.note(f"{n} panel queries from {len(DASHBOARDS)} dashboards")

        base = [a["labels"] for a in stack.alerts() + stack.alerts("pending")
                if a["labels"].get("alertname") in FAULT_ALERTS]
        t.ok(not base, "no provoked alert fires under the demo load", f"firing or pending: {base}")
        others = sorted({a["labels"]["alertname"] for a in stack.alerts()})
        if others:
            t.note(f"firing under the demo load (not provoked by this test): {', '.join(others)}")

        def provoke(name, alertname, labels, start_fault, stop_fault, more=()):
            """Start a fault; watch alertname{labels} (and each (alertname, labels) of more) until each is firing
            (polled together every second: the time each is first seen firing) and has reached the webhook; stop
            the fault. One TAP line per alert."""
            want = [(alertname, labels), *more]
            ts = time.time()
            fault = start_fault()
            try:
                fired = {}
                deadline = ts + FIRE_WITHIN + 30
                while len(fired) < len(want) and time.time() < deadline:
                    firing = stack.alerts()
                    for an, lab in want:
                        if an not in fired and any(a["labels"].get("alertname") == an and
                                                   all(a["labels"].get(k) == v for k, v in lab.items())
                                                   for a in firing):
                            fired[an] = time.time() - ts
                    time.sleep(1)
                for an, lab in want:
                    hooked = wait_for(lambda: hook.first("firing", an, ts, **lab) is not None, timeout=30, interval=0.5)
                    th = (hook.first("firing", an, ts, **lab) or ts) - ts
                    tf = fired.get(an)
                    t.ok(tf is not None and tf <= FIRE_WITHIN and hooked,
                         f"{name}: {an}" + (f" on {lab['http_route']}" if "http_route" in lab else ""),
                         f"firing after {tf} s (target {FIRE_WITHIN:.0f} s); at the webhook: {hooked}; "
                         f"firing now: {[a['labels'] for a in stack.alerts()]}")
                    t.note(f"{name}: {an} firing {tf if tf is None else round(tf)} s after the fault began, "
                           f"at the webhook after {th:.0f} s")
                    resolved_pending[an] = lab
            finally:
                stop_fault(fault)
            return ts

        api = stack.api_port
        # 1. Slow-endpoint storm: 40 clients on GET /slow?ms=2000 (the API's thread pool has 40 threads). First: the error storm's many fast requests would
        # stay in the mean's 1 m window for a minute after it stops.
        provoke("slow-endpoint storm", "ApiRouteP95High", {"service_name": "api", "http_route": "/slow"},
                lambda: Storm(lambda: http_get(api, "/slow?ms=2000"), 40), Storm.stop,
                more=[("ApiHighAverageLatency", {"service_name": "api"})])
        # 2. Error storm: 4 clients calling GET /fail (500) back to back.
        provoke("error storm", "ApiErrorRatioHigh", {"service_name": "api"},
                lambda: Storm(lambda: http_get(api, "/fail"), 4), Storm.stop)
        # 3. A slow statement: 3 sessions running SELECT pg_sleep(0.3) in a loop on the stack's cluster.
        import psycopg2  # noqa: E402 - Debian's python3-psycopg2, checked by missing_requirements()

        def sleeper():
            local = threading.local()

            def once():
                if getattr(local, "conn", None) is None:
                    local.conn = psycopg2.connect(host="127.0.0.1", port=stack.pg_port, user="loupe", dbname="loupe")
                    local.conn.autocommit = True
                with local.conn.cursor() as cur:
                    cur.execute("SELECT pg_sleep(0.3)")
            return Storm(once, 3)
        res, _ = stack.query('loupe_postgres_statement_info{query="SELECT pg_sleep($1)"}')
        ts = time.time()
        storm = sleeper()
        fp = None
        try:
            wait_for(lambda: stack.query('loupe_postgres_statement_info{query="SELECT pg_sleep($1)"}')[0], timeout=30)
            res, _ = stack.query('loupe_postgres_statement_info{query="SELECT pg_sleep($1)"}')
            fp = res[0][0]["fingerprint"] if res else None
        finally:
            if not fp:
                storm.stop()
        if fp:
            t.note(f"SELECT pg_sleep($1) is fingerprint {fp}, {time.time() - ts:.0f} s after the first call")
            provoke("slow statement", "PostgresStatementP95High", {"service_name": "postgres", "fingerprint": fp},
                    lambda: storm, Storm.stop)
        else:
            t.ok(False, "slow statement: PostgresStatementP95High", "loupe never exported the statement's fingerprint")

        # 4. The API stopped (api-stop.sh: SIGTERM to uvicorn); restarted once the alert has fired.
        def stop_api():
            r = stack.script("api-stop.sh")
            if r.returncode:
                raise RuntimeError(f"api-stop.sh failed: {r.stderr}")

        def restart_api(_):
            r = stack.script("api-start.sh")
            if r.returncode:
                t.note(f"api-start.sh failed: {r.stderr[-500:]}")
        provoke("API stopped", "TargetServiceDown", {"service": "api"}, stop_api, restart_api)

        # Every provoked alert resolves: inactive in Prometheus, and a resolved notification at the webhook.
        t_stop = time.time()

        def unresolved():
            return [an for an, lab in resolved_pending.items()
                    if stack.firing(an, **lab) or hook.first("resolved", an, t0, **lab) is None]
        ok = wait_for(lambda: not unresolved(), timeout=300, interval=2)
        t.ok(ok and len(resolved_pending) == len(FAULT_ALERTS), "faults stopped: every provoked alert resolves",
             f"not resolved after {time.time() - t_stop:.0f} s: {unresolved()}; provoked: {sorted(resolved_pending)}")
        t.note(f"all resolved {time.time() - t_stop:.0f} s after the last fault stopped")
    except Exception:  # noqa: BLE001 - an error in a check is a failure, with its traceback
        t.ok(False, "no unexpected error", traceback.format_exc())
    finally:
        left = stack.stop()
        t.ok(not left, "the stack stops on SIGTERM and leaves no process", "\n".join(left))
        hook.stop()
        if t.failed:
            t.note(f"stack output:\n{stack.output()[-3000:]}")
        shutil.rmtree(stack.dir, ignore_errors=True)
        t.done()


if __name__ == "__main__":
    main()
