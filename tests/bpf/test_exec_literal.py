# SPDX-License-Identifier: BSD-2-Clause
"""Literal comm rules (comm:^name$) are applied in BPF at exec: such a process is a target from its first
syscall, before userspace could read /proc. Ground truth: the first syscall after exec is the dynamic loader's
brk(NULL); strace tells how many brk calls the program makes in all (n). R exec'd processes must add exactly
R x n brk calls. (Classified in userspace, ~100 us after exec, the first brk is missed.)"""
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loupe_test import Loupe, Tap, is_root, value, wait_for  # noqa: E402
from bpf_support import Blocker, Workdir, errors_of, new_tag  # noqa: E402

K, R = 3, 5


def main():
    t = Tap()
    if not is_root():
        t.skip(f"{R} exec'd processes of a literal comm rule: their first syscalls are counted", "needs root")
        t.done()
    if not shutil.which("strace"):
        t.skip(f"{R} exec'd processes of a literal comm rule: their first syscalls are counted",
               "strace missing (apt-get install strace): it gives the ground truth")
        t.done()
    tag = new_tag()
    comm = f"lpx{tag}"
    with Workdir() as w, Loupe("--target", f"lit=comm:^{comm}$") as L:
        path = w.link(comm)
        st = subprocess.run(["strace", "-f", "-e", "trace=brk", path, "--eagain", str(K)], capture_output=True,
                            text=True)
        n_brk = len(re.findall(r"^brk\(", st.stderr, re.M))
        t.ok(st.returncode == 0 and n_brk >= 1, "strace counts the program's brk calls", st.stderr[-500:])
        brk = lambda m: value(m, "loupe_syscall_duration_seconds_count", service_name="lit", syscall="brk")  # noqa
        m0 = L.scrape()
        for _ in range(R):
            res = Blocker(path, "--eagain", K, go=False).finish()
            if res["rc"] != 0:
                t.ok(False, "blocker ran", res)
        want = R * n_brk
        m1 = wait_for(lambda: (lambda m: m if brk(m) - brk(m0) >= want else None)(L.scrape()), timeout=5) \
            or L.scrape()
        t.eq(brk(m1) - brk(m0), want, f"{R} exec'd processes: all {n_brk} brk calls of each counted, the first "
             "one (the loader's, right after exec) included")
        got = errors_of(m1, "read", "EAGAIN", service="lit") - errors_of(m0, "read", "EAGAIN", service="lit")
        t.eq(got, R * K, f"and their {K} EAGAIN reads each")
        t.ok(value(m1, "loupe_targets", service_name="lit") == 0, "and all of them forgotten after exit")
    t.done()


if __name__ == "__main__":
    main()
