#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""The deployment files of deploy/, each checked by the tool that consumes it, where this machine has one:
- deploy/docker-compose.monitoring.yml: `docker-compose config` (Debian's docker-compose 1.29.2) accepts it, and its
  resolved form has every service of the stack, loupe with the host's PID namespace and only its capabilities;
- deploy/kubernetes/*.yaml: every document validates against the Kubernetes OpenAPI schemas (npm kubernetes-models,
  through tests/unit/k8s_validate.mjs), which must reject deliberately broken copies; plus the fields that
  matter, asserted by name (the schemas do not reject unknown fields);
- deploy/systemd/loupe.service: `systemd-analyze verify` prints nothing, and the hardening is there;
- deploy/Dockerfile (no Docker engine here): its runtime stage installs the Debian package of every library that
  build/loupe links (ldd, dpkg -S), and its build stage copies everything `make` reads.
A check whose tool is missing is skipped, saying why. Needs build/loupe (`make`)."""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

TOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
TOP = os.path.abspath(TOP)
sys.path.insert(0, os.path.join(TOP, "tests", "lib"))
from loupe_test import Tap  # noqa: E402

DEPLOY = os.path.join(TOP, "deploy")
COMPOSE = os.path.join(DEPLOY, "docker-compose.monitoring.yml")
K8S = [os.path.join(DEPLOY, "kubernetes", f) for f in ("loupe.yaml", "servicemonitor.yaml")]
UNIT = os.path.join(DEPLOY, "systemd", "loupe.service")
DEFAULTS = os.path.join(DEPLOY, "systemd", "loupe.default")
DOCKERFILE = os.path.join(DEPLOY, "Dockerfile")
LOUPE = os.path.join(TOP, "build", "loupe")
K8S_VALIDATE = os.path.join(TOP, "tests", "unit", "k8s_validate.mjs")
NPM_PREFIX = os.path.join(TOP, "build", "k8s-validate")
NPM_PACKAGES = ["kubernetes-models@5", "@kubernetes-models/prometheus-operator@6", "js-yaml@4"]

# The capabilities loupe needs (deploy/README.md says why), without their CAP_ prefix.
# Measured by tests/bpf/test_privileges.py (docs/privileges.md); CAP_SYS_ADMIN only for BPF statistics, optional.
CAPS = {"BPF", "PERFMON", "SYS_PTRACE", "DAC_READ_SEARCH", "SYSLOG"}
SERVICES = {"loupe": None, "prometheus": "prom/prometheus:v2.42.0", "alertmanager": "prom/alertmanager:v0.25.0",
            "grafana": "grafana/grafana-oss:10.4.2", "node-exporter": "prom/node-exporter:v1.5.0",
            "postgres-exporter": "prometheuscommunity/postgres-exporter:v0.11.1",
            "blackbox-exporter": "prom/blackbox-exporter:v0.23.0"}


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


# ---- docker-compose ----

def compose_config(env_overrides=None):
    env = {k: v for k, v in os.environ.items() if k not in ("POSTGRES_EXPORTER_DSN", "GRAFANA_ADMIN_PASSWORD")}
    env.update(env_overrides or {})
    return run(["docker-compose", "-f", COMPOSE, "config"], cwd=TOP, env=env)


def binds(service):
    """[(source, target)] of a resolved service's bind mounts (docker-compose config writes SRC:DST[:MODE])."""
    out = []
    for v in service.get("volumes", []):
        parts = v.split(":") if isinstance(v, str) else [v.get("source", ""), v.get("target", "")]
        if parts[0].startswith("/"):
            out.append((parts[0], parts[1]))
    return out


def check_compose(t):
    if not shutil.which("docker-compose"):
        t.skip("docker-compose config", "docker-compose missing (scripts/deps.sh test installs it)")
        return
    r = compose_config()
    if not t.ok(r.returncode == 0 and r.stdout, "docker-compose config accepts docker-compose.monitoring.yml",
                r.stderr[-2000:]):
        return
    t.ok(not r.stderr.strip(), "docker-compose config prints no warning", r.stderr[-2000:])
    cfg = yaml.safe_load(r.stdout)
    svc = cfg.get("services", {})
    t.ok(set(SERVICES) <= set(svc), "every service of the stack is defined", f"missing: {set(SERVICES) - set(svc)}")
    images = {n: svc.get(n, {}).get("image") for n in SERVICES}
    wrong = {n: images[n] for n, img in SERVICES.items() if img and images[n] != img}
    t.ok(not wrong, "each exporter and server runs its pinned image", f"images: {wrong}")
    t.ok(all(s.get("network_mode") == "host" for s in svc.values()),
         "every service uses the host's network (the native stack's 127.0.0.1 ports)",
         {n: s.get("network_mode") for n, s in svc.items()})

    lp = svc.get("loupe", {})
    b = lp.get("build", {})
    t.ok(os.path.realpath(b.get("context", "")) == TOP and b.get("dockerfile") == "deploy/Dockerfile",
         "loupe is built from deploy/Dockerfile with the repository as context", b)
    t.ok(lp.get("pid") == "host", "loupe runs in the host's PID namespace", lp.get("pid"))
    t.ok(set(lp.get("cap_add", [])) == CAPS and lp.get("cap_drop") == ["ALL"],
         "loupe drops every capability and adds exactly BPF PERFMON SYS_PTRACE DAC_READ_SEARCH SYSLOG",
         f"cap_add {lp.get('cap_add')}, cap_drop {lp.get('cap_drop')}")
    t.ok(lp.get("privileged") is not True, "loupe is not privileged", lp.get("privileged"))
    cmd = lp.get("command") or []
    t.ok("--user" in cmd and cmd[cmd.index("--user") + 1:][:1] == ["65534"],
         "loupe switches to nobody once attached (--user 65534)", cmd)
    t.ok(lp.get("read_only") is True, "loupe's root file system is read-only", lp.get("read_only"))
    mounts = binds(lp)
    t.ok(mounts and all(v.endswith(":ro") for v in lp.get("volumes", []) if isinstance(v, str)),
         "loupe's host mounts are all read-only", lp.get("volumes"))
    t.ok(("/sys/kernel/btf", "/sys/kernel/btf") in mounts, "loupe sees the host's /sys/kernel/btf", mounts)
    hc = " ".join(lp.get("healthcheck", {}).get("test", []))
    t.ok("http://127.0.0.1:9476/healthz" in hc, "loupe's health check asks /healthz on 127.0.0.1:9476", hc)

    g = dict((dst, src) for src, dst in binds(svc.get("grafana", {})))
    prov = os.path.join(TOP, "dashboards", "provisioning")
    dash_dst = [d for d, s in g.items() if s == os.path.join(TOP, "dashboards")]
    t.ok(dash_dst == ["/var/lib/grafana/dashboards/loupe"]
         and g.get("/etc/grafana/provisioning/dashboards/loupe.yml") == os.path.join(prov, "loupe.yml")
         and any(d.startswith("/etc/grafana/provisioning/datasources/") and s == os.path.join(prov, "datasources.yml")
                 for d, s in g.items()),
         "grafana: dashboards/ at /var/lib/grafana/dashboards/loupe, the provider in provisioning/dashboards/, "
         "the data sources in provisioning/datasources/", g)
    provider = yaml.safe_load(open(os.path.join(prov, "loupe.yml")))
    paths = [p.get("options", {}).get("path") for p in provider.get("providers", [])]
    t.ok(paths and all(p in dash_dst for p in paths),
         "the dashboard provider's path is where compose mounts dashboards/", f"provider {paths}, mounted {dash_dst}")

    pm = dict((dst, src) for src, dst in binds(svc.get("prometheus", {})))
    t.ok(all(pm.get(f"/etc/prometheus/{f}") == os.path.join(DEPLOY, "prometheus", f)
             for f in ("prometheus.yml", "rules.yml", "alerts.yml")),
         "prometheus: deploy/prometheus/{prometheus,rules,alerts}.yml in /etc/prometheus", pm)
    am = dict((dst, src) for src, dst in binds(svc.get("alertmanager", {})))
    t.ok(am.get("/etc/alertmanager/alertmanager.yml") == os.path.join(DEPLOY, "alertmanager", "alertmanager.yml")
         and "--config.file=/etc/alertmanager/alertmanager.yml" in svc.get("alertmanager", {}).get("command", []),
         "alertmanager: deploy/alertmanager/alertmanager.yml is its configuration", am)
    bb = dict((dst, src) for src, dst in binds(svc.get("blackbox-exporter", {})))
    t.ok(bb.get("/etc/blackbox_exporter/config.yml") == os.path.join(DEPLOY, "blackbox", "blackbox.yml"),
         "blackbox-exporter: deploy/blackbox/blackbox.yml at its default configuration path", bb)
    ne = svc.get("node-exporter", {})
    t.ok(ne.get("pid") == "host" and "--path.rootfs=/host" in ne.get("command", [])
         and any(v.startswith("/:/host:ro") for v in ne.get("volumes", [])),
         "node-exporter: host PID namespace, the host's / read-only at /host, --path.rootfs=/host", ne)
    dsn = svc.get("postgres-exporter", {}).get("environment", {}).get("DATA_SOURCE_NAME", "")
    t.ok(re.match(r"postgresql://[^@/]+@localhost:5432/", dsn), "postgres-exporter's DSN defaults to localhost:5432",
         dsn)
    r2 = compose_config({"POSTGRES_EXPORTER_DSN": "postgresql://mon@db.invalid:5433/app"})
    dsn2 = (yaml.safe_load(r2.stdout) or {}).get("services", {}).get("postgres-exporter", {}).get("environment", {})
    t.eq(dsn2.get("DATA_SOURCE_NAME"), "postgresql://mon@db.invalid:5433/app",
         "POSTGRES_EXPORTER_DSN replaces postgres-exporter's DSN")

    # The files the stack mounts from the tree: a missing one would be created by Docker as an empty directory.
    missing = sorted({s for n in svc.values() for s, _ in binds(n)
                      if s.startswith(TOP + "/") and not os.path.exists(s)})
    if missing:
        t.skip("every file the stack mounts from the tree exists",
               "not in the tree yet: " + ", ".join(os.path.relpath(m, TOP) for m in missing))
    else:
        t.ok(True, "every file the stack mounts from the tree exists")

    # The scrape configuration and loupe's listen address must agree on loupe's port.
    promcfg = os.path.join(DEPLOY, "prometheus", "prometheus.yml")
    if os.path.exists(promcfg):
        scrape = yaml.safe_load(open(promcfg))
        targets = [tg for j in scrape.get("scrape_configs", []) if j.get("job_name") == "loupe"
                   for sc in j.get("static_configs", []) for tg in sc.get("targets", [])]
        cmd = lp.get("command", [])
        listen = cmd[cmd.index("--listen") + 1] if "--listen" in cmd else "0.0.0.0:9476"
        port = listen.rsplit(":", 1)[1]
        t.ok(targets and all(tg.rsplit(":", 1)[1] == port for tg in targets),
             "prometheus.yml scrapes loupe on the port compose makes it listen on",
             f"targets {targets}, listen {listen}")
        rule_files = scrape.get("rule_files", [])
        t.ok(all(os.path.join("/etc/prometheus", f) in pm for f in rule_files),
             "every rule file prometheus.yml names is mounted beside it", f"rule_files {rule_files}, mounts {list(pm)}")
    else:
        t.skip("prometheus.yml agrees with the compose file", "deploy/prometheus/prometheus.yml not in the tree yet")


# ---- Kubernetes ----

def npm_ready(t):
    """The validator's packages in build/k8s-validate, installed on first use. None, or why they are missing."""
    if not shutil.which("node") or not shutil.which("npm"):
        return "node or npm missing"
    want = [os.path.join(NPM_PREFIX, "node_modules", p, "package.json")
            for p in ("kubernetes-models", "@kubernetes-models/prometheus-operator", "js-yaml")]
    if all(os.path.exists(w) for w in want):
        return None
    t.note(f"installing {' '.join(NPM_PACKAGES)} into {os.path.relpath(NPM_PREFIX, TOP)}")
    try:
        r = run(["npm", "install", "--prefix", NPM_PREFIX, "--no-audit", "--no-fund", "--loglevel=error",
                 *NPM_PACKAGES], timeout=300)
    except subprocess.TimeoutExpired:
        return "npm install timed out (registry unreachable?)"
    if r.returncode != 0 or not all(os.path.exists(w) for w in want):
        errs = [ln for ln in r.stderr.splitlines() if ln.startswith("npm error") and "log of this run" not in ln]
        return "npm install failed: " + (errs[0] if errs else r.stderr.strip()[-200:] or f"exit {r.returncode}")[:200]
    return None


def validate(paths):
    r = run(["node", K8S_VALIDATE, NPM_PREFIX, *paths], timeout=120)
    try:
        return r.returncode, json.loads(r.stdout), r.stderr
    except ValueError:
        return r.returncode, [], r.stdout[-1000:] + r.stderr[-1000:]


def find(docs, kind):
    return next((d for d in docs if d.get("kind") == kind), {})


def check_k8s_schemas(t, docs):
    why = npm_ready(t)
    if why:
        t.skip("manifests against the Kubernetes OpenAPI schemas", why)
        return
    rc, res, err = validate(K8S)
    ndocs = sum(1 for f in K8S for d in yaml.safe_load_all(open(f)) if d)
    t.ok(rc == 0 and len(res) == ndocs and all(x.get("ok") for x in res),
         f"every document of deploy/kubernetes/ validates against the Kubernetes schemas ({len(res)} documents)",
         json.dumps([x for x in res if not x.get("ok")]) + err)
    for x in res:
        t.ok(x.get("ok"), f"schema: {os.path.basename(x['file'])} {x.get('kind')}/{x.get('name')}", x.get("error", ""))

    # The validator must say no: broken copies of the real documents.
    ds = find(docs, "DaemonSet")
    sm = yaml.safe_load(open(K8S[1]))

    def port_abc(d):
        d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "abc"

    def no_selector(d):
        del d["spec"]["selector"]

    def endpoints_string(d):
        d["spec"]["endpoints"] = "metrics"

    def bogus_kind(d):
        d["kind"] = "DaemonSett"

    broken = [("a DaemonSet whose containerPort is \"abc\"", ds, port_abc, "containerPort"),
              ("a DaemonSet without spec.selector", ds, no_selector, "selector"),
              ("a ServiceMonitor whose endpoints is a string", sm, endpoints_string, "endpoints"),
              ("a kind that does not exist", ds, bogus_kind, "no model")]
    with tempfile.TemporaryDirectory() as tmp:
        for name, orig, breakit, word in broken:
            d = json.loads(json.dumps(orig))
            breakit(d)
            path = os.path.join(tmp, "broken.yaml")
            with open(path, "w") as f:
                yaml.safe_dump(d, f)
            rc, res, err = validate([path])
            t.ok(rc == 1 and len(res) == 1 and not res[0]["ok"] and word in res[0].get("error", ""),
                 f"the validator rejects {name}", json.dumps(res) + err)


def check_k8s_fields(t, docs):
    kinds = [d.get("kind") for d in docs]
    t.eq(kinds, ["Namespace", "ServiceAccount", "DaemonSet", "Service"], "loupe.yaml: Namespace, ServiceAccount, "
         "DaemonSet, Service")
    t.ok(all(d["metadata"].get("namespace") == "loupe" for d in docs if d.get("kind") != "Namespace")
         and find(docs, "Namespace")["metadata"]["name"] == "loupe", "every object is in the namespace loupe")
    ds = find(docs, "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    meta = ds["spec"]["template"]["metadata"]
    c = pod["containers"][0]
    sc = c.get("securityContext", {})
    caps = sc.get("capabilities", {})
    t.ok(pod.get("hostPID") is True, "the DaemonSet's pods use the host's PID namespace")
    t.ok(sc.get("privileged") is False, "the container is explicitly not privileged", sc)
    t.ok(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation: false (no_new_privs)", sc)
    t.ok(caps.get("drop") == ["ALL"] and set(caps.get("add", [])) == CAPS,
         "capabilities: drop ALL, add exactly BPF PERFMON SYS_PTRACE DAC_READ_SEARCH SYSLOG", caps)
    # The API server refuses allowPrivilegeEscalation: false together with CAP_SYS_ADMIN; the schemas cannot tell.
    t.ok(not (sc.get("allowPrivilegeEscalation") is False and "SYS_ADMIN" in caps.get("add", [])),
         "no allowPrivilegeEscalation: false beside SYS_ADMIN (the API server rejects the pair)", sc)
    t.ok(sc.get("readOnlyRootFilesystem") is True, "the root file system is read-only", sc)
    t.ok(ds["spec"]["selector"]["matchLabels"].items() <= meta.get("labels", {}).items(),
         "the DaemonSet's selector matches its pod labels")
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}

    def probe_port(p):
        port = p.get("httpGet", {}).get("port")
        return ports.get(port) if isinstance(port, str) else port

    live, ready = c.get("livenessProbe", {}), c.get("readinessProbe", {})
    t.ok(live.get("httpGet", {}).get("path") == "/healthz" and probe_port(live) == 9476,
         "livenessProbe: GET /healthz on 9476", live)
    t.ok(ready.get("httpGet", {}).get("path") == "/readyz" and probe_port(ready) == 9476,
         "readinessProbe: GET /readyz on 9476", ready)
    # /healthz fails after 5 s of stall: at least 30 s of failures before a restart on a busy node.
    t.ok(live.get("failureThreshold", 3) * live.get("periodSeconds", 10) >= 30 and live.get("timeoutSeconds", 1) >= 2,
         "the liveness probe tolerates a busy node (>= 30 s of failures, timeout >= 2 s)", live)
    res = c.get("resources", {})
    t.eq(res, {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
         "resources: requests 50m/64Mi, limits 500m/256Mi")
    t.ok(any(x.get("operator") == "Exists" and "key" not in x and "effect" not in x
             for x in pod.get("tolerations", [])),
         "a toleration of every taint: loupe runs on every node", pod.get("tolerations"))
    ann = meta.get("annotations", {})
    t.ok(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == "9476"
         and ann.get("prometheus.io/path") == "/metrics", "the pod template has the prometheus.io/* scrape annotations",
         ann)
    args = c.get("args", [])
    t.ok(c.get("command") == ["/usr/local/bin/loupe"] and args[:1] == ["run"]
         and args[args.index("--listen") + 1:args.index("--listen") + 2] == ["0.0.0.0:9476"] and "--target" in args,
         "command loupe, args: run --listen 0.0.0.0:9476 with a --target", f"{c.get('command')} {args}")
    t.ok(args[args.index("--user") + 1:][:1] == ["65534"] if "--user" in args else False,
         "loupe switches to nobody once attached (--user 65534)", args)
    host = {v["name"]: v["hostPath"]["path"] for v in pod.get("volumes", []) if "hostPath" in v}
    mounts = [m for m in c.get("volumeMounts", []) if m["name"] in host]
    t.ok(mounts and all(m.get("readOnly") is True for m in mounts) and "/sys/kernel/btf" in host.values(),
         "every hostPath is mounted read-only, /sys/kernel/btf among them", f"{host} {mounts}")
    svc = find(docs, "Service")
    sp = svc["spec"]
    t.ok(sp.get("clusterIP") == "None" and sp.get("selector", {}).items() <= meta.get("labels", {}).items()
         and any(p.get("name") == "metrics" and p.get("port") == 9476 for p in sp.get("ports", [])),
         "the Service is headless, selects the pods and names port 9476 metrics", sp)
    sm = yaml.safe_load(open(K8S[1]))
    t.ok(sm.get("kind") == "ServiceMonitor" and sm["spec"]["selector"]["matchLabels"].items()
         <= svc["metadata"].get("labels", {}).items()
         and "loupe" in sm["spec"].get("namespaceSelector", {}).get("matchNames", [])
         and all(e.get("port") in {p.get("name") for p in sp.get("ports", [])} for e in sm["spec"]["endpoints"]),
         "the ServiceMonitor selects the Service and scrapes its metrics port", sm.get("spec"))


# ---- systemd ----

def unit_entries(text):
    """[(section, key, value)] of a unit file, in order (keys may repeat)."""
    out, section = [], None
    for line in text.splitlines():
        s = line.strip()
        if not s or s[0] in "#;":
            continue
        if s.startswith("[") and s.endswith("]"):
            section = s[1:-1]
        elif "=" in s:
            k, v = s.split("=", 1)
            out.append((section, k.strip(), v.strip()))
    return out


def check_systemd(t):
    text = open(UNIT).read()
    if not shutil.which("systemd-analyze"):
        t.skip("systemd-analyze verify loupe.service", "systemd-analyze missing")
    elif not os.access(LOUPE, os.X_OK):
        t.skip("systemd-analyze verify loupe.service", "build/loupe missing: run make")
    else:
        # verify checks that ExecStart's program exists and is executable, and /usr/local/bin/loupe is not installed
        # here: the unit is verified as a copy whose ExecStart runs build/loupe (absolute path), nothing else changed.
        copy, n = re.subn(r"^ExecStart=/usr/local/bin/loupe ", f"ExecStart={LOUPE} ", text, flags=re.M)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "loupe.service")
            with open(path, "w") as f:
                f.write(copy)
            r = run(["systemd-analyze", "verify", path])
            out = (r.stdout + r.stderr).strip()
            t.ok(n == 1 and r.returncode == 0 and not out, "systemd-analyze verify loupe.service: clean",
                 f"rc {r.returncode}, ExecStart rewritten {n} time(s): {out}")
            # verify only warns (exit 0) on an unknown setting: "clean" must mean no output at all.
            with open(path, "w") as f:
                f.write(copy.replace("[Service]\n", "[Service]\nNoNewPrivilege=yes\n", 1))
            r = run(["systemd-analyze", "verify", path])
            t.ok("NoNewPrivilege" in r.stdout + r.stderr, "systemd-analyze verify reports a misspelt setting",
                 f"rc {r.returncode}: {r.stdout}{r.stderr}")

    e = unit_entries(text)
    svc = {}
    for sec, k, v in e:
        if sec == "Service":
            svc.setdefault(k, []).append(v)

    def one(k):
        v = svc.get(k, [])
        return v[0] if len(v) == 1 else None

    notify = any(re.search(r"\bsd_notify", open(f, errors="replace").read())
                 for f in glob.glob(os.path.join(TOP, "src", "*", "*.c")))
    t.ok(one("Type") == "simple" or (one("Type") == "notify" and notify),
         "Type=simple (loupe does not call sd_notify)", one("Type"))
    t.eq(one("ExecStart"), "/usr/local/bin/loupe run $LOUPE_ARGS", "ExecStart runs loupe run $LOUPE_ARGS")
    t.eq(one("EnvironmentFile"), "-/etc/default/loupe", "EnvironmentFile=-/etc/default/loupe (optional)")
    t.eq(one("Restart"), "on-failure", "Restart=on-failure")
    t.ok("User" not in svc and one("DynamicUser") == "yes", "runs as a user of its own (DynamicUser=yes)",
         svc.get("DynamicUser"))
    for k in ("CapabilityBoundingSet", "AmbientCapabilities"):
        caps = set((one(k) or "").split())
        t.ok(caps == {"CAP_" + c for c in CAPS} and "CAP_SYS_MODULE" not in caps,
             f"{k} is exactly the five capabilities loupe needs, CAP_SYS_MODULE not among them", caps)
    want = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "read-only", "PrivateTmp": "yes",
            "ProtectKernelModules": "yes", "ProtectControlGroups": "yes", "LockPersonality": "yes",
            "MemoryDenyWriteExecute": "yes", "SystemCallArchitectures": "native", "LimitMEMLOCK": "infinity"}
    bad = {k: svc.get(k) for k, v in want.items() if one(k) != v}
    t.ok(not bad, "hardening: " + " ".join(f"{k}={v}" for k, v in want.items()), f"differs: {bad}")
    t.eq(set((one("RestrictAddressFamilies") or "").split()), {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"},
         "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK")
    t.ok(("Install", "WantedBy", "multi-user.target") in e, "WantedBy=multi-user.target")
    args = re.findall(r'^LOUPE_ARGS="([^"]*)"$', open(DEFAULTS).read(), re.M)
    t.ok(len(args) == 1 and "--listen" in args[0].split(), "loupe.default sets LOUPE_ARGS, with --listen", args)


# ---- Dockerfile ----

def dockerfile_stages(text):
    """[[(INSTRUCTION, arguments)]] per stage: comments dropped, backslash continuations joined."""
    lines, cur = [], ""
    for raw in text.splitlines():
        s = raw.strip()
        if s.startswith("#") or (not s and not cur):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        cur += s
        if cur.strip():
            ins, _, rest = cur.strip().partition(" ")
            lines.append((ins.upper(), rest.strip()))
        cur = ""
    stages = []
    for ins, rest in lines:
        if ins == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((ins, rest))
    return stages


def apt_installs(stage):
    """Packages named by `apt-get install` in a stage's RUN instructions."""
    pkgs = []
    for ins, rest in stage:
        if ins != "RUN":
            continue
        for cmd in re.split(r"&&|;|\|\|", rest):
            words = cmd.split()
            if "apt-get" in words and "install" in words:
                pkgs += [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
    return pkgs


def package_of(path):
    """Debian packages owning a library path (dpkg -S; the real path when the link's path is not registered)."""
    for p in (path, os.path.realpath(path)):
        r = run(["dpkg", "-S", p])
        if r.returncode == 0:
            line = r.stdout.strip().splitlines()[0]
            return {x.strip().split(":")[0] for x in line.rsplit(": ", 1)[0].split(",")}
    return set()


def depends_closure(pkgs):
    """pkgs and every package they Depend or Pre-Depend on, transitively, as installed on this machine."""
    seen, todo = set(), list(pkgs)
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        r = run(["dpkg-query", "-W", "-f", "${Depends}, ${Pre-Depends}", p])
        for alt in r.stdout.split(","):
            for name in alt.split("|"):
                name = re.sub(r"\(.*?\)|:any", "", name).strip()
                if name:
                    todo.append(name)
    return seen


def check_dockerfile(t):
    stages = dockerfile_stages(open(DOCKERFILE).read())
    t.eq(len(stages), 2, "Dockerfile: two stages")
    if len(stages) != 2:
        return
    build, rt = stages
    bfrom = build[0][1].split()
    t.ok(bfrom[0] == "debian:12" and len(bfrom) == 3 and bfrom[1].upper() == "AS",
         "build stage: FROM debian:12 AS NAME", build[0][1])
    runs = " ".join(r for i, r in build if i == "RUN")
    t.ok(("COPY", "scripts/deps.sh /src/scripts/deps.sh") in build and "scripts/deps.sh build" in runs
         and re.search(r"\bmake\b", runs), "build stage: scripts/deps.sh build installs build_pkgs, then make", runs)
    t.eq(rt[0][1], "debian:12-slim", "runtime stage: FROM debian:12-slim")
    name = bfrom[-1]
    t.ok(("COPY", f"--from={name} /src/build/loupe /usr/local/bin/loupe") in rt,
         "runtime stage: COPY --from the build stage's build/loupe to /usr/local/bin/loupe")
    instr = {i: r for i, r in rt}
    t.ok(json.loads(instr.get("ENTRYPOINT", "null")) == ["/usr/local/bin/loupe", "run"],
         'ENTRYPOINT ["/usr/local/bin/loupe", "run"]', instr.get("ENTRYPOINT"))
    t.ok(json.loads(instr.get("CMD", "null")) == ["--listen", "0.0.0.0:9476", "--user", "65534"],
         'CMD ["--listen", "0.0.0.0:9476", "--user", "65534"]', instr.get("CMD"))
    t.eq(instr.get("EXPOSE"), "9476", "EXPOSE 9476")
    pkgs = apt_installs(rt)
    hc = instr.get("HEALTHCHECK", "")
    hc_cmd = re.search(r"\bCMD\s+(\[.*\])", hc)
    hc_argv = json.loads(hc_cmd.group(1)) if hc_cmd else []
    hc_line = " ".join(hc_argv)
    t.ok(hc_argv[:2] == ["sh", "-c"] and "curl" in pkgs and "https://127.0.0.1:9476/healthz" in hc_line and
         "|| curl" in hc_line and "http://127.0.0.1:9476/healthz" in hc_line,
         "HEALTHCHECK: curl (installed in the runtime stage) GETs /healthz on 9476, over HTTPS or else HTTP", hc)

    # Every library build/loupe needs is installed: the direct ones (readelf's NEEDED) by name, and everything
    # ldd lists through those packages' dependencies. libc6 is in every Debian image.
    if not os.access(LOUPE, os.X_OK) or not shutil.which("dpkg"):
        t.skip("runtime packages cover build/loupe's libraries", "build/loupe or dpkg missing")
        return
    ldd = run(["ldd", LOUPE]).stdout
    libs = dict(re.findall(r"^\s*(\S+) => (/\S+)", ldd, re.M))
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(\S+)\]", run(["readelf", "-d", LOUPE]).stdout)
    base = {"libc6"}
    unknown = [p for p in pkgs if run(["dpkg-query", "-W", p]).returncode and run(["apt-cache", "show", p]).returncode]
    t.ok(pkgs and not unknown, f"runtime packages are Debian 12 packages: {' '.join(pkgs)}", f"unknown: {unknown}")
    owners = {lib: package_of(path) for lib, path in libs.items()}
    direct = {lib: owners.get(lib, set()) for lib in needed}
    miss = {lib: sorted(o) for lib, o in direct.items() if not o or not o & (set(pkgs) | base)}
    t.ok(needed and not miss, f"the runtime stage installs the package of each library loupe links ({len(needed)})",
         f"not installed: {miss}")
    closure = depends_closure(set(pkgs) | base)
    miss = {lib: sorted(o) for lib, o in owners.items() if not o or not o & closure}
    t.ok(libs and not miss, f"every library ldd lists ({len(libs)}) comes with those packages or their dependencies",
         f"not covered: {miss}")

    # The build stage copies what `make` reads: `make -n -B` in a tree of only the COPY'd paths plans the same
    # commands as in the repository (message lines dropped; the order of equal steps may differ).
    copies = [r.split() for i, r in build if i == "COPY" and "--from" not in r]
    srcs = [s.rstrip("/") for c in copies for s in c[:-1] if s != "scripts/deps.sh"]
    if not shutil.which("make"):
        t.skip("the build stage copies everything make reads", "make missing")
        return

    def plan(cwd):
        r = run(["make", "-n", "-B", "GIT_COMMIT=x", "all"], cwd=cwd)
        return r.returncode, sorted(ln for ln in r.stdout.splitlines() if not ln.startswith("printf '  %-8s"))

    with tempfile.TemporaryDirectory() as tmp:
        for s in srcs:
            dst = os.path.join(tmp, s)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            (shutil.copytree if os.path.isdir(os.path.join(TOP, s)) else shutil.copy2)(os.path.join(TOP, s), dst)
        rc_docker, docker_plan = plan(tmp)
    rc_repo, repo_plan = plan(TOP)
    only_repo, only_copy = sorted(set(repo_plan) - set(docker_plan)), sorted(set(docker_plan) - set(repo_plan))
    t.ok(rc_docker == 0 and rc_repo == 0 and docker_plan == repo_plan and docker_plan,
         f"the build stage copies everything make reads ({' '.join(srcs)})",
         "\n".join([f"rc {rc_docker} (copy), {rc_repo} (repository)"]
                   + [f"only in the repository's plan: {ln[:150]}" for ln in only_repo[:5]]
                   + [f"only in the copy's plan: {ln[:150]}" for ln in only_copy[:5]]))


def main():
    t = Tap()
    check_compose(t)
    docs = [d for f in K8S[:1] for d in yaml.safe_load_all(open(f)) if d]
    check_k8s_schemas(t, docs)
    check_k8s_fields(t, docs)
    check_systemd(t)
    check_dockerfile(t)
    t.done()


if __name__ == "__main__":
    main()
