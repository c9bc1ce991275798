#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""The monitoring configuration in deploy/ (issue 13): Prometheus' config, recording rules and alerts pass
`promtool check`; `promtool test rules deploy/prometheus/alerts_test.yml` passes and shows every alert both firing
and not firing; every alert has a severity, a component, a summary, a description and a runbook that exists, and
its texts use only abstracted labels (no address, path or literal can reach them); Alertmanager's and
blackbox_exporter's configs are valid (amtool, --config.check). Prints TAP."""
import os
import re
import shutil
import subprocess
import sys

import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loupe_test import Tap, TOP  # noqa: E402

PROM = os.path.join(TOP, "deploy", "prometheus")
RUNBOOKS = os.path.join(TOP, "docs", "runbooks")
# The labels an alert's text may print: each holds a name loupe or the config chose (a service, a route template,
# a statement fingerprint, a metric, a drop's feature and reason, a job, a probe's endpoint path on our own
# services, a mountpoint). Never instance (an address), never a raw value other than $value.
TEXT_LABELS = {"service_name", "service", "http_route", "fingerprint", "metric", "feature", "reason", "job",
               "endpoint", "mountpoint"}
SEVERITIES = {"critical", "warning"}
COMPONENTS = {"api", "database", "service", "host", "monitoring"}

t = Tap()


def run(*cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=PROM)
    return p.returncode, (p.stdout + p.stderr).strip()


missing = [c for c in ("promtool", "amtool", "prometheus-blackbox-exporter") if not shutil.which(c)]
if missing:
    for name in ("promtool check config", "promtool check rules", "promtool test rules", "amtool check-config",
                 "blackbox_exporter --config.check"):
        t.skip(name, f"{', '.join(missing)} not installed (apt-get install prometheus prometheus-alertmanager "
                     "prometheus-blackbox-exporter)")
else:
    rc, out = run("promtool", "check", "config", "prometheus.yml")
    t.ok(rc == 0, "promtool check config deploy/prometheus/prometheus.yml", out)
    rc, out = run("promtool", "check", "rules", "rules.yml", "alerts.yml")
    t.ok(rc == 0, "promtool check rules rules.yml alerts.yml", out)
    rc, out = run("promtool", "test", "rules", "alerts_test.yml")
    t.ok(rc == 0 and "SUCCESS" in out, "promtool test rules alerts_test.yml", out)
    rc, out = run("amtool", "check-config", os.path.join(TOP, "deploy", "alertmanager", "alertmanager.yml"))
    t.ok(rc == 0, "amtool check-config deploy/alertmanager/alertmanager.yml", out)
    rc, out = run("prometheus-blackbox-exporter", "--config.check",
                  "--config.file=" + os.path.join(TOP, "deploy", "blackbox", "blackbox.yml"))
    t.ok(rc == 0, "blackbox_exporter --config.check deploy/blackbox/blackbox.yml", out)

alerts = [r for g in yaml.safe_load(open(os.path.join(PROM, "alerts.yml")))["groups"] for r in g["rules"] if "alert" in r]
t.ok(len(alerts) >= 15, f"alerts.yml defines the alerts of issue 13 ({len(alerts)})")
names = [a["alert"] for a in alerts]
t.ok(len(names) == len(set(names)), "alert names are unique", str(sorted(names)))

tests = yaml.safe_load(open(os.path.join(PROM, "alerts_test.yml")))["tests"]
firing, quiet = set(), set()
for case in tests:
    for at in case.get("alert_rule_test", []):
        (firing if at.get("exp_alerts") else quiet).add(at["alertname"])
for a in alerts:
    name = a["alert"]
    labels, ann = a.get("labels", {}), a.get("annotations", {})
    problems = []
    if labels.get("severity") not in SEVERITIES:
        problems.append(f"severity {labels.get('severity')!r} not one of {sorted(SEVERITIES)}")
    if labels.get("component") not in COMPONENTS:
        problems.append(f"component {labels.get('component')!r} not one of {sorted(COMPONENTS)}")
    for k in ("summary", "description", "runbook_url"):
        if not ann.get(k):
            problems.append(f"no {k}")
    for k in ("summary", "description"):
        used = set(re.findall(r"\$labels\.(\w+)", ann.get(k, "")))
        if used - TEXT_LABELS:
            problems.append(f"{k} prints label(s) {sorted(used - TEXT_LABELS)}, which may hold an address or a literal")
    rb = ann.get("runbook_url", "")
    if rb != f"docs/runbooks/{name}.md" or not os.path.isfile(os.path.join(TOP, rb)):
        problems.append(f"runbook_url {rb!r}: want docs/runbooks/{name}.md, an existing file")
    if "for" in a and not re.fullmatch(r"(\d+s|0|[01]m)", str(a["for"])):
        problems.append(f"for {a['for']}: longer than a minute, so it cannot fire within one")
    t.ok(not problems, f"{name}: severity, component, summary, description, runbook, for <= 1m", "\n".join(problems))
    t.ok(name in firing and name in quiet, f"{name}: alerts_test.yml shows it firing and not firing",
         f"firing case: {name in firing}, not-firing case: {name in quiet}")

runbooks = sorted(f[:-3] for f in os.listdir(RUNBOOKS) if f.endswith(".md") and f != "README.md") \
    if os.path.isdir(RUNBOOKS) else []
t.ok(set(runbooks) == set(names), "docs/runbooks has one runbook per alert and none for an alert that is gone",
     f"without an alert: {sorted(set(runbooks) - set(names))}; without a runbook: {sorted(set(names) - set(runbooks))}")
index = open(os.path.join(RUNBOOKS, "README.md")).read() if os.path.isfile(os.path.join(RUNBOOKS, "README.md")) else ""
t.ok(all(f"({n}.md)" in index for n in names), "docs/runbooks/README.md links every runbook",
     "missing: " + ", ".join(n for n in names if f"({n}.md)" not in index))
t.done()
