#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# Fuzz smoke test: build the libFuzzer targets (tests/fuzz/fuzz.mk) and run each for a few seconds
# (FUZZ_SMOKE_SECONDS, default 5) from its stored corpus or its built-in seeds. TAP on stdout, one line per
# target: "ok", "not ok" (a crash or a broken invariant: the log and the reproducer are named), or a counted
# skip when clang or its libFuzzer runtime (Debian: libclang-rt-14-dev) is missing.
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
targets=(route http websocket pgwire sql params target_rules procfs elf pymem)
secs=${FUZZ_SMOKE_SECONDS:-5}
build=${BUILD:-build}
fuzzdir=$build/fuzz
clang=${FUZZ_CC:-clang}

# One line per target, and one before it for its reproducers when it has some: the plan counts both.
checks=()
for t in "${targets[@]}"; do
	[ -d "tests/fuzz/regressions/$t" ] && checks+=("fuzz_$t: reproducers")
	checks+=("fuzz_$t")
done
echo "1..${#checks[@]}"
skip_all() {
	local i=1
	for c in "${checks[@]}"; do
		echo "ok $i - $c # SKIP $1"
		i=$((i + 1))
	done
	exit 0
}

command -v "$clang" >/dev/null 2>&1 || skip_all "$clang not installed"
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return 0; }\n' > "$probe/p.c"
"$clang" -fsanitize=fuzzer -o "$probe/p" "$probe/p.c" >/dev/null 2>&1 ||
	skip_all "$clang cannot link -fsanitize=fuzzer (install libclang-rt-14-dev)"

# The Makefile includes fuzz.mk once it is wired in; until then name both files.
mkargs=(-s)
grep -q 'tests/fuzz/fuzz.mk' Makefile 2>/dev/null || mkargs+=(-f Makefile -f tests/fuzz/fuzz.mk)
if ! make "${mkargs[@]}" BUILD="$build" fuzz-bins >"$probe/build.log" 2>&1; then
	i=1
	for c in "${checks[@]}"; do
		echo "not ok $i - $c: build failed"
		i=$((i + 1))
	done
	sed 's/^/# /' "$probe/build.log" | tail -n 30
	exit 1
fi

i=1 rc=0
for t in "${targets[@]}"; do
	corpus=$fuzzdir/corpus/$t
	log=$fuzzdir/$t-smoke.log
	mkdir -p "$corpus" "$fuzzdir/artifacts"
	# Reproducers of what fuzzing found (tests/fuzz/regressions/NAME): each must now run clean, and allocate no
	# block over 256 MiB (a size an input chooses: elf's cfa-register-in-the-millions made libdw ask for 788 MB).
	reg=tests/fuzz/regressions/$t
	if [ -d "$reg" ]; then
		if "$fuzzdir/fuzz_$t" -malloc_limit_mb=256 "$reg"/* >"$fuzzdir/$t-regressions.log" 2>&1; then
			echo "ok $i - fuzz_$t: the $(find "$reg" -type f | wc -l) reproducer(s) in $reg run clean"
		else
			echo "not ok $i - fuzz_$t: a reproducer in $reg fails again: see $fuzzdir/$t-regressions.log"
			grep -E 'invariant failed|ERROR|SUMMARY' "$fuzzdir/$t-regressions.log" | head -n 5 | sed 's/^/# /'
			rc=1
		fi
		i=$((i + 1))
	fi
	if LOUPE_FUZZ_SEEDS=$corpus "$fuzzdir/fuzz_$t" -max_total_time="$secs" -timeout=10 -print_final_stats=1 \
		-artifact_prefix="$fuzzdir/artifacts/$t-" "$corpus" $(ls -d "tests/fuzz/corpus/$t" 2>/dev/null) >"$log" 2>&1; then
		execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
		echo "ok $i - fuzz_$t ${secs}s, ${execs:-?} executions"
	else
		echo "not ok $i - fuzz_$t: see $log"
		grep -E 'ERROR|invariant failed|SUMMARY|Test unit written' "$log" | head -n 8 | sed 's/^/# /'
		rc=1
	fi
	i=$((i + 1))
done
exit $rc
