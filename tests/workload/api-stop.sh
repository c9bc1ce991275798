#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# Stop the API started by api-start.sh: SIGTERM the uvicorn parent (it stops its workers),
# wait up to $LOUPE_API_STOP_TIMEOUT seconds (default 10), then SIGKILL its process group.
# Idempotent: exits 0 when nothing is running.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

TIMEOUT="${LOUPE_API_STOP_TIMEOUT:-10}"
case "${1:-}" in
    -h|--help) usage; exit 0 ;;
    "") ;;
    *) die "unknown argument '${1}' (usage: api-stop.sh [--help])" ;;
esac
is_uint "${TIMEOUT}" || die "LOUPE_API_STOP_TIMEOUT=${TIMEOUT} is not a number of seconds"

PIDFILE="${LOUPE_RUN_DIR}/api.pid"

# Processes still in the process group the API was started in (setsid: pgid == parent pid).
group_members() { ps -e -o pid=,pgid=,stat= | awk -v g="${1}" '$2 == g && $3 !~ /^Z/ { print $1 }'; }

if [[ ! -f "${PIDFILE}" ]]; then
    info "API not running (no ${PIDFILE})"
    if api_healthy; then
        info "warning: something still answers on $(api_url) but it was not started by api-start.sh"
    fi
    exit 0
fi

pid="$(cat "${PIDFILE}" 2>/dev/null || true)"
is_uint "${pid}" || { rm -f "${PIDFILE}"; die "corrupt pid file ${PIDFILE} (removed)"; }

if ! pid_alive "${pid}"; then
    info "API not running (stale pid ${pid})"
elif ! tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null | grep -q uvicorn; then
    rm -f "${PIDFILE}"
    die "pid ${pid} from ${PIDFILE} is not uvicorn; not touching it (pid file removed)"
else
    info "stopping API (pid ${pid})"
    kill -TERM "${pid}" 2>/dev/null || true
    deadline=$((SECONDS + TIMEOUT))
    while pid_alive "${pid}" && ((SECONDS < deadline)); do
        sleep 0.1
    done
    if pid_alive "${pid}"; then
        info "API did not exit within ${TIMEOUT}s after SIGTERM: sending SIGKILL"
        kill -KILL "${pid}" 2>/dev/null || true
    fi
fi

# Leftovers of the group (workers orphaned by a SIGKILL): give them a moment, then KILL.
for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
    [[ -z "$(group_members "${pid}")" ]] && break
    sleep 0.1
done
left="$(group_members "${pid}" | tr '\n' ' ')"
if [[ -n "${left// /}" ]]; then
    info "killing leftover processes of the API group: ${left}"
    kill -KILL -- "-${pid}" 2>/dev/null || true
fi
rm -f "${PIDFILE}"
info "API stopped"
