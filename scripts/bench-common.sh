# SPDX-License-Identifier: BSD-2-Clause
# Shared by scripts/bench.sh and scripts/bench-cost.sh (sourced, not run): stopping what they start, and starting
# loupe, the empty-program floor and the bench's PostgreSQL cluster. The caller defines log and die, and sets
# LOUPE, FLOOR, PORT, WL, work (the work directory), LOUPE_ARGS (options every loupe gets, may be empty),
# LOUPE_PID, FLOOR_PID, STARTED_PG, PG_DIR_NEW and PG_PID.

stop_pid() { # pid: SIGTERM, wait up to 10 s, then SIGKILL
	local pid=$1 i
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null || true
}

loupe_start() { # loupe run options...: returns once /readyz answers
	"$LOUPE" run --listen "127.0.0.1:$PORT" "${LOUPE_ARGS[@]}" "$@" 2>>"$work/loupe.log" &
	LOUPE_PID=$!
	local i
	for ((i = 0; i < 300; i++)); do
		curl -s -o /dev/null --max-time 1 -f "http://127.0.0.1:$PORT/readyz" && return 0
		kill -0 "$LOUPE_PID" 2>/dev/null || { tail -n 5 "$work/loupe.log" >&2; die "loupe exited during start-up"; }
		sleep 0.1
	done
	die "loupe not ready on 127.0.0.1:$PORT after 30 s (log: $work/loupe.log)"
}
loupe_stop() { stop_pid "$LOUPE_PID"; LOUPE_PID=""; }

floor_start() { # floor options...: returns once both programs are attached
	: >"$work/floor.out"
	"$FLOOR" "$@" >"$work/floor.out" 2>&1 &
	FLOOR_PID=$!
	local i
	for ((i = 0; i < 100; i++)); do
		grep -q '^attached' "$work/floor.out" && return 0
		kill -0 "$FLOOR_PID" 2>/dev/null || { cat "$work/floor.out" >&2; die "loupe-bench-floor exited during start-up"; }
		sleep 0.1
	done
	die "loupe-bench-floor did not attach within 10 s"
}
floor_stop() { stop_pid "$FLOOR_PID"; FLOOR_PID=""; }

# The bench's PostgreSQL cluster: started once, stopped by the caller's cleanup.
pg_start() {
	((STARTED_PG)) && return 0
	[[ -e $LOUPE_PG_DIR ]] || PG_DIR_NEW=1
	log "starting PostgreSQL (127.0.0.1:$LOUPE_PG_PORT, $LOUPE_PG_DIR)"
	STARTED_PG=1
	"$WL/pg-start.sh" >>"$work/workload.log" 2>&1 || { tail -n 5 "$work/workload.log" >&2; die "pg-start.sh failed"; }
	PG_PID=$(head -n 1 "$LOUPE_PG_DIR/postmaster.pid")
}
