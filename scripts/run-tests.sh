#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# Run Loupe's test suites and print one summary: "N passed, N failed, N skipped", with the reason of every skip.
# Usage: scripts/run-tests.sh [unit] [fuzz] [bpf] [e2e]   (default: all four, in that order)
# Every test program speaks TAP on stdout: "ok N - name", "not ok N - name", "ok N - name # SKIP reason".
# A program that exits non-zero without reporting a failure counts as one failure.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(unit fuzz bpf e2e)
logdir=build/test-logs
mkdir -p "$logdir"
PY=/usr/bin/python3
export PYTHONPATH="$top/tests/lib${PYTHONPATH:+:$PYTHONPATH}"
export CMOCKA_MESSAGE_OUTPUT=TAP
export LOUPE_BIN="$top/build/loupe"

passed=0 failed=0 skipped=0
skips=() failures=()

run_one() { # suite path
	local suite=$1 path=$2 name log rc
	name=$(basename "$path")
	log="$logdir/$suite-$name.log"
	local cmd=("$path")
	case "$path" in
	*.py) cmd=("$PY" "$path") ;;
	*.sh) cmd=(bash "$path") ;;
	esac
	printf '== %s/%s\n' "$suite" "$name"
	local start=$SECONDS
	"${cmd[@]}" >"$log" 2>&1
	rc=$?
	local p=0 f=0 s=0 line
	while IFS= read -r line; do
		case "$line" in
		# A SKIP directive makes a line a skip, "ok" or "not ok" (cmocka 1.1's skip() prints "not ok N # SKIP").
		*"# SKIP"*|*"# skip"*) s=$((s + 1)); skips+=("$suite/$name: ${line#*ok }") ;;
		"not ok"*) f=$((f + 1)); failures+=("$suite/$name: ${line#not ok }"); echo "   $line" ;;
		ok*) p=$((p + 1)) ;;
		esac
	done < <(grep -E '^(not )?ok\b' "$log")
	if [ $rc -ne 0 ] && [ $f -eq 0 ]; then
		f=1
		failures+=("$suite/$name: exited $rc without reporting a failure (see $log)")
		echo "   not ok - exited $rc; last lines of $log:"
		tail -n 15 "$log" | sed 's/^/     | /'
	elif [ $f -gt 0 ]; then
		echo "   (log: $log)"
		grep -E '^#' "$log" | tail -n 60 | sed 's/^/     | /'
	fi
	printf '   %d passed, %d failed, %d skipped (%ds)\n' $p $f $s $((SECONDS - start))
	passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
}

for suite in "${suites[@]}"; do
	case "$suite" in
	unit) tests=(build/tests/test_* tests/unit/test_*.py) ;; # cmocka binaries, and the shape of src/
	fuzz) tests=(tests/fuzz/test_*) ;; # a short libFuzzer run of every parser target
	bpf) tests=(tests/bpf/test_*) ;;
	e2e) tests=(tests/e2e/test_*) ;;
	*) echo "run-tests: unknown suite '$suite' (unit, fuzz, bpf or e2e)" >&2; exit 2 ;;
	esac
	for t in "${tests[@]}"; do
		[ -e "$t" ] || continue
		run_one "$suite" "$t"
	done
done

echo
if [ ${#skips[@]} -gt 0 ]; then
	echo "Skipped:"
	printf '  %s\n' "${skips[@]}"
fi
if [ ${#failures[@]} -gt 0 ]; then
	echo "Failed:"
	printf '  %s\n' "${failures[@]}"
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ] && [ $passed -gt 0 ]
