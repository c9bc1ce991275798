# SPDX-License-Identifier: BSD-2-Clause
"""Shared helpers for Loupe's BPF and end-to-end tests (run with /usr/bin/python3).

Tests report in TAP: t = Tap(); t.ok(cond, name, detail); t.skip(name, reason); t.done() at the end.
Loupe(...) starts build/loupe run on a free loopback port and stops it; scrape() returns parsed metrics.
"""
import gzip
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LOUPE = os.environ.get("LOUPE_BIN", os.path.join(TOP, "build", "loupe"))
PROTO = os.path.join(TOP, "proto", "profile.proto")
HELPERS = os.path.join(TOP, "build", "tests")
WORKLOAD = os.path.join(TOP, "tests", "workload")


class Tap:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def _line(self, s):
        print(s, flush=True)

    def ok(self, cond, name, detail=""):
        self.n += 1
        if cond:
            self._line(f"ok {self.n} - {name}")
        else:
            self.failed += 1
            self._line(f"not ok {self.n} - {name}")
            for line in str(detail).splitlines() or [""]:
                self._line(f"# {line}")
        return cond

    def eq(self, got, want, name):
        return self.ok(got == want, name, f"got {got!r}, want {want!r}")

    def skip(self, name, reason):
        self.n += 1
        self._line(f"ok {self.n} - {name} # SKIP {reason}")

    def note(self, msg):
        for line in str(msg).splitlines():
            self._line(f"# {line}")

    def done(self):
        self._line(f"1..{self.n}")
        sys.exit(1 if self.failed else 0)


def is_root():
    return os.geteuid() == 0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text -> {(name, frozenset(labels.items())): value}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ValueError(f"unparseable metrics line: {line!r}")
        labels = dict((k, bytes(v, "utf-8").decode("unicode_escape")) for k, v in _LABEL.findall(m.group(3) or ""))
        out[(m.group(1), frozenset(labels.items()))] = float(m.group(4))
    return out


def select(metrics, name, **labels):
    """All samples of `name` whose labels include `labels`: [(labels_dict, value)]."""
    res = []
    for (n, ls), v in metrics.items():
        if n != name:
            continue
        d = dict(ls)
        if all(d.get(k) == val for k, val in labels.items()):
            res.append((d, v))
    return res


def value(metrics, name, default=0.0, **labels):
    """Sum of the samples of `name` matching labels (default when none)."""
    s = select(metrics, name, **labels)
    return sum(v for _, v in s) if s else default


def bucket(metrics, name, le, **labels):
    """Cumulative count of a histogram bucket."""
    return value(metrics, name + "_bucket", le=le, **labels)


def hist_le(ns):
    """The `le` label (seconds) of the loupe log2 histogram slot holding a duration of `ns` nanoseconds,
    and the `le` of the slot below it (see include/hist.h: slot k>=1 is [2^(k+9), 2^(k+10)) ns)."""
    k = 0 if ns < 1024 else min(ns.bit_length() - 10, 26)
    def fmt(x):
        return repr(x) if x != int(x) else str(int(x))
    up = fmt((1 << (k + 10)) / 1e9) if k < 26 else "+Inf"
    low = fmt((1 << (k + 9)) / 1e9) if k >= 1 else None
    return up, low


CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGILL, signal.SIGFPE}


class Loupe:
    """A running `loupe run`. Use as a context manager (which raises when loupe crashed)."""

    def __init__(self, *args, port=None, log_level="info", prefix=()):
        self.port = port or free_port()
        self.prefix = list(prefix)  # a command loupe runs under (e.g. setpriv with a user and capabilities)
        # LOUPE_TEST_EXTRA_ARGS: options every loupe run of a test gets (the suite reruns the ground-truth tests
        # of requests, messages and statements with "--syscalls off": tests/e2e/test_syscalls_off.py).
        extra = os.environ.get("LOUPE_TEST_EXTRA_ARGS", "").split()
        # The tests count timed syscalls against ground truth, so every call is timed unless a test chooses:
        # loupe's default, --syscalls sampled, times only a window of every 10 s (test_syscall_modes.py).
        mode = [] if "--syscalls" in args or "--syscalls" in extra else ["--syscalls", "on"]
        self.args = ["run", "--listen", f"127.0.0.1:{self.port}", "--log-level", log_level, *args, *mode, *extra]
        self.proc = None
        self.logpath = None
        self.exit_code = None
        self.stop_seconds = None

    def start(self, timeout=20):
        os.makedirs(os.path.join(TOP, "build", "test-logs"), exist_ok=True)
        self.logpath = os.path.join(TOP, "build", "test-logs", f"loupe-{self.port}.stderr")
        self.log = open(self.logpath, "wb")
        self.proc = subprocess.Popen([*self.prefix, LOUPE, *self.args], stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"loupe exited {self.proc.returncode}: {self.stderr()[-2000:]}")
            try:
                if self.get("/readyz")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"loupe not ready after {timeout}s: {self.stderr()[-2000:]}")

    def get(self, path, headers=None, timeout=10):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def scrape_text(self):
        status, _, body = self.get("/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        return body.decode()

    def scrape(self):
        return parse_metrics(self.scrape_text())

    def status(self):
        return json.loads(self.get("/status")[2])

    def stderr(self):
        try:
            with open(self.logpath, "r", errors="replace") as f:
                return f.read()
        except (OSError, TypeError):
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=5):
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        t0 = time.time()
        self.proc.send_signal(sig)
        try:
            self.exit_code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.exit_code = self.proc.wait()
        self.stop_seconds = time.time() - t0
        self.log.close()
        return self.exit_code

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        code = self.stop()
        if exc[0] is None and code is not None and -code in CRASH_SIGNALS:
            raise RuntimeError(f"loupe crashed: signal {-code} (log: {self.log.name})")


def wait_for(cond, timeout=10, interval=0.1):
    """Poll cond() until it returns a truthy value or the timeout passes; returns the last value."""
    deadline = time.time() + timeout
    v = cond()
    while not v and time.time() < deadline:
        time.sleep(interval)
        v = cond()
    return v


def cpu_seconds(pid):
    """CPU time a live process's threads have had so far (/proc/PID/task/*/schedstat, first field, ns): the ground
    truth for sample counts, since a spinner on a busy machine gets less CPU than its wall time."""
    total = 0
    base = f"/proc/{pid}/task"
    for tid in os.listdir(base):
        try:
            with open(f"{base}/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / 1e9


def loupe_bpf_programs():
    """Names of loaded BPF programs that look like loupe's (for leak checks)."""
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True)
    if out.returncode != 0:
        return []
    ours = ("sys_enter_", "sys_exit_", "fork_", "exec_", "exit_", "probe_")
    return [p.get("name", "") for p in json.loads(out.stdout or "[]") if p.get("name", "").startswith(ours)]


def pprof_text(path):
    """The profile at path (gzipped profile.proto) as protoc --decode prints it; "" when protoc cannot decode it,
    None without protoc."""
    if not shutil.which("protoc"):
        return None
    data = open(path, "rb").read() if os.path.exists(path) else b""
    r = subprocess.run(["protoc", f"--proto_path={os.path.dirname(PROTO)}", "--decode=perftools.profiles.Profile",
                        os.path.basename(PROTO)], input=gzip.decompress(data) if data else b"", capture_output=True)
    return r.stdout.decode(errors="replace") if r.returncode == 0 else ""
