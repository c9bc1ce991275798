#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""`loupe run --web-config` (root): TLS, client certificates and basic auth in the exporter-toolkit format, checked
with independent clients. openssl makes a CA, a server certificate, a client certificate and a rogue one (self-signed);
Apache's htpasswd makes the bcrypt hashes (not loupe's libxcrypt); curl (OpenSSL) is the client:
- HTTPS works with the CA, plain HTTP and an untrusted CA fail; no credentials, a wrong password or an unknown user
  get 401 with WWW-Authenticate: Basic realm="loupe"; the right ones get /metrics; /healthz and /readyz stay open and
  every other path (/status, /, profiles, unknown ones) needs credentials; a 414 still arrives over TLS;
- --sessions-per-minute 2: the third session in a minute gets 429 with Retry-After;
- --auth-scope sessions: /metrics is open, a session needs credentials;
- RequireAndVerifyClientCert: no certificate or a rogue one fails the handshake (TLS 1.2 and 1.3), the CA's client
  certificate gets 200;
- loupe_http_requests_refused_total and loupe_http_connections_refused_total{reason="client_cert"} count exactly
  what was refused;
- a warning naming what is missing on a non-loopback address (none on loopback with TLS and auth);
- bad files exit 2 naming the key;
- a real Prometheus (Debian's) scrapes loupe over HTTPS with basic auth: the target is up, loupe_build_info is
  queryable through its HTTP API.
Prints TAP."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loupe_test import LOUPE, Tap, free_port, is_root, parse_metrics, value, wait_for  # noqa: E402
from e2e_support import prom_api, prom_query  # noqa: E402

PROMETHEUS = "/usr/bin/prometheus"
NO_TARGET = ["--target", "none=comm:^loupe-no-such$", "--syscalls", "off"]

NAMES = ["certificates and hashes made by openssl and htpasswd",
         "https with the CA and credentials: /metrics 200",
         "plain http on the https port gets no HTTP answer",
         "https with an untrusted CA fails verification",
         "no credentials: 401 with WWW-Authenticate: Basic realm=\"loupe\"",
         "wrong password and unknown user: 401",
         "/healthz and /readyz answer 200 without credentials",
         "/status, /, profiles and unknown paths need credentials",
         "a 414 arrives over TLS",
         "--sessions-per-minute 2: two sessions 200, the third 429 with Retry-After",
         "loupe_http_requests_refused_total counts the refusals exactly",
         "no exposure warning on loopback with TLS and basic auth",
         "--auth-scope sessions: /metrics open, a session needs credentials",
         "non-loopback with --auth-scope sessions: a warning names the open endpoints",
         "non-loopback without --web-config: a warning names TLS and authentication",
         "RequireAndVerifyClientCert: no client certificate fails (TLS 1.2 and 1.3)",
         "RequireAndVerifyClientCert: a rogue or server-only certificate fails",
         "RequireAndVerifyClientCert: the CA's client certificate gets 200",
         "loupe_http_connections_refused_total{reason=\"client_cert\"} counts the refused handshakes",
         "bad web config files exit 2 naming the key",
         "Prometheus scrapes loupe over https with basic auth: target up",
         "Prometheus: loupe_build_info is queryable"]


def sh(*cmd, **kw):
    return subprocess.run(list(cmd), capture_output=True, text=True, **kw)


def make_pki(d):
    """CA, server (127.0.0.1, localhost), client (clientAuth) and rogue (self-signed) certificates in d."""
    def run(*cmd):
        r = sh(*cmd, cwd=d)
        if r.returncode:
            raise RuntimeError(f"{' '.join(cmd)}: {r.stderr}")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=loupe test CA")
    run("openssl", "req", "-x509", *ec, "-keyout", "other-ca.key", "-out", "other-ca.crt", "-days", "2",
        "-subj", "/CN=another CA")
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    with open(os.path.join(d, "client.ext"), "w") as f:
        f.write("extendedKeyUsage=clientAuth\n")
    for name, ext in (("server", "server.ext"), ("client", "client.ext")):
        run("openssl", "req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        run("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", "-extfile", ext)
    run("openssl", "req", "-x509", *ec, "-keyout", "rogue.key", "-out", "rogue.crt", "-days", "2", "-subj", "/CN=rogue")


def htpasswd(user, password, cost=10):
    r = sh("htpasswd", "-nbBC", str(cost), user, password)
    if r.returncode:
        raise RuntimeError(r.stderr)
    return r.stdout.strip().split(":", 1)[1]


class Curl:
    """curl against one loupe: (HTTP status or 0, headers lower-cased, body, curl's exit code)."""

    def __init__(self, d, port, host="127.0.0.1"):
        self.d, self.base = d, f"https://{host}:{port}"

    def get(self, path, user=None, ca="ca.crt", cert=None, tls=None, scheme=None, timeout=20):
        url = (scheme + self.base[5:] if scheme else self.base) + path
        cmd = ["curl", "-sS", "-g", "--max-time", str(timeout), "-D", "-", "-o", os.path.join(self.d, "body"),
               "-w", "\n%{http_code}"]
        if ca:
            cmd += ["--cacert", os.path.join(self.d, ca)]
        if user:
            cmd += ["-u", user]
        if cert:
            cmd += ["--cert", os.path.join(self.d, cert + ".crt"), "--key", os.path.join(self.d, cert + ".key")]
        if tls:
            cmd += [f"--tlsv{tls}", "--tls-max", tls]
        if os.path.exists(os.path.join(self.d, "body")):
            os.unlink(os.path.join(self.d, "body"))
        r = subprocess.run(cmd + [url], capture_output=True)
        out = r.stdout.decode(errors="replace")
        code = int(out.rsplit("\n", 1)[-1] or 0)
        headers = {}
        for line in out.splitlines():
            if ":" in line and not line.startswith("HTTP/"):
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        try:
            body = open(os.path.join(self.d, "body"), "rb").read()
        except OSError:
            body = b""
        return code, headers, body, r.returncode

    def metrics(self, user):
        code, _, body, _ = self.get("/metrics", user=user)
        if code != 200:
            raise RuntimeError(f"/metrics answered {code}")
        return parse_metrics(body.decode())


class Daemon:
    """loupe run with options; ready when /readyz answers (over https with the CA when tls)."""

    def __init__(self, d, *args, host="127.0.0.1", tls=True):
        self.d, self.port, self.host, self.tls = d, free_port(), host, tls
        self.args = ["run", "--listen", f"{host}:{self.port}", *args, *NO_TARGET]
        self.logpath = os.path.join(d, f"loupe-{self.port}.log")
        self.proc = None

    def start(self, timeout=30):
        self.log = open(self.logpath, "wb")
        self.proc = subprocess.Popen([LOUPE, *self.args], stdout=subprocess.DEVNULL, stderr=self.log)
        curl = Curl(self.d, self.port)
        scheme = None if self.tls else "http"
        if not wait_for(lambda: self.proc.poll() is not None or curl.get("/readyz", scheme=scheme, timeout=2)[0] == 200,
                        timeout=timeout, interval=0.2) or self.proc.poll() is not None:
            raise RuntimeError(f"loupe not ready (exit {self.proc.poll()}): {self.stderr()[-1500:]}")
        return curl

    def stderr(self):
        try:
            return open(self.logpath, errors="replace").read()
        except OSError:
            return ""

    def warnings(self, event):
        return [ln for ln in self.stderr().splitlines() if f'"event":"{event}"' in ln]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
        return self.proc.returncode if self.proc else None


def write(d, name, text):
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def check_basic(t, d, web):
    """TLS + basic auth on loopback, two sessions a minute."""
    L = Daemon(d, "--web-config", web, "--sessions-per-minute", "2")
    try:
        c = L.start()
        code, _, body, _ = c.get("/metrics", user="prom:s3cret pass")
        t.ok(code == 200 and b"loupe_build_info" in body, NAMES[1], f"HTTP {code} {body[:100]!r}")
        code, _, _, rc = c.get("/metrics", user="prom:s3cret pass", scheme="http")
        t.ok(code == 0 and rc != 0, NAMES[2], f"HTTP {code}, curl exit {rc}")
        code, _, _, rc = c.get("/metrics", user="prom:s3cret pass", ca="other-ca.crt")
        t.ok(code == 0 and rc == 60, NAMES[3], f"HTTP {code}, curl exit {rc} (60: peer certificate not verified)")
        missing = failed = 0
        code, h, body, _ = c.get("/metrics")
        missing += 1
        t.ok(code == 401 and h.get("www-authenticate") == 'Basic realm="loupe"', NAMES[4], f"HTTP {code} {h}")
        codes = [c.get("/metrics", user=u)[0] for u in ("prom:wrong", "prom:", "nobody:s3cret pass", "Prom:s3cret pass")]
        failed += 4
        t.ok(codes == [401] * 4, NAMES[5], codes)
        codes = [c.get(p)[0] for p in ("/healthz", "/readyz")]
        t.ok(codes == [200, 200], NAMES[6], codes)
        paths = ["/status", "/", "/debug/pprof/profile?window=5s", "/flamegraph.svg", "/debug/pprof/offcpu",
                 "/no-such-path", "/metrics?x=1"]
        got = [(p, c.get(p)[0]) for p in paths]
        missing += len(paths)
        ok_paths = [(p, c.get(p, user="prom:s3cret pass")[0]) for p in ("/status", "/", "/no-such-path")]
        t.ok(all(st == 401 for _, st in got) and ok_paths == [("/status", 200), ("/", 200), ("/no-such-path", 404)],
             NAMES[7], f"without: {got}; with: {ok_paths}")
        code, _, body, _ = c.get("/metrics?" + "a" * 3000, user="prom:s3cret pass")
        t.ok(code == 414, NAMES[8], f"HTTP {code} {body[:80]!r}")
        sessions = [c.get("/debug/pprof/profile?seconds=1", user="prom:s3cret pass") for _ in range(3)]
        retry = sessions[2][1].get("retry-after", "")
        t.ok([s[0] for s in sessions] == [200, 200, 429] and retry.isdigit() and 1 <= int(retry) <= 60, NAMES[9],
             f"{[s[0] for s in sessions]}, Retry-After {retry!r}: {sessions[2][2][:100]!r}")
        m = c.metrics("prom:s3cret pass")
        got = {r: value(m, "loupe_http_requests_refused_total", default=-1, reason=r)
               for r in ("auth_missing", "auth_failed", "auth_throttled", "session_rate")}
        want = {"auth_missing": missing, "auth_failed": failed, "auth_throttled": 0, "session_rate": 1}
        t.ok(got == want, NAMES[10], f"got {got}, want {want}")
        t.ok(not L.warnings("http_exposed"), NAMES[11], L.warnings("http_exposed"))
        return L
    except Exception:
        L.stop()
        raise


def check_scope_and_warnings(t, d, web):
    L = Daemon(d, "--web-config", web, "--auth-scope", "sessions", host="0.0.0.0")
    try:
        c = L.start()
        m = c.get("/metrics")[0]
        s_no = c.get("/debug/pprof/profile?seconds=1")[0]
        s_yes = c.get("/debug/pprof/profile?seconds=1", user="prom:s3cret pass")[0]
        w = c.get("/debug/pprof/profile?window=5s")[0]
        t.ok((m, s_no, s_yes, w) == (200, 401, 200, 200), NAMES[12],
             f"/metrics {m}, session without {s_no}, with {s_yes}, window {w}")
        warns = L.warnings("http_exposed")
        t.ok(len(warns) == 1 and "authentication of /metrics" in warns[0] and "without TLS" not in warns[0],
             NAMES[13], warns)
    finally:
        L.stop()
    L = Daemon(d, host="0.0.0.0", tls=False)
    try:
        L.start()
        warns = L.warnings("http_exposed")
        t.ok(len(warns) == 1 and "without TLS and without authentication" in warns[0], NAMES[14], warns)
    finally:
        L.stop()


def check_mtls(t, d, mtls):
    L = Daemon(d, "--web-config", mtls)
    L.tls = True
    try:
        L.log = open(L.logpath, "wb")
        L.proc = subprocess.Popen([LOUPE, *L.args], stdout=subprocess.DEVNULL, stderr=L.log)
        c = Curl(d, L.port)
        # Not ready through /readyz without a client certificate: with one.
        if not wait_for(lambda: L.proc.poll() is not None or c.get("/readyz", cert="client", timeout=2)[0] == 200,
                        timeout=30, interval=0.2) or L.proc.poll() is not None:
            raise RuntimeError(f"loupe not ready: {L.stderr()[-1500:]}")
        refused = 0
        res = [c.get("/healthz", tls=v) for v in ("1.2", "1.3")]
        refused += 2
        t.ok(all(r[0] == 0 and r[3] != 0 for r in res), NAMES[15], [(r[0], r[3]) for r in res])
        res = [c.get("/metrics", cert=k, tls=v) for k in ("rogue", "server") for v in ("1.2", "1.3")]
        refused += 4
        t.ok(all(r[0] == 0 and r[3] != 0 for r in res), NAMES[16], [(r[0], r[3]) for r in res])
        res = [c.get("/metrics", cert="client", tls=v) for v in ("1.2", "1.3")]
        t.ok(all(r[0] == 200 for r in res), NAMES[17], [(r[0], r[3]) for r in res])
        m = parse_metrics(res[0][2].decode()) if res[0][0] == 200 else {}
        n = value(m, "loupe_http_connections_refused_total", default=-1, reason="client_cert")
        t.eq(n, refused, NAMES[18])
    finally:
        L.stop()


def check_bad(t, d, h):
    bad = [
        ("tls_server_config:\n  cert_file: server.crt\n  key_file: client.key\n", "tls_server_config.key_file"),
        ("tls_server_config:\n  cert_file: nope.crt\n  key_file: server.key\n", "tls_server_config.cert_file"),
        ("tls_server_config:\n  cert_file: server.crt\n", "key_file"),
        ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: Maybe\n",
         "tls_server_config.client_auth_type"),
        ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS10\n",
         "tls_server_config.min_version"),
        ("basic_auth_users:\n  prom: plaintext\n", "basic_auth_users.prom"),
        (f"basic_auth_users:\n  prom: '{h}'\nbogus_key: 1\n", "bogus_key"),
        ("basic_auth_users: [\n", "not valid YAML"),
    ]
    problems = []
    for i, (text, key) in enumerate(bad):
        path = write(d, f"bad{i}.yml", text)
        r = sh(LOUPE, "run", "--listen", f"127.0.0.1:{free_port()}", "--web-config", path, timeout=30)
        if r.returncode != 2 or key not in r.stderr or path not in r.stderr:
            problems.append(f"{text!r}: exit {r.returncode}, {r.stderr.strip()[:300]}")
    t.ok(not problems, NAMES[19], "\n".join(problems))


def check_prometheus(t, d, L):
    port = free_port()
    cfg = write(d, "prometheus.yml", f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: loupe
    scheme: https
    tls_config:
      ca_file: {d}/ca.crt
    basic_auth:
      username: prom
      password: 's3cret pass'
    static_configs:
      - targets: ['127.0.0.1:{L.port}']
""")
    log = open(os.path.join(d, "prometheus.log"), "wb")
    p = subprocess.Popen([PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={d}/tsdb",
                          f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
                          f"--web.console.templates={d}", f"--web.console.libraries={d}"],
                         stdout=log, stderr=subprocess.STDOUT, cwd=d)
    try:
        def target():
            r = prom_api(port, "targets")
            ts = r.get("data", {}).get("activeTargets", []) if r.get("status") == "success" else []
            return ts[0] if ts and ts[0].get("health") == "up" else None
        tg = wait_for(target, timeout=30, interval=0.5)
        last = prom_api(port, "targets")
        t.ok(tg is not None and tg.get("scrapeUrl", "").startswith("https://"), NAMES[20], str(last)[:600])
        res = wait_for(lambda: prom_query(port, 'loupe_build_info{job="loupe"}')[0], timeout=15, interval=0.5)
        t.ok(bool(res) and res[0][1] == 1.0 and "version" in res[0][0], NAMES[21], res)
    finally:
        p.terminate()
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        log.close()


def main():
    t = Tap()
    why = None
    if not is_root():
        why = "needs root (loads BPF programs)"
    elif not os.access(LOUPE, os.X_OK):
        why = f"{LOUPE} missing: run make"
    else:
        for tool, pkg in (("openssl", "openssl"), ("curl", "curl"), ("htpasswd", "apache2-utils")):
            if not shutil.which(tool):
                why = f"{tool} missing (apt-get install {pkg})"
    if why:
        for n in NAMES:
            t.skip(n, why)
        t.done()
    d = tempfile.mkdtemp(prefix="loupe-webconfig-")
    L = None
    try:
        make_pki(d)
        h = htpasswd("prom", "s3cret pass")
        t.ok(h.startswith("$2y$10$") and os.path.exists(os.path.join(d, "client.crt")), NAMES[0], h)
        web = write(d, "web.yml", f"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                                  f"basic_auth_users:\n  prom: '{h}'\n")
        mtls = write(d, "mtls.yml", "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                                    "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n")
        groups = [(1, 12, lambda: check_basic(t, d, web)), (12, 15, lambda: check_scope_and_warnings(t, d, web)),
                  (15, 19, lambda: check_mtls(t, d, mtls)), (19, 20, lambda: check_bad(t, d, h))]
        for lo, hi, fn in groups:
            n0 = t.n
            try:
                r = fn()
                if lo == 1:
                    L = r
            except Exception:  # noqa: BLE001 - one failure with its traceback; the group's other checks are not run
                t.ok(False, NAMES[lo] + " (the group failed)", traceback.format_exc())
                for n in NAMES[lo + t.n - n0:hi]:
                    t.skip(n, "its group failed above")
        if not os.access(PROMETHEUS, os.X_OK):
            for n in NAMES[20:]:
                t.skip(n, f"{PROMETHEUS} missing (apt-get install prometheus)")
        elif L is None:
            for n in NAMES[20:]:
                t.skip(n, "loupe with --web-config did not start")
        else:
            check_prometheus(t, d, L)
    except Exception:  # noqa: BLE001
        t.ok(False, "no unexpected error", traceback.format_exc())
    finally:
        if L:
            code = L.stop()
            if code not in (0, None):
                t.ok(False, "loupe exits 0 on SIGTERM", f"exit {code}: {L.stderr()[-1000:]}")
        shutil.rmtree(d, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()
