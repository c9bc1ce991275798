#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# Loupe's cost benchmark: `make bench` (docs/performance.md, "Cost benchmark", says how to read it). Root; loopback only.
#   scripts/bench-cost.sh [--quick] [--rounds N] [--only PARTS] [--conds LIST] [--base LOUPE] [--out FILE] [--keep]
#     --quick       2 rounds of shorter runs: a smoke test of the script, not figures to quote
#     --rounds N    rounds of every part (default 10 for m, a and w, 6 for p, 8 for c, 3 for b's host perf)
#     --only PARTS  some of the parts m, p, a, w, b, c (default mpawb)
#     --conds LIST  the conditions, comma-separated (default off,floor,sockfloor,on,sampled,sysoff; off is always
#                   run)
#     --base LOUPE  parts c and b (its host perf step) also run this loupe binary (another version's
#                   build/loupe), alternating with this tree's round by round; c reports the ratio per round;
#                   and the condition basesysoff runs it in parts p, a and w (--conds off,sysoff,basesysoff)
#     --out FILE    also write every record (JSON lines) to FILE
#     --keep        keep the work directory (logs, raw records)
#
# Every part runs its workload under each condition, the conditions alternating within a round (the order rotates
# from round to round), so that a figure and its baseline come from neighbouring minutes; the report gives, per
# condition, the median over rounds of the paired difference (or ratio) against "off" of the same round (in parts
# p, a and w: the off windows just before and after the condition's window), and the spread (quartiles) over
# rounds. Conditions:
#   off      nothing attached
#   floor    empty tp_btf programs on sys_enter and sys_exit (build/bench/loupe-bench-floor): what any tool on those
#            hooks costs every syscall of the host
#   on, sampled, sysoff
#            loupe run --syscalls on|sampled|off --bpf-stats off, started for the condition and measured from 1.5 s
#            after it is ready. sampled is measured outside its timing windows (the first closes 1 s after attach);
#            the report weighs it with on by the duty cycle (0.9 x sampled + 0.1 x on): its cost over time.
#   sockfloor
#            empty programs on sock:sock_send_length and sock:sock_recv_length (loupe-bench-floor --variant sock),
#            the dispatch every socket send and receive on the host pays for payload capture's hooks: the report's
#            breakdown of a goal not met counts it as the capture's dispatch ((m)'s sock_u resolves it per run)
#   nocapture, noprofile, bare
#            not run by default: the breakdown of sysoff (--conds off,sysoff,nocapture,noprofile,bare). sysoff with
#            --capture-bytes 0 (no payload capture: no HTTP, WebSocket or SQL signal), with --profile-hz 0 (no CPU
#            sampling), and with both (what is left: process tracking, TCP lifecycle, PostgreSQL's rare USDT probes)
#   basesysoff
#            not run by default: sysoff with the --base binary (--base B/build/loupe --only p --conds
#            off,sysoff,basesysoff; also parts a and w): two builds' cost in the same windows of one run, each against
#            its own off windows
# Parts:
#   m  micro-workloads (build/bench/loupe-bench-cost): a getuid() loop not targeted (syscall_u) and targeted
#      (syscall_t), one-byte write/read pairs over a Unix socketpair not targeted (sock_u), a loopback HTTP
#      request/response pair and a PostgreSQL simple-query/response pair, each between two target processes (http,
#      pg), all pinned to the last CPU (a pair on one CPU hands over without cross-CPU
#      wakeups, whose cost varies with the scheduler's placement): ns per operation (wall), the workload's CPU and
#      the host's CPU per operation (/proc/stat busy time: steal, idle and iowait excluded; loupe's reader runs on
#      the other CPU and counts there); loupe's counts checked against the operations
#   p  pgbench -S and the TPC-B-like script (-M prepared, 4 clients, 2 threads) against a private cluster that
#      loupe targets by pid, pgbench, the cluster and loupe all on the last CPU: one pgbench run per script, in
#      which each condition takes a 4 s window between two off windows (its baseline; per-second progress, the
#      median second of a window): TPS and host CPU per transaction
#   a  the reference API (tests/workload) under wrk with its mix (10 connections), as (p): one wrk run, each
#      condition in a 4 s window between two off windows (mix.lua's responses per second, the median second),
#      wrk, the API, the cluster and loupe on the last CPU: requests/s, host CPU per request, loupe's CPU
#   w  WebSocket echo throughput of the same API (ws_client.py --throughput, 8 sessions), in windows of one run as
#      (a): messages/s
#   b  where the time goes: BPF run time per program (--bpf-stats always) and loupe's own CPU by function,
#      inclusive and self (perf record --call-graph dwarf on loupe), with loupe's defaults under the API load and
#      under pgbench -S and TPC-B-like (per request, per transaction): the report's breakdown of each goal not met
#      takes them with (p), (a) and the dispatch (sockfloor, floor) of the same run; then, in 3 rounds
#      (alternating with --base), perf on the whole host under pgbench -S with --syscalls off --bpf-stats off:
#      the share of the host's samples in the capture programs, and of each kernel function they call
#   c  the capture programs' cost per record: the pinned HTTP and PostgreSQL pairs of (m) (every record is a
#      capture: both ends are targets) under loupe --syscalls off --bpf-stats always --profile-hz 0: runs of
#      pl_send and pl_recv per operation and ns per run (with --base, a comparison); then perf on the whole host over
#      one PostgreSQL pair run: the share of each kernel function a capture calls. Not in the default parts
# Env: BUILD (build), LOUPE_BENCH_PORT (19477), and the workload's LOUPE_PG_PORT/LOUPE_PG_DIR/LOUPE_API_PORT/
#      LOUPE_RUN_DIR (defaults: a private cluster and API on 55533, /tmp/loupe-cost-pg, 18181, /tmp/loupe-cost-run).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
BUILD=${BUILD:-build}
LOUPE=$top/$BUILD/loupe
FLOOR=$top/$BUILD/bench/loupe-bench-floor
COST=$top/$BUILD/bench/loupe-bench-cost
PY=/usr/bin/python3
WL=$top/tests/workload
PORT=${LOUPE_BENCH_PORT:-19477}
export LOUPE_PG_PORT=${LOUPE_PG_PORT:-55533}
export LOUPE_PG_DIR=${LOUPE_PG_DIR:-/tmp/loupe-cost-pg}
export LOUPE_API_PORT=${LOUPE_API_PORT:-18181}
export LOUPE_RUN_DIR=${LOUPE_RUN_DIR:-/tmp/loupe-cost-run}
export LOUPE_API_HOST=127.0.0.1 LOUPE_PG_HOST=127.0.0.1

quick=0 out="" parts=mpawb keep=0 rounds="" conds=off,floor,sockfloor,on,sampled,sysoff base=""
while (($#)); do
	case "$1" in
	--quick) quick=1; shift ;;
	--rounds) rounds=${2:?--rounds needs N}; shift 2 ;;
	--out) out=${2:?--out needs a FILE}; shift 2 ;;
	--only) parts=${2:?--only needs PARTS, e.g. mp}; shift 2 ;;
	--conds) conds=${2:?--conds needs a LIST, e.g. off,sysoff,bare}; shift 2 ;;
	--keep) keep=1; shift ;;
	--base) base=${2:?--base needs a loupe binary}; shift 2 ;;
	-h|--help) sed -n '2,/^set /p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench-cost.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
done
[[ $parts =~ ^[mpawbc]+$ ]] || { echo "bench-cost.sh: --only takes letters from mpawbc (got '$parts')" >&2; exit 2; }
[[ -z $base || -x $base ]] || { echo "bench-cost.sh: --base $base is not an executable" >&2; exit 2; }
[[ -z $base || $parts =~ ^[bcpaw]+$ ]] || { echo "bench-cost.sh: --base is for parts b and c, and for p, a and w (their condition basesysoff); not for m" >&2; exit 2; }
[[ -z $rounds || $rounds =~ ^[1-9][0-9]*$ ]] || { echo "bench-cost.sh: --rounds takes a positive number (got '$rounds')" >&2; exit 2; }
want() { [[ $parts == *"$1"* ]]; }
if ((quick)); then
	M_ROUNDS=2 P_ROUNDS=2 A_ROUNDS=2 W_ROUNDS=2 C_ROUNDS=2 B_HOST_ROUNDS=1 SYSCALL_OPS=500000 SOCK_OPS=200000 PAIR_OPS=5000 P_WINDOW=2
else
	M_ROUNDS=10 P_ROUNDS=6 A_ROUNDS=10 W_ROUNDS=10 C_ROUNDS=8 B_HOST_ROUNDS=3 SYSCALL_OPS=3000000 SOCK_OPS=1000000 PAIR_OPS=30000 P_WINDOW=4
fi
[[ -n $rounds ]] && M_ROUNDS=$rounds P_ROUNDS=$rounds A_ROUNDS=$rounds W_ROUNDS=$rounds C_ROUNDS=$rounds B_HOST_ROUNDS=$rounds
SETTLE=1.5
IFS=, read -r -a CONDS <<<"off,${conds#off}"
mapfile -t CONDS < <(printf '%s\n' "${CONDS[@]}" | awk 'NF && !seen[$0]++')
for c in "${CONDS[@]}"; do
	[[ $c =~ ^(off|floor|sockfloor|on|sampled|sysoff|nocapture|noprofile|bare|basesysoff)$ ]] \
		|| { echo "bench-cost.sh: unknown condition '$c' (off floor sockfloor on sampled sysoff nocapture noprofile bare basesysoff)" >&2; exit 2; }
	[[ $c != basesysoff || -n $base ]] || { echo "bench-cost.sh: condition basesysoff needs --base LOUPE" >&2; exit 2; }
done

log() { printf '[cost %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
LOUPE_ARGS=()
# shellcheck source=bench-common.sh
source "$top/scripts/bench-common.sh"

[[ $(id -u) -eq 0 ]] || die "needs root (BPF programs): run as root"
for tool in bpftool curl jq; do command -v $tool >/dev/null || die "$tool not found (apt-get install $tool)"; done
[[ -x $PY ]] || die "$PY not found (apt-get install python3)"
want a && { command -v wrk >/dev/null || die "wrk not found (apt-get install wrk)"; }
want b && { command -v wrk >/dev/null && command -v perf >/dev/null || die "part b needs wrk and perf (apt-get install wrk linux-perf)"; }
want w && { "$PY" -c 'import websockets' 2>/dev/null || die "$PY cannot import websockets (apt-get install python3-websockets)"; }
PGBENCH=${LOUPE_PG_BIN:-/usr/lib/postgresql/15/bin}/pgbench
want p || want b && { [[ -x $PGBENCH ]] || PGBENCH=$(command -v pgbench) || die "pgbench not found (apt-get install postgresql-15)"; }
log "building loupe and the benchmark programs"
make -s "$BUILD/loupe" bench-bins >&2 || die "build failed"
curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/healthz" && die "something listens on 127.0.0.1:$PORT already (set LOUPE_BENCH_PORT)"

work=$(mktemp -d /tmp/loupe-cost.XXXXXX)
records=$work/records.jsonl
: >"$records"
LOUPE_PID="" FLOOR_PID="" STARTED_PG=0 STARTED_API=0 PG_DIR_NEW=0 RUN_DIR_NEW=0 PG_PID="" BG_PID=""

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_pid "$BG_PID"
	stop_pid "$LOUPE_PID"
	stop_pid "$FLOOR_PID"
	((STARTED_API)) && { "$WL/api-stop.sh" >>"$work/workload.log" 2>&1 || log "warning: api-stop.sh failed"; }
	if ((STARTED_PG)); then
		local purge=()
		((PG_DIR_NEW)) && purge=(--purge)
		"$WL/pg-stop.sh" "${purge[@]}" >>"$work/workload.log" 2>&1 || log "warning: pg-stop.sh failed"
	fi
	[[ -n $out && -s $records ]] && cp "$records" "$out"
	if ((keep || rc)); then log "work directory kept: $work"; else rm -rf "$work"; ((RUN_DIR_NEW)) && rm -rf "$LOUPE_RUN_DIR"; fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
record() { printf '%s\n' "$1" >>"$records"; }

# Host busy and steal seconds so far (/proc/stat "cpu": user nice system idle iowait irq softirq steal).
host_cpu() { awk -v hz="$(getconf CLK_TCK)" '/^cpu / { printf "{\"busy_s\":%.2f,\"steal_s\":%.2f}", ($2 + $3 + $4 + $7 + $8) / hz, $9 / hz; exit }' /proc/stat; }
# A process's CPU seconds, to the nanosecond: the sum of its threads' run time (/proc/PID/task/*/schedstat; the
# clock ticks of /proc/PID/stat are 10 ms, too coarse for a daemon using ~50 ms in a 5 s round).
proc_cpu() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ ns += $1 } END { printf "%.6f", ns / 1e9 }'; }
scrape() { curl -s -f --max-time 10 -o "$1" "http://127.0.0.1:$PORT/metrics"; }
# Sum of a metric's samples whose labels include the given ones (name label=value ...).
sample() { "$PY" "$top/tests/bench/benchlib.py" sample "$@"; }

# Set up a condition for the given loupe targets: cond_start COND target...
cond_start() {
	local cond=$1
	shift
	case $cond in
	off) return 0 ;;
	floor) floor_start ;;
	sockfloor) floor_start --variant sock ;;
	on|sampled) loupe_start --syscalls "$cond" --bpf-stats off "$@" ;;
	sysoff) loupe_start --syscalls off --bpf-stats off "$@" ;;
	nocapture) loupe_start --syscalls off --bpf-stats off --capture-bytes 0 "$@" ;;
	noprofile) loupe_start --syscalls off --bpf-stats off --profile-hz 0 "$@" ;;
	bare) loupe_start --syscalls off --bpf-stats off --capture-bytes 0 --profile-hz 0 "$@" ;;
	basesysoff) LOUPE=$base loupe_start --syscalls off --bpf-stats off "$@" ;;
	default) loupe_start "$@" ;;
	esac
	sleep "$SETTLE"
}
cond_stop() { stop_pid "$LOUPE_PID"; LOUPE_PID=""; stop_pid "$FLOOR_PID"; FLOOR_PID=""; }
# The conditions of round r, rotated so that each takes each place in turn.
order() { local r=$1 n=${#CONDS[@]} i; for ((i = 0; i < n; i++)); do echo "${CONDS[(i + r) % n]}"; done; }

# How busy the host was before the benchmark began (2 s of /proc/stat): another job (a build, a fuzzer) makes every
# figure noisy, and the host CPU per operation wrong. Recorded, printed in the report's header, and warned about.
b0=$(host_cpu)
sleep 2
b1=$(host_cpu)
busy_pct=$(jq -nr --argjson a "$b0" --argjson b "$b1" --arg n "$(nproc)" '(($b.busy_s - $a.busy_s) / 2 / ($n | tonumber) * 100) | floor')
((busy_pct < 10)) || log "warning: the host was ${busy_pct}% busy before the benchmark began: its figures will be noisy"
record "$(jq -nc --arg date "$(date -u '+%Y-%m-%d %H:%M UTC')" --arg kernel "$(uname -r)" --arg nproc "$(nproc)" \
	--arg cpu "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)" --arg git "$(git rev-parse --short=12 HEAD 2>/dev/null || echo ?)" \
	--argjson busy "$busy_pct" --arg parts "$parts" --argjson quick "$quick" --arg default "$("$LOUPE" run --help | sed -n 's/.*--syscalls MODE.*: \([a-z]*\) (the default.*/\1/p' | head -n 1)" \
	'{part:"machine",date:$date,kernel:$kernel,nproc:$nproc,cpu:$cpu,git:$git,parts:$parts,quick:($quick==1),default_syscalls:$default,busy_before_pct:$busy}')"
log "$(nproc) CPUs, Linux $(uname -r); work directory $work"

# ------------------------------------------------------------------------------------------------ m
if want m; then
	ln -s "$COST" "$work/lbc-t"
	ln -s "$COST" "$work/lbc-u"
	log "(m) $M_ROUNDS rounds x ${#CONDS[@]} conditions: getuid loop (untargeted, targeted) x $SYSCALL_OPS, socketpair (untargeted) x $SOCK_OPS, HTTP and PostgreSQL pairs x $PAIR_OPS"
	for ((r = 1; r <= M_ROUNDS; r++)); do
		for cond in $(order "$r"); do
			cond_start "$cond" --target 'bench=comm:^lbc-t$'
			[[ -n $LOUPE_PID ]] && scrape "$work/m0.txt"
			line=""
			for wl in syscall_u syscall_t sock_u http pg; do
				c0=$([[ -n $LOUPE_PID ]] && proc_cpu "$LOUPE_PID" || echo 0)
				case $wl in
				syscall_u) res=$("$work/lbc-u" syscall -n "$SYSCALL_OPS") ;;
				syscall_t) res=$("$work/lbc-t" syscall -n "$SYSCALL_OPS") ;;
				sock_u) res=$("$work/lbc-u" sock -n "$SOCK_OPS") ;;
				*) res=$("$work/lbc-t" "$wl" -n "$PAIR_OPS") ;;
				esac
				# loupe's own CPU over the workload (the records it reads arrive within PL_POLL_MS of the end).
				[[ -n $LOUPE_PID && ($wl == http || $wl == pg) ]] && sleep 0.3
				c1=$([[ -n $LOUPE_PID ]] && proc_cpu "$LOUPE_PID" || echo 0)
				record "$(jq -c --arg cond "$cond" --argjson round "$r" --arg wl "$wl" --argjson c0 "$c0" --argjson c1 "$c1" \
					'. + {part:"m",cond:$cond,round:$round,wl:$wl,loupe_cpu_s:($c1 - $c0)}' <<<"$res")"
				line+=" $wl $(jq -r '.wall_ns_per_op | floor' <<<"$res")"
				if [[ $wl == http || $wl == pg ]] && [[ -n $LOUPE_PID && $cond != nocapture && $cond != bare ]]; then
					# Ground truth: every request and statement, warm-up included, counted on the server side.
					scrape "$work/m1.txt"
					want_n=$(jq '.ops + .warmup_ops' <<<"$res")
					if [[ $wl == http ]]; then
						m=(http_server_request_duration_seconds_count service_name=bench)
					else
						m=(loupe_postgres_query_duration_seconds_count service_name=bench)
					fi
					got=$(( $(sample "$work/m1.txt" "${m[@]}") - $(sample "$work/m0.txt" "${m[@]}") ))
					d=(loupe_events_dropped_total feature=payload)
					drops=$(( $(sample "$work/m1.txt" "${d[@]}") - $(sample "$work/m0.txt" "${d[@]}") ))
					record "$(jq -nc --arg cond "$cond" --argjson round "$r" --arg wl "$wl" --argjson want "$want_n" --argjson got "$got" \
						--argjson drops "$drops" '{part:"m",kind:"count",cond:$cond,round:$round,wl:$wl,want:$want,got:$got,drops:$drops}')"
					((got == want_n)) || log "warning: (m) $cond $wl: loupe counted $got of $want_n ($drops capture records dropped)"
					cp "$work/m1.txt" "$work/m0.txt"
				fi
			done
			cond_stop
			log "(m) round $r $(printf '%-7s' "$cond") ns/op:$line"
		done
	done
fi

# --------------------------------------------------------------------------------------- workload
api_start() {
	((STARTED_API)) && return 0
	pg_start
	[[ -e $LOUPE_RUN_DIR ]] || RUN_DIR_NEW=1
	log "starting the API (127.0.0.1:$LOUPE_API_PORT)"
	STARTED_API=1
	"$WL/api-start.sh" >>"$work/workload.log" 2>&1 || { tail -n 5 "$work/workload.log" >&2; die "api-start.sh failed"; }
	SEED_IDS=$("$PY" "$WL/seed.py" --ids-only 2>>"$work/workload.log") || die "seed.py failed (see $work/workload.log)"
	API_TARGETS=(--target "api=pid:$(cat "$LOUPE_RUN_DIR/api.pid")" --target "postgres=pid:$PG_PID")
}
WRK_PIN=()
wrk_run() { # seconds outfile
	"${WRK_PIN[@]}" wrk -d "${1}s" -c 10 -t 2 --timeout 10s -s "$WL/mix.lua" "http://127.0.0.1:$LOUPE_API_PORT" -- mix "$SEED_IDS" >"$2" 2>&1
}
G_ENV=(PGHOST=127.0.0.1 "PGPORT=$LOUPE_PG_PORT" PGUSER=loupe PGDATABASE=loupe)
PG_INIT=0
pgbench_init() {
	((PG_INIT)) && return 0
	pg_start
	log "pgbench -i -s 10"
	env "${G_ENV[@]}" "$PGBENCH" -i -q -s 10 >"$work/pgbench-init.txt" 2>&1 || die "pgbench -i failed: $(tail -n 3 "$work/pgbench-init.txt")"
	PG_INIT=1
}

# ------------------------------------------------------------------------------------------------ p
# One pgbench run per script, its throughput reported every second (-P 1 --progress-timestamp); the conditions take
# turns in windows of it, each between two windows with nothing attached (off): a condition's figure is its window
# against the mean of those two, seconds apart. pgbench, the cluster's processes and loupe run on one CPU (P_CPU),
# as (m)'s pairs do: on two CPUs the scheduler's placement of pgbench's threads and the backends moved throughput in
# steps of 10-20% that outlasted a window (each start or stop of loupe could move them), and loupe's reader could
# run in the other CPU's idle time, its cost unseen. On one CPU every cycle any of them spends is the others' loss.
P_CPU=$(($(nproc) - 1))
pin_cluster() { local p; for p in "$PG_PID" $(pgrep -P "$PG_PID"); do taskset -a -p -c "$1" "$p" >/dev/null 2>&1; done; }
pin_api() { local p; for p in "$API_PID" $(pgrep -P "$API_PID"); do taskset -a -p -c "$1" "$p" >/dev/null 2>&1; done; pin_cluster "$1"; }
sleep_until() { sleep "$(awk -v t="$1" -v n="$(date +%s.%N)" 'BEGIN { d = t - n; printf "%.3f", (d > 0 ? d : 0) }')"; }
win_mark() { # COND ROUND [align]: open a window (the condition is running and settled); with align, at the next
	# wall-clock second (part a: mix.lua counts responses per wall-clock second, so the window holds P_WINDOW whole
	# seconds rather than one fewer)
	[[ -n ${3:-} ]] && sleep_until "$(awk -v n="$(date +%s.%N)" 'BEGIN { printf "%d.03", int(n) + 1 }')"
	W_COND=$1 W_ROUND=$2 W_T0=$(date +%s.%N) W_H0=$(host_cpu) W_C0=0 W_ALIGN=${3:-}
	[[ -n $LOUPE_PID ]] && W_C0=$(proc_cpu "$LOUPE_PID")
	return 0
}
win_close() { # WINDOWS_FILE: close it after P_WINDOW seconds (aligned: just before the end of its last second), and note it
	local c1=0 h1
	if [[ -n $W_ALIGN ]]; then
		sleep_until "$(awk -v t="$W_T0" -v w="$P_WINDOW" 'BEGIN { printf "%.3f", int(t) + w - 0.03 }')"
	else
		sleep "$P_WINDOW"
	fi
	h1=$(host_cpu)
	[[ -n $LOUPE_PID ]] && c1=$(proc_cpu "$LOUPE_PID")
	jq -nc --arg cond "$W_COND" --argjson round "$W_ROUND" --arg t0 "$W_T0" --arg t1 "$(date +%s.%N)" --argjson h0 "$W_H0" \
		--argjson h1 "$h1" --argjson c0 "$W_C0" --argjson c1 "$c1" \
		'{cond:$cond,round:$round,t0:($t0 | tonumber),t1:($t1 | tonumber),host_busy_s:($h1.busy_s - $h0.busy_s),host_steal_s:($h1.steal_s - $h0.steal_s),loupe_cpu_s:($c1 - $c0)}' >>"$1"
}
# The conditions in windows of the load running as BG_PID, each between two off windows, round by round; then the
# load is stopped. cond_windows PART ROUNDS WINDOWS_FILE LOAD_LOG ALIGN TARGET_ARGS... (ALIGN: "" or align)
cond_windows() {
	local part=$1 rounds=$2 wins=$3 loadlog=$4 align=$5 r cond
	shift 5
	for ((r = 1; r <= rounds; r++)); do
		for cond in $(order "$r"); do
			[[ $cond == off ]] && continue
			win_mark off "$r" $align
			win_close "$wins"
			cond_start "$cond" "$@"
			if [[ -n $LOUPE_PID ]]; then # started and settled on any CPU, measured on P_CPU
				taskset -a -p -c "$P_CPU" "$LOUPE_PID" >/dev/null
				sleep 0.5
			fi
			win_mark "$cond" "$r" $align
			win_close "$wins"
			cond_stop
			sleep 0.5 # the detach's after-work (RCU, the reader's exit) stays out of the next window
			kill -0 "$BG_PID" 2>/dev/null || die "($part) the load ended early: $(tail -n 3 "$loadlog")"
		done
		log "($part) round $r done"
	done
	win_mark off 0 $align
	win_close "$wins"
	kill -TERM "$BG_PID" 2>/dev/null # (SIGINT: ignored by a background job of a script)
	wait "$BG_PID" 2>/dev/null || true
	BG_PID=""
}
if want p; then
	pgbench_init
	pin_cluster "$P_CPU"
	for mode in select tpcb; do
		script=()
		[[ $mode == select ]] && script=(-S)
		env "${G_ENV[@]}" taskset -c "$P_CPU" "$PGBENCH" -n "${script[@]}" -M prepared -c 4 -j 2 -T 3 >/dev/null 2>&1 \
			|| die "pgbench warm-up failed"
		prog=$work/pgbench-$mode-progress.txt wins=$work/pgbench-$mode-windows.jsonl
		: >"$wins"
		ncond=$(order 1 | grep -vc '^off$')
		# off + the condition's start, settling and window + stop, per condition and round (~12 s of 20), and a margin
		total=$(( 5 + P_ROUNDS * ncond * (2 * P_WINDOW + 12) + 60 )) # killed after the last window anyway
		env "${G_ENV[@]}" taskset -c "$P_CPU" "$PGBENCH" -n "${script[@]}" -M prepared -c 4 -j 2 -T "$total" -P 1 --progress-timestamp \
			>"$work/pgbench-$mode.txt" 2>"$prog" &
		BG_PID=$!
		sleep 2
		log "(p) $mode: $P_ROUNDS rounds x $ncond conditions in ${P_WINDOW} s windows of one pgbench run, each between two off windows; all on CPU $P_CPU"
		cond_windows "p $mode" "$P_ROUNDS" "$wins" "$work/pgbench-$mode.txt" "" --target "postgres=pid:$PG_PID"
		while read -r line; do
			record "$(jq -c --arg mode "$mode" '. + {part:"p",mode:$mode}' <<<"$line")"
			log "(p) $mode round $(jq -r '.round' <<<"$line") $(printf '%-7s' "$(jq -r '.cond' <<<"$line")") $(
				jq -r '"\(.tps | floor) tps against \(.off_tps | floor) off"' <<<"$line")"
		done < <("$PY" "$top/tests/bench/benchlib.py" pgwindows "$prog" "$wins")
	done
	pin_cluster "0-$P_CPU"
fi

# ------------------------------------------------------------------------------------------------ a
# As (p): one wrk run (mix.lua writes each thread's responses per second), the conditions in windows of it, each
# between two off windows; wrk, the API's processes and the cluster's on one CPU. In separate 5 s runs on two CPUs,
# the API's throughput spread by 5-15% within a run (docs/performance.md), more than the goal's margin.
if want a; then
	api_start
	API_PID=$(cat "$LOUPE_RUN_DIR/api.pid")
	pin_api "$P_CPU"
	WRK_PIN=(taskset -c "$P_CPU")
	wrk_run 3 "$work/wrk-warmup.txt" || die "wrk warm-up failed: $(tail -n 3 "$work/wrk-warmup.txt")"
	secs=$work/wrk-seconds wins=$work/wrk-windows.jsonl
	rm -f "$secs".*
	: >"$wins"
	ncond=$(order 1 | grep -vc '^off$')
	total=$(( 5 + A_ROUNDS * ncond * (2 * P_WINDOW + 12) + 60 )) # killed after the last window anyway
	LOUPE_WRK_SECONDS=$secs "${WRK_PIN[@]}" wrk -d "${total}s" -c 10 -t 2 --timeout 10s -s "$WL/mix.lua" \
		"http://127.0.0.1:$LOUPE_API_PORT" -- mix "$SEED_IDS" >"$work/wrk-a.txt" 2>&1 &
	BG_PID=$!
	sleep 2
	log "(a): $A_ROUNDS rounds x $ncond conditions in ${P_WINDOW} s windows of one wrk run, each between two off windows; all on CPU $P_CPU"
	cond_windows a "$A_ROUNDS" "$wins" "$work/wrk-a.txt" align "${API_TARGETS[@]}"
	WRK_PIN=()
	while read -r line; do
		record "$(jq -c '. + {part:"a"}' <<<"$line")"
		log "(a) round $(jq -r '.round' <<<"$line") $(printf '%-7s' "$(jq -r '.cond' <<<"$line")") $(
			jq -r '"\(.rps | floor) req/s against \(.off_rps | floor) off"' <<<"$line")"
	done < <("$PY" "$top/tests/bench/benchlib.py" secwindows "$secs" "$wins")
	pin_api "0-$P_CPU"
fi

# ------------------------------------------------------------------------------------------------ w
# As (a): one ws_client.py run (its echoes per second), the conditions in windows of it; client, API, cluster and
# loupe on one CPU.
if want w; then
	api_start
	API_PID=$(cat "$LOUPE_RUN_DIR/api.pid")
	pin_api "$P_CPU"
	secs=$work/ws-seconds wins=$work/ws-windows.jsonl
	rm -f "$secs".*
	: >"$wins"
	ncond=$(order 1 | grep -vc '^off$')
	total=$(( 5 + W_ROUNDS * ncond * (2 * P_WINDOW + 12) + 60 ))
	taskset -c "$P_CPU" "$PY" "$WL/ws_client.py" --throughput --sessions 8 --duration "$total" --size 32 --host 127.0.0.1 \
		--port "$LOUPE_API_PORT" --seconds-file "$secs.1" >"$work/ws-w.json" 2>&1 &
	BG_PID=$!
	sleep 2
	log "(w): $W_ROUNDS rounds x $ncond conditions in ${P_WINDOW} s windows of one WebSocket echo run, each between two off windows; all on CPU $P_CPU"
	cond_windows w "$W_ROUNDS" "$wins" "$work/ws-w.json" align "${API_TARGETS[@]}"
	while read -r line; do
		record "$(jq -c '. + {part:"w"}' <<<"$line")"
		log "(w) round $(jq -r '.round' <<<"$line") $(printf '%-7s' "$(jq -r '.cond' <<<"$line")") $(
			jq -r '"\(.messages_per_s | floor) messages/s against \(.off_messages_per_s | floor) off"' <<<"$line")"
	done < <("$PY" "$top/tests/bench/benchlib.py" secwindows "$secs" "$wins" messages_per_s messages)
	pin_api "0-$P_CPU"
fi

# BPF run time and runs per program between two `benchlib.py progstats` files: progs_delta BEFORE AFTER -> JSON array.
progs_delta() {
	jq -nc --slurpfile a "$1" --slurpfile b "$2" '[$b[0].progs // {} | to_entries[] | .key as $k |
		{name:$k, runs:(.value.run_cnt - ($a[0].progs[$k].run_cnt // 0)),
		 run_time_ns:(.value.run_time_ns - ($a[0].progs[$k].run_time_ns // 0))}]'
}

# Where the capture programs' time goes: of a host-wide perf record (-a -g), the samples whose call chain passes
# through bpf_trace_run3 (the socket tracepoints' call into BPF programs), their share of all samples, and each
# function's share of them, counted only below bpf_trace_run3 (the TCP stack's own usercopy checks are not the
# capture's): perf_under PART LOAD DATA
perf_under() { # PART LOAD DATA [BUILD ROUND]
	local part=$1 load=$2 data=$3 build=${4:-new} round=${5:-1} res
	[[ -s $data ]] || return 0
	res=$("$PY" "$top/tests/bench/benchlib.py" perfunder "$data") || { log "warning: perf script failed on $data"; return 0; }
	record "$(jq -c --arg part "$part" --arg load "$load" --arg build "$build" --argjson round "$round" \
		'{part:$part,kind:"perfunder",load:$load,build:$build,round:$round} + .' <<<"$res")"
}

# ------------------------------------------------------------------------------------------------ c
# The capture programs' run time per record, in the pinned pairs of (m), for this tree's loupe and (--base) another;
# then where a capture's time goes (perf_under).
if want c; then
	command -v perf >/dev/null || die "part c needs perf (apt-get install linux-perf)"
	builds=(new)
	[[ -n $base ]] && builds+=(base)
	[[ -e $work/lbc-t ]] || ln -s "$COST" "$work/lbc-t"
	log "(c) $C_ROUNDS rounds x ${#builds[@]} builds: HTTP and PostgreSQL pairs x $PAIR_OPS, capture programs' run time"
	this_loupe=$LOUPE
	for ((r = 1; r <= C_ROUNDS; r++)); do
		order_c=("${builds[@]}")
		((r % 2 == 0 && ${#builds[@]} == 2)) && order_c=(base new)
		for build in "${order_c[@]}"; do
			LOUPE=$this_loupe
			[[ $build == base ]] && LOUPE=$base
			loupe_start --syscalls off --bpf-stats always --profile-hz 0 --target 'bench=comm:^lbc-t$'
			sleep "$SETTLE"
			line=""
			for wl in http pg; do
				"$PY" "$top/tests/bench/benchlib.py" progstats "$LOUPE_PID" >"$work/c-prog0.json"
				res=$("$work/lbc-t" "$wl" -n "$PAIR_OPS")
				"$PY" "$top/tests/bench/benchlib.py" progstats "$LOUPE_PID" >"$work/c-prog1.json"
				rec=$(jq -c --argjson progs "$(progs_delta "$work/c-prog0.json" "$work/c-prog1.json")" --arg build "$build" \
					--argjson round "$r" --arg wl "$wl" \
					'{part:"c",build:$build,round:$round,wl:$wl,ops:(.ops + .warmup_ops),wall_ns_per_op:.wall_ns_per_op,
					  progs:[$progs[] | select(.name | startswith("pl_send") or startswith("pl_recv"))]}' <<<"$res")
				record "$rec"
				line+=" $wl $(jq -r '[.progs[] | select(.runs > 0) | "\(.name) \(.run_time_ns / .runs | floor)"] | join(" ")' <<<"$rec")"
			done
			loupe_stop
			log "(c) round $r $(printf '%-4s' "$build") ns/run:$line"
		done
	done
	LOUPE=$this_loupe
	# Where a capture's time goes: the whole host sampled (cpu-clock, call chains) over one PostgreSQL pair run, and
	# the inclusive share of the capture programs and of the kernel functions they call.
	loupe_start --syscalls off --bpf-stats off --profile-hz 0 --target 'bench=comm:^lbc-t$'
	sleep "$SETTLE"
	perf record -q -a -g -F 4999 -o "$work/perf-capture.data" -- "$work/lbc-t" pg -n $((PAIR_OPS * 10)) >/dev/null 2>&1 \
		|| log "warning: perf record failed"
	loupe_stop
	perf_under c pair "$work/perf-capture.data"
fi

# ------------------------------------------------------------------------------------------------ b
# BPF run time per program and perf of loupe over one run of a load: b_profile LOAD UNIT RESULT-PARSER CMD... (loupe
# already started; RESULT-PARSER is benchlib.py's parser of the load's output, whose field UNIT is the work done).
b_profile() { # LOAD UNIT PARSER MODE CMD...: MODE the --syscalls mode loupe runs in
	local load=$1 unit=$2 parser=$3 mode=$4 n
	shift 4
	sleep 3
	"$PY" "$top/tests/bench/benchlib.py" progstats "$LOUPE_PID" >"$work/b-$load-prog0.json"
	"$@" >"$work/b-$load.txt" 2>&1 &
	BG_PID=$!
	sleep 1
	perf record -q --call-graph dwarf,16384 -F 4999 -p "$LOUPE_PID" -o "$work/perf-$load.data" -- sleep 15 >/dev/null 2>&1 \
		|| log "warning: perf record failed"
	wait "$BG_PID" || true
	BG_PID=""
	"$PY" "$top/tests/bench/benchlib.py" progstats "$LOUPE_PID" >"$work/b-$load-prog1.json"
	n=$("$PY" "$top/tests/bench/benchlib.py" "$parser" "$work/b-$load.txt" | jq --arg u "$unit" '.[$u] // 0')
	record "$(jq -nc --argjson progs "$(progs_delta "$work/b-$load-prog0.json" "$work/b-$load-prog1.json")" --argjson n "$n" \
		--arg load "$load" --arg unit "$unit" --arg mode "$mode" \
		'{part:"b",kind:"bpf",load:$load,mode:$mode,unit:$unit,requests:$n,progs:$progs}')"
	cond_stop
	if [[ -s $work/perf-$load.data ]]; then
		# Inclusive time (children) of each function, call chains from DWARF: which feature's work it is.
		perf report -i "$work/perf-$load.data" --children --sort symbol --stdio -q --percent-limit 3 -g none 2>/dev/null \
			| grep -E '^ +[0-9.]+%' | grep -v ' 0x0000' | head -n 45 >"$work/perf-$load-top.txt" || true
		# Self time of each function: where the CPU is spent (the goals' breakdown turns it into us per unit).
		perf report -i "$work/perf-$load.data" --no-children --sort symbol --stdio -q --percent-limit 1 -g none 2>/dev/null \
			| grep -E '^ +[0-9.]+%' | head -n 25 >"$work/perf-$load-self.txt" || true
		record "$(jq -Rsc --arg load "$load" --arg mode "$mode" --rawfile self "$work/perf-$load-self.txt" \
			'def lines: split("\n") | map(select(length > 0) | gsub("^ +"; ""));
			 {part:"b",kind:"perf",load:$load,mode:$mode,top:lines,self:($self | lines)}' <"$work/perf-$load-top.txt")"
	fi
}
if want b; then
	api_start
	log "(b) loupe's defaults with --bpf-stats always, under the API load: BPF run time per program, and perf on loupe"
	loupe_start --bpf-stats always "${API_TARGETS[@]}"
	b_profile api requests wrk default wrk_run 17 /dev/stdout
	pgbench_init
	for script in select tpcb; do
		log "(b) loupe's defaults with --bpf-stats always, under pgbench $script: BPF run time per program, and perf on loupe"
		loupe_start --bpf-stats always --target "postgres=pid:$PG_PID"
		sargs=()
		[[ $script == select ]] && sargs=(-S)
		b_profile "pgbench-$script" transactions pgbench default env "${G_ENV[@]}" "$PGBENCH" -n "${sargs[@]}" -M prepared -c 4 -j 2 -T 17
	done
	# The host under pgbench -S: B_HOST_ROUNDS rounds of perf -a over 5 s, alternating with the --base build.
	this_loupe=$LOUPE
	builds=(new)
	[[ -n $base ]] && builds+=(base)
	for ((r = 1; r <= B_HOST_ROUNDS; r++)); do
		for build in "${builds[@]}"; do
			LOUPE=$this_loupe
			[[ $build == base ]] && LOUPE=$base
			log "(b) round $r $build: loupe --syscalls off under pgbench -S, where the capture programs' time goes (perf -a, 5 s)"
			loupe_start --syscalls off --bpf-stats off --profile-hz 0 --target "postgres=pid:$PG_PID"
			sleep "$SETTLE"
			c0=$(proc_cpu "$LOUPE_PID")
			env "${G_ENV[@]}" "$PGBENCH" -n -S -M prepared -c 4 -j 2 -T 8 >"$work/b-pgbench-perf.txt" 2>&1 &
			BG_PID=$!
			sleep 1
			perf record -q -a -g -F 4999 -o "$work/perf-pgbench-host-$build-$r.data" -- sleep 5 >/dev/null 2>&1 \
				|| log "warning: perf record failed"
			wait "$BG_PID" || true
			BG_PID=""
			# loupe's CPU over the pgbench run (the reader drains the rings within PL_POLL_MS of its end)
			sleep 0.3
			c1=$(proc_cpu "$LOUPE_PID")
			loupe_stop
			record "$(jq -c --arg build "$build" --argjson round "$r" --argjson c0 "$c0" --argjson c1 "$c1" \
				'{part:"b",kind:"hostloupe",load:"pgbench",build:$build,round:$round,loupe_cpu_s:($c1 - $c0)} + .' \
				<<<"$("$PY" "$top/tests/bench/benchlib.py" pgbench "$work/b-pgbench-perf.txt")")"
			perf_under b pgbench "$work/perf-pgbench-host-$build-$r.data" "$build" "$r"
		done
	done
	LOUPE=$this_loupe
fi
((PG_INIT && !PG_DIR_NEW)) && { env "${G_ENV[@]}" "$PGBENCH" -i -I d >>"$work/pgbench-init.txt" 2>&1 || true; }

echo >&2
"$PY" "$top/tests/bench/costreport.py" "$records"
