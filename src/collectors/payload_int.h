/* Internal to the payload collector (src/collectors/payload.c) and its protocol rows (src/collectors/payload_http.c: HTTP and
 * WebSocket; src/collectors/payload_pg.c: PostgreSQL). Adding a protocol is adding a row: a struct proto and its families. */
#ifndef LOUPE_PAYLOAD_INT_H
#define LOUPE_PAYLOAD_INT_H
#include "core/loupe.h"
#include "parsers/http.h"
#include "payload.h"
#include "parsers/pgwire.h"
#include "parsers/route.h"
#include "parsers/sql.h"
#include "parsers/websocket.h"

#define CONN_BUCKETS 4096	 /* power of two */
#define CONN_MAX 16384		 /* connections parsed at once; more are not captured (counted) */
#define CONN_IDLE_NS (300ull * 1000000000ull) /* idle this long: ask the kernel whether it still exists */
#define ROUTE_SLOTS 512		 /* per service, power of two, > the largest route budget allowed */
#define ROUTE_UNMATCHED "_unmatched"

enum proto_id { PROTO_DETECT, PROTO_HTTP, PROTO_WEBSOCKET, PROTO_POSTGRES, PROTO_NR };

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
};

struct route_set {
	char (*slot)[ROUTE_MAX_LEN + 1]; /* ROUTE_SLOTS entries, "" = empty */
	unsigned n;
};

struct svc_stats {
	struct http_stats http;
	struct ws_stats ws;
	struct pg_stats pg;
	uint64_t pg_aborted[2]; /* by role */
	struct route_set fingerprints; /* admitted fingerprint ids (hex), like routes */
	uint64_t records[2], bytes[2];
	uint64_t lost_events;
	uint64_t aborted;
	uint64_t classes[CLASS_NR];
	struct route_set routes;
};

struct payload {
	struct loupe *L;
	struct ring_buffer *rb;
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
	/* the record being parsed: the sinks' context */
	struct conn *cur;
	char upgrade_route[ROUTE_MAX_LEN + 1];
	size_t upgrade_offset;
	bool upgrade_in_lost;
	uint64_t upgrade_ns;
};

/* One protocol of the table. start() sets up the parser state of a connection the detector gave it (NULL:
 * set up by the row that hands over, as HTTP does for WebSocket); feed() takes one call's view and returns the
 * protocol to continue with, or -1 to stop capturing the connection; lost() says records were dropped;
 * close() ends the connection (pending requests aborted, sessions ended) and frees what start() allocated. */
struct proto {
	const char *name;
	int (*start)(struct payload *p, struct conn *c);
	int (*feed)(struct payload *p, struct conn *c, const struct view *v);
	void (*lost)(struct payload *p, struct conn *c);
	void (*close)(struct payload *p, struct conn *c, uint64_t ts_ns);
};

extern const struct proto *const payload_protos[PROTO_NR];
extern const struct proto http_proto, websocket_proto, postgres_proto;

/* src/collectors/payload.c */
const char *payload__service(const struct payload *p, uint32_t svc);
/* A label set of a service (routes, fingerprints): find key; NULL when out of memory. */
char *payload__set_find(struct route_set *rs, const char *key, bool *found);
/* Admit key (budget permitting): the admitted copy, or NULL past the budget (or out of memory). */
const char *payload__set_admit(struct route_set *rs, const char *key, unsigned budget, bool *added);

/* The rows' families: declared at open, exported at collect (their per-service counters). */
int http_row_open(struct payload *p, struct registry *reg);
int http_row_collect(struct payload *p, struct registry *reg);
/* A call that begins with an HTTP/1.x request line's method and a space. */
bool http_row_looks_like_request(const struct view *v);
int pg_row_open(struct payload *p, struct registry *reg);
int pg_row_collect(struct payload *p, struct registry *reg);
void pg_row_close(struct payload *p);
/* The PostgreSQL role this call shows (PG_ROLE_*), or -1. */
int pg_row_detect(const struct view *v, bool midstream);

#endif
