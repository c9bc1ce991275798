#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# Loupe benchmark (docs/performance.md explains every figure). Needs root; only loopback traffic.
#   scripts/bench.sh [--quick] [--out FILE] [--only PARTS] [--keep]
#     --quick       fewer and shorter runs: a smoke test of the script, not figures to quote
#     --out FILE    also write the results as JSON to FILE
#     --only PARTS  run only some parts, e.g. --only a or --only bcd (default abcdefg; c and d need b, e needs a)
#     --keep        keep the work directory (logs, raw records) instead of deleting it
# Parts, all in one invocation:
#   (a) added cost per syscall (getppid) over nothing attached, for: empty programs on sys_enter/sys_exit (the
#       floor), the floor with BPF statistics on, loupe with the bench process untargeted, and targeted with
#       getppid timed (both also with --no-bpf-stats, when loupe has it), and targeted with getppid in loupe's
#       default untimed set (counted only: --untimed-syscalls);
#       conditions alternate within each round, and the figures are medians over the rounds.
#   (e) with (a): what loupe's untargeted path is made of: empty programs with BPF statistics on plus only the
#       helper call, plus the tgid-indexed array lookup (loupe's path exactly), or a task-storage lookup instead.
#   (b) throughput of the reference API (tests/workload) under wrk, loupe off vs on, alternating runs; for the
#       on-runs also what loupe's payload feature counted (HTTP requests vs wrk's, ring-buffer records/s, drops);
#       then one more loupe-on run with --bpf-stats always, for BPF time per request only (not in the ratio).
#   (c) loupe's CPU and peak RSS during the loupe-on runs of (b).
#   (d) /metrics scrape time after the last loupe-on run, plain and gzip, idle and under load; then again with
#       some 10k series (7 processes making ~50 distinct syscalls each, targeted as 7 services).
#   (f) WebSocket message throughput of the same API (tests/workload/ws_client.py --throughput against /ws), loupe
#       off vs on, alternating runs; for the on-runs the messages loupe counted against the client's.
#   (g) pgbench TPS against the bench's PostgreSQL cluster (pgbench -i -s 10 once, then select-only and the default
#       TPC-B-like script, -M prepared, 4 clients, 2 threads, over TCP), loupe off vs on, alternating runs; for the
#       on-runs the statements and committed transactions loupe counted on the server side against pgbench's.
# Env: BUILD (build), LOUPE_BENCH_PORT (19476), LOUPE_BENCH_CPU (CPU for the syscall timer; default the last),
#      LOUPE_BENCH_ARGS (extra options for every loupe it starts, e.g. --no-bpf-stats),
#      LOUPE_BENCH_TARGETS (own, the default: the loupe-on runs of (b) and (f) target the bench's own API and
#      PostgreSQL by pid, as services api and postgres, and those of (g) the cluster alone, so that other uvicorn
#      or postgres processes on a shared host are not counted; or "default": loupe's default targets, which match
#      every uvicorn and postgres),
#      LOUPE_BENCH_SETTLE (11: seconds a loupe-on run of (b), (f) and (g) waits after loupe is ready before the load
#      starts, so that the run falls after the 10 s start-up window of the sampled BPF statistics, as loupe runs
#      in steady state; 0 = start at once, inside that window, i.e. with the statistics on throughout),
#      and the workload's LOUPE_PG_PORT/LOUPE_PG_DIR/LOUPE_API_PORT/LOUPE_RUN_DIR, which default here to a
#      private cluster and API (55532, /tmp/loupe-bench-pg, 18180, /tmp/loupe-bench-run) so a workload someone
#      else runs on the default ports is left alone.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
BUILD=${BUILD:-build}
LOUPE=$BUILD/loupe
FLOOR=$BUILD/bench/loupe-bench-floor
SC=$BUILD/bench/loupe-bench-sc
MIX=$BUILD/bench/loupe-bench-mix
PY=/usr/bin/python3
LIB=("$PY" "$top/tests/bench/benchlib.py")
WL=$top/tests/workload
PORT=${LOUPE_BENCH_PORT:-19476}
export LOUPE_PG_PORT=${LOUPE_PG_PORT:-55532}
export LOUPE_PG_DIR=${LOUPE_PG_DIR:-/tmp/loupe-bench-pg}
export LOUPE_API_PORT=${LOUPE_API_PORT:-18180}
export LOUPE_RUN_DIR=${LOUPE_RUN_DIR:-/tmp/loupe-bench-run}
export LOUPE_API_HOST=127.0.0.1 LOUPE_PG_HOST=127.0.0.1

quick=0 out="" parts=abcdefg keep=0
while (($#)); do
	case "$1" in
	--quick) quick=1; shift ;;
	--out) out=${2:?--out needs a FILE}; shift 2 ;;
	--only) parts=${2:?--only needs PARTS, e.g. ad}; shift 2 ;;
	--keep) keep=1; shift ;;
	-h|--help) sed -n '2,/^set /p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench.sh: unknown argument '$1' (see scripts/bench.sh --help)" >&2; exit 2 ;;
	esac
done
[[ $parts =~ ^[abcdefg]+$ ]] || { echo "bench.sh: --only takes letters from abcdefg (got '$parts')" >&2; exit 2; }
[[ $parts == *[cd]* && $parts != *b* ]] && parts+=b # (c) and (d) measure the loupe of (b)'s runs
[[ $parts == *e* && $parts != *a* ]] && parts+=a    # (e) is part of (a)'s rounds
want() { [[ $parts == *"$1"* ]]; }

if ((quick)); then
	A_ROUNDS=2 SC_CALLS=50000 SC_REPS=3
	B_RUNS=2 B_DURATION=3
	D_SCRAPES=50
	F_RUNS=2 F_DURATION=3
	G_RUNS=2 G_DURATION=3
else
	A_ROUNDS=16 SC_CALLS=50000 SC_REPS=10
	B_RUNS=9 B_DURATION=10
	D_SCRAPES=200
	F_RUNS=9 F_DURATION=10
	G_RUNS=7 G_DURATION=10
fi
B_CONNS=10 B_THREADS=2 B_WARMUP=3 D_MIX_SERVICES=7
F_SESSIONS=8 F_SIZE=32 F_WARMUP=3
G_SCALE=10 G_CLIENTS=4 G_THREADS=2 G_WARMUP=3
SETTLE=${LOUPE_BENCH_SETTLE:-11}
[[ $SETTLE =~ ^[0-9]+$ ]] || { echo "bench.sh: LOUPE_BENCH_SETTLE must be whole seconds (got '$SETTLE')" >&2; exit 2; }
[[ ${LOUPE_BENCH_TARGETS:-own} =~ ^(own|default)$ ]] \
	|| { echo "bench.sh: LOUPE_BENCH_TARGETS must be own or default (got '$LOUPE_BENCH_TARGETS')" >&2; exit 2; }

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
# shellcheck source=bench-common.sh
source "$top/scripts/bench-common.sh"
die() { log "error: $*"; exit 1; }

# ------------------------------------------------------------------------------------------------ checks
[[ $(id -u) -eq 0 ]] || die "needs root (BPF programs): run as root"
for tool in bpftool curl jq; do
	command -v $tool >/dev/null || die "$tool not found (apt-get install $tool)"
done
[[ -x $PY ]] || die "$PY not found"
if [[ ! -x $LOUPE || ! -x $FLOOR || ! -x $SC || ! -x $MIX ]]; then
	log "building loupe and the benchmark programs"
	make -s "$LOUPE" bench-bins >&2 || die "build failed"
fi
if want b || want f; then
	want b && { command -v wrk >/dev/null || die "wrk not found (apt-get install wrk)"; }
	for f in pg-start.sh pg-stop.sh api-start.sh api-stop.sh seed.py mix.lua ws_client.py; do
		[[ -e $WL/$f ]] || die "tests/workload/$f is missing: the reference workload is needed for (b) and (f), or use --only a"
	done
	want f && { "$PY" -c 'import websockets' 2>/dev/null || die "$PY cannot import websockets (apt-get install python3-websockets)"; }
fi
if want g; then
	for f in pg-start.sh pg-stop.sh; do
		[[ -e $WL/$f ]] || die "tests/workload/$f is missing: the bench's PostgreSQL cluster is needed for (g)"
	done
	# The cluster's own version (tests/workload/common.sh's LOUPE_PG_BIN), else whatever pgbench is on PATH.
	PGBENCH=${LOUPE_PG_BIN:-/usr/lib/postgresql/15/bin}/pgbench
	[[ -x $PGBENCH ]] || PGBENCH=$(command -v pgbench) || die "pgbench not found (apt-get install postgresql-15)"
fi
if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/healthz"; then
	die "something already listens on 127.0.0.1:$PORT (set LOUPE_BENCH_PORT)"
fi

work=$(mktemp -d /tmp/loupe-bench.XXXXXX)
records=$work/records.jsonl
: >"$records"
WL_TARGETS=() G_TARGETS=() PG_PID="" LOUPE_PID="" FLOOR_PID="" BG_WRK_PID="" MIX_PIDS=() STARTED_PG=0 STARTED_API=0 PG_DIR_NEW=0 RUN_DIR_NEW=0

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_pid "$BG_WRK_PID"
	stop_pid "$LOUPE_PID"
	stop_pid "$FLOOR_PID"
	for pid in "${MIX_PIDS[@]}"; do stop_pid "$pid"; done
	((STARTED_API)) && { "$WL/api-stop.sh" >>"$work/workload.log" 2>&1 || log "warning: api-stop.sh failed (see $work/workload.log)"; }
	if ((STARTED_PG)); then
		local purge=()
		((PG_DIR_NEW)) && purge=(--purge)
		"$WL/pg-stop.sh" "${purge[@]}" >>"$work/workload.log" 2>&1 || log "warning: pg-stop.sh failed (see $work/workload.log)"
	fi
	if ((keep || rc)); then
		log "work directory kept: $work"
	else
		rm -rf "$work"
		((RUN_DIR_NEW)) && rm -rf "$LOUPE_RUN_DIR" # the API's log
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

record() { printf '%s\n' "$1" >>"$records"; }

# ------------------------------------------------------------------------------------------------ processes
# Every syscall timed: (a) and the ground-truth checks count timed calls (loupe's default is --syscalls sampled;
# scripts/bench-cost.sh compares the modes).
read -r -a LOUPE_ARGS <<<"--syscalls on ${LOUPE_BENCH_ARGS:-}"
scrape() { curl -s -f --max-time 10 -o "$1" "http://127.0.0.1:$PORT/metrics"; }

# ------------------------------------------------------------------------------------------------ machine
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
record "$(jq -nc --arg date "$(date -u '+%Y-%m-%d %H:%M UTC')" --arg kernel "$(uname -r)" --arg cpu "$cpu_model" \
	--arg nproc "$(nproc)" --arg mem "$mem" --arg loupe "$("$LOUPE" --version 2>/dev/null | head -n 1)" \
	--arg git "$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)" \
	--arg stats "$(sysctl -n kernel.bpf_stats_enabled 2>/dev/null || echo '?')" \
	--arg mitigations "$(grep -o 'mitigations=[^ ]*' /proc/cmdline || echo default)" \
	--arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
	'{part:"machine",date:$date,kernel:$kernel,cpu:$cpu,nproc:$nproc,mem:$mem,loupe:$loupe,git:$git,
	  bpf_stats_enabled_sysctl:$stats,mitigations:$mitigations,loadavg_at_start:$load}')"
record "$(jq -nc --argjson quick "$quick" --argjson a_rounds "$A_ROUNDS" --argjson sc_calls "$SC_CALLS" \
	--argjson sc_reps "$SC_REPS" --argjson b_runs "$B_RUNS" --argjson b_duration "$B_DURATION" \
	--argjson b_conns "$B_CONNS" --argjson b_threads "$B_THREADS" --argjson d_scrapes "$D_SCRAPES" --arg parts "$parts" \
	--argjson f_runs "$F_RUNS" --argjson f_duration "$F_DURATION" --argjson f_sessions "$F_SESSIONS" \
	--argjson f_size "$F_SIZE" --argjson settle "$SETTLE" --arg loupe_args "${LOUPE_BENCH_ARGS:-}" \
	--arg targets "${LOUPE_BENCH_TARGETS:-own}" --argjson g_runs "$G_RUNS" --argjson g_duration "$G_DURATION" \
	--argjson g_scale "$G_SCALE" --argjson g_clients "$G_CLIENTS" --argjson g_threads "$G_THREADS" \
	'{part:"params",quick:($quick==1),a_rounds:$a_rounds,sc_calls:$sc_calls,sc_reps:$sc_reps,b_runs:$b_runs,
	  b_duration:$b_duration,b_conns:$b_conns,b_threads:$b_threads,d_scrapes:$d_scrapes,parts:$parts,
	  f_runs:$f_runs,f_duration:$f_duration,f_sessions:$f_sessions,f_size:$f_size,settle_s:$settle,
	  loupe_bench_args:$loupe_args,targets:$targets,g_runs:$g_runs,g_duration:$g_duration,g_scale:$g_scale,
	  g_clients:$g_clients,g_threads:$g_threads}')"
log "$cpu_model, $(nproc) CPUs, $mem, Linux $(uname -r); work directory $work"
[[ $(sysctl -n kernel.bpf_stats_enabled 2>/dev/null || echo 0) == 0 ]] \
	|| log "warning: kernel.bpf_stats_enabled is already 1 on this host: every condition of (a) pays for statistics"

# ------------------------------------------------------------------------------------------------ (a)
sc_cpu=()
[[ -n ${LOUPE_BENCH_CPU:-} ]] && sc_cpu=(-c "$LOUPE_BENCH_CPU")
BENCH_TARGET='bench=comm:^loupe-bench-sc$'

# Someone else's programs on sys_enter/sys_exit (another loupe, a test) slow every condition down: wait until the
# hooks are free before a sample (up to A_WAIT_FOREIGN s), and redo a sample that saw any (up to 3 attempts).
# The waiting is capped at A_WAIT_TOTAL s over the whole of (a), so a busy host cannot stretch the run for ever.
A_WAIT_FOREIGN=${LOUPE_BENCH_WAIT_FOREIGN:-60} A_WAIT_TOTAL=${LOUPE_BENCH_WAIT_TOTAL:-300} a_waited=0
wait_hooks_free() {
	local i n
	for ((i = 0; i < A_WAIT_FOREIGN && a_waited < A_WAIT_TOTAL; i++)); do
		n=$("${LIB[@]}" foreign)
		((n == 0)) && return 0
		((i % 10 == 0)) && log "(a) $n foreign programs on sys_enter/sys_exit: waiting for them to go"
		sleep 1
		a_waited=$((a_waited + 1))
	done
	((i == 0)) || log "warning: foreign programs still attached: measuring anyway (the sample is flagged)"
}

# One sample: run the timer under the condition that is set up, check for foreign programs before and after, and
# read the per-run cost of the attached programs from the kernel's BPF statistics when they are on.
# Returns 3 (and records nothing) when foreign programs were seen and $final is 0.
a_sample() { # cond round holder-pid final
	local cond=$1 round=$2 holder=$3 final=$4 f1 f2 ps1="" ps2="" res ok=true
	f1=$("${LIB[@]}" foreign ${holder:+"$holder"})
	[[ -n $holder ]] && ps1=$("${LIB[@]}" progstats "$holder")
	res=$("$SC" -n "$SC_CALLS" -r "$SC_REPS" -w 100 "${sc_cpu[@]}") || die "loupe-bench-sc failed"
	[[ -n $holder ]] && ps2=$("${LIB[@]}" progstats "$holder")
	f2=$("${LIB[@]}" foreign ${holder:+"$holder"})
	if ((f1 + f2)); then
		log "warning: $cond round $round: other programs were attached to sys_enter/sys_exit$( ((final)) && echo ' (kept, flagged)')"
		((final)) || return 3
	fi
	# The plain floor runs without BPF statistics; if its programs got a run count, someone else turned the
	# statistics on meanwhile (another loupe), which makes the floor dearer: treat it like foreign programs.
	if [[ $cond == floor ]] && (($(jq -n --argjson a "$ps1" --argjson b "$ps2" '$b.sys_enter.run_cnt - $a.sys_enter.run_cnt') > 0)); then
		log "warning: floor round $round: BPF statistics were on (enabled by another process)$( ((final)) && echo ' (kept, flagged)')"
		f2=1
		((final)) || return 3
	fi
	if [[ $cond == targeted* ]]; then
		# Ground truth: every timed call must be in the bench service's getppid histogram (or, untimed, in its
		# getppid counter).
		scrape "$work/a-metrics.txt" || die "scrape failed during (a)"
		local seen metric=loupe_syscall_duration_seconds_count
		[[ $cond == targeted_untimed ]] && metric=loupe_syscall_untimed_total
		seen=$("${LIB[@]}" sample "$work/a-metrics.txt" "$metric" service_name=bench syscall=getppid)
		((seen >= SC_CALLS * SC_REPS)) || { ok=false; log "warning: loupe counted $seen getppid calls of the bench process, expected >= $((SC_CALLS * SC_REPS)): not targeted?"; }
	fi
	record "$(jq -c --arg cond "$cond" --argjson round "$round" --argjson foreign "$((f1 + f2))" --argjson ok $ok \
		'. + {part:"a",kind:"sample",cond:$cond,round:$round,foreign:($foreign > 0),target_ok:$ok}' <<<"$res")"
	if [[ -n $ps1 && -n $ps2 ]]; then
		local hook
		for hook in sys_enter sys_exit; do
			record "$(jq -nc --arg cond "$cond" --argjson round "$round" --arg hook "$hook" \
				--argjson a "$ps1" --argjson b "$ps2" \
				'($b[$hook].run_cnt - $a[$hook].run_cnt) as $n | ($b[$hook].run_time_ns - $a[$hook].run_time_ns) as $t |
				 {part:"a",kind:"progstats",cond:$cond,round:$round,hook:$hook,runs:$n,run_time_ns:$t,
				  ns_per_run:(if $n > 0 then $t / $n else null end)}')"
		done
	fi
	log "(a) round $round $(printf '%-12s' "$cond") $(jq -r '"\(.median_ns) ns/call (min \(.min_ns); wall \(.wall_median_ns))"' <<<"$res")"
}

a_condition() { # cond round
	local attempt final rc
	for ((attempt = 1; attempt <= 3; attempt++)); do
		final=0
		((attempt == 3)) && final=1
		wait_hooks_free
		rc=0
		case $1 in
		baseline) a_sample baseline "$2" "" $final || rc=$? ;;
		floor) floor_start; a_sample floor "$2" "$FLOOR_PID" $final || rc=$?; floor_stop ;;
		floor_stats) floor_start --stats; a_sample floor_stats "$2" "$FLOOR_PID" $final || rc=$?; floor_stop ;;
		stats_*) floor_start --stats --variant "${1#stats_}"; a_sample "$1" "$2" "$FLOOR_PID" $final || rc=$?; floor_stop ;;
		untargeted) loupe_start; a_sample untargeted "$2" "$LOUPE_PID" $final || rc=$?; loupe_stop ;;
		targeted) # getppid timed (it is in the default untimed set: targeted_untimed measures that path)
			loupe_start --target "$BENCH_TARGET" "${UNTIMED_NONE[@]}"; a_sample targeted "$2" "$LOUPE_PID" $final || rc=$?
			loupe_stop ;;
		targeted_untimed) loupe_start --target "$BENCH_TARGET"; a_sample "$1" "$2" "$LOUPE_PID" $final || rc=$?; loupe_stop ;;
		untargeted_nostats)
			loupe_start --no-bpf-stats; a_sample "$1" "$2" "$LOUPE_PID" $final || rc=$?; loupe_stop ;;
		targeted_nostats)
			loupe_start --no-bpf-stats --target "$BENCH_TARGET" "${UNTIMED_NONE[@]}"
			a_sample "$1" "$2" "$LOUPE_PID" $final || rc=$?
			loupe_stop ;;
		esac
		((rc == 3)) || return "$rc"
	done
}

if want a; then
	conds=(baseline floor floor_stats untargeted targeted)
	# loupe without its BPF statistics (--no-bpf-stats), when this loupe has the option.
	"$LOUPE" run --help 2>/dev/null | grep -q -- --no-bpf-stats && conds+=(untargeted_nostats targeted_nostats)
	# getppid counted but not timed (loupe's default untimed set), when this loupe has --untimed-syscalls.
	UNTIMED_NONE=()
	if "$LOUPE" run --help 2>/dev/null | grep -q -- --untimed-syscalls; then
		UNTIMED_NONE=(--untimed-syscalls none)
		conds+=(targeted_untimed)
	fi
	# (e) pieces of loupe's untargeted path alone, with BPF statistics on as under loupe: what the gap is made of.
	want e && conds+=(stats_pidtgid stats_lookup stats_task)
	log "(a) syscall cost: $A_ROUNDS rounds of ${#conds[@]} conditions, each $SC_REPS x $SC_CALLS getppid() calls"
	for ((round = 1; round <= A_ROUNDS; round++)); do
		# Rotate the order every round so that no condition always follows the same one.
		for ((k = 0; k < ${#conds[@]}; k++)); do
			a_condition "${conds[(k + round - 1) % ${#conds[@]}]}" "$round"
		done
	done
fi

# ------------------------------------------------------------------------------------------------ (b) (c) (d)
WRK_URL="http://$LOUPE_API_HOST:$LOUPE_API_PORT"
wrk_run() { # duration outfile: the command line of tests/workload/load.sh --mix, seeded once beforehand
	wrk --latency -d "${1}s" -c "$B_CONNS" -t "$B_THREADS" --timeout 10s -s "$WL/mix.lua" "$WRK_URL" \
		-- mix "$SEED_IDS" >"$2" 2>&1
}

# A loupe-on run: start loupe with the given targets (cond "stats": with --bpf-stats always), wait SETTLE s, then
# take the "before" readings (loupe's CPU, its programs' run time, its payload counters of SERVICE); on_end takes
# the "after" readings.
on_start() { # cond service [loupe options...]
	local cond=$1
	ON_SVC=$2
	shift 2
	if [[ $cond == stats ]]; then loupe_start "$@" --bpf-stats always; else loupe_start "$@"; fi
	((SETTLE == 0)) || sleep "$SETTLE"
	scrape "$work/on-before.txt" || die "scrape failed before a loupe-on run"
	ON_SNAP1=$("${LIB[@]}" snapshot "$work/on-before.txt" "$ON_SVC")
	ON_P1=$("${LIB[@]}" proc "$LOUPE_PID")
	ON_B1=$("${LIB[@]}" progstats "$LOUPE_PID")
}
on_end() { # -> ON_P2 ON_B2 ON_LOUPE (payload counters and BPF run time over the run, JSON)
	ON_P2=$("${LIB[@]}" proc "$LOUPE_PID")
	ON_B2=$("${LIB[@]}" progstats "$LOUPE_PID")
	scrape "$work/on-after.txt" || die "scrape failed after a loupe-on run"
	local d
	d=$("${LIB[@]}" snapdiff "$ON_SNAP1" "$("${LIB[@]}" snapshot "$work/on-after.txt" "$ON_SVC")")
	ON_LOUPE=$(jq -c --argjson ba "$ON_B1" --argjson bb "$ON_B2" \
		'. + {bpf_run_time_ns:($bb.total.run_time_ns - $ba.total.run_time_ns),
		      bpf_runs:($bb.total.run_cnt - $ba.total.run_cnt), bpf_progs:$bb.total.progs,
		      bpf_hooks:([("sys_enter", "sys_exit") as $h | select($bb[$h] and $ba[$h]) |
		                  {key:$h, value:{run_time_ns:($bb[$h].run_time_ns - $ba[$h].run_time_ns),
		                                  runs:($bb[$h].run_cnt - $ba[$h].run_cnt)}}] | from_entries)}' <<<"$d")
}

b_run() { # cond(off|on|stats) run [keep]
	local cond=$1 run=$2 outf="$work/wrk-$1-$2.txt" t1 t2 rc=0 res wall
	[[ $cond == off ]] || on_start "$cond" api "${WL_TARGETS[@]}"
	# CPU the rest of the host used meanwhile (other people's work on a shared machine): host CPU minus the
	# workload's process trees, loupe and wrk. It competes with the API, so it is recorded with every run.
	local ours=("$(cat "$LOUPE_RUN_DIR/api.pid")" "$(head -n 1 "$LOUPE_PG_DIR/postmaster.pid")" ${LOUPE_PID:+"$LOUPE_PID"}) c1 c2
	local TIMEFORMAT='%3U %3S'
	c1=$("${LIB[@]}" cpu "${ours[@]}")
	t1=$(date +%s.%N)
	{ time wrk_run "$B_DURATION" "$outf"; } 2>"$work/wrk-$cond-$run.time" || rc=$?
	t2=$(date +%s.%N)
	c2=$("${LIB[@]}" cpu "${ours[@]}")
	wall=$(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.3f", b - a }')
	res=$("${LIB[@]}" wrk "$outf")
	[[ $res != '{}' ]] || { rc=1; res='{"rps":0}'; }
	res=$(jq -c --arg cond "$cond" --argjson run "$run" --argjson rc "$rc" --argjson c1 "$c1" --argjson c2 "$c2" \
		--argjson wrk_s "$(awk '{ print $1 + $2; exit }' "$work/wrk-$cond-$run.time")" --argjson wall "$wall" \
		'. + {part:"b",cond:$cond,run:$run,failed:($rc != 0),wall_s:$wall,wrk_cpu_pct:(100 * $wrk_s / $wall),
		      workload_cpu_pct:(100 * ($c2.ours_s - $c1.ours_s) / $wall),
		      host_cpu_pct:(100 * ($c2.host_s - $c1.host_s) / $wall),
		      foreign_cpu_pct:(100 * (($c2.host_s - $c1.host_s) - ($c2.ours_s - $c1.ours_s) - $wrk_s) / $wall)}' <<<"$res")
	((rc == 0)) || log "warning: wrk failed (status $rc) in run $run ($cond): see $outf"
	if [[ $cond != off ]]; then
		on_end
		# (c) is about loupe with its default options: the --bpf-stats always run is not part of it.
		[[ $cond == on ]] && record "$(jq -nc --argjson run "$run" --argjson a "$ON_P1" --argjson b "$ON_P2" \
			--argjson ba "$ON_B1" --argjson bb "$ON_B2" --argjson wall "$wall" --argjson L "$ON_LOUPE" \
			'{part:"c",run:$run,wall_s:$wall,cpu_s:($b.cpu_s - $a.cpu_s),cpu_pct:(100 * ($b.run_ns - $a.run_ns) / 1e9 / $wall),
			  cpu_pct_ticks:(100 * ($b.cpu_s - $a.cpu_s) / $wall),
			  bpf_cpu_pct:(100 * ($bb.total.run_time_ns - $ba.total.run_time_ns) / 1e9 / $wall),
			  bpf_stats_enabled_s:$L.bpf_stats_enabled_s,
			  bpf_runs:($bb.total.run_cnt - $ba.total.run_cnt),vmrss_kib:$b.vmrss_kib,vmhwm_kib:$b.vmhwm_kib}')"
		# Ground truth: loupe must have seen the API's syscalls, or the run measured nothing.
		local seen
		seen=$("${LIB[@]}" sample "$work/on-after.txt" loupe_syscall_duration_seconds_count service_name=api)
		res=$(jq -c --argjson seen "$seen" --argjson L "$ON_LOUPE" --argjson settle "$SETTLE" \
			'. + {api_syscalls:$seen,api_observed:($seen > 0),loupe:$L,settle_s:$settle}' <<<"$res")
		((seen > 0)) || log "warning: loupe saw no syscalls of service api in run $run"
		[[ ${3:-} == keep ]] || loupe_stop
	fi
	record "$res"
	log "(b) run $run loupe $(printf '%-5s' "$cond") $(jq -r '"\(.rps | floor) req/s, p99 \(.p99_ms // "?") ms; CPU % of one core: workload \(.workload_cpu_pct | floor), wrk \(.wrk_cpu_pct | floor), others \(.foreign_cpu_pct | floor)"' <<<"$res")$(
		[[ $cond == off ]] || jq -r '"; loupe counted \(.loupe.http_requests) requests (wrk \(.requests // "?")), \(.loupe.payload_records) records, \(.loupe.payload_drops) drops"' <<<"$res")"
}

# (f): one run of ws_client.py in throughput mode against /ws.
f_run() { # cond(off|on) run
	local cond=$1 run=$2 outf="$work/ws-$1-$2.json" t1 t2 rc=0 res wall
	[[ $cond == off ]] || on_start "$cond" api "${WL_TARGETS[@]}"
	local ours=("$(cat "$LOUPE_RUN_DIR/api.pid")" "$(head -n 1 "$LOUPE_PG_DIR/postmaster.pid")" ${LOUPE_PID:+"$LOUPE_PID"}) c1 c2
	c1=$("${LIB[@]}" cpu "${ours[@]}")
	t1=$(date +%s.%N)
	"$PY" "$WL/ws_client.py" --throughput --sessions "$F_SESSIONS" --duration "$F_DURATION" --size "$F_SIZE" \
		--host "$LOUPE_API_HOST" --port "$LOUPE_API_PORT" >"$outf" 2>"$work/ws-$cond-$run.err" || rc=$?
	t2=$(date +%s.%N)
	c2=$("${LIB[@]}" cpu "${ours[@]}")
	wall=$(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.3f", b - a }')
	res=$(jq -c 'select(.throughput)' "$outf" 2>/dev/null | tail -n 1)
	[[ -n $res ]] || { ((rc)) || rc=1; res='{"throughput":{"messages_per_s":0,"client_cpu_s":0}}'; }
	res=$(jq -c --arg cond "$cond" --argjson run "$run" --argjson rc "$rc" --argjson c1 "$c1" --argjson c2 "$c2" \
		--argjson wall "$wall" \
		'{part:"f",cond:$cond,run:$run,failed:($rc != 0),wall_s:$wall,messages_per_s:.throughput.messages_per_s,
		  messages:.throughput.messages,window_s:.throughput.window_s,messages_sent:.messages_sent,
		  messages_received:.messages_received,errors:.errors,close_codes:.close_codes,
		  client_cpu_pct:(100 * .throughput.client_cpu_s / $wall),
		  workload_cpu_pct:(100 * ($c2.ours_s - $c1.ours_s) / $wall),
		  foreign_cpu_pct:(100 * (($c2.host_s - $c1.host_s) - ($c2.ours_s - $c1.ours_s) - .throughput.client_cpu_s) / $wall)}' <<<"$res")
	((rc == 0)) || log "warning: ws_client.py failed (status $rc) in run $run ($cond): $(tail -n 2 "$work/ws-$cond-$run.err" | tr '\n' ' ')"
	if [[ $cond != off ]]; then
		on_end
		res=$(jq -c --argjson L "$ON_LOUPE" --argjson settle "$SETTLE" --argjson a "$ON_P1" --argjson b "$ON_P2" \
			'. + {loupe:$L,settle_s:$settle,loupe_cpu_pct:(100 * ($b.run_ns - $a.run_ns) / 1e9 / .wall_s)}' <<<"$res")
		loupe_stop
	fi
	record "$res"
	log "(f) run $run loupe $(printf '%-3s' "$cond") $(jq -r '"\(.messages_per_s | floor) messages/s (\(.messages_sent) sent); CPU % of one core: client \(.client_cpu_pct | floor), workload \(.workload_cpu_pct | floor), others \(.foreign_cpu_pct | floor)"' <<<"$res")$(
		[[ $cond == off ]] || jq -r '"; loupe counted \((.loupe.ws_messages.received.text // 0) + (.loupe.ws_messages.received.binary // 0)) received, \((.loupe.ws_messages.sent.text // 0) + (.loupe.ws_messages.sent.binary // 0)) sent, \(.loupe.payload_drops) drops"' <<<"$res")"
}

# Loupe's targets for the loupe-on runs (LOUPE_BENCH_TARGETS): own = the given services by pid, default = none.
targets_for() { # service=pid...
	case ${LOUPE_BENCH_TARGETS:-own} in
	own) local t; for t in "$@"; do printf -- '--target\n%s=pid:%s\n' "${t%%=*}" "${t#*=}"; done ;;
	esac
}

# PostgreSQL and the API, for (b) and (f): started once, stopped on exit.
workload_start() {
	((STARTED_API)) && return 0
	pg_start
	[[ -e $LOUPE_RUN_DIR ]] || RUN_DIR_NEW=1
	log "starting the API ($WRK_URL)"
	STARTED_API=1
	"$WL/api-start.sh" >>"$work/workload.log" 2>&1 || { tail -n 5 "$work/workload.log" >&2; die "api-start.sh failed"; }
	SEED_IDS=$("$PY" "$WL/seed.py" --ids-only 2>>"$work/workload.log") || die "seed.py failed (see $work/workload.log)"
	mapfile -t WL_TARGETS < <(targets_for "api=$(cat "$LOUPE_RUN_DIR/api.pid")" "postgres=$PG_PID")
}

d_scrapes() { # kind label [curl options...]
	local kind=$1 label=$2 i args=()
	shift 2
	for ((i = 0; i < D_SCRAPES; i++)); do
		args+=(-o /dev/null "http://127.0.0.1:$PORT/metrics")
	done
	curl -s -f "$@" -w '%{time_total}\n' "${args[@]}" >"$work/d-$kind.txt" || die "scrapes ($label) failed"
	local t size ex
	t=$("${LIB[@]}" times "$work/d-$kind.txt")
	# Size as sent (compressed with gzip), and the series in the same state, right after the timed scrapes.
	size=$(curl -s -f "$@" "http://127.0.0.1:$PORT/metrics" | wc -c)
	scrape "$work/d-$kind-metrics.txt" || die "scrape failed"
	ex=$("${LIB[@]}" exposition "$work/d-$kind-metrics.txt")
	record "$(jq -c --arg kind "$kind" --arg lbl "$label" --argjson bytes "$size" --argjson ex "$ex" \
		'. + {part:"d",kind:$kind,label:$lbl,bytes:$bytes,samples:$ex.samples,lines:$ex.lines,families:$ex.families}' <<<"$t")"
	log "(d) $label: $(jq -r '"median \(.median_ms * 100 | round / 100) ms, p99 \(.p99_ms * 100 | round / 100) ms"' <<<"$t")"
}

if want b; then
	workload_start
	log "(b) warm-up: wrk ${B_WARMUP}s (not counted)"
	wrk_run "$B_WARMUP" "$work/wrk-warmup.txt" || die "warm-up wrk run failed: $(tail -n 3 "$work/wrk-warmup.txt")"
	log "(b) $B_RUNS runs each of wrk ${B_DURATION}s, $B_CONNS connections, $B_THREADS threads, loupe off and on alternating$(
		((SETTLE)) && echo "; loupe-on runs start ${SETTLE}s after loupe is ready")"
	for ((run = 1; run <= B_RUNS; run++)); do
		# ABBA order: off,on then on,off, so a drift over time weighs on both conditions alike.
		last=""
		((run == B_RUNS)) && want d && last=keep
		if ((run % 2)); then
			b_run off "$run"
			b_run on "$run" "$last"
		else
			b_run on "$run" "$last"
			b_run off "$run"
		fi
	done

	if want d; then
		# The loupe of the last on-run is still up, with the series the workload made.
		scrape "$work/d-metrics.txt" || die "scrape failed"
		EXPO=$("${LIB[@]}" exposition "$work/d-metrics.txt")
		log "(d) $D_SCRAPES scrapes each: $(jq -r '"\(.samples) samples, \(.families) families, \(.bytes) bytes"' <<<"$EXPO")"
		d_scrapes plain "idle, text"
		d_scrapes gzip "idle, Accept-Encoding: gzip" -H 'Accept-Encoding: gzip'
		# wrk itself in the background (not a function: a subshell would not pass the SIGTERM on).
		wrk -d 60s -c "$B_CONNS" -t "$B_THREADS" --timeout 10s -s "$WL/mix.lua" "$WRK_URL" -- mix "$SEED_IDS" \
			>"$work/wrk-d.txt" 2>&1 &
		BG_WRK_PID=$!
		sleep 1
		d_scrapes load "under wrk load, text"
		d_scrapes load_gzip "under wrk load, gzip" -H 'Accept-Encoding: gzip'
		stop_pid "$BG_WRK_PID"
		BG_WRK_PID=""
		loupe_stop

		# At scale (DESIGN.md section 6: scrape time for 10k series): D_MIX_SERVICES processes making ~50 distinct
		# syscalls each, every one its own service, give some 10k samples.
		targets=()
		for ((i = 0; i < D_MIX_SERVICES; i++)); do
			"$MIX" -i 20 -d 600 &
			MIX_PIDS+=($!)
			targets+=(--target "mix$i=pid:$!")
		done
		loupe_start "${targets[@]}"
		sleep 2
		scrape "$work/d-scale-metrics.txt" || die "scrape failed"
		EXPO=$("${LIB[@]}" exposition "$work/d-scale-metrics.txt")
		log "(d) at scale, $D_MIX_SERVICES services: $(jq -r '"\(.samples) samples, \(.bytes) bytes"' <<<"$EXPO")"
		d_scrapes scale "~10k series, text"
		d_scrapes scale_gzip "~10k series, gzip" -H 'Accept-Encoding: gzip'
		loupe_stop
		for pid in "${MIX_PIDS[@]}"; do stop_pid "$pid"; done
		MIX_PIDS=()
	fi

	# BPF time per request needs the statistics on for the whole run: one more loupe-on run, with
	# --bpf-stats always, used for that (and its records/s and drops) only, not in the throughput ratio.
	log "(b) one more loupe-on run with --bpf-stats always, for BPF time per request (not in the ratio)"
	b_run stats $((B_RUNS + 1))
fi

if want f; then
	workload_start
	log "(f) warm-up: ws_client.py ${F_WARMUP}s (not counted)"
	"$PY" "$WL/ws_client.py" --throughput --sessions "$F_SESSIONS" --duration "$F_WARMUP" --size "$F_SIZE" \
		--host "$LOUPE_API_HOST" --port "$LOUPE_API_PORT" >"$work/ws-warmup.json" 2>&1 \
		|| die "warm-up ws_client.py run failed: $(tail -n 3 "$work/ws-warmup.json")"
	log "(f) $F_RUNS runs each of ws_client.py --throughput ${F_DURATION}s, $F_SESSIONS sessions, loupe off and on alternating"
	for ((run = 1; run <= F_RUNS; run++)); do
		if ((run % 2)); then
			f_run off "$run"
			f_run on "$run"
		else
			f_run on "$run"
			f_run off "$run"
		fi
	done
fi

# ------------------------------------------------------------------------------------------------ (g)
# pgbench over TCP against the bench's cluster, as user and database loupe (trust auth on 127.0.0.1).
G_ENV=(PGHOST=127.0.0.1 "PGPORT=$LOUPE_PG_PORT" PGUSER=loupe PGDATABASE=loupe)
pgbench_run() { # mode(select|tpcb) duration outfile
	local script=()
	[[ $1 == select ]] && script=(-S)
	env "${G_ENV[@]}" "$PGBENCH" -n "${script[@]}" -M prepared -c "$G_CLIENTS" -j "$G_THREADS" -T "$2" >"$3" 2>&1
}

g_run() { # mode(select|tpcb) cond(off|on) run
	local mode=$1 cond=$2 run=$3 outf="$work/pgbench-$1-$2-$3.txt" t1 t2 rc=0 res wall
	[[ $cond == off ]] || on_start "$cond" postgres "${G_TARGETS[@]}"
	local ours=("$PG_PID" ${LOUPE_PID:+"$LOUPE_PID"}) c1 c2
	local TIMEFORMAT='%3U %3S'
	c1=$("${LIB[@]}" cpu "${ours[@]}")
	t1=$(date +%s.%N)
	{ time pgbench_run "$mode" "$G_DURATION" "$outf"; } 2>"$work/pgbench-$mode-$cond-$run.time" || rc=$?
	t2=$(date +%s.%N)
	c2=$("${LIB[@]}" cpu "${ours[@]}")
	wall=$(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.3f", b - a }')
	res=$("${LIB[@]}" pgbench "$outf")
	jq -e 'has("tps")' <<<"$res" >/dev/null || { ((rc)) || rc=1; res=$(jq -c '. + {tps:0}' <<<"$res"); }
	res=$(jq -c --arg mode "$mode" --arg cond "$cond" --argjson run "$run" --argjson rc "$rc" --argjson c1 "$c1" \
		--argjson c2 "$c2" --argjson pgb_s "$(awk '{ print $1 + $2; exit }' "$work/pgbench-$mode-$cond-$run.time")" \
		--argjson wall "$wall" \
		'. + {part:"g",mode:$mode,cond:$cond,run:$run,failed:($rc != 0),wall_s:$wall,
		      pgbench_cpu_pct:(100 * $pgb_s / $wall), workload_cpu_pct:(100 * ($c2.ours_s - $c1.ours_s) / $wall),
		      foreign_cpu_pct:(100 * (($c2.host_s - $c1.host_s) - ($c2.ours_s - $c1.ours_s) - $pgb_s) / $wall)}' <<<"$res")
	((rc == 0)) || log "warning: pgbench failed (status $rc) in $mode run $run ($cond): $(tail -n 2 "$outf" | tr '\n' ' ')"
	if [[ $cond != off ]]; then
		on_end
		res=$(jq -c --argjson L "$ON_LOUPE" --argjson settle "$SETTLE" --argjson a "$ON_P1" --argjson b "$ON_P2" \
			'. + {loupe:$L,settle_s:$settle,loupe_cpu_pct:(100 * ($b.run_ns - $a.run_ns) / 1e9 / .wall_s)}' <<<"$res")
		loupe_stop
	fi
	record "$res"
	# Statements of pgbench's script: all but its start-up queries (count(*) of pgbench_branches, pg_catalog).
	log "(g) $(printf '%-11s' "$mode") run $run loupe $(printf '%-3s' "$cond") $(jq -r '"\(.tps | floor) tps (\(.transactions // "?") transactions); CPU % of one core: pgbench \(.pgbench_cpu_pct | floor), postgres \(.workload_cpu_pct | floor), others \(.foreign_cpu_pct | floor)"' <<<"$res")$(
		[[ $cond == off ]] || jq -r '"; loupe counted \([.loupe.pg_statements_by_query | to_entries[] | select(.key | test("count\\(|pg_catalog"; "i") | not) | .value] | add // 0) statements, \(.loupe.pg_transactions.committed // 0) committed, \(.loupe.payload_records / .wall_s | floor) records/s, \(.loupe.payload_drops) drops"' <<<"$res")"
}

if want g; then
	pg_start
	mapfile -t G_TARGETS < <(targets_for "postgres=$PG_PID")
	log "(g) pgbench -i -s $G_SCALE (127.0.0.1:$LOUPE_PG_PORT, user and database loupe)"
	env "${G_ENV[@]}" "$PGBENCH" -i -q -s "$G_SCALE" >"$work/pgbench-init.txt" 2>&1 \
		|| die "pgbench -i failed: $(tail -n 3 "$work/pgbench-init.txt")"
	for mode in select tpcb; do
		label=$([[ $mode == select ]] && echo "select-only (-S)" || echo "TPC-B-like (default script)")
		log "(g) $label: warm-up ${G_WARMUP}s (not counted)"
		pgbench_run "$mode" "$G_WARMUP" "$work/pgbench-$mode-warmup.txt" \
			|| die "warm-up pgbench run failed: $(tail -n 3 "$work/pgbench-$mode-warmup.txt")"
		log "(g) $label: $G_RUNS runs each of pgbench -M prepared -c $G_CLIENTS -j $G_THREADS -T $G_DURATION, loupe off and on alternating$(
			((SETTLE)) && echo "; loupe-on runs start ${SETTLE}s after loupe is ready")"
		for ((run = 1; run <= G_RUNS; run++)); do
			# ABBA order, as in (b).
			if ((run % 2)); then
				g_run "$mode" off "$run"
				g_run "$mode" on "$run"
			else
				g_run "$mode" on "$run"
				g_run "$mode" off "$run"
			fi
		done
	done
	# A cluster this run did not create (it is purged otherwise) keeps no pgbench tables.
	((PG_DIR_NEW)) || env "${G_ENV[@]}" "$PGBENCH" -i -I d >>"$work/pgbench-init.txt" 2>&1 \
		|| log "warning: dropping the pgbench tables failed (see $work/pgbench-init.txt)"
fi

echo >&2
"${LIB[@]}" report "$records" ${out:+--out "$out"}
[[ -z $out ]] || log "results written to $out"
