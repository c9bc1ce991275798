#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# Start the reference API (app.py) with uvicorn in the background and wait for /healthz.
#   /usr/bin/python3 -m uvicorn app:app --host 127.0.0.1 --port $LOUPE_API_PORT --workers $LOUPE_API_WORKERS
#   pid file $LOUPE_RUN_DIR/api.pid, log $LOUPE_RUN_DIR/api.log (default run dir /tmp/loupe-workload)
# Idempotent: exits 0 when the API started by this script is already running.
# Env: LOUPE_API_PORT (18080) LOUPE_API_WORKERS (1) LOUPE_API_ACCESS_LOG (0|1, default 0)
#      LOUPE_API_START_TIMEOUT (30) LOUPE_API_UVICORN_ARGS (extra uvicorn args), LOUPE_PG_* (see app.py)
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

TIMEOUT="${LOUPE_API_START_TIMEOUT:-30}"
case "${1:-}" in
    -h|--help) usage; exit 0 ;;
    "") ;;
    *) die "unknown argument '${1}' (usage: api-start.sh [--help]; configure with env vars)" ;;
esac

is_uint "${LOUPE_API_PORT}" || die "LOUPE_API_PORT=${LOUPE_API_PORT} is not a port number"
if ! is_uint "${LOUPE_API_WORKERS}" || ((10#${LOUPE_API_WORKERS} < 1)); then
    die "LOUPE_API_WORKERS=${LOUPE_API_WORKERS} must be a positive integer"
fi
is_uint "${TIMEOUT}" || die "LOUPE_API_START_TIMEOUT=${TIMEOUT} is not a number of seconds"
require_loopback LOUPE_API_HOST "${LOUPE_API_HOST}"
require_loopback LOUPE_PG_HOST "${LOUPE_PG_HOST}"
[[ -x "${PYTHON}" ]] || die "${PYTHON} not found"
"${PYTHON}" -c 'import fastapi, uvicorn, psycopg2, websockets' 2>/dev/null \
    || die "${PYTHON} cannot import fastapi/uvicorn/psycopg2/websockets (use Debian's /usr/bin/python3)"

mkdir -p "${LOUPE_RUN_DIR}"
PIDFILE="${LOUPE_RUN_DIR}/api.pid"
LOG="${LOUPE_RUN_DIR}/api.log"

is_our_api() {  # $1 = pid: alive and a uvicorn process
    [[ -n "${1}" ]] && pid_alive "${1}" \
        && tr '\0' ' ' <"/proc/${1}/cmdline" 2>/dev/null | grep -q uvicorn
}

if [[ -f "${PIDFILE}" ]]; then
    pid="$(cat "${PIDFILE}" 2>/dev/null || true)"
    if is_our_api "${pid}"; then
        if api_healthy; then
            info "API already running (pid ${pid}, $(api_url))"
            exit 0
        fi
        die "API process ${pid} exists but $(api_url)/healthz does not answer (see ${LOG}; api-stop.sh to reset)"
    fi
    rm -f "${PIDFILE}"  # stale
fi

if api_healthy; then
    die "something already answers on $(api_url) (not started by this script; set LOUPE_API_PORT)"
fi

access_log="--no-access-log"
[[ "${LOUPE_API_ACCESS_LOG:-0}" == 1 ]] && access_log="--access-log"
# shellcheck disable=SC2206
extra=(${LOUPE_API_UVICORN_ARGS:-})

info "starting API on $(api_url) (workers ${LOUPE_API_WORKERS}, log ${LOG})"
# setsid: own session and process group, so api-stop.sh can reach the workers too;
# the inner shell writes its own pid, then becomes uvicorn (exec keeps the pid).
cd "${WORKLOAD_DIR}"
# shellcheck disable=SC2016  # $$ and $@ belong to the inner sh
setsid /bin/sh -c 'echo $$ >"$1"; shift; exec "$@"' sh "${PIDFILE}" \
    "${PYTHON}" -m uvicorn app:app --host "${LOUPE_API_HOST}" --port "${LOUPE_API_PORT}" \
    --workers "${LOUPE_API_WORKERS}" "${access_log}" "${extra[@]}" \
    </dev/null >>"${LOG}" 2>&1 &

deadline=$((SECONDS + TIMEOUT))
pid=""
while :; do
    [[ -z "${pid}" && -s "${PIDFILE}" ]] && pid="$(cat "${PIDFILE}")"
    if api_healthy; then
        break
    fi
    if [[ -n "${pid}" ]] && ! pid_alive "${pid}"; then
        rm -f "${PIDFILE}"
        tail -n 15 "${LOG}" >&2 || true
        die "uvicorn exited during start-up (log: ${LOG})"
    fi
    if ((SECONDS >= deadline)); then
        tail -n 15 "${LOG}" >&2 || true
        die "API did not answer $(api_url)/healthz within ${TIMEOUT}s (pid ${pid:-?}, log: ${LOG}); run api-stop.sh"
    fi
    sleep 0.2
done
info "API ready: $(api_url) (pid ${pid})"
