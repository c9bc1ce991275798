#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""End to end (root): a real Prometheus (Debian's /usr/bin/prometheus) scrapes loupe every second while the
reference workload runs under demo-load.sh (wrk read mix, WebSocket sessions, /slow, /fail and /cpu), and its
HTTP API answers what loupe exports: the target is up with no scrape error (Prometheus 2.x asks for OpenMetrics
first, so this also checks that format end to end), build info, targets by service, syscall rates for api and
postgres, and every panel query of the Grafana dashboards in dashboards/ returns data.

Prometheus runs on a free loopback port with a temporary config (job "loupe") and a temporary TSDB directory,
both removed at the end.
"""
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loupe_test import Loupe, Tap, WORKLOAD, free_port, wait_for  # noqa: E402
from e2e_support import (DASHBOARDS, Workload, grafana_to_promql, missing_requirements,  # noqa: E402
                         panel_queries, prom_api, prom_query, require_build, skip_all, stop_all,
                         terminate_on_signals)

PROMETHEUS = "/usr/bin/prometheus"
RATE_INTERVAL = "15s"   # stands for Grafana's $__rate_interval (4 x the 1 s scrape interval, rounded up)

SKIP_NAMES = ["workload, loupe, load and Prometheus start", "Prometheus target loupe is up with no scrape error",
              'up{job="loupe"} == 1', "loupe_build_info matches /status", "loupe_targets by service: api and postgres",
              "syscall rates for api and postgres are non-zero", "label_values(loupe_targets, service_name)",
              "label_values(loupe_syscall_duration_seconds_count, syscall)", "dashboard panel queries return data"]


class Prometheus:
    def __init__(self, target_port):
        self.dir = tempfile.mkdtemp(prefix="loupe-e2e-prom-")
        self.port = free_port()
        self.config = os.path.join(self.dir, "prometheus.yml")
        with open(self.config, "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: loupe
    static_configs:
      - targets: ['127.0.0.1:{target_port}']
""")
        self.log = open(os.path.join(self.dir, "prometheus.log"), "wb")
        self.proc = None

    def start(self, timeout=30):
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={self.config}", f"--storage.tsdb.path={self.dir}/tsdb",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
             f"--web.console.templates={self.dir}", f"--web.console.libraries={self.dir}"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=self.dir)
        ok = wait_for(lambda: self.proc.poll() is not None or self._ready(), timeout=timeout, interval=0.2)
        if self.proc.poll() is not None or not ok:
            raise RuntimeError(f"prometheus did not become ready (exit {self.proc.poll()}): {self.logtail()}")
        return self

    def _ready(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def api(self, path, **params):
        return prom_api(self.port, path, **params)

    def query(self, q):
        """Instant query -> (list of (labels, float value), error or "")."""
        return prom_query(self.port, q)

    def logtail(self):
        try:
            with open(os.path.join(self.dir, "prometheus.log"), errors="replace") as f:
                return f.read()[-1500:]
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def main():
    t = Tap()
    why = missing_requirements(need_prometheus=True)
    if not why and not shutil.which("wrk"):
        why = "wrk missing (apt-get install wrk): demo-load.sh drives the workload"
    if why:
        skip_all(t, why, SKIP_NAMES)
    require_build(t)
    terminate_on_signals()
    wl = Workload("prom")
    # Kernel BPF statistics on all along: with the default sampled windows, the test's few scrapes can all fall
    # between windows, and the per-run cost panel then has nothing to show.
    # --offcpu: the profiling dashboard's off-CPU panel.
    L = Loupe("--bpf-stats", "always", "--offcpu")
    prom = None
    try:
        try:
            L.start()
            wl.start()
            load = wl.background([os.path.join(WORKLOAD, "demo-load.sh"), "-d", "120", "--rate", "20",
                                  "--ws-reconnect", "3"])  # sessions close within the test: close-code panels
            prom = Prometheus(L.port)  # assigned first: stop() cleans up even if start() fails
            prom.start()
        except Exception as e:  # noqa: BLE001
            t.ok(False, "workload, loupe, load and Prometheus start", e)
            return
        t.ok(load.poll() is None, "workload, loupe, load and Prometheus start", f"demo-load.sh exited {load.poll()}")
        t0 = time.time()

        def target():
            ts = prom.api("targets").get("data", {}).get("activeTargets", [])
            return [x for x in ts if x.get("labels", {}).get("job") == "loupe"]

        def healthy():
            ts = target()
            return bool(ts) and ts[0].get("health") == "up" and ts[0].get("lastError") == ""
        up = wait_for(healthy, timeout=30, interval=0.5)
        t.ok(up, "Prometheus target loupe is up with no scrape error", f"targets: {target()}\n{prom.logtail()}")
        # Let rate() over RATE_INTERVAL see several samples with the load going on.
        time.sleep(max(0.0, 8 - (time.time() - t0)))
        # The close-code and session-duration panels need a WebSocket session to have closed within RATE_INTERVAL:
        # the sessions reconnect every 3 s, but on a busy host the client can take seconds to start. Wait for one
        # (up to 30 s more) rather than query too early; a loupe that never counts a close still fails below.
        def ws_closed():
            res, _ = prom.query(f'sum(rate(loupe_websocket_connection_duration_seconds_count{{job="loupe"}}'
                                f'[{RATE_INTERVAL}]))')
            return bool(res) and res[0][1] > 0
        wait_for(ws_closed, timeout=30, interval=1)

        res, err = prom.query('up{job="loupe"}')
        t.ok(len(res) == 1 and res[0][1] == 1, 'up{job="loupe"} == 1', err or res)

        st = L.status()
        res, err = prom.query('loupe_build_info{job="loupe"}')
        lab = res[0][0] if len(res) == 1 else {}
        t.ok(len(res) == 1 and res[0][1] == 1 and lab.get("version") == st["version"]
             and lab.get("revision") == st["revision"] and lab.get("libbpf_version"),
             "loupe_build_info matches /status", err or f"{res} vs /status {st['version']} {st['revision']}")

        res, err = prom.query('sum by (service_name) (loupe_targets{job="loupe"})')
        got = {r[0].get("service_name"): r[1] for r in res}
        want_min = {"api": len(wl.api_pids()), "postgres": len(wl.pg_pids())}
        t.ok(set(got) == {"api", "postgres"} and all(got[s] >= want_min[s] >= 1 for s in want_min),
             "loupe_targets by service: api and postgres", err or f"{got}; this workload alone has {want_min}")

        res, err = prom.query(f'sum by (service_name) (rate(loupe_syscall_duration_seconds_count{{job="loupe"}}'
                              f'[{RATE_INTERVAL}]))')
        got = {r[0].get("service_name"): r[1] for r in res}
        t.ok(got.get("api", 0) > 0 and got.get("postgres", 0) > 0, "syscall rates for api and postgres are non-zero",
             err or got)

        r = prom.api("label/service_name/values", **{"match[]": "loupe_targets"})
        t.ok({"api", "postgres"} <= set(r.get("data") or []), "label_values(loupe_targets, service_name)", r)
        r = prom.api("label/syscall/values", **{"match[]": "loupe_syscall_duration_seconds_count"})
        vals = set(r.get("data") or [])
        t.ok({"epoll_wait", "recvfrom", "sendto"} <= vals,
             "label_values(loupe_syscall_duration_seconds_count, syscall)", sorted(vals))

        problems, n = [], 0
        for path in DASHBOARDS:
            for title, expr in panel_queries(path):
                n += 1
                q = grafana_to_promql(expr, RATE_INTERVAL)
                res, err = prom.query(q)
                finite = [v for _, v in res if not math.isnan(v) and not math.isinf(v)]
                if err or not res or not finite:
                    problems.append(f"{os.path.basename(path)} / {title}: {q}\n    -> "
                                    f"{err or ('no series' if not res else 'only NaN/Inf values')}")
        t.ok(n > 0 and not problems, "dashboard panel queries return data",
             f"{len(problems)} of {n} queries returned nothing:\n" + "\n".join(problems))
        t.note(f"{n} panel queries from {len(DASHBOARDS)} dashboard(s), after {time.time() - t0:.0f} s of scraping")
    except Exception:  # noqa: BLE001 - an error in a check is a failure, with its traceback
        t.ok(False, "no unexpected error", traceback.format_exc())
    finally:
        stop_all(t, wl, prom, L)


if __name__ == "__main__":
    main()
