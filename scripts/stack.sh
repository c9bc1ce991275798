#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# The monitoring stack on this host, without a container engine (`make stack`): Prometheus, Alertmanager,
# node_exporter, postgres_exporter and blackbox_exporter from Debian's packages with the configuration in deploy/,
# loupe, and the reference workload (PostgreSQL and the API of tests/workload) under a light mixed load. Prints
# where to look, then runs until Ctrl-C (or --duration) and stops everything it started. Root.
#   scripts/stack.sh [--run-dir DIR] [--webhook URL] [--no-load] [--duration SECONDS]
#     --run-dir DIR   configs, data and logs (default /tmp/loupe-stack; kept after the stop)
#     --webhook URL   where Alertmanager sends notifications (default: a local receiver that appends each alert
#                     to DIR/alerts.jsonl and prints it: deploy/alertmanager/webhook-log.py)
#     --no-load       no demo load (the services run idle)
#     --duration N    stop after N seconds (default: run until SIGINT or SIGTERM)
# Ports, all on 127.0.0.1 (env; the defaults avoid the standard ports, which Debian's packages' own services
# take when installed on a systemd host): LOUPE_STACK_PROMETHEUS_PORT (19090), LOUPE_STACK_ALERTMANAGER_PORT
# (19093), LOUPE_STACK_NODE_PORT (19100), LOUPE_STACK_POSTGRES_EXPORTER_PORT (19187),
# LOUPE_STACK_BLACKBOX_PORT (19115), LOUPE_STACK_LOUPE_PORT (19476), LOUPE_STACK_WEBHOOK_PORT (19095); the
# workload's LOUPE_API_PORT (18080) and LOUPE_PG_PORT (55432). LOUPE_STACK_LOUPE_ARGS: more options for loupe run.
# deploy/prometheus/prometheus.yml names the standard ports; this script copies it with each 127.0.0.1:PORT
# replaced by the one above, and nothing else changed.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
PY=/usr/bin/python3
WL=$top/tests/workload
run_dir=/tmp/loupe-stack webhook="" load=1 duration=0
while (($#)); do
	case "$1" in
	--run-dir) run_dir=${2:?--run-dir needs a DIR}; shift 2 ;;
	--webhook) webhook=${2:?--webhook needs a URL}; shift 2 ;;
	--no-load) load=0; shift ;;
	--duration) duration=${2:?--duration needs SECONDS}; shift 2 ;;
	-h|--help) sed -n '2,/^set /p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "stack.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
done
[[ $duration =~ ^[0-9]+$ ]] || { echo "stack.sh: --duration takes a number of seconds (got '$duration')" >&2; exit 2; }
[[ -z $webhook || $webhook =~ ^https?://[^[:space:]]+$ ]] || { echo "stack.sh: --webhook takes an http(s) URL (got '$webhook')" >&2; exit 2; }

declare -A PORT=(
	[prometheus]=${LOUPE_STACK_PROMETHEUS_PORT:-19090} [alertmanager]=${LOUPE_STACK_ALERTMANAGER_PORT:-19093}
	[node]=${LOUPE_STACK_NODE_PORT:-19100} [postgres_exporter]=${LOUPE_STACK_POSTGRES_EXPORTER_PORT:-19187}
	[blackbox]=${LOUPE_STACK_BLACKBOX_PORT:-19115} [loupe]=${LOUPE_STACK_LOUPE_PORT:-19476}
	[webhook]=${LOUPE_STACK_WEBHOOK_PORT:-19095} [api]=${LOUPE_API_PORT:-18080} [postgres]=${LOUPE_PG_PORT:-55432}
)
# The standard port of each in deploy/prometheus/prometheus.yml.
declare -A STD=([prometheus]=9090 [alertmanager]=9093 [node]=9100 [postgres_exporter]=9187 [blackbox]=9115
	[loupe]=9476 [api]=18080 [postgres]=55432)
for k in "${!PORT[@]}"; do
	if ! [[ ${PORT[$k]} =~ ^[0-9]+$ ]] || ((PORT[$k] < 1 || PORT[$k] > 65535)); then
		echo "stack.sh: the $k port '${PORT[$k]}' is not a port number" >&2
		exit 2
	fi
done
export LOUPE_API_PORT=${PORT[api]} LOUPE_PG_PORT=${PORT[postgres]} LOUPE_API_HOST=127.0.0.1 LOUPE_PG_HOST=127.0.0.1
export LOUPE_RUN_DIR=$run_dir/workload LOUPE_PG_DIR=${LOUPE_PG_DIR:-$run_dir/pg}

log() { printf '[stack %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
[[ $(id -u) -eq 0 ]] || die "needs root (loupe's BPF programs; PostgreSQL is run as postgres): run as root"

log "installing what is missing (scripts/deps.sh test) and building loupe"
scripts/deps.sh test || die "scripts/deps.sh failed"
make -s build/loupe >&2 || die "build failed"
for b in /usr/bin/prometheus /usr/bin/prometheus-alertmanager /usr/bin/prometheus-node-exporter \
	/usr/bin/prometheus-postgres-exporter /usr/bin/prometheus-blackbox-exporter; do
	[[ -x $b ]] || die "$b not found (apt-get install $(basename "$b"))"
done
for k in prometheus alertmanager node postgres_exporter blackbox loupe webhook api postgres; do
	if (exec 3<>"/dev/tcp/127.0.0.1/${PORT[$k]}") 2>/dev/null; then
		die "127.0.0.1:${PORT[$k]} (the $k port) is taken by another process: set its LOUPE_STACK_* or LOUPE_*_PORT variable (see --help)"
	fi
done

mkdir -p "$run_dir"/{prometheus,alertmanager,data/prometheus,data/alertmanager,logs} "$LOUPE_RUN_DIR"
chmod o+x "$run_dir" # PostgreSQL runs as postgres: its cluster directory is inside
PIDS=() STARTED_PG=0 STARTED_API=0
cleanup() {
	local rc=$? p i
	trap - EXIT INT TERM
	log "stopping"
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		p=${PIDS[i]}
		kill -TERM "$p" 2>/dev/null || continue
		for ((j = 0; j < 100; j++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	((STARTED_API)) && { "$WL/api-stop.sh" >>"$run_dir/logs/workload.log" 2>&1 || log "warning: api-stop.sh failed"; }
	((STARTED_PG)) && { "$WL/pg-stop.sh" >>"$run_dir/logs/workload.log" 2>&1 || log "warning: pg-stop.sh failed"; }
	log "stopped; configs, data and logs are in $run_dir"
	exit $rc
}
trap cleanup EXIT
trap 'exit 0' INT TERM

# start NAME command...: in the background, output to logs/NAME.log
start() {
	local name=$1
	shift
	"$@" >>"$run_dir/logs/$name.log" 2>&1 &
	PIDS+=($!)
}
# wait_http NAME URL: until it answers 200 (60 s)
wait_http() {
	local i
	for ((i = 0; i < 600; i++)); do
		curl -s -f -o /dev/null --max-time 1 "$2" && return 0
		kill -0 "${PIDS[-1]}" 2>/dev/null || { tail -n 5 "$run_dir/logs/$1.log" >&2; die "$1 exited during start-up (log: $run_dir/logs/$1.log)"; }
		sleep 0.1
	done
	die "$1 not ready at $2 after 60 s (log: $run_dir/logs/$1.log)"
}

log "starting loupe (127.0.0.1:${PORT[loupe]})"
# shellcheck disable=SC2086  # LOUPE_STACK_LOUPE_ARGS is a list of options
# First, so that it sees the services start (the API's connections to PostgreSQL: connect latency).
# --offcpu: blocked time and off-CPU flame graphs (the profiling dashboard); the rest are loupe's defaults.
start loupe build/loupe run --listen "127.0.0.1:${PORT[loupe]}" --offcpu ${LOUPE_STACK_LOUPE_ARGS:-}
wait_http loupe "http://127.0.0.1:${PORT[loupe]}/readyz"

log "starting PostgreSQL (127.0.0.1:${PORT[postgres]}) and the API (127.0.0.1:${PORT[api]})"
STARTED_PG=1
"$WL/pg-start.sh" >>"$run_dir/logs/workload.log" 2>&1 || { tail -n 5 "$run_dir/logs/workload.log" >&2; die "pg-start.sh failed"; }
STARTED_API=1
"$WL/api-start.sh" >>"$run_dir/logs/workload.log" 2>&1 || { tail -n 5 "$run_dir/logs/workload.log" >&2; die "api-start.sh failed"; }

# Configuration: the repository's, with the local ports.
sed_ports=()
for k in "${!STD[@]}"; do sed_ports+=(-e "s/127\.0\.0\.1:${STD[$k]}\b/127.0.0.1:@${k}@/g"); done
for k in "${!STD[@]}"; do sed_ports+=(-e "s/127\.0\.0\.1:@${k}@/127.0.0.1:${PORT[$k]}/g"); done
sed "${sed_ports[@]}" deploy/prometheus/prometheus.yml >"$run_dir/prometheus/prometheus.yml"
cp deploy/prometheus/rules.yml deploy/prometheus/alerts.yml "$run_dir/prometheus/"
[[ -n $webhook ]] || webhook=http://127.0.0.1:${PORT[webhook]}/alerts
sed "s|url: 'http://127.0.0.1:9095/alerts'|url: '$webhook'|" deploy/alertmanager/alertmanager.yml >"$run_dir/alertmanager/alertmanager.yml"
grep -qF "$webhook" "$run_dir/alertmanager/alertmanager.yml" || die "could not set the webhook URL in alertmanager.yml"
promtool check config "$run_dir/prometheus/prometheus.yml" >>"$run_dir/logs/prometheus.log" 2>&1 \
	|| die "promtool check config failed (log: $run_dir/logs/prometheus.log)"


log "starting the exporters, Alertmanager and Prometheus"
if [[ $webhook == "http://127.0.0.1:${PORT[webhook]}/alerts" ]]; then
	start webhook "$PY" deploy/alertmanager/webhook-log.py --listen "127.0.0.1:${PORT[webhook]}" --out "$run_dir/alerts.jsonl"
fi
start node /usr/bin/prometheus-node-exporter --web.listen-address="127.0.0.1:${PORT[node]}"
wait_http node "http://127.0.0.1:${PORT[node]}/metrics"
DATA_SOURCE_NAME="postgresql://${LOUPE_PG_USER:-loupe}@127.0.0.1:${PORT[postgres]}/${LOUPE_PG_DB:-loupe}?sslmode=disable" \
	start postgres_exporter /usr/bin/prometheus-postgres-exporter --web.listen-address="127.0.0.1:${PORT[postgres_exporter]}"
wait_http postgres_exporter "http://127.0.0.1:${PORT[postgres_exporter]}/metrics"
start blackbox /usr/bin/prometheus-blackbox-exporter --config.file="$top/deploy/blackbox/blackbox.yml" \
	--web.listen-address="127.0.0.1:${PORT[blackbox]}"
wait_http blackbox "http://127.0.0.1:${PORT[blackbox]}/metrics"
start alertmanager /usr/bin/prometheus-alertmanager --config.file="$run_dir/alertmanager/alertmanager.yml" \
	--storage.path="$run_dir/data/alertmanager" --web.listen-address="127.0.0.1:${PORT[alertmanager]}" \
	--cluster.listen-address=
wait_http alertmanager "http://127.0.0.1:${PORT[alertmanager]}/-/ready"
start prometheus /usr/bin/prometheus --config.file="$run_dir/prometheus/prometheus.yml" \
	--storage.tsdb.path="$run_dir/data/prometheus" --web.listen-address="127.0.0.1:${PORT[prometheus]}" \
	--web.enable-lifecycle
wait_http prometheus "http://127.0.0.1:${PORT[prometheus]}/-/ready"

if ((load)); then
	log "starting the demo load (tests/workload/demo-load.sh: ~20 requests/s, WebSocket sessions, /slow, /fail, /cpu)"
	# Sessions reconnect every 10 s: WebSocket closes and session durations show on the dashboards within a minute.
	start load "$WL/demo-load.sh" --ws-reconnect 10
fi

cat >&2 <<EOF

The stack is up (127.0.0.1 only). Where to look:
  Prometheus     http://127.0.0.1:${PORT[prometheus]}/targets   (alerts: /alerts, rules: /rules)
  Alertmanager   http://127.0.0.1:${PORT[alertmanager]}/
  loupe          http://127.0.0.1:${PORT[loupe]}/metrics  /status  /flamegraph.svg?kind=cpu&service=api
  the API        http://127.0.0.1:${PORT[api]}/healthz
  exporters      node :${PORT[node]}  postgres :${PORT[postgres_exporter]}  blackbox :${PORT[blackbox]}
  notifications  $([[ $webhook == "http://127.0.0.1:${PORT[webhook]}/alerts" ]] && echo "$run_dir/alerts.jsonl (also printed in $run_dir/logs/webhook.log)" || echo "$webhook")
  Grafana        add a Prometheus data source at http://127.0.0.1:${PORT[prometheus]} and import dashboards/*.json
                 (README.md, "Monitoring stack")
  logs           $run_dir/logs/
Ctrl-C stops everything.
EOF

if ((duration)); then
	end=$((SECONDS + duration))
	while ((SECONDS < end)); do sleep 1; done
else
	while :; do sleep 1; done # (a foreground sleep delays the traps until it ends)
fi
