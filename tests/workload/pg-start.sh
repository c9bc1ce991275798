#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# Start a private PostgreSQL 15 cluster for the Loupe workload.
#   data dir  $LOUPE_PG_DIR  (default /tmp/loupe-pg; unix socket and postgres.log live there)
#   port      $LOUPE_PG_PORT (default 55432), listening on 127.0.0.1 only, trust auth
#   database and role loupe ($LOUPE_PG_DB / $LOUPE_PG_USER)
# Idempotent: exits 0 when the cluster is already running.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

TIMEOUT="${LOUPE_PG_START_TIMEOUT:-30}"
case "${1:-}" in
    -h|--help) usage; exit 0 ;;
    "") ;;
    *) die "unknown argument '${1}' (usage: pg-start.sh [--help])" ;;
esac

is_uint "${LOUPE_PG_PORT}" || die "LOUPE_PG_PORT=${LOUPE_PG_PORT} is not a port number"
is_uint "${TIMEOUT}" || die "LOUPE_PG_START_TIMEOUT=${TIMEOUT} is not a number of seconds"
require_loopback LOUPE_PG_HOST "${LOUPE_PG_HOST}"
[[ -x "${LOUPE_PG_BIN}/pg_ctl" ]] || die "PostgreSQL binaries not found in ${LOUPE_PG_BIN} (set LOUPE_PG_BIN)"
[[ "${LOUPE_PG_DIR}" == /* ]] || die "LOUPE_PG_DIR=${LOUPE_PG_DIR} must be an absolute path"

# PostgreSQL refuses to run as root: run its tools as the postgres user.
if [[ "$(id -u)" -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || die "user 'postgres' does not exist"
    as_pg() { (cd / && runuser -u postgres -- "$@"); }
elif [[ "$(id -un)" == postgres ]]; then
    as_pg() { (cd / && "$@"); }
else
    die "run as root or as the postgres user"
fi

pg_ctl() { as_pg "${LOUPE_PG_BIN}/pg_ctl" -D "${LOUPE_PG_DIR}" "$@"; }
psql_admin() {
    as_pg "${LOUPE_PG_BIN}/psql" -X -q -v ON_ERROR_STOP=1 -h "${LOUPE_PG_DIR}" -p "${LOUPE_PG_PORT}" \
        -U postgres -d postgres "$@"
}

ensure_db() {
    # Role and database (idempotent); the schema itself is created by app.py / seed.py.
    local has_role has_db
    has_role="$(psql_admin -tA -c "SELECT 1 FROM pg_roles WHERE rolname = '${LOUPE_PG_USER}'")" \
        || die "cannot query the cluster as postgres (see ${LOUPE_PG_DIR}/postgres.log)"
    [[ "${has_role}" == 1 ]] || psql_admin -c "CREATE ROLE \"${LOUPE_PG_USER}\" LOGIN" \
        || die "cannot create role ${LOUPE_PG_USER}"
    has_db="$(psql_admin -tA -c "SELECT 1 FROM pg_database WHERE datname = '${LOUPE_PG_DB}'")"
    [[ "${has_db}" == 1 ]] || psql_admin -c "CREATE DATABASE \"${LOUPE_PG_DB}\" OWNER \"${LOUPE_PG_USER}\"" \
        || die "cannot create database ${LOUPE_PG_DB}"
}

if [[ -f "${LOUPE_PG_DIR}/PG_VERSION" ]] && pg_ctl status >/dev/null 2>&1; then
    running_port="$(sed -n 4p "${LOUPE_PG_DIR}/postmaster.pid" 2>/dev/null || true)"
    [[ -z "${running_port}" || "${running_port}" == "${LOUPE_PG_PORT}" ]] \
        || die "cluster in ${LOUPE_PG_DIR} already runs on port ${running_port}, not ${LOUPE_PG_PORT} (run pg-stop.sh first)"
    info "PostgreSQL already running (data ${LOUPE_PG_DIR}, port ${LOUPE_PG_PORT})"
    ensure_db
    exit 0
fi

rc=0; "${LOUPE_PG_BIN}/pg_isready" -q -h 127.0.0.1 -p "${LOUPE_PG_PORT}" -U postgres -d postgres -t 1 2>/dev/null || rc=$?
((rc == 2)) || die "another PostgreSQL already answers on 127.0.0.1:${LOUPE_PG_PORT} (set LOUPE_PG_PORT)"

if [[ ! -f "${LOUPE_PG_DIR}/PG_VERSION" ]]; then
    if [[ -e "${LOUPE_PG_DIR}" ]] && [[ -n "$(ls -A "${LOUPE_PG_DIR}" 2>/dev/null)" ]]; then
        die "${LOUPE_PG_DIR} exists, is not empty and is not a PostgreSQL data directory"
    fi
    info "initialising cluster in ${LOUPE_PG_DIR}"
    mkdir -p "${LOUPE_PG_DIR}"
    chown postgres: "${LOUPE_PG_DIR}" 2>/dev/null || true
    chmod 700 "${LOUPE_PG_DIR}"
    initlog="$(mktemp)"
    if ! as_pg "${LOUPE_PG_BIN}/initdb" -D "${LOUPE_PG_DIR}" -U postgres --auth=trust \
            --encoding=UTF8 --locale=C >"${initlog}" 2>&1; then
        cat "${initlog}" >&2; rm -f "${initlog}"
        die "initdb failed for ${LOUPE_PG_DIR}"
    fi
    rm -f "${initlog}"
fi

# (Re)write our settings every start so env changes (port) take effect.
# initdb --auth=trust already trusts local and host 127.0.0.1/32 connections.
conf="${LOUPE_PG_DIR}/postgresql.auto.conf"
as_pg tee "${conf}" >/dev/null <<EOF
# Written by tests/workload/pg-start.sh on every start; edit that script instead.
listen_addresses = '127.0.0.1'
port = ${LOUPE_PG_PORT}
unix_socket_directories = '${LOUPE_PG_DIR}'
shared_buffers = 32MB
max_connections = 100
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
EOF

info "starting PostgreSQL (data ${LOUPE_PG_DIR}, 127.0.0.1:${LOUPE_PG_PORT}, log ${LOUPE_PG_DIR}/postgres.log)"
if ! pg_ctl -l "${LOUPE_PG_DIR}/postgres.log" -w -t "${TIMEOUT}" start >/dev/null; then
    tail -n 15 "${LOUPE_PG_DIR}/postgres.log" >&2 2>/dev/null || true
    die "PostgreSQL failed to start or was not up within ${TIMEOUT}s (log: ${LOUPE_PG_DIR}/postgres.log)"
fi

deadline=$((SECONDS + TIMEOUT))
until "${LOUPE_PG_BIN}/pg_isready" -q -h 127.0.0.1 -p "${LOUPE_PG_PORT}" -U postgres -d postgres -t 1; do
    if ((SECONDS >= deadline)); then
        tail -n 15 "${LOUPE_PG_DIR}/postgres.log" >&2 2>/dev/null || true
        die "PostgreSQL not ready on 127.0.0.1:${LOUPE_PG_PORT} after ${TIMEOUT}s"
    fi
    sleep 0.2
done

ensure_db
info "PostgreSQL ready: postgresql://${LOUPE_PG_USER}@127.0.0.1:${LOUPE_PG_PORT}/${LOUPE_PG_DB}"
