#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""src/profile/pyruntime.c's CPython layout table against the DWARF of each libpython with debug information on this
machine (pyenv's 3.10-3.13): scripts/py-layouts.sh reads every offset with gdb; each must equal the table's entry
for that version (PY_OFF_NONE where the version has no such field). Skips, saying why, without gdb or pyenv."""
import glob
import os
import re
import shutil
import subprocess
import sys

TOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, os.path.join(TOP, "tests", "lib"))
from loupe_test import Tap  # noqa: E402


def table():
    """{0x030a: {field: value}} from the C initialisers."""
    src = open(os.path.join(TOP, "src", "profile", "pyruntime.c")).read()
    body = src[src.index("static const struct py_layout layouts[]"):]
    body = body[:body.index("};")]
    out = {}
    for entry in re.findall(r"\{(.*?)\}", body, re.S):
        f = dict(re.findall(r"\.(\w+) = (\w+)", entry))
        out[int(f.pop("version"), 16)] = f
    return out


def main():
    t = Tap()
    libs = sorted(glob.glob("/root/.pyenv/versions/3.1[0-3].*/lib/libpython3.*.so.1.0"))
    if not shutil.which("gdb") or not libs:
        t.skip("layout table against libpython DWARF", "gdb or pyenv's CPython 3.10-3.13 missing")
        t.done()
        return
    tab = table()
    for lib in libs:
        ver = re.search(r"libpython3\.(\d+)", lib).group(1)
        key = 0x0300 | int(ver)
        r = subprocess.run([os.path.join(TOP, "scripts", "py-layouts.sh"), lib], capture_output=True, text=True)
        dwarf = dict(ln.split("=", 1) for ln in r.stdout.split())
        want = tab.get(key, {})
        bad = []
        for field, v in dwarf.items():
            mine = want.get(field)
            expect = "PY_OFF_NONE" if v == "none" else v
            if mine is not None and mine != expect:
                bad.append(f"{field}: table {mine}, DWARF {v}")
        t.ok(r.returncode == 0 and key in tab and len(dwarf) >= 15 and not bad,
             f"3.{ver}: every offset of the table equals libpython's DWARF ({len(dwarf)} fields)", "; ".join(bad) or r.stderr[-300:])
    t.done()


if __name__ == "__main__":
    main()
