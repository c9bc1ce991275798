#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# Long fuzzing runs of one libFuzzer target (tests/fuzz/fuzz.mk), accounted in CPU time, with the committed
# corpus kept minimal.
#
#   scripts/fuzz-long.sh TARGET MINUTES     run build/fuzz/fuzz_TARGET for MINUTES of wall time (niced), starting
#                                           from tests/fuzz/corpus/TARGET and the target's own seeds
#   scripts/fuzz-long.sh --merge TARGET     minimise the committed corpus with everything the runs found
#   scripts/fuzz-long.sh --report           the CPU hours, executions and coverage of every target so far
#   scripts/fuzz-long.sh --coverage TARGET  source coverage of the project's files reached by the committed corpus and
#                                           the runs' corpus: the target rebuilt with clang's source-based coverage,
#                                           each unit run once, llvm-cov's per-file report (lines, branches)
#
# Each run appends one line to build/fuzz/long/TARGET.runs: start time, CPU seconds (user+sys of the fuzzer),
# executions, the final coverage ("cov": instrumented edges reached, "ft": features) and the corpus size. A crash
# or a broken invariant stops the run with exit 1 and leaves the reproducer in build/fuzz/artifacts/TARGET-*:
# keep it in tests/fuzz/regressions/TARGET/ once fixed (the smoke test replays that folder).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
build=${BUILD:-build}
long=$build/fuzz/long
mkdir -p "$long" "$build/fuzz/artifacts"

usage() {
	sed -n '3,15p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
}

report() {
	printf '%-13s %8s %6s %14s %7s %7s %7s\n' target cpu_h runs executions cov ft corpus
	for f in "$long"/*.runs; do
		[ -e "$f" ] || continue
		awk -v t="$(basename "$f" .runs)" '{cpu += $2; ex += $3; cov = $4; ft = $5; units = $6; n++}
			END {printf "%-13s %8.2f %6d %14d %7s %7s %7s\n", t, cpu / 3600, n, ex, cov, ft, units}' "$f"
	done
}

merge() {
	local t=$1 bin=$build/fuzz/fuzz_$1
	[ -x "$bin" ] || make -s BUILD="$build" "$bin"
	local new=$long/$t.merged
	rm -rf "$new"
	mkdir -p "$new" "tests/fuzz/corpus/$t"
	# -merge=1 keeps the smallest set of units that reaches every feature of all the inputs.
	"$bin" -merge=1 "$new" "tests/fuzz/corpus/$t" "$long/$t.corpus" >"$long/$t.merge.log" 2>&1 || {
		tail -n 20 "$long/$t.merge.log"
		echo "merge of $t failed: see $long/$t.merge.log" >&2
		exit 1
	}
	rm -rf "tests/fuzz/corpus/$t"
	mv "$new" "tests/fuzz/corpus/$t"
	echo "tests/fuzz/corpus/$t: $(ls "tests/fuzz/corpus/$t" | wc -l) units, $(du -sk "tests/fuzz/corpus/$t" | cut -f1) KiB"
}

coverage() {
	local t=$1 cov=$build/fuzz/cov
	mkdir -p "$cov"
	# The same rule as the fuzzing build (tests/fuzz/fuzz.mk), into another folder, with coverage instead of the
	# sanitizers (a report would stop the run; the long runs have checked every unit with them).
	make -s BUILD="$build" FUZZ_DIR="$cov" \
		FUZZ_CFLAGS="-g -O0 -fsanitize=fuzzer -fprofile-instr-generate -fcoverage-mapping -std=gnu11 -D_GNU_SOURCE -Isrc -w" \
		"$cov/fuzz_$t" >/dev/null || { echo "cannot build $cov/fuzz_$t" >&2; exit 1; }
	rm -f "$cov/$t".*.profraw
	local dirs=()
	for d in "tests/fuzz/corpus/$t" "$long/$t.corpus"; do [ -d "$d" ] && dirs+=("$d"); done
	[ ${#dirs[@]} -gt 0 ] || { echo "no corpus for $t" >&2; exit 1; }
	LLVM_PROFILE_FILE="$cov/$t.%p.profraw" "$cov/fuzz_$t" -runs=0 "${dirs[@]}" >"$cov/$t.log" 2>&1 || true
	llvm-profdata-14 merge -sparse "$cov/$t".*.profraw -o "$cov/$t.profdata"
	llvm-cov-14 report "$cov/fuzz_$t" -instr-profile="$cov/$t.profdata" -ignore-filename-regex='tests/|/usr/' |
		awk 'NR > 2 && NF == 13 && $1 != "TOTAL" && $10 != "0.00%" && $8 > 0 {
			f = $1 ~ /^src\// ? $1 : "src/" $1  # llvm-cov drops the prefix its files share
			printf "fuzz_%s  %-32s lines %7s of %5s   branches %7s of %5s\n", t, f, $10, $8, $13, $11}' t="$t"
}

case "${1:-}" in
--report) report; exit 0 ;;
--coverage) [ $# -eq 2 ] || usage; coverage "$2"; exit 0 ;;
--merge) [ $# -eq 2 ] || usage; merge "$2"; exit 0 ;;
'' | -h | --help) usage ;;
esac
[ $# -eq 2 ] || usage
t=$1
min=$2
[[ $min =~ ^[1-9][0-9]*$ ]] || { echo "MINUTES must be a whole number, not '$min'" >&2; exit 2; }
bin=$build/fuzz/fuzz_$t
make -s BUILD="$build" "$bin" || { echo "no fuzz target '$t' (see tests/fuzz/fuzz.mk)" >&2; exit 2; }

corpus=$long/$t.corpus
mkdir -p "$corpus"
log=$long/$t.$(date +%Y%m%dT%H%M%S).log
started=$(date -u +%FT%TZ)
echo "fuzz_$t for $min min (niced); log $log"
set +e
# Targets that write files per input (fuzz_elf) write them to memory when they can: no disk, no waiting in D state.
tmp=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && tmp=/dev/shm
# -malloc_limit_mb: a single allocation over 256 MiB is a finding (a size the input chose: fuzz_elf's
# cfa-register-in-the-millions made libdw ask for 788 MB), not something to wait out.
TMPDIR=$tmp LOUPE_FUZZ_SEEDS=$corpus /usr/bin/time -f 'cpu_seconds %U %S' -o "$log.time" \
	nice -n 19 "$bin" -max_total_time=$((min * 60)) -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=256 \
	-print_final_stats=1 \
	-artifact_prefix="$build/fuzz/artifacts/$t-" "$corpus" $(ls -d "tests/fuzz/corpus/$t" 2>/dev/null) \
	>"$log" 2>&1
rc=$?
set -e
cpu=$(awk '/^cpu_seconds/ {printf "%.0f", $2 + $3}' "$log.time") # not the "Command exited with ..." line
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
last=$(grep -E '^#[0-9]+' "$log" | grep -o 'cov: [0-9]* ft: [0-9]*' | tail -n 1)
cov=$(echo "$last" | awk '{print $2}')
ft=$(echo "$last" | awk '{print $4}')
units=$(ls "$corpus" | wc -l)
echo "$started ${cpu:-0} ${execs:-0} ${cov:-?} ${ft:-?} $units" >>"$long/$t.runs"
if [ $rc -ne 0 ]; then
	tail -n 40 "$log"
	echo "fuzz_$t stopped with $rc: a crash or a broken invariant; reproducer in $build/fuzz/artifacts/$t-*" >&2
	exit 1
fi
echo "fuzz_$t: ${cpu}s CPU, ${execs} executions, cov ${cov} ft ${ft}, $units units in $corpus"
