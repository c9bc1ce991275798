#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# End-to-end self-test of the workload scripts (root; about 40 s).
# Uses its own cluster, ports and run dir (so it never touches a running workload):
#   LOUPE_PG_DIR=/tmp/loupe-pg-selftest LOUPE_PG_PORT=55433 LOUPE_API_PORT=18081
#   LOUPE_RUN_DIR=/tmp/loupe-workload-selftest   (each overridable)
# Two full start -> traffic -> stop cycles (the second with 2 uvicorn workers), asserting
# status codes, /slow latency, WebSocket echo counts and that no process is left behind.
set -euo pipefail
export LOUPE_PG_DIR="${LOUPE_PG_DIR:-/tmp/loupe-pg-selftest}"
export LOUPE_PG_PORT="${LOUPE_PG_PORT:-55433}"
export LOUPE_API_PORT="${LOUPE_API_PORT:-18081}"
export LOUPE_RUN_DIR="${LOUPE_RUN_DIR:-/tmp/loupe-workload-selftest}"
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
W="${WORKLOAD_DIR}"

fail() { echo "selftest: FAIL: $*" >&2; exit 1; }
ok() { echo "selftest: ok: $*" >&2; }

cleanup() {
    "${W}/api-stop.sh" >/dev/null 2>&1 || true
    "${W}/pg-stop.sh" --purge >/dev/null 2>&1 || true
}
trap cleanup EXIT

# json_get JSON EXPR: evaluate a Python expression on the parsed JSON `j`.
json_get() { "${PYTHON}" -c 'import json,sys; j=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }

# Live processes whose command line matches $1 (ps is captured first so grep never sees itself).
procs_matching() {
    local snap
    snap="$(ps -e -o pid=,stat=,args= | awk '$2 !~ /^Z/')"
    grep -E -- "${1}" <<<"${snap}" || true
}
leftovers() {  # processes of ours still alive (by data dir / port, never by bare name)
    procs_matching "-D ${LOUPE_PG_DIR}( |\$)|uvicorn app:app .*--port ${LOUPE_API_PORT}( |\$)"
}

[[ "$(id -u)" -eq 0 ]] || fail "run as root"
[[ -z "$(leftovers)" ]] || fail "selftest processes already running: $(leftovers)"
"${W}/pg-stop.sh" --purge >/dev/null 2>&1 || true

cycle() {  # $1 = cycle number, $2 = uvicorn workers
    local n="${1}" out code t0 t1
    export LOUPE_API_WORKERS="${2}"
    echo "selftest: --- cycle ${n} (workers ${LOUPE_API_WORKERS}) ---" >&2
    "${W}/pg-start.sh"
    "${W}/pg-start.sh" 2>&1 | grep -q "already running" || fail "second pg-start.sh is not idempotent"
    "${W}/api-start.sh"
    "${W}/api-start.sh" 2>&1 | grep -q "already running" || fail "second api-start.sh is not idempotent"
    tr '\0' ' ' <"/proc/$(cat "${LOUPE_RUN_DIR}/api.pid")/cmdline" | grep -q uvicorn \
        || fail "API command line does not contain uvicorn"

    out="$("${PYTHON}" "${W}/seed.py")"; ok "seed: ${out}"
    out="$("${PYTHON}" "${W}/seed.py")"
    [[ "$(json_get "${out}" 'j["memories_created"] + j["edges_created"]')" == 0 ]] || fail "seed.py not idempotent"

    out="$("${W}/load.sh" -d 5 -c 8 -t 2 2>&1)" || fail "load.sh failed: ${out}"
    out="$(grep '^loupe-wrk: ' <<<"${out}")"; out="${out#loupe-wrk: }"
    [[ "$(json_get "${out}" 'j["requests"] > 100 and j["errors"] == 0 and list(j["status"]) == ["200"]')" == True ]] \
        || fail "load.sh summary: ${out}"
    ok "load.sh mix 5s: ${out}"
    out="$("${W}/load.sh" -d 2 -c 4 -t 1 --no-seed --path /healthz 2>&1)" || fail "load.sh --path failed"

    # Exact per-endpoint counts and status codes.
    local plan='GET /memories/1=0,GET /healthz=5,GET /fail=3,GET /slow=2,GET /memories/999999999=4,POST /memories=3,GET /cpu=2,GET /search?q=graph=2,GET /memories?limit=5=1,GET /graph/999999999/neighbors=1,DELETE /memories/999999999=1,PUT /memories/999999999=1'
    out="$("${PYTHON}" "${W}/http_client.py" --plan "${plan}")" || fail "http_client.py: ${out}"
    [[ "$(json_get "${out}" '(j["GET /fail"]["status"], j["GET /slow"]["status"], j["GET /memories/999999999"]["status"], j["POST /memories"]["status"], j["GET /cpu"]["status"], j["GET /healthz"]["sent"], j["GET /graph/999999999/neighbors"]["status"], j["DELETE /memories/999999999"]["status"], j["PUT /memories/999999999"]["status"], j["GET /memories/1"]["sent"])')" \
        == "({'500': 3}, {'200': 2}, {'404': 4}, {'201': 3}, {'200': 2}, 5, {'404': 1}, {'404': 1}, {'404': 1}, 0)" ]] \
        || fail "http_client.py statuses: ${out}"
    local slow_ms
    slow_ms="$(json_get "${out}" 'j["GET /slow"]["latency_ms"]["mean"]')"
    "${PYTHON}" -c "import sys; sys.exit(0 if 195 <= ${slow_ms} <= 300 else 1)" || fail "/slow took ${slow_ms} ms, want ~200"
    ok "http_client.py: /fail 500 x3, missing 404, /slow ${slow_ms} ms"

    # Full CRUD + graph on fresh rows.
    local a b
    out="$(curl -sf -X POST -H 'content-type: application/json' -d '{"content":"selftest alpha","tags":["x"]}' "$(api_url)/memories")"
    a="$(json_get "${out}" 'j["id"]')"
    out="$(curl -sf -X POST -H 'content-type: application/json' -d '{"content":"selftest beta"}' "$(api_url)/memories")"
    b="$(json_get "${out}" 'j["id"]')"
    code="$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' -d "{\"src\":${a},\"dst\":${b},\"relation\":\"mentions\"}" "$(api_url)/edges")"
    [[ "${code}" == 201 ]] || fail "POST /edges -> ${code}"
    out="$(curl -sf "$(api_url)/graph/${a}/neighbors")"
    [[ "$(json_get "${out}" '[x["id"] for x in j["neighbors"]]')" == "[${b}]" ]] || fail "neighbors: ${out}"
    code="$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'content-type: application/json' -d '{"content":"selftest alpha v2"}' "$(api_url)/memories/${a}")"
    [[ "${code}" == 200 ]] || fail "PUT -> ${code}"
    [[ "$(curl -sf "$(api_url)/search?q=ALPHA%20v2" | grep -c "selftest alpha v2")" == 1 ]] || fail "search after PUT"
    code="$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$(api_url)/memories/${a}")"
    [[ "${code}" == 204 ]] || fail "DELETE -> ${code}"
    code="$(curl -s -o /dev/null -w '%{http_code}' "$(api_url)/memories/${a}")"
    [[ "${code}" == 404 ]] || fail "GET deleted -> ${code}"
    code="$(curl -s -o /dev/null -w '%{http_code}' "$(api_url)/slow?ms=6000")"
    [[ "${code}" == 422 ]] || fail "/slow?ms=6000 -> ${code}"
    t0="$(date +%s%N)"; curl -sf "$(api_url)/slow?ms=50" >/dev/null; t1="$(date +%s%N)"
    (( (t1 - t0) / 1000000 >= 50 )) || fail "/slow?ms=50 too fast"
    ok "CRUD, edges, neighbors, search, /slow?ms"

    # WebSocket: echoes, binary, subscribe pushes, close codes.
    out="$("${PYTHON}" "${W}/ws_client.py" --sessions 5 --messages 20)" || fail "ws_client: ${out}"
    [[ "$(json_get "${out}" '(j["messages_sent"], j["messages_received"], j["errors"], j["close_codes"])')" \
        == "(100, 100, 0, {'1000': 5})" ]] || fail "ws_client summary: ${out}"
    ok "ws_client 5x20: ${out}"
    out="$("${PYTHON}" "${W}/ws_client.py" --sessions 2 --messages 10 --binary --size 300)" || fail "ws binary: ${out}"
    out="$("${PYTHON}" "${W}/ws_client.py" --sessions 2 --duration 1.5 --rate 4 --subscribe)" || fail "ws subscribe: ${out}"
    [[ "$(json_get "${out}" 'j["updates_received"] >= 20')" == True ]] || fail "too few updates: ${out}"
    out="$("${PYTHON}" "${W}/ws_client.py" --sessions 2 --expect-close 4001)" || fail "ws close 4001: ${out}"
    out="$("${PYTHON}" "${W}/ws_client.py" --expect-close 1011)" || fail "ws close 1011: ${out}"
    ok "ws binary, subscribe, close codes"

    # demo-load.sh runs and stops cleanly.
    "${W}/demo-load.sh" -d 6 >/dev/null 2>&1 || fail "demo-load.sh failed"
    [[ -z "$(procs_matching "mix.lua http://127.0.0.1:${LOUPE_API_PORT}|ws_client.py --sessions 3 --duration 0|http_client.py --plan")" ]] \
        || fail "demo-load.sh left processes behind: $(procs_matching "mix.lua|ws_client.py|http_client.py")"
    ok "demo-load.sh 6s"

    # Errors are clear.
    if LOUPE_API_PORT=1 "${W}/load.sh" -d 1 >/dev/null 2>&1; then fail "load.sh against a dead port succeeded"; fi
    if "${PYTHON}" "${W}/http_client.py" --port 1 --plan 'GET /healthz=1' >/dev/null 2>&1; then
        fail "http_client.py against a dead port succeeded"
    fi

    # Stop with a subscribed WebSocket session open: must be prompt. uvicorn 0.17 drops
    # WebSocket connections without a close frame on shutdown, so the client sees 1006.
    local api_pid pg_pid ws_pid t_stop
    api_pid="$(cat "${LOUPE_RUN_DIR}/api.pid")"
    pg_pid="$(head -n 1 "${LOUPE_PG_DIR}/postmaster.pid")"
    "${PYTHON}" "${W}/ws_client.py" --sessions 2 --duration 0 --rate 2 --subscribe \
        >"${LOUPE_RUN_DIR}/selftest-ws.out" 2>&1 &
    ws_pid=$!
    sleep 1
    t_stop=${SECONDS}
    "${W}/api-stop.sh"
    ((SECONDS - t_stop <= 5)) || fail "api-stop.sh took $((SECONDS - t_stop))s with WebSocket sessions open"
    if wait "${ws_pid}"; then fail "ws_client did not notice the API going away"; fi
    grep -q '"1006": 2' "${LOUPE_RUN_DIR}/selftest-ws.out" || fail "ws_client: $(cat "${LOUPE_RUN_DIR}/selftest-ws.out")"
    "${W}/api-stop.sh" 2>&1 | grep -q "not running" || fail "second api-stop.sh is not idempotent"
    [[ -z "$(ps -e -o pgid=,stat= | awk -v g="${api_pid}" '$1 == g && $2 !~ /^Z/')" ]] \
        || fail "API workers left behind in process group ${api_pid}"
    "${W}/pg-stop.sh"
    [[ -z "$(ps -e -o pid=,ppid=,stat= | awk -v p="${pg_pid}" '($1 == p || $2 == p) && $3 !~ /^Z/')" ]] \
        || fail "postgres processes left behind (postmaster ${pg_pid})"
    "${W}/pg-stop.sh" 2>&1 | grep -q "not running" || fail "second pg-stop.sh is not idempotent"
    sleep 0.5
    [[ -z "$(leftovers)" ]] || fail "processes left after stop: $(leftovers)"
    ok "cycle ${n}: stopped, nothing left behind"
}

cycle 1 1
cycle 2 2
echo "selftest: PASS" >&2
