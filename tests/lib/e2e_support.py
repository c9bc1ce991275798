# SPDX-License-Identifier: BSD-2-Clause
"""Helpers for Loupe's end-to-end tests (tests/e2e, root, /usr/bin/python3).

Workload(...) runs the reference workload of tests/workload (a private PostgreSQL 15 cluster and the uvicorn
FastAPI app) on its own free loopback ports and its own temporary directories, so that concurrent runs by other
people on the same machine never collide, and stops everything it started (stop() is idempotent; use it in a
`finally`). The rest are small helpers: ground-truth process counts from /proc, metric deltas between two scrapes,
and the privacy scan (no pid, path or address in what loupe exports).
"""
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

from loupe_test import CRASH_SIGNALS, LOUPE, TOP, WORKLOAD, Loupe, Tap, free_port, hist_le, select, value

PY = "/usr/bin/python3"  # Debian's python: the one that sees fastapi, uvicorn, psycopg2, websockets
PG_BIN = os.environ.get("LOUPE_PG_BIN", "/usr/lib/postgresql/15/bin")
PG_POSTGRES = os.path.join(PG_BIN, "postgres")

HIST = "loupe_syscall_duration_seconds"
ERRS = "loupe_syscall_errors_total"


# ------------------------------------------------------------------ dashboards ---

DASHBOARDS = sorted(glob.glob(os.path.join(TOP, "dashboards", "*.json")))


def panel_queries(path):
    """(panel title, expr) of every panel query in a Grafana dashboard, rows included."""
    with open(path) as f:
        d = json.load(f)
    out = []

    def walk(panels):
        for p in panels or []:
            for tg in p.get("targets", []) or []:
                if tg.get("expr"):
                    out.append((p.get("title", "?"), tg["expr"]))
            walk(p.get("panels"))
    walk(d.get("panels"))
    for row in d.get("rows", []) or []:  # old-style dashboards
        walk(row.get("panels"))
    return out


def grafana_to_promql(expr, rate_interval):
    """Replace Grafana's variables: intervals by fixed ranges ($__rate_interval by rate_interval: Grafana's is 4 x
    the scrape interval), template variables ($service, ${syscall}, ...) by '.*', which is what their "All" value
    matches."""
    for v in ("$__rate_interval", "${__rate_interval}"):
        expr = expr.replace(v, rate_interval)
    for v in ("$__interval", "${__interval}", "$__range", "${__range}"):
        expr = expr.replace(v, "5s")
    return re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*(?::[a-z]+)?\}?", ".*", expr)


def prom_api(port, path, **params):
    """GET Prometheus' HTTP API /api/v1/PATH on 127.0.0.1:port: the decoded JSON, or {"status": "error", ...}."""
    url = f"http://127.0.0.1:{port}/api/v1/{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params, doseq=True)
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read() or b"{}") or {"status": "error", "error": str(e)}
    except OSError as e:
        return {"status": "error", "error": str(e)}


def prom_query(port, q):
    """Instant query -> (list of (labels, float value), error or "")."""
    r = prom_api(port, "query", query=q)
    if r.get("status") != "success":
        return [], r.get("error", str(r))
    return [(x["metric"], float(x["value"][1])) for x in r["data"]["result"]], ""


# ---------------------------------------------------------------- requirements ---

def missing_requirements(need_prometheus=False):
    """Why the e2e suite cannot run here ("" when it can): root, PostgreSQL 15, Debian's python with the
    workload's modules, and (optionally) Prometheus and promtool. A missing build/loupe is not a reason to skip:
    see require_build()."""
    if os.geteuid() != 0:
        return "needs root (loads BPF programs; runs PostgreSQL as the postgres user)"
    if not os.access(os.path.join(PG_BIN, "pg_ctl"), os.X_OK):
        return f"PostgreSQL 15 not installed ({PG_BIN}/pg_ctl missing: apt-get install postgresql-15)"
    if not os.access(PY, os.X_OK):
        return f"{PY} missing"
    r = subprocess.run([PY, "-c", "import fastapi, uvicorn, psycopg2, websockets"], capture_output=True)
    if r.returncode:
        return ("python3-fastapi/python3-uvicorn/python3-psycopg2/python3-websockets not installed "
                "(scripts/deps.sh test)")
    if subprocess.run(["id", "postgres"], capture_output=True).returncode:
        return "user postgres does not exist (apt-get install postgresql)"
    if need_prometheus:
        for b in ("/usr/bin/prometheus", "/usr/bin/promtool"):
            if not os.access(b, os.X_OK):
                return f"{b} missing (apt-get install prometheus)"
    return ""


def require_build(t):
    """Report a failure and stop when build/loupe is missing: the suite runs after `make`, so that is an error."""
    if not os.access(LOUPE, os.X_OK):
        t.ok(False, "build/loupe exists", f"{LOUPE} not found: run make first")
        t.done()


_terminated = []


def terminate_on_signals():
    """Turn SIGTERM/SIGHUP into SystemExit so that `finally` blocks clean up when the runner is stopped."""
    def handler(signum, _frame):
        _terminated.append(signum)
        raise SystemExit(128 + signum)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, handler)


def finish(t):
    """t.done(), after reporting a failure if a signal or an exception cut the test short (its plan would look
    complete, and t.done()'s exit would swallow the exception). Call it from a `finally`."""
    exc = sys.exc_info()[1]
    if _terminated:
        t.ok(False, "test ran to the end", f"terminated by signal {_terminated[0]}; cleaned up")
    elif exc is not None and not isinstance(exc, SystemExit):
        t.ok(False, "test ran to the end", "".join(traceback.format_exception(exc))[-3000:])
    t.done()


def skip_all(t, why, names):
    """When a requirement is missing: skip every named check with the reason, and end the test."""
    for n in names:
        t.skip(n, why)
    t.done()


def begin(names, why=None):
    """Start an e2e test: a Tap; every named check skipped (and the test ended) when a requirement is missing
    (`why`, else missing_requirements()); a failure when build/loupe is missing; signals turned into cleanup."""
    t = Tap()
    why = missing_requirements() if why is None else why
    if why:
        skip_all(t, why, names)
    require_build(t)
    terminate_on_signals()
    return t


def stop_all(t, wl, *procs):
    """Stop what a test started (None entries are skipped), then the workload; report cleanup problems; finish."""
    for p in procs:
        if p:
            code = p.stop()
            if isinstance(p, Loupe) and code is not None and -code in CRASH_SIGNALS:
                t.ok(False, "loupe exited without crashing", f"loupe died of signal {-code}")
    problems = wl.stop()
    if problems:
        t.note("cleanup: " + "; ".join(problems))
    finish(t)


# ---------------------------------------------------------------- processes ---

def proc_table():
    """{pid: {"comm", "state", "ppid", "pgid"}} of the processes alive now (zombies excluded: loupe forgets a
    target when it exits, before it is reaped)."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        lp, rp = s.find("("), s.rfind(")")
        rest = s[rp + 2:].split()
        if rest[0] in ("Z", "X"):
            continue
        out[int(d)] = {"comm": s[lp + 1:rp], "state": rest[0], "ppid": int(rest[1]), "pgid": int(rest[2])}
    return out


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def stable(truth, observed, timeout=8.0, interval=0.2):
    """Compare a value loupe exports with ground truth counted from /proc at about the same moment.
    Processes come and go (autovacuum workers, other people's clusters), so accept only a reading taken between two
    identical truths. Returns (ok, observed, truth)."""
    deadline = time.time() + timeout
    while True:
        t1 = truth()
        v = observed()
        t2 = truth()
        if t1 == t2 == v:
            return True, v, t1
        if time.time() > deadline:
            return False, v, (t1, t2)
        time.sleep(interval)


def loupe_target_pids(loupe_pid):
    """{tgid: service id} from the target_procs map of one loupe process (found through its fds), for failure
    details; {} when bpftool cannot tell."""
    ids = set()
    try:
        for fd in os.listdir(f"/proc/{loupe_pid}/fdinfo"):
            try:
                with open(f"/proc/{loupe_pid}/fdinfo/{fd}") as f:
                    m = re.search(r"map_id:\s+(\d+)", f.read())
            except OSError:
                continue
            if m:
                ids.add(int(m.group(1)))
        maps = json.loads(subprocess.run(["bpftool", "-j", "map", "show"], capture_output=True, text=True).stdout)
        mid = next(x["id"] for x in maps if x.get("name") == "target_procs" and x["id"] in ids)
        dump = json.loads(subprocess.run(["bpftool", "-j", "map", "dump", "id", str(mid)], capture_output=True,
                                         text=True).stdout)
    except (OSError, ValueError, StopIteration):
        return {}
    out = {}
    for e in dump:
        f = e.get("formatted", e)
        k, v = f.get("key"), f.get("value")
        if isinstance(k, list):  # raw bytes
            out[int.from_bytes(bytes(int(b, 16) for b in k), "little")] = \
                int.from_bytes(bytes(int(b, 16) for b in v[:4]), "little")
        elif isinstance(v, dict):
            out[int(k)] = int(v.get("service", 0))
    return out


def describe_pids(pids):
    t = proc_table()
    return "; ".join(f"{p} comm={t[p]['comm']!r} ppid={t[p]['ppid']} '{cmdline(p)[:60]}'" if p in t
                     else f"{p} (no live process)" for p in sorted(pids))


def ere_escape(s):
    """Escape a literal for a POSIX extended regex (loupe's comm:/cmdline: selectors use regcomp(REG_EXTENDED);
    Python's re.escape also escapes '-', ' ' and '#', which ERE leaves undefined)."""
    return re.sub(r"([.\[\]()*+?{}|^$\\])", r"\\\1", s)


# ---------------------------------------------------------------- workload ---

class Workload:
    """The reference workload on private ports and directories. start_pg(), start_api(), seed(), stop()."""

    def __init__(self, name, api_workers=1, pool_max=4):
        self.root = tempfile.mkdtemp(prefix=f"loupe-e2e-{name}-", dir="/tmp")
        os.chmod(self.root, 0o755)  # the postgres user must reach its data dir below
        self.pg_dir = os.path.join(self.root, "pg")  # created (and chowned) by pg-start.sh
        self.run_dir = os.path.join(self.root, "run")
        self.pg_port = free_port()
        self.api_port = free_port()
        while self.api_port == self.pg_port:
            self.api_port = free_port()
        self.api_workers = api_workers
        self.env = dict(os.environ, LOUPE_PG_DIR=self.pg_dir, LOUPE_PG_PORT=str(self.pg_port),
                        LOUPE_PG_HOST="127.0.0.1", LOUPE_API_HOST="127.0.0.1", LOUPE_API_PORT=str(self.api_port),
                        LOUPE_RUN_DIR=self.run_dir, LOUPE_API_WORKERS=str(api_workers),
                        LOUPE_PG_POOL_MAX=str(pool_max), LOUPE_PYTHON=PY, LOUPE_SLOW_MS="200")
        self.pg_started = self.api_started = False
        self._bg = []

    # Regexes for `--target NAME=cmdline:RE` that match this workload's processes and nobody else's.
    @property
    def api_cmdline_re(self):
        return rf"-m uvicorn app:app --host 127\.0\.0\.1 --port {self.api_port}( |$)"

    @property
    def pg_cmdline_re(self):
        return "^" + ere_escape(PG_POSTGRES) + " -D " + ere_escape(self.pg_dir) + "( |$)"

    def own_targets(self):
        """loupe arguments naming this workload's processes api and postgres (and no one else's)."""
        return ["--target", f"api=cmdline:{self.api_cmdline_re}", "--target", f"postgres=cmdline:{self.pg_cmdline_re}"]

    def _script(self, name, *args, timeout=90):
        r = subprocess.run([os.path.join(WORKLOAD, name), *args], env=self.env, capture_output=True, text=True,
                           timeout=timeout)
        if r.returncode:
            raise RuntimeError(f"{name} {' '.join(args)} exited {r.returncode}: {r.stderr.strip()[-1500:]}")
        return r.stdout

    def start_pg(self):
        self.pg_started = True
        self._script("pg-start.sh")

    def start_api(self):
        self.api_started = True
        self._script("api-start.sh")

    def seed(self, memories=50, edges=100):
        return json.loads(self._script("seed.py", "--memories", str(memories), "--edges", str(edges)))

    def start(self, seed=True):
        self.start_pg()
        self.start_api()
        return self.seed() if seed else None

    # -- ground truth --
    def postmaster_pid(self):
        try:
            with open(os.path.join(self.pg_dir, "postmaster.pid")) as f:
                return int(f.readline())
        except (OSError, ValueError):
            return None

    def api_pid(self):
        try:
            with open(os.path.join(self.run_dir, "api.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def pg_pids(self):
        """The cluster's live processes: the postmaster and its children (every PostgreSQL process is one)."""
        pm = self.postmaster_pid()
        t = proc_table()
        if pm not in t:
            return set()
        return {pm} | {p for p, i in t.items() if i["ppid"] == pm}

    def api_pids(self):
        """The API's live processes: api-start.sh runs uvicorn under setsid, so its process group is the API
        (the uvicorn parent, and with --workers N the workers and the multiprocessing resource tracker)."""
        pid = self.api_pid()
        return {p for p, i in proc_table().items() if pid and i["pgid"] == pid}

    # -- traffic --
    def http_plan(self, plan, connections=1, timeout=60):
        """tests/workload/http_client.py: exact requests per endpoint over `connections` keep-alive connections.
        Returns its JSON summary; raises on transport errors."""
        r = subprocess.run([PY, os.path.join(WORKLOAD, "http_client.py"), "--plan", plan, "--connections",
                            str(connections), "--port", str(self.api_port)], env=self.env, capture_output=True,
                           text=True, timeout=timeout)
        if r.returncode:
            raise RuntimeError(f"http_client.py --plan {plan!r} exited {r.returncode}: {r.stderr[-1500:]}")
        return json.loads(r.stdout)

    def ws(self, *args, timeout=60):
        r = subprocess.run([PY, os.path.join(WORKLOAD, "ws_client.py"), "--port", str(self.api_port), *args],
                           env=self.env, capture_output=True, text=True, timeout=timeout)
        if r.returncode:
            raise RuntimeError(f"ws_client.py {' '.join(args)} exited {r.returncode}: {r.stderr[-1500:]}")
        return json.loads(r.stdout)

    def pg_connect(self):
        import psycopg2  # Debian's python3-psycopg2 (checked by missing_requirements)
        c = psycopg2.connect(host="127.0.0.1", port=self.pg_port, dbname="loupe", user="loupe",
                             application_name="loupe-e2e", connect_timeout=10)
        c.autocommit = True
        return c

    def background(self, args):
        """Start a helper process in its own process group; stop() kills the group."""
        p = subprocess.Popen(args, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
        self._bg.append(p)
        return p

    # -- cleanup --
    def stop(self):
        """Stop whatever was started (idempotent); never raises. Returns a list of problems met."""
        problems = []
        for p in self._bg:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                    p.wait(timeout=5)
                except (OSError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                        p.wait(timeout=5)
                    except (OSError, subprocess.TimeoutExpired):
                        pass
        self._bg = []
        if self.api_started:
            try:
                self._script("api-stop.sh", timeout=30)
            except Exception as e:  # noqa: BLE001 - cleanup must go on
                problems.append(str(e))
                pid = self.api_pid()
                if pid:
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except OSError:
                        pass
            self.api_started = False
        if self.pg_started:
            try:
                self._script("pg-stop.sh", "--purge", timeout=60)
            except Exception as e:  # noqa: BLE001
                problems.append(str(e))
                subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(PG_BIN, "pg_ctl"), "-D", self.pg_dir,
                                "stop", "-m", "immediate"], capture_output=True, cwd="/")
            self.pg_started = False
        shutil.rmtree(self.root, ignore_errors=True)
        return problems


# ---------------------------------------------------------------- metrics ---

def sc_count(m, service, syscall):
    """Calls of `syscall` by `service` (histogram _count)."""
    return value(m, HIST + "_count", service_name=service, syscall=syscall)


def sc_slot(m, service, syscall, ns):
    """Observations in the histogram slot that holds a duration of `ns` nanoseconds."""
    up, low = hist_le(ns)
    hi = value(m, HIST + "_bucket", le=up, service_name=service, syscall=syscall)
    lo = value(m, HIST + "_bucket", le=low, service_name=service, syscall=syscall) if low else 0.0
    return hi - lo


def sc_errors(m, service, syscall, errno=None):
    labels = {"service_name": service, "syscall": syscall}
    if errno:
        labels["errno"] = errno
    return value(m, ERRS, **labels)


def services(m, name=HIST + "_count"):
    return {d.get("service_name") for d, _ in select(m, name)}


# ---------------------------------------------------------------- privacy ---

IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
IPV6 = re.compile(r"(?i)(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}")
_LABELS = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def label_values(text):
    """Every (label, value) pair on sample lines of an exposition (any format)."""
    out = []
    for line in text.splitlines():
        if line.startswith("#") or "{" not in line:
            continue
        out += _LABELS.findall(line[line.index("{"):line.rindex("}") + 1])
    return out


def value_leaks(v, pids):
    """Why a string exported by loupe looks like a concrete reference (a path, an address or a pid), or ""."""
    if "/" in v:
        return "contains '/' (a path?)"
    if IPV4.search(v):
        return "contains an IPv4 address"
    if IPV6.fullmatch(v) or "::" in v:
        return "looks like an IPv6 address"
    if v.isdigit() and int(v) in pids:
        return "is the pid of a workload or loupe process"
    return ""


# Route templates of the reference app (tests/workload/app.py) as loupe must write them, and its placeholders.
APP_ROUTES = {"/memories", "/memories/{id}", "/search", "/edges", "/graph/{id}/neighbors", "/slow", "/fail", "/cpu",
              "/healthz", "/ws", "/ws/close/{id}", "_unmatched", "_other"}
NUMERIC_LABELS = {"le", "http_response_status_code", "code"}  # numbers that are not pids even when equal to one


def metrics_leaks(text, pids, secrets=()):
    """Privacy problems in a /metrics body: label values with paths, addresses or pids, and any of `secrets`
    (concrete strings the test knows: data dirs, ports in context, ...) anywhere in the text. An http_route must
    be one of the reference app's route templates (APP_ROUTES)."""
    problems = []
    for k, v in label_values(text):
        if k == "http_route":
            if v not in APP_ROUTES:
                problems.append(f'label http_route="{v}" is not a route template of the reference app')
            continue
        why = value_leaks(v, pids)
        if why and k not in NUMERIC_LABELS:
            problems.append(f'label {k}="{v}" {why}')
    for s in secrets:
        if s in text:
            problems.append(f"exposition contains {s!r}")
    return problems


def json_leaks(obj, pids, secrets=(), where="$"):
    """Privacy problems in a parsed /status: keys or strings with paths, addresses, pids; keys naming pids."""
    problems = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            why = value_leaks(str(k), pids)
            if why:
                problems.append(f"{where} key {k!r} {why}")
            if re.search(r"(?i)\bpids?\b|_pids?$|^pids?_", str(k)):
                problems.append(f"{where} key {k!r} names a pid")
            problems += json_leaks(v, pids, secrets, f"{where}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            problems += json_leaks(v, pids, secrets, f"{where}[{i}]")
    elif isinstance(obj, str):
        why = value_leaks(obj, pids)
        if why:
            problems.append(f"{where} = {obj!r} {why}")
        for s in secrets:
            if s in obj:
                problems.append(f"{where} contains {s!r}")
    return problems


def loupe_version_revision():
    """(version, revision) printed by `loupe --version` ("loupe 0.1.0 (abcdef123456)")."""
    out = subprocess.run([LOUPE, "--version"], capture_output=True, text=True).stdout
    m = re.match(r"loupe (\S+) \((\S+)\)", out.strip())
    return (m.group(1), m.group(2)) if m else (None, None)



# ---------------------------------------------------------------- raw HTTP/1.1 client ---

class HttpResponse:
    """One response read by HttpConn: status, lower-cased headers, body, and the interim (1xx) statuses before it."""

    def __init__(self, status, reason, headers, body, interim):
        self.status, self.reason, self.headers, self.body, self.interim = status, reason, headers, body, interim

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<HTTP {self.status} {self.body[:60]!r}>"


class HttpConn:
    """One raw HTTP/1.1 connection on loopback for exact ground truth: every byte the test sends is what the server
    reads, in writes the test chooses (TCP_NODELAY, so a pause between two writes makes two reads): keep-alive,
    pipelined requests in one write, a request split over several writes, chunked request bodies, 100-continue.
    Responses are read by their framing (Content-Length, chunked, none for HEAD/1xx/204/304)."""

    def __init__(self, port, host="127.0.0.1", timeout=30.0, counter=None):
        import socket
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.host, self.port = host, port
        self.buf = b""
        self.writes = 0
        self.closed_by_server = False
        if counter is not None:
            counter.opened += 1

    @staticmethod
    def build(method, path, headers=None, body=None, host="127.0.0.1", chunks=None, version="HTTP/1.1"):
        """The bytes of one request. body (bytes) gets a Content-Length unless chunks (a list of bytes) is given,
        which sends the body with Transfer-Encoding: chunked. headers: a list of (name, value) or a dict."""
        hs = list((headers or {}).items()) if isinstance(headers, dict) else list(headers or [])
        names = {k.lower() for k, _ in hs}
        if "host" not in names:
            hs.insert(0, ("Host", host))
        out = b""
        if chunks is not None:
            hs.append(("Transfer-Encoding", "chunked"))
            for c in chunks:
                out += b"%x\r\n" % len(c) + c + b"\r\n"
            out += b"0\r\n\r\n"
        elif body is not None:
            if "content-length" not in names:
                hs.append(("Content-Length", str(len(body))))
            out = body
        head = f"{method} {path} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hs) + "\r\n"
        return head.encode("latin-1") + out

    def send(self, data):
        self.sock.sendall(data)
        self.writes += 1

    def send_split(self, data, pieces, pause=0.02):
        """Send data in `pieces` writes of about equal size with `pause` seconds between them."""
        n = max(1, pieces)
        step = max(1, -(-len(data) // n))
        parts = [data[i:i + step] for i in range(0, len(data), step)]
        for i, part in enumerate(parts):
            if i:
                time.sleep(pause)
            self.send(part)
        return len(parts)

    def _fill(self):
        d = self.sock.recv(65536)
        if not d:
            self.closed_by_server = True
            raise ConnectionError(f"server closed the connection (buffered {self.buf[:80]!r})")
        self.buf += d

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exactly(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, method="GET"):
        interim = []
        while True:
            parts = self._line().decode("latin-1").split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
                raise ValueError(f"bad status line {parts!r}")
            status, reason = int(parts[1]), (parts[2] if len(parts) > 2 else "")
            headers = {}
            while True:
                line = self._line()
                if not line:
                    break
                k, _, v = line.decode("latin-1").partition(":")
                headers[k.strip().lower()] = v.strip()
            if 100 <= status < 200 and status != 101:
                interim.append(status)
                continue
            break
        if method == "HEAD" or status in (101, 204, 304):
            body = b""
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                body += self._exactly(size)
                self._exactly(2)
        elif "content-length" in headers:
            body = self._exactly(int(headers["content-length"]))
        else:  # read to close
            try:
                while True:
                    self._fill()
            except ConnectionError:
                pass
            body, self.buf = self.buf, b""
        return HttpResponse(status, reason, headers, body, interim)

    def request(self, method, path, headers=None, body=None, chunks=None):
        self.send(self.build(method, path, headers, body, self.host, chunks))
        return self.read_response(method)

    def pipeline(self, reqs):
        """Send every request of reqs [(method, path, headers, body)] in ONE write, then read their responses."""
        data = b"".join(self.build(m, p, h, b, self.host) for m, p, h, b in reqs)
        self.send(data)
        return [self.read_response(m) for m, _, _, _ in reqs]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class ConnCounter:
    """Counts the TCP connections a test opened (pass as HttpConn(counter=...))."""

    def __init__(self):
        self.opened = 0

__all__ = ["PY", "PG_BIN", "PG_POSTGRES", "HIST", "ERRS", "TOP", "missing_requirements", "require_build",
           "terminate_on_signals", "finish", "begin", "proc_table", "cmdline", "stable", "ere_escape", "Workload", "sc_count",
           "sc_slot", "sc_errors", "services", "label_values", "value_leaks", "metrics_leaks", "json_leaks",
           "loupe_version_revision", "loupe_target_pids", "describe_pids", "HttpConn", "HttpResponse",
           "ConnCounter"]
