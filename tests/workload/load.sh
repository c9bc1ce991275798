#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# HTTP load with wrk against the reference API (which must be running: api-start.sh).
#   load.sh [-d SECONDS] [-c CONNS] [-t THREADS] [--mix | --path PATH] [--no-seed] [--timeout SECONDS]
#     -d 10, -c 10, -t 2 by default; --mix (default) cycles through GET /memories/ID, /search,
#     /graph/ID/neighbors and /healthz (mix.lua); --path PATH hammers one path (e.g. /healthz).
#   Seeds the database first (seed.py, idempotent) unless --no-seed.
#   Prints wrk's summary, ending with a machine-readable "loupe-wrk: {json}" line.
#   Exit status: non-zero if wrk fails or reports socket errors.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

duration=10 conns=10 threads=2 mode=mix path="" seed=1 timeout=10
while (($#)); do
    case "${1}" in
        -d|--duration) duration="${2:?-d needs SECONDS}"; shift 2 ;;
        -c|--connections) conns="${2:?-c needs CONNS}"; shift 2 ;;
        -t|--threads) threads="${2:?-t needs THREADS}"; shift 2 ;;
        --mix) mode=mix; shift ;;
        --path) mode=path; path="${2:?--path needs PATH}"; shift 2 ;;
        --no-seed) seed=0; shift ;;
        --timeout) timeout="${2:?--timeout needs SECONDS}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument '${1}' (see load.sh --help)" ;;
    esac
done
duration="${duration%s}"
for v in duration conns threads timeout; do
    if ! is_uint "${!v}" || ((10#${!v} == 0)); then die "${v} must be a positive integer (got '${!v}')"; fi
    printf -v "${v}" '%d' "$((10#${!v}))"
done
((conns >= threads)) || die "connections (${conns}) must be >= threads (${threads})"
[[ "${mode}" != path || "${path}" == /* ]] || die "--path must start with / (got '${path}')"
require_loopback LOUPE_API_HOST "${LOUPE_API_HOST}"
command -v wrk >/dev/null || die "wrk not found (apt-get install wrk)"
api_healthy || die "API not answering on $(api_url)/healthz (run api-start.sh first)"

ids=""
if ((seed)); then
    ids="$("${PYTHON}" "${WORKLOAD_DIR}/seed.py" --ids-only)" || die "seeding failed (is PostgreSQL running?)"
fi

if [[ "${mode}" == mix ]]; then
    script_args=(mix "${ids}")
    what="mix"
else
    script_args=(path "${path}")
    what="${path}"
fi

info "wrk ${duration}s, ${conns} connections, ${threads} threads, ${what} against $(api_url)"
out="$(mktemp)"
trap 'rm -f "${out}"' EXIT
rc=0
wrk --latency -d "${duration}s" -c "${conns}" -t "${threads}" --timeout "${timeout}s" \
    -s "${WORKLOAD_DIR}/mix.lua" "$(api_url)" -- "${script_args[@]}" | tee "${out}" || rc=$?
((rc == 0)) || die "wrk exited with status ${rc}"
summary="$(grep '^loupe-wrk: ' "${out}" | tail -n 1)"
[[ -n "${summary}" ]] || die "wrk printed no summary line (mix.lua not run?)"
if ! grep -q '"errors":0,' <<<"${summary}"; then
    die "wrk reported socket errors: ${summary#loupe-wrk: }"
fi
