# SPDX-License-Identifier: BSD-2-Clause
# Shared helpers for the workload scripts (sourced, not executed).
# shellcheck shell=bash

# shellcheck disable=SC2034  # used by the scripts that source this file
WORKLOAD_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${LOUPE_PYTHON:-/usr/bin/python3}"   # Debian's python: sees fastapi/uvicorn/psycopg2

LOUPE_PG_BIN="${LOUPE_PG_BIN:-/usr/lib/postgresql/15/bin}"
LOUPE_PG_DIR="${LOUPE_PG_DIR:-/tmp/loupe-pg}"
LOUPE_PG_HOST="${LOUPE_PG_HOST:-127.0.0.1}"
LOUPE_PG_PORT="${LOUPE_PG_PORT:-55432}"
LOUPE_PG_DB="${LOUPE_PG_DB:-loupe}"
LOUPE_PG_USER="${LOUPE_PG_USER:-loupe}"
LOUPE_API_HOST="${LOUPE_API_HOST:-127.0.0.1}"
LOUPE_API_PORT="${LOUPE_API_PORT:-18080}"
LOUPE_API_WORKERS="${LOUPE_API_WORKERS:-1}"
LOUPE_RUN_DIR="${LOUPE_RUN_DIR:-/tmp/loupe-workload}"
export LOUPE_PG_HOST LOUPE_PG_PORT LOUPE_PG_DB LOUPE_PG_USER LOUPE_API_HOST LOUPE_API_PORT

_script="$(basename "${0}")"

die() { echo "${_script}: error: $*" >&2; exit 1; }
info() { echo "${_script}: $*" >&2; }

is_uint() { [[ "${1}" =~ ^[0-9]+$ ]]; }

# Only loopback traffic is allowed for this workload.
require_loopback() {  # $1 = env var name, $2 = host
    case "${2}" in
        127.*|localhost|::1) ;;
        *) die "${1}=${2} is not a loopback address (only 127.0.0.0/8, localhost, ::1 allowed)" ;;
    esac
}

api_url() { echo "http://${LOUPE_API_HOST}:${LOUPE_API_PORT}"; }

# True when GET /healthz answers 200 within 2 s.
api_healthy() {
    "${PYTHON}" - "${LOUPE_API_HOST}" "${LOUPE_API_PORT}" <<'EOF' >/dev/null 2>&1
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=2)
c.request("GET", "/healthz")
sys.exit(0 if c.getresponse().status == 200 else 1)
EOF
}

# True when $1 is a live process (a zombie waiting for its parent to reap it is dead).
pid_alive() {
    [[ -n "${1}" ]] && kill -0 "${1}" 2>/dev/null || return 1
    local state
    state="$(awk '{ print $3 }' "/proc/${1}/stat" 2>/dev/null || true)"
    [[ -n "${state}" && "${state}" != Z && "${state}" != X ]]
}

# Print the comment block at the top of the calling script (its usage text).
usage() { awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "${0}"; }
