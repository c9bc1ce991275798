#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# The two designs of issue 11 point 1 side by side, on the same targets (needs root, perf, build/):
#   A (loupe): rules compiled from .eh_frame into BPF maps, walked in the sampling program;
#   B: a copy of the user stack and registers at each sample, unwound afterwards in userspace: what
#      `perf record --call-graph dwarf,16384` + `perf script` do (elfutils/libunwind in userspace).
# Targets, each spinning 10 s at 99 Hz: build/tests/deepchain (no frame pointers, exe + library) and
# tests/bpf/py/stacks.py on python3.11. For each design: bytes per sample carried from the kernel, userspace CPU
# per sample to turn a sample into a stack, the share of samples whose stack holds the whole known chain.
# Loupe's in-kernel cost per sample is in scripts/bench-profile.sh (5) (BPF statistics); perf's copy happens in
# the sampling interrupt, which BPF statistics do not see: not measured here.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$top/build}
LOUPE=$BUILD/loupe
((EUID == 0)) || { echo "bench-unwind.sh: needs root" >&2; exit 1; }
command -v perf >/dev/null || { echo "bench-unwind.sh: perf missing (apt-get install linux-perf)" >&2; exit 1; }
work=$(mktemp -d /tmp/loupe-bench-unwind.XXXXXX)
trap 'rm -rf "$work"' EXIT
cpu_ns() { awk '{ t += $1 } END { printf "%.0f", t }' /proc/"$1"/task/*/schedstat; }

declare -A CMD CHAIN
CMD[deepchain]="$BUILD/tests/deepchain 11"
CHAIN[deepchain]="main dc_main_a dc_lib_b dc_main_c dc_lib_d dc_leaf"
CMD[python3.11]="/usr/bin/python3.11 $top/tests/bpf/py/stacks.py cpu 11"
# Debian's python3.11: _start -> ... -> Py_BytesMain -> ... -> _PyEval_EvalFrameDefault (perf has no Python frames:
# the native chain down to the interpreter loop is what it can give; loupe must also have the Python frames)
CHAIN[python3.11]="Py_BytesMain _PyEval_EvalFrameDefault"
for t in deepchain python3.11; do
	# A: loupe profile
	${CMD[$t]} < <(sleep 1.5; echo go) >/dev/null &
	tp=$!
	sleep 0.2
	"$LOUPE" profile --pid "$tp" --hz 99 --seconds 11 --format folded -o "$work/a-$t.folded" 2>/dev/null &
	lp=$!
	wait "$lp" || true
	wait "$tp" || true
	# B: perf record with stack copies, then perf script unwinding them
	${CMD[$t]} < <(sleep 1.5; echo go) >/dev/null &
	tp=$!
	sleep 0.2
	perf record -q -F 99 --call-graph dwarf,16384 -p "$tp" -o "$work/b-$t.data" -- sleep 11 2>/dev/null || true
	wait "$tp" || true
	t0=$(date +%s%N)
	perf script -i "$work/b-$t.data" -F comm,tid,ip,sym 2>/dev/null >"$work/b-$t.txt"
	t1=$(date +%s%N)
	/usr/bin/python3 - "$t" "$work/a-$t.folded" "$work/b-$t.txt" "$(stat -c %s "$work/b-$t.data")" "$((t1 - t0))" \
		"${CHAIN[$t]}" <<'PY'
import sys
t, af, bf, bsize, bns, chain = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6].split()
def has(frames, chain):
    it = iter(frames)
    return all(any(f == c for f in it) for c in chain)
rows = []
for ln in open(af):
    s, _, n = ln.rstrip("\n").rpartition(" ")
    rows.append((s.split(";"), int(n)))
a_tot = sum(n for _, n in rows)
a_chain = ["Py_BytesMain", "stacks.outer", "stacks.spin"] if t == "python3.11" else chain
a_hit = sum(n for s, n in rows if has(s, a_chain))
stacks, cur = [], []
for ln in open(bf):
    if not ln.strip():
        if cur:
            stacks.append(cur[::-1])
        cur = []
    elif ln.startswith((" ", "\t")):
        parts = ln.split()
        cur.append(parts[1].split("+")[0] if len(parts) > 1 else "?")
if cur:
    stacks.append(cur[::-1])
b_hit = sum(1 for s in stacks if has(s, chain))
print(f"{t}: A (loupe, tables in BPF): {a_hit}/{a_tot} samples with the whole chain"
      f"{' and the Python frames' if t == 'python3.11' else ''} ({100 * a_hit / max(a_tot, 1):.1f}%), "
      f"2,104 B per sample in the ring buffer (+ 16 B per Python frame), unwound in the kernel")
print(f"{t}: B (perf, stack copies unwound in userspace): {b_hit}/{len(stacks)} with the whole native chain "
      f"({100 * b_hit / max(len(stacks), 1):.1f}%), {bsize / max(len(stacks), 1):.0f} B per sample in perf.data, "
      f"perf script unwinding {bns / max(len(stacks), 1) / 1000:.0f} us of wall time per sample")
PY
done
