#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# Soak test: loupe (every feature on but per-query USDT) watching the reference workload for HOURS under load,
# restarts and churn, sampled every minute; the report says whether its RSS and open fds grew after warm-up (the
# target: under 1%), and gives its CPU, the fullest BPF hash maps and the drops. Root; loopback only.
#   scripts/soak.sh HOURS [--out FILE] [--sample SECONDS]
#     HOURS           how long (a decimal: 0.1 is 6 minutes); docs/performance.md quotes a 1-hour run
#     --out FILE      the samples and events, JSON lines (default: build/soak/soak-DATE.jsonl)
#     --sample S      seconds between samples (default 60)
# The load, all the while: tests/workload/demo-load.sh at ~40 requests/s with WebSocket sessions reconnecting
# every 5 s. The churn: every 30 s a burst of 40 new HTTP connections and 10 new PostgreSQL sessions (backends
# forked and gone); every 5 minutes the API restarted (new processes, pools reconnecting); every 20 minutes
# PostgreSQL restarted, then the API. loupe itself is never restarted: its growth is what is measured.
# Env: LOUPE_SOAK_PORT (19478); the workload's LOUPE_PG_PORT (55544), LOUPE_API_PORT (18188), LOUPE_PG_DIR and
# LOUPE_RUN_DIR (under /tmp/loupe-soak).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
PY=/usr/bin/python3
WL=$top/tests/workload
usage() { sed -n '2,/^set /p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; }
hours=${1:-}
[[ $hours == -h || $hours == --help ]] && { usage; exit 0; }
if ! [[ $hours =~ ^[0-9]+(\.[0-9]+)?$ ]] || [[ $hours =~ ^0+(\.0*)?$ ]]; then
	echo "soak.sh: HOURS must be a positive number, e.g. 1 or 0.25 (got '${hours}'; see --help)" >&2
	exit 2
fi
shift
out="" every=60
while (($#)); do
	case "$1" in
	--out) out=${2:?--out needs a FILE}; shift 2 ;;
	--sample) every=${2:?--sample needs SECONDS}; shift 2 ;;
	*) echo "soak.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
done
[[ $every =~ ^[1-9][0-9]*$ ]] || { echo "soak.sh: --sample takes a number of seconds (got '$every')" >&2; exit 2; }
PORT=${LOUPE_SOAK_PORT:-19478}
export LOUPE_PG_PORT=${LOUPE_PG_PORT:-55544} LOUPE_API_PORT=${LOUPE_API_PORT:-18188}
export LOUPE_PG_DIR=${LOUPE_PG_DIR:-/tmp/loupe-soak/pg} LOUPE_RUN_DIR=${LOUPE_RUN_DIR:-/tmp/loupe-soak/run}
export LOUPE_API_HOST=127.0.0.1 LOUPE_PG_HOST=127.0.0.1
mkdir -p build/soak "$LOUPE_RUN_DIR"
out=${out:-build/soak/soak-$(date -u +%Y%m%d-%H%M).jsonl}
logdir=$LOUPE_RUN_DIR

log() { printf '[soak %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
[[ $(id -u) -eq 0 ]] || die "needs root (BPF programs): run as root"
command -v bpftool >/dev/null || die "bpftool not found (apt-get install bpftool)"
make -s build/loupe >&2 || die "build failed"
curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/healthz" && die "something listens on 127.0.0.1:$PORT (set LOUPE_SOAK_PORT)"

LOUPE_PID="" LOAD_PID=""
event() { printf '{"t":%s,"event":"%s"}\n' "$(date +%s.%N)" "$1" >>"$out"; }
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	[[ -n $LOAD_PID ]] && { kill -TERM "$LOAD_PID" 2>/dev/null; wait "$LOAD_PID" 2>/dev/null || true; }
	[[ -n $LOUPE_PID ]] && { kill -TERM "$LOUPE_PID" 2>/dev/null; wait "$LOUPE_PID" 2>/dev/null || true; }
	"$WL/api-stop.sh" >>"$logdir/workload.log" 2>&1 || true
	"$WL/pg-stop.sh" --purge >>"$logdir/workload.log" 2>&1 || true
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

: >"$out"
log "loupe on 127.0.0.1:$PORT (--offcpu); samples every ${every}s into $out"
# Its own workload only (other PostgreSQL and API processes on the host are not its business): the postmaster by
# its data directory, uvicorn by its port; children inherit their parent's service.
build/loupe run --listen "127.0.0.1:$PORT" --offcpu --target "postgres=cmdline:$LOUPE_PG_DIR" \
	--target "api=cmdline:--port $LOUPE_API_PORT" 2>>"$logdir/loupe.log" &
LOUPE_PID=$!
for ((i = 0; i < 300; i++)); do curl -s -f -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/readyz" && break; sleep 0.1; done
kill -0 "$LOUPE_PID" 2>/dev/null || die "loupe exited (log: $logdir/loupe.log)"
log "starting PostgreSQL (127.0.0.1:$LOUPE_PG_PORT) and the API (127.0.0.1:$LOUPE_API_PORT)"
"$WL/pg-start.sh" >>"$logdir/workload.log" 2>&1 || die "pg-start.sh failed (log: $logdir/workload.log)"
"$WL/api-start.sh" >>"$logdir/workload.log" 2>&1 || die "api-start.sh failed (log: $logdir/workload.log)"
"$WL/demo-load.sh" --rate 40 --ws-reconnect 5 >>"$logdir/load.log" 2>&1 &
LOAD_PID=$!

end=$((SECONDS + $(awk -v h="$hours" 'BEGIN { printf "%d", h * 3600 }')))
next_sample=$SECONDS next_burst=$((SECONDS + 30)) next_api=$((SECONDS + 300)) next_pg=$((SECONDS + 1200))
n=0
while ((SECONDS < end)); do
	kill -0 "$LOUPE_PID" 2>/dev/null || die "loupe exited during the soak (log: $logdir/loupe.log)"
	if ((SECONDS >= next_sample)); then
		"$PY" tests/bench/soak.py sample "$LOUPE_PID" "$PORT" >>"$out" || log "warning: a sample failed"
		next_sample=$((next_sample + every))
		n=$((n + 1))
		((n % 10)) || log "$n samples, $(((end - SECONDS) / 60)) min left: $(tail -n 1 "$out" | jq -c '{rss_kb, fds, cpu_s}')"
	fi
	if ((SECONDS >= next_burst)); then
		"$PY" "$WL/http_client.py" --plan 'GET /healthz=40' --connections 40 --port "$LOUPE_API_PORT" >/dev/null 2>&1 \
			|| log "warning: the HTTP burst failed"
		for ((i = 0; i < 10; i++)); do
			"${LOUPE_PG_BIN:-/usr/lib/postgresql/15/bin}/psql" -h 127.0.0.1 -p "$LOUPE_PG_PORT" -U loupe -d loupe \
				-qAtc 'SELECT 1' >/dev/null 2>&1 || true
		done
		event burst
		next_burst=$((next_burst + 30))
	fi
	if ((SECONDS >= next_pg)); then
		log "restarting PostgreSQL and the API"
		"$WL/api-stop.sh" >>"$logdir/workload.log" 2>&1 || true
		"$WL/pg-stop.sh" >>"$logdir/workload.log" 2>&1 || true
		"$WL/pg-start.sh" >>"$logdir/workload.log" 2>&1 || die "pg-start.sh failed"
		"$WL/api-start.sh" >>"$logdir/workload.log" 2>&1 || die "api-start.sh failed"
		event pg_restart
		next_pg=$((next_pg + 1200))
		next_api=$((SECONDS + 300))
	elif ((SECONDS >= next_api)); then
		"$WL/api-stop.sh" >>"$logdir/workload.log" 2>&1 || true
		"$WL/api-start.sh" >>"$logdir/workload.log" 2>&1 || die "api-start.sh failed"
		event api_restart
		next_api=$((next_api + 300))
	fi
	sleep 1
done
"$PY" tests/bench/soak.py sample "$LOUPE_PID" "$PORT" >>"$out" || true
log "done: $out"
"$PY" tests/bench/soak.py report "$out"
