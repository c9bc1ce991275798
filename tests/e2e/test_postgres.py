#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""End to end (root): PostgreSQL statements counted exactly on both sides of the wire, from captured payloads.

The private cluster and API of the reference workload run with loupe's `own` targets (api, postgres). Ground truth
is traffic this test makes itself:
  - direct psycopg2 queries from the test (not a target: only the backend side sees them), simple protocol:
    K statements of each of a few shapes with different literals -> exactly K per fingerprint and operation;
    SELECT pg_sleep(0.2) -> every one in le=0.25 and none in le=0.1; a syntax error and a unique violation ->
    errors by SQLSTATE class 42 and 23; committed and rolled-back transactions -> outcome counts; 10 shapes
    (each its own table) interleaved on one connection, shape j 2 + j % 3 times -> exactly that per fingerprint
    (more fingerprints than the connection's memo of their series has slots);
  - GET /memories/{id} through the API: the app runs BEGIN, its SELECT, COMMIT on a pooled connection, so the
    api side (db_client_operation_duration_seconds) and the backend side count N of each, with equal
    fingerprints;
  - pgbench (TCP, -M prepared and -M extended: the extended protocol, named and unnamed statements) with known
    transaction counts: select-only (1 statement a transaction) and TPC-B-like (BEGIN, 3 UPDATE, SELECT,
    INSERT, END a transaction) -> loupe's counts equal pgbench's;
  - a connection that negotiates TLS (SSLRequest answered 'S', the cluster switched to ssl=on at the end) is
    counted as postgresql_encrypted and no longer captured;
  - no literal of these statements appears in /metrics.
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from loupe_test import Loupe, select, value, wait_for  # noqa: E402
from e2e_support import PG_BIN, Workload, begin, stop_all  # noqa: E402

Q = "loupe_postgres_query_duration_seconds"
C = "db_client_operation_duration_seconds"
PGBENCH = os.path.join(PG_BIN, "pgbench")
K, SLEEPS, N_API, TX_COMMIT, TX_ROLLBACK = 7, 3, 6, 4, 2
PB_TX, PB_CLIENTS = 100, 2
# Three statements of different shapes, sent as one pipeline (Parse/Bind/Describe/Execute each, then one Sync) per
# transaction: 218 bytes in one write, inside the default 256-byte capture. (Statements of a longer pipeline that
# lie beyond the capture are not seen: their results count as loupe_postgres_parser_anomalies_total{unmatched}.)
PIPE_SQL = ["SELECT 1 FROM pgbench_tellers", "SELECT 2 FROM pgbench_branches", "SELECT count(*) FROM pgbench_history"]
PIPE = len(PIPE_SQL)
# Simple queries of many shapes interleaved on one connection, more than the per-connection memo of where a
# fingerprint was counted has slots (8): shape j reads its own table and runs 2 + j % 3 times, each with new literals.
SHAPES = 10  # 10 fingerprints in 8 slots: some share one
SHAPES_NAME = f"{SHAPES} shapes interleaved on one connection: each fingerprint counted exactly"


def shape_sql(j):
    return f"SELECT count(*) FROM e2e_shape_{j} WHERE k = %s"


SKIP_NAMES = [
    "workload and loupe start", "simple queries: exactly K per fingerprint and operation (backend side)",
    "statement info: normalised text without literals", "pg_sleep(0.2): all in le=0.25, none in le=0.1",
    "errors by SQLSTATE class: 42 (syntax) and 23 (unique violation)",
    "transactions: committed and rolled back", SHAPES_NAME, "API requests: BEGIN, SELECT, COMMIT counted on the api side",
    "API requests: the same statements counted on the backend side, same fingerprints",
    "COPY does not derail the parser: pgbench -i's statements after it are counted",
    "pgbench select-only (-M prepared): one SELECT per transaction", "pgbench TPC-B-like (-M extended): statements "
    "and committed transactions equal pgbench's", f"pipelined batches: {PIPE} Executes per Sync, each counted under its own fingerprint",
    "an encrypted connection is recognised, counted and skipped", "no literal in /metrics", "pgbench runs: only capture cuts of results, each found again from the write's tail",
]


def fp_of(m, service, needle):
    """The fingerprint whose statement_info query contains needle (for service)."""
    for d, _ in select(m, "loupe_postgres_statement_info", service_name=service):
        if needle in d.get("query", ""):
            return d["fingerprint"]
    return None


def enable_ssl(wl):
    """Turn TLS on in the private cluster (a self-signed certificate): "" or why not."""
    if not os.access("/usr/bin/openssl", os.X_OK):
        return "/usr/bin/openssl missing (apt-get install openssl)"
    crt, key = os.path.join(wl.pg_dir, "e2e.crt"), os.path.join(wl.pg_dir, "e2e.key")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                        "/CN=localhost", "-keyout", key, "-out", crt], capture_output=True)
    if r.returncode:
        return f"openssl failed: {r.stderr[-200:]}"
    for f in (crt, key):
        os.chmod(f, 0o600)
        subprocess.run(["chown", "postgres:postgres", f], check=True)
    import psycopg2
    su = psycopg2.connect(host="127.0.0.1", port=wl.pg_port, dbname="loupe", user="postgres")  # initdb -U postgres
    su.autocommit = True
    cur = su.cursor()
    cur.execute(f"ALTER SYSTEM SET ssl_cert_file = '{crt}'")
    cur.execute(f"ALTER SYSTEM SET ssl_key_file = '{key}'")
    cur.execute("ALTER SYSTEM SET ssl = on")
    cur.execute("SELECT pg_reload_conf()")
    su.close()
    time.sleep(0.5)
    return ""


def fp_text(m, fp):
    for d, _ in select(m, "loupe_postgres_statement_info", fingerprint=fp):
        return d.get("query")
    return None


def counts(a, b, name, service, key):
    """{label value of key: count delta} for histogram name's _count series of service."""
    out = {}
    for d, v in select(a, name + "_count", service_name=service):
        dv = v - value(b, name + "_count", **d)
        if dv:
            out[(d.get(key[0]), d.get(key[1]))] = out.get((d.get(key[0]), d.get(key[1])), 0) + dv
    return out


def main():
    why = None if os.access(PGBENCH, os.X_OK) else f"{PGBENCH} missing (apt-get install postgresql-15)"
    t = begin(SKIP_NAMES, why)
    wl = Workload("pg")
    L = None
    try:
        try:
            wl.start()
            # The statements of this test take ~50 fingerprints of the backend service (the default budget): 100, so
            # that none collapses into _other
            L = Loupe(*wl.own_targets(), "--fingerprint-budget", "100")
            L.start()
            ok = True
        except Exception as e:  # noqa: BLE001
            ok = str(e)
        t.ok(ok is True, "workload and loupe start", ok)
        if ok is not True:
            return
        conn = wl.pg_connect()  # opened after loupe started: a fresh connection, captured from its startup
        cur = conn.cursor()
        cur.execute("CREATE TABLE IF NOT EXISTS e2e_uniq (k int PRIMARY KEY)")
        time.sleep(0.3)
        b = L.scrape()

        # --- simple queries, backend side only
        for i in range(K):
            cur.execute(f"SELECT {987650 + i} + 1, 'lit{i}zz'")
            cur.execute("SELECT count(*) FROM memories WHERE content = %s", (f"needle{i}qq",))
        for _ in range(SLEEPS):
            cur.execute("SELECT pg_sleep(0.2)")
        try:
            cur.execute("SELEC 1")
        except Exception:  # noqa: BLE001
            pass
        cur.execute("INSERT INTO e2e_uniq VALUES (42) ON CONFLICT DO NOTHING")
        try:
            cur.execute("INSERT INTO e2e_uniq VALUES (42)")
        except Exception:  # noqa: BLE001
            pass
        conn.autocommit = False
        for i in range(TX_COMMIT):
            cur.execute("SELECT %s", (i,))
            conn.commit()
        for i in range(TX_ROLLBACK):
            cur.execute("SELECT %s", (i,))
            conn.rollback()
        conn.autocommit = True
        time.sleep(0.3)
        a = L.scrape()

        fp_sum = fp_of(a, "postgres", "SELECT $1 + $2, $3")
        fp_cnt = fp_of(a, "postgres", "SELECT count(*) FROM memories WHERE content = $1")
        got = counts(a, b, Q, "postgres", ("fingerprint", "operation"))
        want = {(fp_sum, "SELECT"): K, (fp_cnt, "SELECT"): K}
        t.ok(fp_sum and fp_cnt and all(got.get(k) == v for k, v in want.items()),
             "simple queries: exactly K per fingerprint and operation (backend side)", f"want {want}, got {got}")
        infos = [d.get("query") for d, _ in select(a, "loupe_postgres_statement_info")]
        t.ok(fp_sum and not any("lit" in q or "needle" in q or "1000" in q for q in infos),
             "statement info: normalised text without literals", infos)
        fp_sleep = fp_of(a, "postgres", "pg_sleep($1)")
        lab = {"service_name": "postgres", "operation": "SELECT", "fingerprint": fp_sleep}
        d25 = value(a, Q + "_bucket", le="0.25", **lab) - value(b, Q + "_bucket", le="0.25", **lab)
        d10 = value(a, Q + "_bucket", le="0.1", **lab) - value(b, Q + "_bucket", le="0.1", **lab)
        t.ok(fp_sleep and d25 == SLEEPS and d10 == 0, "pg_sleep(0.2): all in le=0.25, none in le=0.1",
             f"le=0.25 +{d25}, le=0.1 +{d10}, want {SLEEPS} and 0")
        errs = {c: value(a, "loupe_postgres_errors_total", service_name="postgres", side="server", sqlstate_class=c) -
                value(b, "loupe_postgres_errors_total", service_name="postgres", side="server", sqlstate_class=c)
                for c in ("42", "23")}
        t.ok(errs == {"42": 1, "23": 1}, "errors by SQLSTATE class: 42 (syntax) and 23 (unique violation)", errs)
        tx = {o: value(a, "loupe_postgres_transactions_total", service_name="postgres", side="server", outcome=o) -
              value(b, "loupe_postgres_transactions_total", service_name="postgres", side="server", outcome=o)
              for o in ("committed", "rolled_back")}
        t.ok(tx == {"committed": TX_COMMIT, "rolled_back": TX_ROLLBACK}, "transactions: committed and rolled back",
             f"got {tx}, want {TX_COMMIT} committed and {TX_ROLLBACK} rolled back")

        # --- many fingerprints on one connection
        cur.execute("; ".join(f"CREATE TABLE IF NOT EXISTS e2e_shape_{j} (k int)" for j in range(SHAPES)))  # 1 fingerprint
        time.sleep(0.3)
        b = L.scrape()
        runs = {j: 2 + j % 3 for j in range(SHAPES)}
        for k in range(max(runs.values())):
            for j in range(SHAPES):
                if k < runs[j]:
                    cur.execute(shape_sql(j), (1000 + 37 * k + j,))
        time.sleep(0.3)
        a = L.scrape()
        norm = {d.get("query"): d["fingerprint"] for d, _ in select(a, "loupe_postgres_statement_info",
                                                                     service_name="postgres")}
        fps = {j: norm.get(shape_sql(j).replace("%s", "$1")) for j in range(SHAPES)}
        got = counts(a, b, Q, "postgres", ("fingerprint", "operation"))
        want = {(fps[j], "SELECT"): runs[j] for j in range(SHAPES)}
        t.ok(len(set(fps.values())) == SHAPES and None not in fps.values() and got == want, SHAPES_NAME,
             f"fingerprints {fps}\nwant {want}\ngot {got}")

        # --- through the API: both sides
        b = L.scrape()
        wl.http_plan(f"GET /memories/1={N_API}")
        time.sleep(0.3)
        a = L.scrape()
        api = counts(a, b, C, "api", ("db_operation_name", "fingerprint"))
        fp_get = fp_of(a, "api", "FROM memories WHERE id = $1")
        want_ops = {"BEGIN": N_API, "SELECT": N_API, "COMMIT": N_API}
        by_op = {}
        for (op, _), v in api.items():
            by_op[op] = by_op.get(op, 0) + v
        t.ok(fp_get and by_op == want_ops and api.get(("SELECT", fp_get)) == N_API,
             "API requests: BEGIN, SELECT, COMMIT counted on the api side", f"got {api}, want {want_ops}")
        srv = counts(a, b, Q, "postgres", ("operation", "fingerprint"))
        t.ok(srv == api, "API requests: the same statements counted on the backend side, same fingerprints",
             f"backend {srv}\napi {api}")

        # --- pgbench: extended protocol, named (prepared) and unnamed statements
        env = dict(os.environ, PGHOST="127.0.0.1", PGPORT=str(wl.pg_port), PGUSER="loupe", PGDATABASE="loupe",
                   PGSSLMODE="disable")  # plain text even after the TLS phase turns ssl on
        b = L.scrape()
        subprocess.run([PGBENCH, "-i", "-q", "-s", "1"], env=env, check=True, capture_output=True, timeout=120)
        time.sleep(0.3)
        a = b_bench = L.scrape()
        # pgbench -i loads pgbench_accounts with one COPY FROM STDIN (megabytes of CopyData), then, on the same
        # connection, adds 3 primary keys and vacuums 4 tables: all counted after the COPY.
        ops = {}
        for (op, _), v in counts(a, b, Q, "postgres", ("operation", "fingerprint")).items():
            ops[op] = ops.get(op, 0) + v
        t.ok(ops.get("COPY") == 1 and ops.get("ALTER TABLE") == 3 and ops.get("VACUUM") == 4,
             "COPY does not derail the parser: pgbench -i's statements after it are counted",
             f"statements by operation during pgbench -i: {ops} (want COPY 1, ALTER TABLE 3, VACUUM 4)")
        b = a
        r = subprocess.run([PGBENCH, "-n", "-S", "-M", "prepared", "-c", str(PB_CLIENTS), "-t", str(PB_TX)], env=env,
                           capture_output=True, text=True, timeout=120)
        time.sleep(0.3)
        a = L.scrape()
        n_tx = PB_CLIENTS * PB_TX
        # pgbench itself asks for the scale and the partitioning first (one SELECT each, other fingerprints).
        fp_sel = fp_of(a, "postgres", "SELECT abalance FROM pgbench_accounts WHERE aid = $1")
        srv = {k: v for k, v in counts(a, b, Q, "postgres", ("operation", "fingerprint")).items()
               if "pgbench_branches" not in (fp_text(a, k[1]) or "") and "pg_catalog" not in (fp_text(a, k[1]) or "")}
        t.ok(r.returncode == 0 and f"number of transactions actually processed: {n_tx}/{n_tx}" in r.stdout and
             srv == {("SELECT", fp_sel): n_tx},
             "pgbench select-only (-M prepared): one SELECT per transaction",
             f"pgbench rc {r.returncode}: {r.stdout[-300:]}{r.stderr[-300:]}\nloupe: {srv}, want {n_tx} of {fp_sel}")

        b = L.scrape()
        r = subprocess.run([PGBENCH, "-n", "-M", "extended", "-c", str(PB_CLIENTS), "-t", str(PB_TX)], env=env,
                           capture_output=True, text=True, timeout=120)
        time.sleep(0.3)
        a = L.scrape()
        ops = {}
        for (op, fp), v in counts(a, b, Q, "postgres", ("operation", "fingerprint")).items():
            if op != "SELECT" or fp == fp_sel:  # not pgbench's own start-up queries
                ops[op] = ops.get(op, 0) + v
        want_ops = {"BEGIN": n_tx, "UPDATE": 3 * n_tx, "SELECT": n_tx, "INSERT": n_tx, "COMMIT": n_tx}
        txc = value(a, "loupe_postgres_transactions_total", service_name="postgres", side="server",
                    outcome="committed") - value(b, "loupe_postgres_transactions_total", service_name="postgres",
                                                 side="server", outcome="committed")
        a_tpcb = a
        t.ok(r.returncode == 0 and f"number of transactions actually processed: {n_tx}/{n_tx}" in r.stdout and
             ops == want_ops and txc == n_tx,
             "pgbench TPC-B-like (-M extended): statements and committed transactions equal pgbench's",
             f"pgbench rc {r.returncode}: {r.stdout[-300:]}\nloupe statements {ops}, want {want_ops}; "
             f"committed {txc}, want {n_tx}")

        # --- TLS: the server accepts an SSLRequest ('S'); loupe counts the connection and stops capturing it
        tls_why = enable_ssl(wl)
        if tls_why:
            t.skip("an encrypted connection is recognised, counted and skipped", tls_why)
        else:
            b = L.scrape()
            import psycopg2
            c2 = psycopg2.connect(host="127.0.0.1", port=wl.pg_port, dbname="loupe", user="loupe", sslmode="require")
            c2.autocommit = True
            k2 = c2.cursor()
            ssl_on = c2.info.ssl_in_use

            def enc_delta(m):
                return value(m, "loupe_payload_connections_total", service_name="postgres",
                             protocol="postgresql_encrypted") - value(b, "loupe_payload_connections_total",
                                                                      service_name="postgres",
                                                                      protocol="postgresql_encrypted")
            classified = wait_for(lambda: enc_delta(L.scrape()) == 1, timeout=5)
            m0 = L.scrape()
            for _ in range(5):
                k2.execute("SELECT 'tlslit' || 1")
            c2.close()
            time.sleep(0.3)
            a = L.scrape()
            recs = value(a, "loupe_payload_records_total", service_name="postgres", direction="received") - value(
                m0, "loupe_payload_records_total", service_name="postgres", direction="received")
            t.ok(ssl_on and classified and enc_delta(a) == 1 and recs == 0,
                 "an encrypted connection is recognised, counted and skipped",
                 f"ssl in use {ssl_on}; postgresql_encrypted +{enc_delta(a)} (want 1); backend reads captured after "
                 f"the classification {recs} (want 0)")

        # --- pipelining (libpq pipeline mode through pgbench's \\startpipeline): several Executes before one Sync
        script = os.path.join(wl.root, "pipeline.sql")
        with open(script, "w") as f:
            f.write("\\startpipeline\n" + "".join(f"{q};\n" for q in PIPE_SQL) + "\\endpipeline\n")
        os.chmod(wl.root, 0o755)
        b = L.scrape()
        r = subprocess.run([PGBENCH, "-n", "-M", "extended", "-c", "1", "-t", str(PB_TX), "-f", script], env=env,
                           capture_output=True, text=True, timeout=120)
        time.sleep(0.3)
        a = L.scrape()
        piped = {fp_text(a, fp): v for (op, fp), v in counts(a, b, Q, "postgres", ("operation", "fingerprint")).items()}
        t.ok(r.returncode == 0 and len(piped) == PIPE and all(v == PB_TX for v in piped.values()),
             f"pipelined batches: {PIPE} Executes per Sync, each counted under its own fingerprint",
             f"pgbench rc {r.returncode} {r.stderr[-300:]}; loupe {piped}, want {PIPE} fingerprints x {PB_TX}")

        text = L.scrape_text()
        leaks = [s for s in ("lit0zz", "needle0qq", "98765") if s in text]
        t.ok(not leaks, "no literal in /metrics", leaks)
        # pgbench -i's COPY sends megabytes of CopyData in big writes: the capture cuts message headers there and
        # the parser finds its way back at the next call (resync_head). The benchmark runs after it must need
        # nothing but tail resyncs (result sets longer than the capture).
        anomalies = {d.get("kind"): v - value(b_bench, "loupe_postgres_parser_anomalies_total", **d)
                     for d, v in select(a_tpcb, "loupe_postgres_parser_anomalies_total", service_name="postgres")}
        bad = {k: v for k, v in anomalies.items() if v and k not in ("backend_desync", "resync_tail")}
        t.ok(not bad and anomalies.get("backend_desync") == anomalies.get("resync_tail"),
             "pgbench runs: only capture cuts of results, each found again from the write's tail", anomalies)
    finally:
        stop_all(t, wl, L)


if __name__ == "__main__":
    main()
