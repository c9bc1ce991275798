#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""The shape of src/ (README, Layout; docs/architecture.md, Pieces): every quoted include names a file that exists,
folders include one way only (cli -> daemon -> server -> collectors -> core -> parsers, profile, metrics -> lib,
and the three middle folders not each other), and no file includes itself through others. Prints TAP."""
import os
import re
import sys

TOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
SRC = os.path.join(TOP, "src")
RANK = {"cli": 6, "daemon": 5, "server": 4, "collectors": 3, "core": 2, "parsers": 1, "profile": 1, "metrics": 1,
        "lib": 0}
GENERATED = re.compile(r"^(version\.h|syscall_names\.h|[a-z_]+\.skel\.h|[a-z_]+\.pb-c\.h)$")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)

n = 0


def ok(cond, name, detail=""):
    global n
    n += 1
    print(f"{'ok' if cond else 'not ok'} {n} - {name}")
    if not cond and detail:
        for line in detail.splitlines():
            print(f"# {line}")


files = sorted(os.path.relpath(os.path.join(d, f), SRC) for d, _, fs in os.walk(SRC) for f in fs
               if f.endswith((".c", ".h")))
ok(all(f.count("/") == 1 and f.split("/")[0] in RANK for f in files), "every source file is in a known folder",
   "\n".join(f for f in files if f.count("/") != 1 or f.split("/")[0] not in RANK))

edges, unresolved, upward = {}, [], []
for f in files:
    text = open(os.path.join(SRC, f), encoding="utf-8").read()
    edges[f] = []
    for inc in INCLUDE.findall(text):
        if GENERATED.match(inc):
            continue
        if os.path.exists(os.path.join(SRC, inc)):
            edges[f].append(inc)
            a, b = f.split("/")[0], inc.split("/")[0]
            if a != b and (RANK[b] > RANK[a] or (RANK[b] == RANK[a])):
                upward.append(f"{f} includes {inc}")
        elif not os.path.exists(os.path.join(TOP, "include", inc)):
            unresolved.append(f"{f}: {inc}")
ok(not unresolved, "every quoted include names src/FOLDER/FILE, include/FILE or a generated header",
   "\n".join(unresolved))
ok(not upward, "folders include one way: no include of a folder above or beside its own", "\n".join(upward))

# A cycle through .h files, or a .c file's header that includes back: walk the include graph.
cycles, state = [], {}


def walk(f, path):
    state[f] = 1
    for g in edges.get(f, []):
        if state.get(g) == 1:
            cycles.append(" -> ".join(path[path.index(g):] + [g]))
        elif not state.get(g):
            walk(g, path + [g])
    state[f] = 2


for f in files:
    if not state.get(f):
        walk(f, [f])
ok(not cycles, "no include circle between files", "\n".join(cycles))
print(f"1..{n}")
sys.exit(0)
