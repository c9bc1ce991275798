#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""Loupe reference workload: a small memory + knowledge-graph API.

FastAPI (0.92) served by uvicorn (0.17), backed by PostgreSQL 15 through a
psycopg2 ThreadedConnectionPool.  Plain `def` endpoints run in FastAPI's
threadpool (anyio, 40 threads by default), so every database call is a real,
blocking libpq round trip on a worker thread.

Run it with api-start.sh, or by hand from this directory:
    /usr/bin/python3 -m uvicorn app:app --host 127.0.0.1 --port 18080

Configuration (environment):
    LOUPE_PG_HOST     127.0.0.1      PostgreSQL host (loopback only)
    LOUPE_PG_PORT     55432          PostgreSQL port
    LOUPE_PG_DB       loupe          database
    LOUPE_PG_USER     loupe          role (trust auth, no password)
    LOUPE_PG_POOL_MAX 10             connections per worker process
    LOUPE_SLOW_MS     200            default delay of GET /slow
    LOUPE_CPU_N       50000          default n of GET /cpu (~20 ms here)
"""

import asyncio
import json
import os
import threading
import time
from contextlib import contextmanager
from typing import List, Optional

import psycopg2
import psycopg2.errors
import psycopg2.pool
from fastapi import FastAPI, HTTPException, Query, Response, WebSocket
from pydantic import BaseModel, Field
from starlette.websockets import WebSocketDisconnect

# ------------------------------------------------------- uvicorn quirk ---
# With --workers > 1, uvicorn 0.17 binds the listening socket itself with
# socket.socket(family=...), i.e. proto 0, and asyncio only sets TCP_NODELAY on
# sockets whose proto is IPPROTO_TCP. The accepted connections then keep Nagle on;
# h11 writes headers and body separately, so every response waits for the
# client's delayed ACK: ~40 ms added to each request (single worker: not
# affected). Extend asyncio's check to proto 0 in this process; set
# LOUPE_API_TCP_NODELAY=0 to keep the stock behaviour (and its 40 ms stalls).
if os.environ.get("LOUPE_API_TCP_NODELAY", "1") != "0":
    import asyncio.base_events as _base_events
    import socket as _socket

    def _set_nodelay(sock):
        if (sock.family in (_socket.AF_INET, _socket.AF_INET6) and sock.type == _socket.SOCK_STREAM
                and sock.proto in (0, _socket.IPPROTO_TCP)):
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)

    _base_events._set_nodelay = _set_nodelay

# ---------------------------------------------------------------- config ---


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"app.py: {name}={raw!r} is not an integer")


PG_HOST = os.environ.get("LOUPE_PG_HOST", "127.0.0.1")
PG_PORT = _env_int("LOUPE_PG_PORT", 55432)
PG_DB = os.environ.get("LOUPE_PG_DB", "loupe")
PG_USER = os.environ.get("LOUPE_PG_USER", "loupe")
PG_POOL_MAX = max(1, _env_int("LOUPE_PG_POOL_MAX", 10))
SLOW_MS = min(5000, max(0, _env_int("LOUPE_SLOW_MS", 200)))
CPU_N = max(2, _env_int("LOUPE_CPU_N", 50000))
CPU_N_MAX = 2_000_000
UPDATE_INTERVAL_S = 0.1  # WebSocket "subscribe" push period

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS memories (
    id         serial PRIMARY KEY,
    content    text NOT NULL,
    tags       text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS edges (
    src      integer NOT NULL REFERENCES memories(id) ON DELETE CASCADE,
    dst      integer NOT NULL REFERENCES memories(id) ON DELETE CASCADE,
    relation text NOT NULL,
    PRIMARY KEY (src, dst, relation)
);
CREATE INDEX IF NOT EXISTS edges_dst_idx ON edges (dst);
"""
# Serialises concurrent schema creation (several uvicorn workers, seed.py).
SCHEMA_LOCK_KEY = 0x10DE


def pg_connect_kwargs() -> dict:
    return dict(host=PG_HOST, port=PG_PORT, dbname=PG_DB, user=PG_USER,
                application_name="loupe-workload", connect_timeout=5)


def ensure_schema(conn) -> None:
    """Create the tables if missing; safe to call concurrently."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        cur.execute(SCHEMA_SQL)
    conn.commit()


# ------------------------------------------------------------------ pool ---


class BlockingPool:
    """ThreadedConnectionPool that keeps its connections and waits when exhausted.

    Two psycopg2 pool quirks handled here:
    - putconn() closes any connection beyond `minconn` instead of keeping it idle, so
      with minconn < maxconn a busy API opens a new backend (a fork, ~20 ms) per
      request: minconn = maxconn, all opened at start-up.
    - getconn() raises PoolError("connection pool exhausted") as soon as more than
      maxconn threads ask; FastAPI's threadpool has 40 threads, so a semaphore
      makes callers queue instead.
    """

    def __init__(self, maxconn: int):
        self._pool = psycopg2.pool.ThreadedConnectionPool(maxconn, maxconn, **pg_connect_kwargs())
        self._slots = threading.BoundedSemaphore(maxconn)

    @contextmanager
    def cursor(self):
        if not self._slots.acquire(timeout=30):
            raise HTTPException(503, "database pool busy")
        try:
            conn = self._pool.getconn()
            broken = False
            try:
                with conn.cursor() as cur:
                    yield cur
                conn.commit()
            except BaseException:
                try:
                    conn.rollback()
                except psycopg2.Error:
                    broken = True
                raise
            finally:
                self._pool.putconn(conn, close=broken or bool(conn.closed))
        finally:
            self._slots.release()

    def close(self) -> None:
        self._pool.closeall()


pool: Optional[BlockingPool] = None
app = FastAPI(title="loupe reference workload", version="1.0")


@app.on_event("startup")
def _startup() -> None:
    global pool
    deadline = time.monotonic() + 15
    while True:
        try:
            conn = psycopg2.connect(**pg_connect_kwargs())
            break
        except psycopg2.OperationalError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"cannot connect to PostgreSQL at {PG_HOST}:{PG_PORT} db={PG_DB} "
                    f"user={PG_USER} (is pg-start.sh running?): {exc}".strip()) from None
            time.sleep(0.5)
    try:
        ensure_schema(conn)
    finally:
        conn.close()
    pool = BlockingPool(PG_POOL_MAX)


@app.on_event("shutdown")
def _shutdown() -> None:
    if pool is not None:
        pool.close()


def db():
    if pool is None:  # only if startup failed
        raise HTTPException(503, "database not ready")
    return pool.cursor()


# ---------------------------------------------------------------- models ---


class MemoryIn(BaseModel):
    content: str = Field(..., min_length=1, max_length=100_000)
    tags: List[str] = []


class MemoryPatch(BaseModel):
    content: Optional[str] = Field(None, min_length=1, max_length=100_000)
    tags: Optional[List[str]] = None


class EdgeIn(BaseModel):
    src: int
    dst: int
    relation: str = Field("related", min_length=1, max_length=200)


MEMORY_COLS = "id, content, tags, created_at"


def memory_row(row) -> dict:
    return {"id": row[0], "content": row[1], "tags": list(row[2] or []),
            "created_at": row[3].isoformat()}


# ------------------------------------------------------------- memories ---


@app.post("/memories", status_code=201)
def create_memory(m: MemoryIn):
    with db() as cur:
        cur.execute("INSERT INTO memories (content, tags) VALUES (%s, %s) RETURNING id",
                    (m.content, m.tags))
        return {"id": cur.fetchone()[0]}


@app.get("/memories")
def list_memories(limit: int = Query(20, ge=1, le=1000), offset: int = Query(0, ge=0)):
    with db() as cur:
        cur.execute(f"SELECT {MEMORY_COLS} FROM memories ORDER BY id LIMIT %s OFFSET %s",
                    (limit, offset))
        return [memory_row(r) for r in cur.fetchall()]


@app.get("/memories/{memory_id}")
def get_memory(memory_id: int):
    with db() as cur:
        cur.execute(f"SELECT {MEMORY_COLS} FROM memories WHERE id = %s", (memory_id,))
        row = cur.fetchone()
    if row is None:
        raise HTTPException(404, "memory not found")
    return memory_row(row)


@app.put("/memories/{memory_id}")
def update_memory(memory_id: int, m: MemoryPatch):
    with db() as cur:
        cur.execute(
            f"UPDATE memories SET content = COALESCE(%s, content), tags = COALESCE(%s, tags) "
            f"WHERE id = %s RETURNING {MEMORY_COLS}",
            (m.content, m.tags, memory_id))
        row = cur.fetchone()
    if row is None:
        raise HTTPException(404, "memory not found")
    return memory_row(row)


@app.delete("/memories/{memory_id}", status_code=204)
def delete_memory(memory_id: int):
    with db() as cur:
        cur.execute("DELETE FROM memories WHERE id = %s", (memory_id,))
        deleted = cur.rowcount
    if deleted == 0:
        raise HTTPException(404, "memory not found")
    return Response(status_code=204)


@app.get("/search")
def search(q: str = Query(..., min_length=1, max_length=200), limit: int = Query(20, ge=1, le=1000)):
    pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    with db() as cur:
        cur.execute(
            f"SELECT {MEMORY_COLS} FROM memories WHERE content ILIKE %s ORDER BY id LIMIT %s",
            (pattern, limit))
        return [memory_row(r) for r in cur.fetchall()]


# ----------------------------------------------------------------- graph ---


@app.post("/edges", status_code=201)
def create_edge(e: EdgeIn):
    try:
        with db() as cur:
            cur.execute(
                "INSERT INTO edges (src, dst, relation) VALUES (%s, %s, %s) "
                "ON CONFLICT DO NOTHING", (e.src, e.dst, e.relation))
    except psycopg2.errors.ForeignKeyViolation:
        raise HTTPException(404, "src or dst memory not found")
    return {"src": e.src, "dst": e.dst, "relation": e.relation}


@app.get("/graph/{memory_id}/neighbors")
def neighbors(memory_id: int):
    with db() as cur:
        cur.execute("SELECT 1 FROM memories WHERE id = %s", (memory_id,))
        if cur.fetchone() is None:
            raise HTTPException(404, "memory not found")
        cur.execute(
            """
            SELECT m.id, m.content, e.relation, 'out' AS direction
              FROM edges e JOIN memories m ON m.id = e.dst WHERE e.src = %s
            UNION ALL
            SELECT m.id, m.content, e.relation, 'in' AS direction
              FROM edges e JOIN memories m ON m.id = e.src WHERE e.dst = %s
            ORDER BY 1, 3
            """, (memory_id, memory_id))
        rows = cur.fetchall()
    return {"id": memory_id,
            "neighbors": [{"id": r[0], "content": r[1], "relation": r[2], "direction": r[3]}
                          for r in rows]}


# ------------------------------------------------------ known behaviours ---


@app.get("/slow")
def slow(ms: Optional[int] = Query(None, ge=0, le=5000)):
    delay = SLOW_MS if ms is None else ms
    time.sleep(delay / 1000)
    return {"slept_ms": delay}


@app.get("/fail")
def fail():
    raise HTTPException(500)


def count_primes(n: int) -> int:
    """Naive trial division: deliberately CPU-bound pure Python."""
    if n < 2:
        return 0
    count = 1  # 2
    for k in range(3, n + 1, 2):
        i = 3
        while i * i <= k:
            if k % i == 0:
                break
            i += 2
        else:
            count += 1
    return count


@app.get("/cpu")
def cpu(n: int = Query(CPU_N, ge=2, le=CPU_N_MAX)):
    t0 = time.perf_counter()
    primes = count_primes(n)
    return {"n": n, "primes": primes, "elapsed_ms": round((time.perf_counter() - t0) * 1000, 3)}


@app.get("/healthz")
def healthz():
    return {"ok": True}


# ------------------------------------------------------------- websocket ---


async def _push_updates(ws: WebSocket) -> None:
    seq = 0
    try:
        while True:
            await asyncio.sleep(UPDATE_INTERVAL_S)
            seq += 1
            await ws.send_text(json.dumps({"event": "update", "seq": seq}))
    except asyncio.CancelledError:
        raise
    except Exception:  # client went away mid-send: the receive loop ends the session
        return


@app.websocket("/ws")
async def ws_echo(ws: WebSocket):
    """Echo every message unchanged; "subscribe" also starts 100 ms updates."""
    await ws.accept()
    pusher: Optional[asyncio.Task] = None
    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                break
            text = msg.get("text")
            if text is not None:
                await ws.send_text(text)
                if text == "subscribe" and pusher is None:
                    pusher = asyncio.create_task(_push_updates(ws))
                elif text == "unsubscribe" and pusher is not None:
                    pusher.cancel()
                    pusher = None
            elif msg.get("bytes") is not None:
                await ws.send_bytes(msg["bytes"])
    except WebSocketDisconnect:
        pass
    finally:
        if pusher is not None:
            pusher.cancel()
            try:
                await pusher
            except (asyncio.CancelledError, Exception):
                pass
    # When the client closed, the protocol layer has already answered its close
    # frame with the same code (1000 for a normal close); nothing more to send.


# Close codes an endpoint may send (RFC 6455 7.4; 1004-1006, 1015 are reserved).
_SENDABLE_CLOSE = set(range(1000, 1004)) | set(range(1007, 1015)) | set(range(3000, 5000))


@app.websocket("/ws/close/{code}")
async def ws_close(ws: WebSocket, code: int):
    """Accept, then close at once with the given code (invalid codes: 1008)."""
    await ws.accept()
    if code in _SENDABLE_CLOSE:
        await ws.close(code=code)
    else:
        await ws.close(code=1008)
