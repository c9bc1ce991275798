#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# Quick start: install what is missing, build, and run the daemon with the default targets
# (api = uvicorn/gunicorn/hypercorn processes, postgres = postgres processes). Extra arguments go to `loupe run`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build
make -j"$(nproc)"
listen=127.0.0.1:9476
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
	case "${args[i]}" in
	--listen | -l) listen=${args[i + 1]:-$listen} ;;
	--listen=*) listen=${args[i]#--listen=} ;;
	esac
done
echo "loupe: metrics at http://$listen/metrics (status: http://$listen/status); Ctrl-C stops" >&2
exec build/loupe run "$@"
