/* SPDX-License-Identifier: BSD-2-Clause */
/* Internal to the payload collector (src/collectors/payload.c) and its protocol rows (src/collectors/payload_http.c:
 * HTTP and WebSocket; src/collectors/payload_pg.c: PostgreSQL), listed in src/collectors/payload_protos.c. Adding a
 * protocol is adding a row: a struct proto, its families and a line in the table; payload.c names no protocol. */
#ifndef LOUPE_PAYLOAD_INT_H
#define LOUPE_PAYLOAD_INT_H
#include "collectors/labelset.h"
#include "core/loupe.h"
#include "parsers/http.h"
#include "payload.h"
#include "parsers/pgwire.h"
#include "parsers/route.h"
#include "parsers/sql.h"
#include "parsers/websocket.h"

#define CONN_BUCKETS 4096	 /* power of two */
#define CONN_MAX 16384		 /* connections parsed at once; more are not captured (counted) */
#define CONN_IDLE_NS (300 * NSEC_PER_SEC) /* idle this long: ask the kernel whether it still exists */
#define ROUTE_UNMATCHED "_unmatched"
/* Calls a connection captured mid-stream may take to begin at some protocol's message boundary: the bound HTTP
 * gives a connection whose framing it has not found yet. */
#define DETECT_CALLS_MAX HTTP_UNSYNCED_MAX

/* Rows of the table; detection asks them in this order, so HTTP, which claims any fresh connection, comes after
 * the protocols with a recognisable opening. PROTO_DETECT is no row: a connection no row has claimed yet. */
enum proto_id { PROTO_DETECT, PROTO_POSTGRES, PROTO_HTTP, PROTO_WEBSOCKET, PROTO_NR };

/* One syscall's view of a connection: the first cap and the last tailn of the len bytes it moved. */
struct view {
	enum flow_dir dir;
	const uint8_t *data, *tail;
	size_t cap, len, tailn;
};

/* Why a connection was handed over or given up: loupe_payload_connections_total{protocol}. */
enum conn_class {
	CLASS_HTTP,	 /* a request line was seen */
	CLASS_WEBSOCKET, /* upgraded */
	CLASS_TLS,
	CLASS_HTTP2,
	CLASS_UNKNOWN, /* not a protocol loupe parses */
	CLASS_POSTGRES,
	CLASS_POSTGRES_ENCRYPTED, /* SSLRequest or GSSENCRequest accepted: skipped */
	CLASS_NR,
};

struct conn {
	struct conn *next;
	uint64_t id, sk;
	uint64_t last_ns;
	uint32_t service;
	uint8_t proto;	/* enum proto_id */
	uint8_t seen_request;
	uint8_t stop;	/* set by a parser event: stop capturing after this call */
	uint8_t midstream; /* capture began after the connection's first bytes */
	uint16_t detect_calls; /* PROTO_DETECT: calls seen without a protocol found */
	union {
		struct http_conn http;
		struct ws_conn ws;
	} u;
	struct pg_conn *pg; /* PROTO_POSTGRES (allocated: larger than the others) */
	uint8_t pg_role;
	/* HTTP: the http_server_active_requests series of the method last seen (a name of http_method_name(), so
	 * compared by address), which its requests add to and take from without the registry's key lookup. */
	const char *active_method;
	struct series *active;
};

struct svc_stats {
	struct http_stats http;
	struct ws_stats ws;
	struct pg_stats pg;
	uint64_t pg_aborted[2]; /* by role */
	struct label_set fingerprints; /* admitted fingerprint ids (hex), like routes */
	uint64_t records[2], bytes[2];
	uint64_t lost_events;
	uint64_t aborted;
	uint64_t classes[CLASS_NR];
	struct label_set routes;
};

struct payload {
	struct loupe *L;
	struct payload_bpf *skel;
	struct cpurings *rings; /* the per-CPU capture rings, read merged by timestamp */
	int conns_fd, drops_fd;
	struct conn *buckets[CONN_BUCKETS];
	unsigned nconns;
	uint64_t conn_table_full;
	uint64_t midstream; /* connections whose capture began after their first bytes */
	uint64_t last_sweep_ns;
	uint64_t now_ns; /* ts of the record being handled */
	struct route_stats route_stats;
	uint64_t route_budget_hits, route_unmatched;
	struct svc_stats svc[LOUPE_MAX_SERVICES + 1];
	struct metric_family *req_duration, *active_requests;
	struct metric_family *ws_opened, *ws_active, *ws_duration, *ws_messages, *ws_size, *ws_closes;
	struct metric_family *pg_query, *db_client, *pg_info, *pg_errors, *pg_txn, *pg_txn_duration, *pg_idle;
	struct sql_cache *sql;
	struct sql_stats sql_stats;
	uint64_t fingerprint_budget_hits;
};

/* A call's hand-over to another protocol (HTTP's upgrade to WebSocket): where in the call the new protocol's
 * bytes begin, and what it starts from. */
struct handoff {
	size_t offset;	/* bytes of the call that were the old protocol's */
	bool in_lost;	/* the received direction is out of sync already */
	uint64_t ts_ns; /* when the new protocol began */
	char route[LABEL_VALUE_MAX];
};

/* The sink context of a row's parser events: the collector, the connection the call belongs to, and where a feed
 * puts a hand-over (NULL outside feed). */
struct row_call {
	struct payload *p;
	struct conn *c;
	struct handoff *up;
};

/* One protocol of the table (any op may be NULL where the protocol has nothing to do).
 * The collector's life: open() declares the row's families, collect() exports its per-service counters on every
 * scrape, close() frees what open() made.
 * A connection's life: detect() says whether a call opens a connection of this protocol (the detector asks the
 * rows in table order); start() sets up its parser state, from a hand-over (from) or not (NULL: detected);
 * feed() takes one call's view and returns the protocol to continue with: its own, another one after a hand-over
 * (*up says where in the call it begins), or -1 to stop capturing the connection; lost() says records were
 * dropped; end() ends the connection (pending requests aborted, sessions ended) and frees what start()
 * allocated; drop() frees it silently (loupe is stopping). */
struct proto {
	const char *name;
	int (*open)(struct payload *p, struct registry *reg);
	int (*collect)(struct payload *p, struct registry *reg);
	void (*close)(struct payload *p);
	bool (*detect)(struct conn *c, const struct view *v);
	int (*start)(struct payload *p, struct conn *c, const struct handoff *from);
	int (*feed)(struct payload *p, struct conn *c, const struct view *v, struct handoff *up);
	void (*lost)(struct payload *p, struct conn *c);
	void (*end)(struct payload *p, struct conn *c, uint64_t ts_ns);
	void (*drop)(struct conn *c);
};

/* src/collectors/payload_protos.c: the rows by proto_id (NULL at PROTO_DETECT). */
extern const struct proto *const payload_protos[PROTO_NR];

static inline const char *payload_service(const struct payload *p, uint32_t svc)
{
	return target_rules__service(&p->L->opt->rules, (int)svc);
}

#endif
