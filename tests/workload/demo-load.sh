#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# Light, continuous, mixed load for demos (the API must be running: api-start.sh).
#   demo-load.sh [-d SECONDS] [--rate RPS] [--ws-sessions N] [--ws-reconnect SECONDS]
#     -d 0 (default): run until SIGINT/SIGTERM; otherwise stop after SECONDS.
#   Runs, side by side:
#     - wrk with mix.lua, 2 connections paced by LOUPE_WRK_DELAY_MS (~RPS requests/s, default 20)
#     - ws_client.py: N WebSocket sessions (default 3), 2 messages/s each, subscribed to updates,
#       reconnecting every 30 s (--ws-reconnect), so sessions close now and then
#     - every ~5 s one GET /slow, and alternately GET /fail and GET /cpu (http_client.py)
#   Child output goes to $LOUPE_RUN_DIR/demo-*.log; this script prints one line per minute.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

duration=0 rate=20 ws_sessions=3 ws_reconnect=30
while (($#)); do
    case "${1}" in
        -d|--duration) duration="${2:?-d needs SECONDS}"; shift 2 ;;
        --rate) rate="${2:?--rate needs RPS}"; shift 2 ;;
        --ws-sessions) ws_sessions="${2:?--ws-sessions needs N}"; shift 2 ;;
        --ws-reconnect) ws_reconnect="${2:?--ws-reconnect needs SECONDS}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument '${1}' (see demo-load.sh --help)" ;;
    esac
done
duration="${duration%s}"
is_uint "${duration}" || die "-d must be a number of seconds (got '${duration}')"
if ! is_uint "${rate}" || ((10#${rate} == 0)); then die "--rate must be a positive integer (got '${rate}')"; fi
rate=$((10#${rate}))
is_uint "${ws_sessions}" || die "--ws-sessions must be an integer (got '${ws_sessions}')"
if ! is_uint "${ws_reconnect}" || ((10#${ws_reconnect} == 0)); then
    die "--ws-reconnect must be a positive integer (got '${ws_reconnect}')"
fi
require_loopback LOUPE_API_HOST "${LOUPE_API_HOST}"
command -v wrk >/dev/null || die "wrk not found (apt-get install wrk)"
api_healthy || die "API not answering on $(api_url)/healthz (run api-start.sh first)"
mkdir -p "${LOUPE_RUN_DIR}"

ids="$("${PYTHON}" "${WORKLOAD_DIR}/seed.py" --ids-only)" || die "seeding failed (is PostgreSQL running?)"

# Each component is a restart loop in its own session/process group (setsid; its pid is the
# group id), so stopping it reaches every process it started (wrk, sleep, http_client.py...).
pids=()
group_alive() { ps -e -o pgid=,stat= | awk -v g="${1}" '$1 == g && $2 !~ /^Z/ { f = 1 } END { exit !f }'; }
cleanup() {
    trap - INT TERM EXIT
    local p i
    for p in "${pids[@]}"; do
        kill -TERM -- "-${p}" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        for ((i = 0; i < 100; i++)); do group_alive "${p}" || break; sleep 0.1; done
        if group_alive "${p}"; then
            kill -KILL -- "-${p}" 2>/dev/null || true
        fi
        wait "${p}" 2>/dev/null || true
    done
    info "stopped"
}
trap 'cleanup; exit 0' INT TERM
trap cleanup EXIT

run_loop() {  # $1 = name, then the command to run (and restart when it ends)
    local name="${1}"; shift
    setsid /bin/bash -c 'while :; do "$@" || sleep 1; done' loop "$@" \
        </dev/null >>"${LOUPE_RUN_DIR}/demo-${name}.log" 2>&1 &
    pids+=($!)
}

# wrk: 2 connections, each waits delay ms before a request -> ~rate requests/s in total.
delay_ms=$(( 2000 / rate )); ((delay_ms > 0)) || delay_ms=1
LOUPE_WRK_DELAY_MS="${delay_ms}" run_loop wrk \
    wrk -d 60s -c 2 -t 1 --timeout 10s -s "${WORKLOAD_DIR}/mix.lua" "$(api_url)" -- mix "${ids}"

if ((ws_sessions > 0)); then
    run_loop ws "${PYTHON}" "${WORKLOAD_DIR}/ws_client.py" --sessions "${ws_sessions}" \
        --duration 0 --rate 2 --subscribe --reconnect-every "${ws_reconnect}"
fi

# Every 5 s: GET /slow, then alternately GET /fail and GET /cpu.
# shellcheck disable=SC2016  # $0 and $1 belong to the inner bash
run_loop extras /bin/bash -c '
    sleep 5; "$0" "$1" --plan "GET /slow=1,GET /fail=1"
    sleep 5; "$0" "$1" --plan "GET /slow=1,GET /cpu=1"' "${PYTHON}" "${WORKLOAD_DIR}/http_client.py"

info "demo load running against $(api_url) (~${rate} req/s wrk mix, ${ws_sessions} WebSocket sessions," \
     "/slow /fail /cpu every 5 s); logs in ${LOUPE_RUN_DIR}/demo-*.log; $( ((duration)) && echo "for ${duration}s" || echo "Ctrl-C to stop")"

start=${SECONDS}
next_report=$((start + 60))
while ((duration == 0 || SECONDS - start < duration)); do
    sleep 1
    if ((SECONDS >= next_report)); then
        info "running for $((SECONDS - start))s"
        next_report=$((next_report + 60))
    fi
done
