/* SPDX-License-Identifier: BSD-2-Clause */
/* PostgreSQL frontend/backend protocol 3.0 (https://www.postgresql.org/docs/15/protocol.html) from truncated
 * views of one TCP connection's read and write syscalls, on either end of it.
 *
 * Roles. PG_ROLE_SERVER watches a postgres backend: FLOW_IN (what it read) carries frontend messages and
 * FLOW_OUT backend messages. PG_ROLE_CLIENT watches the application (libpq, psycopg): FLOW_OUT carries frontend
 * messages and FLOW_IN backend messages. Everything else is the same.
 *
 * Each call hands over the first `cap` bytes of the `len` bytes a syscall transferred and, optionally, its last
 * `tailn` bytes (tailn <= len - cap, no overlap); the bytes between are unknown. pg_conn_feed() follows both
 * streams with bounded memory (one struct pg_conn, no allocation) and reports through a sink:
 *  - QUERY once per statement execution (protocol-flow.html 55.2.2 and 55.2.3):
 *      simple query 'Q': from the call carrying the Q to the call carrying its CommandComplete /
 *      ErrorResponse / EmptyQueryResponse. A Q with several statements gives one QUERY per statement result,
 *      all with the whole Q text and the same id; the first starts at the Q, each later one at the end of the
 *      one before (so their durations add up to the Q's);
 *      extended query: from the first Parse, Bind or Execute since the previous Execute or Sync, to the
 *      Execute's CommandComplete / ErrorResponse / EmptyQueryResponse / PortalSuspended. Its text is that of
 *      the Parse that defined the executed statement (named statements are kept in a table of PG_STMT_MAX
 *      entries, least recently used evicted; an unknown statement gives NULL text).
 *      Results are matched to executions first in, first out. After an ErrorResponse the backend skips
 *      frontend messages until Sync (55.2.3), so the later Executes of that batch end "aborted", as do
 *      executions whose result was never seen (connection closed, records lost, result hidden by the capture);
 *  - TXN when ReadyForQuery's status goes from T or E to I: committed (the last CommandComplete was COMMIT and
 *    the transaction had not failed), duration from the start of the statement that moved the status from I
 *    to T or E, to the ReadyForQuery's call;
 *  - IDLE_IN_TXN for the gap between a ReadyForQuery in status T or E with nothing pending and the next
 *    frontend call;
 *  - STARTUP (protocol version), CANCEL (a CancelRequest connection), ENCRYPTED (the server accepted an
 *    SSLRequest or GSSENCRequest: nothing more can be parsed), NOT_PG (the bytes are not this protocol).
 * After ENCRYPTED, CANCEL or NOT_PG, pg_conn_feed() returns PG_FEED_DONE and the caller should stop capturing.
 *
 * Truncation. Message bodies are skipped by their length, captured or not. When a message header (type byte
 * and length) would begin in unknown bytes, that stream has lost sync (PG_AN_*_DESYNC). It finds a message
 * boundary again:
 *  - at the start of a later call whose captured bytes parse as plausible messages (PG_AN_RESYNC_HEAD);
 *  - for backend messages, from the tail: a backend write normally ends with ReadyForQuery, maybe right after
 *    a CommandComplete, ErrorResponse, EmptyQueryResponse or PortalSuspended. When the tail ends with a valid
 *    ReadyForQuery, the oldest batch still waiting (up to its Sync, or a simple Q) is answered by it: its last
 *    execution gets the tail's result (or is aborted when there is none), earlier ones still without a result
 *    are aborted, and the stream is in sync after the call (PG_AN_RESYNC_TAIL). The tail is also parsed
 *    forward when the message being read ends inside it.
 * A frontend call that loses sync and whose tail ends with "Execute Sync" (how libpq ends a batch) is taken to
 * end with one execution of that portal and a Sync, timed from the batch's first message (PG_AN_RESYNC_TAIL).
 * Other frontend bytes lost while executions could hide in them are represented by a placeholder that absorbs the
 * results up to the next ReadyForQuery: the lost bytes are taken to end their batch with one Sync. When that
 * guess is wrong, results can be matched to the wrong executions until a ReadyForQuery finds no batch
 * waiting; the anomaly counters say how often framing was guessed.
 *
 * Memory: sizeof(struct pg_conn) is about 5.7 KiB (PG_STMT_MAX * PG_QUERY_MAX of statement text dominates).
 * Not thread-safe; one struct per connection. Strings in events are valid only during the callback. */
#ifndef LOUPE_PGWIRE_H
#define LOUPE_PGWIRE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parsers/flow.h"

#define PG_QUERY_MAX 256	/* query text kept per statement (the rest is cut: truncated) */
#define PG_STMT_MAX 16		/* statements (named, unnamed, simple Q texts) remembered per connection */
#define PG_PORTAL_MAX 4		/* portals remembered per connection */
#define PG_PIPELINE_MAX 32	/* executions and Syncs awaiting their results */
#define PG_TAG_MAX 64		/* CommandComplete tag kept (longer ones are unknown) */
#define PG_OP_MAX 32		/* operation names */
#define PG_UNSYNCED_MAX 64	/* calls without framing before anything was recognised: then NOT_PG */

/* pg_conn_init() flags. */
#define PG_CONN_MIDSTREAM 0x1	/* capture began after the connection did: no startup, find a message boundary */

/* Protocol codes of the startup packet (protocol-message-formats.html). */
#define PG_PROTOCOL_3_0 196608u	/* 3 << 16 */
#define PG_CANCEL_CODE 80877102u
#define PG_SSL_CODE 80877103u
#define PG_GSSENC_CODE 80877104u

enum pg_role {
	PG_ROLE_SERVER,	/* the watched process is the postgres backend */
	PG_ROLE_CLIENT,	/* the watched process is the frontend (application) */
};

enum pg_event_type {
	PG_EV_QUERY,
	PG_EV_TXN,
	PG_EV_IDLE_IN_TXN,
	PG_EV_STARTUP,
	PG_EV_CANCEL,
	PG_EV_ENCRYPTED,
	PG_EV_NOT_PG,
};

enum pg_encryption {
	PG_ENC_TLS,	/* SSLRequest answered 'S' */
	PG_ENC_GSS,	/* GSSENCRequest answered 'G' */
};

enum pg_not_pg {
	PG_NOT_TLS,		/* a TLS record where the startup packet belongs (or direct TLS) */
	PG_NOT_HTTP,		/* HTTP text */
	PG_NOT_VERSION,		/* a startup packet of another major protocol version */
	PG_NOT_GARBAGE,		/* a startup packet or first message with impossible lengths or codes */
	PG_NOT_SERVER_FIRST,	/* backend bytes before any startup packet: the server never speaks first */
	PG_NOT_UNSYNCED,	/* midstream: no message boundary within PG_UNSYNCED_MAX calls */
	PG_NOT_MAX,
};

/* Parser anomalies, for loupe_postgres_parser_anomalies_total{kind}-style counters. */
enum pg_anomaly {
	PG_AN_FE_DESYNC,	/* a frontend message header began in uncaptured bytes */
	PG_AN_BE_DESYNC,	/* a backend message header began in uncaptured bytes */
	PG_AN_RESYNC_HEAD,	/* a call began at a message boundary again */
	PG_AN_RESYNC_TAIL,	/* a backend write's tail ended with ReadyForQuery: sync found again */
	PG_AN_BAD_HEADER,	/* an impossible length or type at a message boundary: sync lost */
	PG_AN_UNKNOWN_MESSAGE,	/* a message type this parser does not know (skipped by its length) */
	PG_AN_PIPELINE_FULL,	/* an execution past PG_PIPELINE_MAX waiting ones: not reported */
	PG_AN_UNMATCHED,	/* a result or ReadyForQuery with no execution / batch waiting */
	PG_AN_STMT_UNKNOWN,	/* Execute of a portal or statement whose Parse was not seen */
	PG_AN_STMT_EVICTED,	/* a named statement evicted from the table */
	PG_AN_RECORDS_LOST,	/* pg_conn_lost() */
	PG_AN_MAX,
};

struct pg_stats {
	uint64_t n[PG_AN_MAX];
	uint64_t executions;	/* executions queued (each ends in QUERY or aborted QUERY events) */
};

struct pg_event {
	enum pg_event_type type;
	/* QUERY */
	uint32_t id;		/* execution number on this connection (1, 2, ...); shared by a Q's statements */
	const char *query;	/* text as captured, not NUL-terminated; NULL when unknown */
	size_t query_len;
	uint64_t stmt_gen;	/* the text query is: never reused on this connection (a statement parsed again gets
				 * a new one), 0 when query is NULL; it sits in slot stmt_slot (< PG_STMT_MAX), so a
				 * consumer can keep a memo per slot */
	uint8_t stmt_slot;
	bool truncated;		/* the text was cut by the capture or by PG_QUERY_MAX */
	bool simple;		/* a simple query 'Q' (else extended protocol) */
	bool aborted;		/* no result: skipped after an error, or never seen (no tag, no sqlstate) */
	bool suspended;		/* ended by PortalSuspended (Execute with a row limit) */
	const char *operation;	/* "SELECT", "INSERT", "CREATE TABLE", ... or "UNKNOWN" */
	const char *tag;	/* the CommandComplete tag, or NULL */
	char sqlstate[6];	/* "" when ok, the 5-char SQLSTATE of an error, "?????" if not captured */
	/* QUERY, TXN, IDLE_IN_TXN */
	uint64_t start_ns;
	uint64_t end_ns;
	uint64_t duration_ns;	/* end_ns - start_ns */
	bool committed;		/* TXN */
	uint32_t version;	/* STARTUP: protocol version (PG_PROTOCOL_3_0) */
	enum pg_encryption encryption;	/* ENCRYPTED */
	enum pg_not_pg reason;		/* NOT_PG */
};

struct pg_sink {
	void (*event)(void *ctx, const struct pg_event *ev);	/* may be NULL */
	void *ctx;
	struct pg_stats *stats;	/* may be NULL */
};

/* Results of pg_conn_feed(). Once DONE, later calls do nothing and return DONE. */
enum {
	PG_FEED_OK = 0,
	PG_FEED_DONE = 1,
};

/* Private: one stream's parser. */
struct pg_side {
	uint8_t state;
	uint8_t type;		/* type byte of the message being read */
	uint8_t hdrlen;
	uint8_t hdr[8];		/* type + length, or startup length + code */
	uint8_t field;		/* body interpretation: field index, or done */
	uint8_t sub;		/* body interpretation: current field's type byte */
	uint8_t cut;		/* some body bytes were not captured */
	uint8_t names_ok;	/* name fields were read whole */
	uint8_t slot;		/* statement slot receiving the text (Q, P) */
	uint16_t fpos;
	uint32_t remaining;	/* body bytes still to pass */
	uint64_t h1, h2;	/* hashes of name fields */
	uint64_t first_ns;	/* ts of the call with the message's first byte */
};

/* Private: a statement's text. */
struct pg_stmt {
	uint64_t name;		/* FNV-1a of the name */
	uint64_t gen;		/* of this text, never reused on the connection (64 bits: never wraps); 0: empty */
	uint32_t used;		/* LRU stamp */
	uint16_t len;
	uint8_t findable;	/* by name (a simple Q's text, a replaced statement: not) */
	uint8_t truncated;
	char text[PG_QUERY_MAX];
};

/* Private: a portal and the statement bound to it. */
struct pg_portal {
	uint64_t name;
	uint64_t gen;		/* of the statement slot; 0: unknown statement */
	uint8_t slot;
	uint8_t valid;
	uint16_t used;
};

/* Private: an execution or Sync awaiting its result. */
struct pg_item {
	uint64_t start_ns;
	uint32_t id;		/* executions; for placeholders: Syncs still to absorb */
	uint64_t gen;
	uint8_t kind;
	uint8_t slot;
	uint8_t done;		/* a simple Q that reported a result */
	uint8_t pad;
};

/* One connection. Fields are private: use the functions below. */
struct pg_conn {
	struct pg_side fe, be;
	struct pg_stmt stmts[PG_STMT_MAX];
	struct pg_portal portals[PG_PORTAL_MAX];
	struct pg_item q[PG_PIPELINE_MAX];
	uint8_t qhead, qlen;
	uint8_t role, mode, flags;
	uint8_t txn_status;	/* last ReadyForQuery status: 'I', 'T', 'E', or 0 when unknown */
	uint8_t txn_open;	/* the transaction's start was seen */
	uint8_t last_commit;	/* the last result was CommandComplete COMMIT */
	uint8_t taglen, tag_ok;
	uint8_t errlen;
	char sqlstate[5];
	char tag[PG_TAG_MAX];
	uint32_t stamp, exec_id, unsynced_calls;
	uint64_t gen;		/* texts stored so far: the last one's gen */
	uint64_t batch_start;	/* first Parse/Bind/Execute since the last Execute or Sync, or 0 */
	uint64_t since_z_start;	/* start of the first execution ended since the last ReadyForQuery, or 0 */
	uint64_t txn_start;
	uint64_t idle_since;	/* ReadyForQuery T/E with nothing pending, or 0 */
};

void pg_conn_init(struct pg_conn *c, enum pg_role role, unsigned flags);
/* Feed one syscall's view: direction, captured head data[0..cap), bytes transferred len (cap is clamped to
 * len), the last tailn bytes tail[0..tailn) (NULL/0 when not captured; clamped to len - cap), and the call's
 * timestamp. Returns PG_FEED_*. */
int pg_conn_feed(struct pg_conn *c, enum flow_dir dir, const uint8_t *data, size_t cap, size_t len,
		 const uint8_t *tail, size_t tailn, uint64_t ts_ns, const struct pg_sink *sink);
/* Calls of this connection were lost before they reached the parser: both streams look for a message boundary
 * again, waiting executions are aborted and the transaction state is forgotten. */
void pg_conn_lost(struct pg_conn *c, uint64_t ts_ns, const struct pg_sink *sink);
/* The connection closed: waiting executions are aborted (an open transaction is not reported as ended).
 * Later feeds do nothing. */
void pg_conn_close(struct pg_conn *c, uint64_t ts_ns, const struct pg_sink *sink);
/* Executions started and not yet reported (for tests and gauges). */
size_t pg_conn_pending(const struct pg_conn *c);

const char *pg_event_name(enum pg_event_type t);
const char *pg_not_pg_name(enum pg_not_pg r);
const char *pg_anomaly_name(enum pg_anomaly a);
/* The operation of a CommandComplete tag t[0..n): the tag without its trailing numbers ("INSERT 0 1" ->
 * "INSERT"), into out (PG_OP_MAX). Returns false when it is not a tag (empty, not upper-case words). */
bool pg_tag_operation(const char *t, size_t n, char *out);
/* The first keyword of query text q[0..n), upper-cased, after blanks, '(' and comments; "UNKNOWN" if none. */
void pg_query_operation(const char *q, size_t n, char *out);

#endif
