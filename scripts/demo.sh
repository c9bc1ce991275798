#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# `make demo`: start the reference workload (PostgreSQL + the FastAPI app) under light load, together with loupe,
# so every signal shows up within a minute. Ctrl-C (or -d SECONDS) stops everything it started.
# Usage: scripts/demo.sh [-d SECONDS] [--listen ADDR:PORT]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
duration=0 listen=127.0.0.1:9476
while (($#)); do
	case "$1" in
	-d | --duration) duration=${2:?-d needs SECONDS}; shift 2 ;;
	-l | --listen) listen=${2:?--listen needs ADDR:PORT}; shift 2 ;;
	-h | --help) sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "demo: unknown argument '$1' (see scripts/demo.sh --help)" >&2; exit 2 ;;
	esac
done
[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (loupe loads BPF programs; PostgreSQL runs as postgres)" >&2; exit 1; }
scripts/deps.sh test
make -s -j"$(nproc)"

W=tests/workload
loupe_pid='' load_pid=''
cleanup() {
	trap - EXIT INT TERM
	echo "demo: stopping" >&2
	[ -n "$load_pid" ] && kill "$load_pid" 2>/dev/null && wait "$load_pid" 2>/dev/null
	[ -n "$loupe_pid" ] && kill "$loupe_pid" 2>/dev/null && wait "$loupe_pid" 2>/dev/null
	$W/api-stop.sh >/dev/null 2>&1 || true
	$W/pg-stop.sh >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM

# loupe first: it then sees PostgreSQL and the API start (exec classification, fork inheritance).
build/loupe run --listen "$listen" &
loupe_pid=$!
for _ in $(seq 50); do curl -fs "http://$listen/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fs "http://$listen/readyz" >/dev/null || { echo "demo: loupe did not become ready" >&2; exit 1; }

$W/pg-start.sh
$W/api-start.sh
/usr/bin/python3 $W/seed.py >/dev/null
$W/demo-load.sh -d "$duration" &
load_pid=$!

cat >&2 <<MSG
demo: running. Try:
  curl -s http://$listen/metrics | grep -E '^loupe_(targets|syscall_duration_seconds_count)'
  curl -s http://$listen/status
  Ctrl-C stops loupe, the load, the API and PostgreSQL.
MSG
wait "$load_pid" || true
load_pid=''
