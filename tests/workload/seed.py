#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""Seed the workload database directly in SQL (idempotent, deterministic).

Creates the schema if missing, then tops the seed set up to --memories memories
(tagged "seed") and --edges edges between them. Running it again adds nothing.
Seeding goes straight to PostgreSQL so it adds no HTTP traffic to what Loupe sees.

    seed.py [--memories 200] [--edges 400] [--ids-only]

Prints a JSON summary on stdout ({"memories":..,"edges":..,"ids":[first,last],...});
with --ids-only it prints the seed memory ids, comma-separated (used by load.sh).
Connection settings: LOUPE_PG_HOST/PORT/DB/USER, as for app.py.
"""

import argparse
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

try:
    import psycopg2
except ImportError:
    sys.exit("seed.py: error: psycopg2 not importable; run with /usr/bin/python3")

from app import SCHEMA_LOCK_KEY, ensure_schema, pg_connect_kwargs  # noqa: E402

# Words the seeded contents are made of; mix.lua searches for some of them.
WORDS = ("graph memory postgres latency socket request profile kernel python uvicorn "
         "websocket query index vector embedding cache tensor cluster replica trace "
         "flame stack sample budget route schema commit rollback checkpoint vacuum "
         "network packet thread worker queue event metric histogram bucket").split()
TAGS = "note idea todo fact person place project".split()
RELATIONS = ["related", "mentions", "follows", "contradicts", "supports"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--memories", type=int, default=200, help="seed memories wanted (default 200)")
    ap.add_argument("--edges", type=int, default=400, help="seed edges wanted (default 400)")
    ap.add_argument("--ids-only", action="store_true", help="print only the seed ids, comma-separated")
    args = ap.parse_args()
    if args.memories < 2 or args.edges < 0:
        ap.error("--memories must be >= 2 and --edges >= 0")
    if args.edges > args.memories * (args.memories - 1) * len(RELATIONS):
        ap.error("--edges too large for that many memories")

    kw = pg_connect_kwargs()
    try:
        conn = psycopg2.connect(**kw)
    except psycopg2.OperationalError as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else "connection failed"
        sys.exit(f"seed.py: error: cannot connect to PostgreSQL at {kw['host']}:{kw['port']} "
                 f"(is pg-start.sh running?): {msg}")
    rng = random.Random(20240601)
    try:
        ensure_schema(conn)
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY + 1,))
            cur.execute("SELECT id FROM memories WHERE 'seed' = ANY(tags) ORDER BY id")
            ids = [r[0] for r in cur.fetchall()]
            created = 0
            for i in range(len(ids), args.memories):
                words = [rng.choice(WORDS) for _ in range(rng.randint(8, 16))]
                content = f"seed memory {i}: " + " ".join(words)
                tags = ["seed"] + rng.sample(TAGS, rng.randint(0, 2))
                cur.execute("INSERT INTO memories (content, tags) VALUES (%s, %s) RETURNING id",
                            (content, tags))
                ids.append(cur.fetchone()[0])
                created += 1

            cur.execute("SELECT count(*) FROM edges e JOIN memories m ON m.id = e.src "
                        "WHERE 'seed' = ANY(m.tags)")
            have_edges = cur.fetchone()[0]
            edges_created = 0
            attempts = 0
            while have_edges + edges_created < args.edges and attempts < args.edges * 20:
                attempts += 1
                src, dst = rng.sample(ids, 2)
                cur.execute("INSERT INTO edges (src, dst, relation) VALUES (%s, %s, %s) "
                            "ON CONFLICT DO NOTHING", (src, dst, rng.choice(RELATIONS)))
                edges_created += cur.rowcount
        conn.commit()
    except psycopg2.Error as exc:
        conn.rollback()
        sys.exit(f"seed.py: error: {str(exc).strip().splitlines()[0]}")
    finally:
        conn.close()

    if args.ids_only:
        print(",".join(str(i) for i in ids))
    else:
        print(json.dumps({"memories": len(ids), "memories_created": created,
                          "edges": have_edges + edges_created, "edges_created": edges_created,
                          "ids": [ids[0], ids[-1]] if ids else []}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
