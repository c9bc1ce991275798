#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# Stop the private PostgreSQL cluster started by pg-start.sh (pg_ctl stop -m fast).
#   pg-stop.sh [--purge]   --purge also deletes the data directory ($LOUPE_PG_DIR)
# Idempotent: exits 0 when the cluster is not running.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

TIMEOUT="${LOUPE_PG_STOP_TIMEOUT:-30}"
purge=0
for arg in "$@"; do
    case "${arg}" in
        --purge) purge=1 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument '${arg}' (usage: pg-stop.sh [--purge])" ;;
    esac
done
is_uint "${TIMEOUT}" || die "LOUPE_PG_STOP_TIMEOUT=${TIMEOUT} is not a number of seconds"
[[ "${LOUPE_PG_DIR}" == /* ]] || die "LOUPE_PG_DIR=${LOUPE_PG_DIR} must be an absolute path"

if [[ "$(id -u)" -eq 0 ]]; then
    as_pg() { (cd / && runuser -u postgres -- "$@"); }
elif [[ "$(id -un)" == postgres ]]; then
    as_pg() { (cd / && "$@"); }
else
    die "run as root or as the postgres user"
fi

if [[ ! -f "${LOUPE_PG_DIR}/PG_VERSION" ]]; then
    info "no cluster in ${LOUPE_PG_DIR}: nothing to stop"
elif ! as_pg "${LOUPE_PG_BIN}/pg_ctl" -D "${LOUPE_PG_DIR}" status >/dev/null 2>&1; then
    info "PostgreSQL not running (data ${LOUPE_PG_DIR})"
else
    info "stopping PostgreSQL (data ${LOUPE_PG_DIR})"
    if ! as_pg "${LOUPE_PG_BIN}/pg_ctl" -D "${LOUPE_PG_DIR}" -m fast -w -t "${TIMEOUT}" stop >/dev/null; then
        tail -n 10 "${LOUPE_PG_DIR}/postgres.log" >&2 2>/dev/null || true
        die "PostgreSQL did not stop within ${TIMEOUT}s (try: pg_ctl -D ${LOUPE_PG_DIR} stop -m immediate)"
    fi
    info "PostgreSQL stopped"
fi

if ((purge)); then
    if [[ -f "${LOUPE_PG_DIR}/PG_VERSION" ]]; then
        rm -rf -- "${LOUPE_PG_DIR}"
        info "removed ${LOUPE_PG_DIR}"
    elif [[ -e "${LOUPE_PG_DIR}" ]]; then
        die "--purge: ${LOUPE_PG_DIR} is not a PostgreSQL data directory, not removing it"
    fi
fi
