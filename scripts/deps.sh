#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# Install what Loupe needs from Debian 12 packages, by name. Only missing packages are installed.
# Usage: scripts/deps.sh build|test|all
set -euo pipefail
what=${1:-build}

# --web-config: GnuTLS (certificates, client-certificate checks), libyaml (the file), libxcrypt (bcrypt).
build_pkgs=(make gcc clang llvm pkg-config bpftool libbpf-dev libelf-dev libdw-dev zlib1g-dev libmicrohttpd-dev libpg-query-dev
	libgnutls28-dev libyaml-dev libcrypt-dev libcap-ng-dev
	linux-libc-dev curl ca-certificates git libprotobuf-c-dev protobuf-c-compiler)
# Tests: cmocka for C unit tests; clang's libFuzzer runtime for the parser fuzz targets; a real PostgreSQL, the
# FastAPI/uvicorn/websockets reference API and wrk for end-to-end tests; Prometheus (and promtool) to scrape loupe;
# util-linux for setpriv/unshare; strace (ground truth of a BPF test); jq for the benchmark; protoc (an independent
# decoder of loupe's pprof output), xmllint and headless Chromium (the SVG flame graph is well-formed and renders);
# gdb reads the CPython layouts from libpython's DWARF (tests/unit/test_py_layouts.py). tests/unit/test_deploy.py:
# docker-compose (1.29.2: `config` validates the compose file), python3-yaml, and nodejs for the Kubernetes schema
# check (its npm packages come from the npm registry). Not Debian's npm package: NodeSource's nodejs, on these
# machines, ships npm itself and conflicts with it: Debian's npm is added only when no npm is on PATH. The monitoring
# stack (scripts/stack.sh, tests/e2e/test_stack.py, tests/unit/test_alerts.py): Alertmanager (and amtool),
# node_exporter, postgres_exporter and blackbox_exporter. tests/bpf/test_webconfig.py: htpasswd (apache2-utils: bcrypt
# hashes from another implementation than loupe's libxcrypt) with openssl (certificates) and curl.
test_pkgs=(libcmocka-dev libclang-rt-14-dev postgresql python3 python3-fastapi python3-uvicorn python3-websockets
	python3-psycopg2 python3-prometheus-client wrk prometheus util-linux procps iproute2 valgrind jq strace openssl
	protobuf-compiler libxml2-utils chromium gdb docker-compose python3-yaml nodejs prometheus-alertmanager
	prometheus-node-exporter prometheus-postgres-exporter prometheus-blackbox-exporter apache2-utils)

case "$what" in
build) pkgs=("${build_pkgs[@]}") ;;
test | all)
	pkgs=("${build_pkgs[@]}" "${test_pkgs[@]}")
	command -v npm >/dev/null || pkgs+=(npm)
	;;
*) echo "deps: unknown set '$what' (build, test or all)" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing Debian packages: ${missing[*]}; run as root (or: sudo apt-get install ${missing[*]})" >&2
	exit 1
fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
# Installing packages must not start their services here (prometheus, postgresql): tests start their own.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && created_policy=1
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 || { rc=$?; [ $created_policy = 1 ] && rm -f "$policy"; exit $rc; }
[ $created_policy = 1 ] && rm -f "$policy"
exit 0
