/* Payload collector: captured socket reads and writes of target processes (bpf/payload.bpf.h, inside the
 * syscalls object) -> per-connection protocol parsers -> HTTP server RED metrics and WebSocket session metrics.
 *
 * Each captured connection gets one struct conn, found by the kernel's connection id. Its bytes go to the
 * protocol it speaks, from a table of protocols (protos[] below): every connection starts in HTTP; an upgrade
 * hands it to WebSocket; a connection no protocol claims (TLS, HTTP/2, a server speaking first, anything else) is
 * marked PL_STOPPED in the kernel map, which then stops capturing it, and its state is freed.
 *
 * Privacy (DESIGN.md section 3): parsers see at most --capture-bytes of each call and keep no payload; the only
 * text that leaves is a route template (src/route.c), admitted per service as follows: a template becomes a
 * label value once a response with a status below 300 (1xx, 2xx) or from 500 up was seen for it, and at most
 * --route-budget templates per service are admitted (then "_other"). A 3xx or 4xx answer to a template not
 * admitted yet is labelled "_unmatched": paths that only ever got 404 or a redirect (scanners, typos, guessed
 * secrets, trailing-slash redirects) never become labels and never use up the budget. loupe_redactions_total{kind} counts every abstraction. */
#include "loupe.h"
#include "bpf_util.h"
#include "http.h"
#include "log.h"
#include "payload.h"
#include "pgwire.h"
#include "route.h"
#include "sql.h"
#include "websocket.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
static const char *const class_names[CLASS_NR] = {"http", "websocket", "tls", "http2", "unknown", "postgresql",
						   "postgresql_encrypted"};

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

static const char *const drop_reasons[PL_DROP_NR] = {
	[PL_DROP_RINGBUF] = "ringbuf_full",
	[PL_DROP_CLOSE_RINGBUF] = "close_ringbuf_full",
	[PL_DROP_CONN_MAP_FULL] = "conn_map_full",
};

/* OpenTelemetry's advice for http.server.request.duration. */
static const double request_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10};
static const double session_bounds[] = {0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600};
static const double size_bounds[] = {16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576};
static const double query_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
static const double txn_bounds[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300};

static const char *service_name(struct payload *p, uint32_t svc)
{
	return target_rules__service(&p->L->opt->rules, (int)svc);
}

/* ------------------------------------------------------------------------------------------- routes --- */

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ull;
	return h;
}

/* Find key in a label set; *slot_out is its slot or the empty slot it would take. NULL when out of memory. */
static char *set_find(struct route_set *rs, const char *key, bool *found)
{
	if (!rs->slot && !(rs->slot = calloc(ROUTE_SLOTS, sizeof(*rs->slot))))
		return NULL;
	unsigned i = (unsigned)hash_str(key) & (ROUTE_SLOTS - 1);
	while (rs->slot[i][0]) {
		if (!strcmp(rs->slot[i], key)) {
			*found = true;
			return rs->slot[i];
		}
		i = (i + 1) & (ROUTE_SLOTS - 1);
	}
	*found = false;
	return rs->slot[i];
}

/* Admit key into the set (budget permitting): the admitted copy, or NULL past the budget. */
static const char *set_admit(struct route_set *rs, const char *key, unsigned budget, bool *added)
{
	bool found;
	char *slot = set_find(rs, key, &found);
	*added = false;
	if (found || !slot)
		return slot;
	if (rs->n >= budget)
		return NULL;
	snprintf(slot, ROUTE_MAX_LEN + 1, "%s", key);
	rs->n++;
	*added = true;
	return slot;
}

/* The label value for a route template answered with status (see the header comment). */
static const char *route_label(struct payload *p, struct svc_stats *st, const char *route, int status)
{
	bool found, added;
	const char *slot = set_find(&st->routes, route, &found);
	if (!slot)
		return REGISTRY_OTHER;
	if (found)
		return slot;
	if (status >= 300 && status < 500) {
		p->route_unmatched++;
		return ROUTE_UNMATCHED;
	}
	slot = set_admit(&st->routes, route, p->L->opt->route_budget, &added);
	if (!slot)
		p->route_budget_hits++;
	return slot ? slot : REGISTRY_OTHER;
}

/* ---------------------------------------------------------------------------------------- connections --- */

static struct conn **conn_slot(struct payload *p, uint64_t id)
{
	struct conn **pp = &p->buckets[(id * 0x9E3779B97F4A7C15ull) >> 52 & (CONN_BUCKETS - 1)];
	while (*pp && (*pp)->id != id)
		pp = &(*pp)->next;
	return pp;
}

/* Ask the kernel to stop capturing a connection (when the entry still belongs to it). */
static void stop_capture(struct payload *p, const struct conn *c)
{
	struct pl_conn v;
	if (bpf_map_lookup_elem(p->conns_fd, &c->sk, &v) || v.id != c->id)
		return;
	v.state = PL_STOPPED;
	bpf_map_update_elem(p->conns_fd, &c->sk, &v, BPF_EXIST);
}

static void http_event(void *ctx, const struct http_event *ev);
static void ws_event(void *ctx, const struct ws_event *ev);
static struct pg_sink pg_sink_of(struct payload *p, struct conn *c);

static struct http_sink http_sink_of(struct payload *p, struct conn *c)
{
	return (struct http_sink){.event = http_event, .ctx = p, .stats = &p->svc[c->service].http,
				  .routes = &p->route_stats};
}

static struct ws_sink ws_sink_of(struct payload *p, struct conn *c)
{
	return (struct ws_sink){.event = ws_event, .ctx = p, .stats = &p->svc[c->service].ws};
}

/* End a connection's parsing (closed, expired or given up) and free it. */
static void conn_end(struct payload *p, struct conn **pp, uint64_t ts_ns)
{
	struct conn *c = *pp;
	p->cur = c;
	if (c->proto == PROTO_HTTP) { /* PROTO_DETECT: no parser state yet */
		struct http_sink s = http_sink_of(p, c);
		http_conn_close(&c->u.http, ts_ns, &s);
	} else if (c->proto == PROTO_WEBSOCKET) {
		struct ws_sink s = ws_sink_of(p, c);
		ws_conn_close(&c->u.ws, ts_ns, &s);
	} else if (c->proto == PROTO_POSTGRES) {
		struct pg_sink s = pg_sink_of(p, c);
		pg_conn_close(c->pg, ts_ns, &s);
	}
	free(c->pg);
	p->cur = NULL;
	*pp = c->next;
	free(c);
	p->nconns--;
}

/* ------------------------------------------------------------------------------------------ parsers --- */

static void http_event(void *ctx, const struct http_event *ev)
{
	struct payload *p = ctx;
	struct conn *c = p->cur;
	struct svc_stats *st = &p->svc[c->service];
	const char *svc = service_name(p, c->service);
	const char *active[] = {svc, ev->method};
	char code[8];

	switch (ev->type) {
	case HTTP_EV_REQUEST_START:
		if (!c->seen_request) {
			c->seen_request = 1;
			st->classes[CLASS_HTTP]++;
		}
		family__add(p->active_requests, active, 1);
		break;
	case HTTP_EV_RESPONSE: {
		family__add(p->active_requests, active, -1);
		snprintf(code, sizeof(code), "%d", ev->status);
		const char *v[] = {svc, ev->method, route_label(p, st, ev->route, ev->status), code};
		family__observe(p->req_duration, v, (double)(ev->end_ns - ev->start_ns) / 1e9);
		break;
	}
	case HTTP_EV_REQUEST_ABORT:
		family__add(p->active_requests, active, -1);
		st->aborted++;
		break;
	case HTTP_EV_UPGRADE:
		snprintf(p->upgrade_route, sizeof(p->upgrade_route), "%s", route_label(p, st, ev->route, 101));
		p->upgrade_offset = ev->offset;
		p->upgrade_in_lost = ev->in_lost;
		p->upgrade_ns = ev->end_ns;
		break;
	case HTTP_EV_NOT_HTTP:
		st->classes[ev->reason == HTTP_NOT_TLS ? CLASS_TLS
			    : ev->reason == HTTP_NOT_VERSION ? CLASS_HTTP2
							     : CLASS_UNKNOWN]++;
		c->stop = 1;
		break;
	}
}

static void ws_event(void *ctx, const struct ws_event *ev)
{
	struct payload *p = ctx;
	struct conn *c = p->cur;
	const char *svc = service_name(p, c->service);
	const char *dir = ev->dir == FLOW_IN ? "received" : "sent";
	char code[8];

	switch (ev->type) {
	case WS_EV_MESSAGE: {
		const char *op = ws_opcode_name(ev->opcode);
		const char *v[] = {svc, ev->route, dir, op ? op : "reserved"};
		family__add(p->ws_messages, v, 1);
		const char *vs[] = {svc, ev->route, dir};
		family__observe(p->ws_size, vs, (double)ev->size);
		break;
	}
	case WS_EV_CLOSE: {
		if (ev->code == WS_CLOSE_UNKNOWN)
			snprintf(code, sizeof(code), "unknown");
		else
			snprintf(code, sizeof(code), "%u", ev->code);
		const char *v[] = {svc, ev->route, ev->dir == FLOW_IN ? "client" : "server", code};
		family__add(p->ws_closes, v, 1);
		break;
	}
	case WS_EV_END: {
		const char *v[] = {svc, ev->route};
		family__add(p->ws_active, v, -1);
		family__observe(p->ws_duration, v, (double)ev->duration_ns / 1e9);
		break;
	}
	}
}

/* One protocol of the table: feed one call's view; returns the protocol to continue with, or -1 to stop. */
struct proto {
	const char *name;
	int (*feed)(struct payload *p, struct conn *c, const struct view *v);
	void (*lost)(struct payload *p, struct conn *c);
};

static int ws_feed(struct payload *p, struct conn *c, const struct view *v)
{
	struct ws_sink s = ws_sink_of(p, c);
	ws_conn_feed(&c->u.ws, v->dir, v->data, v->cap, v->len, p->now_ns, &s);
	return PROTO_WEBSOCKET;
}

static void ws_lost(struct payload *p, struct conn *c)
{
	struct ws_sink s = ws_sink_of(p, c);
	ws_conn_lost(&c->u.ws, FLOW_IN, &s);
	ws_conn_lost(&c->u.ws, FLOW_OUT, &s);
}

static int http_feed(struct payload *p, struct conn *c, const struct view *v)
{
	struct http_sink s = http_sink_of(p, c);
	enum flow_dir dir = v->dir;
	const uint8_t *data = v->data;
	size_t cap = v->cap, len = v->len;
	int r = http_conn_feed(&c->u.http, dir, data, cap, len, p->now_ns, &s);
	if (r == HTTP_FEED_NOT_HTTP)
		return -1;
	if (r != HTTP_FEED_UPGRADED)
		return PROTO_HTTP;
	/* The connection leaves HTTP: the rest of this call is the WebSocket stream's beginning. */
	struct svc_stats *st = &p->svc[c->service];
	st->classes[CLASS_WEBSOCKET]++;
	size_t off = p->upgrade_offset;
	bool in_lost = p->upgrade_in_lost;
	ws_conn_init(&c->u.ws, p->upgrade_route, p->upgrade_ns);
	c->proto = PROTO_WEBSOCKET;
	const char *lv[] = {service_name(p, c->service), p->upgrade_route};
	family__add(p->ws_opened, lv, 1);
	family__add(p->ws_active, lv, 1);
	struct ws_sink ws = ws_sink_of(p, c);
	if (in_lost)
		ws_conn_lost(&c->u.ws, FLOW_IN, &ws);
	if (off < len)
		ws_conn_feed(&c->u.ws, dir, data + (off < cap ? off : cap), off < cap ? cap - off : 0, len - off,
			     p->now_ns, &ws);
	return PROTO_WEBSOCKET;
}

static void http_lost(struct payload *p, struct conn *c)
{
	struct http_sink s = http_sink_of(p, c);
	http_conn_lost(&c->u.http, p->now_ns, &s);
}

/* PostgreSQL (src/pgwire.c): queries timed on the backend (role server) and in the application (role client). */
static const char *const pg_side[] = {[PG_ROLE_SERVER] = "server", [PG_ROLE_CLIENT] = "client"};

/* The fingerprint label of a statement: its id while the service's budget of fingerprints lasts (the normalised
 * text then goes to loupe_postgres_statement_info), else "_other". */
static const char *fingerprint_label(struct payload *p, struct svc_stats *st, const char *svc, const struct sql_fp *fp)
{
	bool added;
	const char *slot = set_admit(&st->fingerprints, fp->hex, p->L->opt->fingerprint_budget, &added);
	if (!slot) {
		p->fingerprint_budget_hits++;
		return REGISTRY_OTHER;
	}
	if (added) {
		const char *v[] = {svc, slot, fp->operation, fp->normalized};
		family__set(p->pg_info, v, 1);
	}
	return slot;
}

static void pg_event(void *ctx, const struct pg_event *ev)
{
	struct payload *p = ctx;
	struct conn *c = p->cur;
	struct svc_stats *st = &p->svc[c->service];
	const char *svc = service_name(p, c->service);
	const char *side = pg_side[c->pg_role];
	char cls[3];

	switch (ev->type) {
	case PG_EV_QUERY: {
		if (ev->aborted) {
			st->pg_aborted[c->pg_role]++;
			break;
		}
		/* The operation comes from the server's CommandComplete tag when there is one, else from the
		 * fingerprinter's fixed list: never from the query's own words (a failed statement's could be anything). */
		struct sql_fp fp;
		const char *fingerprint = "unknown", *op = ev->tag ? ev->operation : "UNKNOWN";
		if (ev->query && !sql_cache__lookup(p->sql, ev->query, ev->query_len, ev->truncated, &fp, &p->sql_stats)) {
			fingerprint = fingerprint_label(p, st, svc, &fp);
			if (!ev->tag)
				op = fp.operation;
		}
		double secs = (double)ev->duration_ns / 1e9;
		if (c->pg_role == PG_ROLE_SERVER) {
			const char *v[] = {svc, op, fingerprint};
			family__observe(p->pg_query, v, secs);
		} else {
			const char *v[] = {svc, "postgresql", op, fingerprint};
			family__observe(p->db_client, v, secs);
		}
		if (ev->sqlstate[0]) {
			snprintf(cls, sizeof(cls), "%.2s", ev->sqlstate);
			const char *v[] = {svc, side, cls};
			family__add(p->pg_errors, v, 1);
		}
		break;
	}
	case PG_EV_TXN: {
		const char *v[] = {svc, side, ev->committed ? "committed" : "rolled_back"};
		family__add(p->pg_txn, v, 1);
		family__observe(p->pg_txn_duration, v, (double)ev->duration_ns / 1e9);
		break;
	}
	case PG_EV_IDLE_IN_TXN: {
		const char *v[] = {svc, side};
		family__observe(p->pg_idle, v, (double)ev->duration_ns / 1e9);
		break;
	}
	case PG_EV_STARTUP:
		break;
	case PG_EV_ENCRYPTED:
		st->classes[CLASS_POSTGRES_ENCRYPTED]++;
		break;
	case PG_EV_CANCEL:
	case PG_EV_NOT_PG:
		break;
	}
}

static struct pg_sink pg_sink_of(struct payload *p, struct conn *c)
{
	return (struct pg_sink){.event = pg_event, .ctx = p, .stats = &p->svc[c->service].pg};
}

static int pg_feed(struct payload *p, struct conn *c, const struct view *v)
{
	struct pg_sink s = pg_sink_of(p, c);
	return pg_conn_feed(c->pg, v->dir, v->data, v->cap, v->len, v->tail, v->tailn, p->now_ns, &s) == PG_FEED_DONE
		       ? -1
		       : PROTO_POSTGRES;
}

static void pg_lost(struct payload *p, struct conn *c)
{
	struct pg_sink s = pg_sink_of(p, c);
	pg_conn_lost(c->pg, p->now_ns, &s);
}

static uint32_t be32(const uint8_t *b)
{
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* The role in which this call shows a PostgreSQL connection, or -1: a startup packet (fresh connections), or
 * (mid-stream) a call that begins with a message only one side sends. */
static int pg_detect(const struct view *v, bool midstream)
{
	if (v->cap >= 8 && !midstream) {
		uint32_t len = be32(v->data), code = be32(v->data + 4);
		bool startup = (code >> 16) == 3 && len >= 8 && len <= 10000;
		bool special = (code == PG_SSL_CODE || code == PG_GSSENC_CODE) ? len == 8 : code == PG_CANCEL_CODE && len == 16;
		if (startup || special)
			return v->dir == FLOW_IN ? PG_ROLE_SERVER : PG_ROLE_CLIENT;
		return -1;
	}
	if (!midstream || v->cap < 5)
		return -1;
	uint8_t t = v->data[0];
	uint32_t len = be32(v->data + 1);
	if (len < 4 || len > (1u << 30))
		return -1;
	bool frontend = (t == 'Q' || t == 'P' || t == 'B') && len >= 5;
	bool backend = (t == 'Z' && len == 5 && v->cap >= 6 &&
			(v->data[5] == 'I' || v->data[5] == 'T' || v->data[5] == 'E')) ||
		       ((t == '1' || t == '2') && len == 4);
	if (frontend)
		return v->dir == FLOW_IN ? PG_ROLE_SERVER : PG_ROLE_CLIENT;
	if (backend)
		return v->dir == FLOW_OUT ? PG_ROLE_SERVER : PG_ROLE_CLIENT;
	return -1;
}

/* A call that begins with an HTTP/1.x request line's method and a space (RFC 9110 token characters). */
static bool looks_like_request(const struct view *v)
{
	size_t i = 0;
	while (i < v->cap && i < HTTP_METHOD_MAX && v->data[i] >= 'A' && v->data[i] <= 'Z')
		i++;
	return i > 0 && i < v->cap && v->data[i] == ' ';
}

static int detect_feed(struct payload *p, struct conn *c, const struct view *v);
static void detect_lost(struct payload *p, struct conn *c)
{
	(void)p;
	(void)c;
}

static const struct proto protos[PROTO_NR] = {
	[PROTO_DETECT] = {"detect", detect_feed, detect_lost},
	[PROTO_HTTP] = {"http", http_feed, http_lost},
	[PROTO_WEBSOCKET] = {"websocket", ws_feed, ws_lost},
	[PROTO_POSTGRES] = {"postgresql", pg_feed, pg_lost},
};

/* The first calls of a connection choose its protocol. A fresh connection is HTTP unless another protocol's
 * opening is recognised (HTTP itself then decides whether it is HTTP). A connection captured mid-stream waits
 * for a call that begins at a message boundary of some protocol, for up to HTTP_UNSYNCED_MAX calls. */
static int detect_feed(struct payload *p, struct conn *c, const struct view *v)
{
	int role = pg_detect(v, c->midstream);
	if (role >= 0) {
		if (!(c->pg = malloc(sizeof(*c->pg))))
			return -1;
		pg_conn_init(c->pg, (enum pg_role)role, c->midstream ? PG_CONN_MIDSTREAM : 0);
		c->pg_role = (uint8_t)role;
		c->proto = PROTO_POSTGRES;
		p->svc[c->service].classes[CLASS_POSTGRES]++;
		return protos[PROTO_POSTGRES].feed(p, c, v);
	}
	if (c->midstream && !looks_like_request(v)) {
		if (++c->detect_calls < HTTP_UNSYNCED_MAX)
			return PROTO_DETECT;
		p->svc[c->service].classes[CLASS_UNKNOWN]++;
		return -1;
	}
	http_conn_init(&c->u.http, c->midstream ? HTTP_CONN_MIDSTREAM : 0);
	c->proto = PROTO_HTTP;
	return protos[PROTO_HTTP].feed(p, c, v);
}

/* -------------------------------------------------------------------------------------------- records --- */

static int on_data(struct payload *p, const struct pl_hdr *h, const uint8_t *data, size_t cap, const uint8_t *tail,
		   size_t tailn)
{
	if (h->service < 1 || h->service > (uint32_t)p->L->opt->rules.nservices)
		return 0;
	struct svc_stats *st = &p->svc[h->service];
	unsigned dir = h->dir ? 1 : 0;
	st->records[dir]++;
	st->bytes[dir] += cap;

	struct conn **pp = conn_slot(p, h->conn_id);
	struct conn *c = *pp;
	if (!c) {
		if (p->nconns >= CONN_MAX) {
			p->conn_table_full++;
			return 0;
		}
		c = calloc(1, sizeof(*c));
		if (!c)
			return -ENOMEM;
		c->id = h->conn_id;
		c->sk = h->sk;
		c->service = h->service;
		c->proto = PROTO_DETECT;
		/* Without the connection's first record (lost, or capture began late) look for a boundary first. */
		c->midstream = !(h->flags & PL_F_NEW) || (h->flags & PL_F_MIDSTREAM);
		p->midstream += c->midstream;
		*pp = c;
		p->nconns++;
	}
	c->last_ns = h->ts_ns;
	p->cur = c;
	if (h->flags & PL_F_LOST) {
		st->lost_events++;
		protos[c->proto].lost(p, c);
	}
	struct view v = {.dir = dir ? FLOW_OUT : FLOW_IN, .data = data, .cap = cap, .len = h->len, .tail = tail,
			 .tailn = tailn};
	int next = protos[c->proto].feed(p, c, &v);
	p->cur = NULL;
	if (next < 0 || c->stop) {
		stop_capture(p, c);
		conn_end(p, conn_slot(p, c->id), h->ts_ns);
	}
	return 0;
}

static int on_record(void *ctx, void *data, size_t size)
{
	struct payload *p = ctx;
	const struct pl_hdr *h = data;
	if (size < sizeof(*h))
		return 0;
	p->now_ns = h->ts_ns;
	if (h->type == REC_PL_CLOSE) {
		struct conn **pp = conn_slot(p, h->conn_id);
		if (!*pp)
			return 0;
		if (h->flags & PL_F_LOST) {
			p->svc[(*pp)->service].lost_events++;
			p->cur = *pp;
			protos[(*pp)->proto].lost(p, *pp);
			p->cur = NULL;
		}
		conn_end(p, pp, h->ts_ns);
		return 0;
	}
	if (h->type != REC_PL_DATA)
		return 0;
	size_t cap = h->cap, tail = h->tail;
	if (cap > size - sizeof(*h))
		cap = size - sizeof(*h);
	if (tail > size - sizeof(*h) - cap)
		tail = size - sizeof(*h) - cap;
	const uint8_t *bytes = (const uint8_t *)data + sizeof(*h);
	return on_data(p, h, bytes, cap, tail ? bytes + cap : NULL, tail);
}

/* Connections idle for long whose kernel entry is gone (their close record was lost) are ended. */
static void sweep(struct payload *p, uint64_t now)
{
	for (unsigned b = 0; b < CONN_BUCKETS; b++) {
		struct conn **pp = &p->buckets[b];
		while (*pp) {
			struct conn *c = *pp;
			struct pl_conn v;
			if (now - c->last_ns > CONN_IDLE_NS &&
			    (bpf_map_lookup_elem(p->conns_fd, &c->sk, &v) || v.id != c->id)) {
				conn_end(p, pp, c->last_ns);
				continue;
			}
			pp = &c->next;
		}
	}
}

/* ----------------------------------------------------------------------------------------- collector --- */

static int payload_open(struct loupe *L, void **priv)
{
	if (!L->opt->capture_bytes) {
		snprintf(L->opening->detail, sizeof(L->opening->detail), "off (--capture-bytes 0)");
		return LOUPE_FEATURE_DISABLED;
	}
	if (!L->sys_obj) {
		log_warn("payload_unavailable", "payload capture runs inside the syscalls feature, which did not load");
		return -ENOENT;
	}
	struct bpf_map *events = bpf_object__find_map_by_name(L->sys_obj, "pl_events");
	struct bpf_map *conns = bpf_object__find_map_by_name(L->sys_obj, "pl_conns");
	struct bpf_map *drops = bpf_object__find_map_by_name(L->sys_obj, "pl_drops");
	if (!events || !conns || !drops)
		return -ENOENT;
	struct payload *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->L = L;
	p->conns_fd = bpf_map__fd(conns);
	p->drops_fd = bpf_map__fd(drops);

	struct registry *reg = L->reg;
	static const char *const l_req[] = {"service_name", "http_request_method", "http_route",
					    "http_response_status_code", NULL};
	static const char *const l_active[] = {"service_name", "http_request_method", NULL};
	static const char *const l_route[] = {"service_name", "http_route", NULL};
	static const char *const l_msg[] = {"service_name", "http_route", "direction", "opcode", NULL};
	static const char *const l_size[] = {"service_name", "http_route", "direction", NULL};
	static const char *const l_close[] = {"service_name", "http_route", "sender", "code", NULL};
	p->req_duration = registry__family(
		reg, "http_server_request_duration_seconds",
		"HTTP/1.x server requests, from the read of the request's first byte to the write of the response's "
		"status line.",
		METRIC_HISTOGRAM, l_req, 0, 0);
	p->active_requests = registry__family(reg, "http_server_active_requests",
					      "HTTP requests read and not answered yet.", METRIC_GAUGE, l_active, 0, 0);
	p->ws_opened = registry__family(reg, "loupe_websocket_connections_total",
					"WebSocket sessions opened (HTTP upgrade answered with 101).", METRIC_COUNTER,
					l_route, 0, 0);
	p->ws_active = registry__family(reg, "loupe_websocket_connections_active", "WebSocket sessions open now.",
					METRIC_GAUGE, l_route, 0, 0);
	p->ws_duration = registry__family(reg, "loupe_websocket_connection_duration_seconds",
					  "WebSocket session lifetime, from the 101 response to the connection's close.",
					  METRIC_HISTOGRAM, l_route, 0, 0);
	p->ws_messages = registry__family(
		reg, "loupe_websocket_messages_total",
		"WebSocket messages (fragments joined) and control frames, by direction (received from or sent to "
		"the client) and opcode.",
		METRIC_COUNTER, l_msg, 0, 0);
	p->ws_size = registry__family(reg, "loupe_websocket_message_size_bytes",
				      "WebSocket message payload size (compressed size when permessage-deflate is on).",
				      METRIC_HISTOGRAM, l_size, 0, 0);
	p->ws_closes = registry__family(reg, "loupe_websocket_closes_total",
					"WebSocket close frames by sender and status code (1005: none given; unknown: "
					"not captured).",
					METRIC_COUNTER, l_close, 0, 0);
	static const char *const l_pgq[] = {"service_name", "operation", "fingerprint", NULL};
	static const char *const l_dbc[] = {"service_name", "db_system_name", "db_operation_name", "fingerprint", NULL};
	static const char *const l_info[] = {"service_name", "fingerprint", "operation", "query", NULL};
	static const char *const l_err[] = {"service_name", "side", "sqlstate_class", NULL};
	static const char *const l_txn[] = {"service_name", "side", "outcome", NULL};
	static const char *const l_side[] = {"service_name", "side", NULL};
	p->pg_query = registry__family(
		reg, "loupe_postgres_query_duration_seconds",
		"PostgreSQL statements as the backend sees them: from reading the query (Q, or the first Parse/Bind/Execute "
		"of its batch) to writing its CommandComplete or ErrorResponse. fingerprint: see "
		"loupe_postgres_statement_info.",
		METRIC_HISTOGRAM, l_pgq, 0, 0);
	p->db_client = registry__family(
		reg, "db_client_operation_duration_seconds",
		"Database operations as the application sees them: from writing the query to reading its result.",
		METRIC_HISTOGRAM, l_dbc, 0, 0);
	p->pg_info = registry__family(reg, "loupe_postgres_statement_info",
				      "The normalised text (literals replaced by $n) of each fingerprint, always 1.",
				      METRIC_GAUGE, l_info, 0, 0);
	p->pg_errors = registry__family(reg, "loupe_postgres_errors_total",
					"PostgreSQL statements answered with ErrorResponse, by SQLSTATE class (first two "
					"characters; ?? when not captured).",
					METRIC_COUNTER, l_err, 0, 0);
	p->pg_txn = registry__family(reg, "loupe_postgres_transactions_total",
				     "Transactions ended (ReadyForQuery back to idle), committed or rolled back.",
				     METRIC_COUNTER, l_txn, 0, 0);
	p->pg_txn_duration = registry__family(reg, "loupe_postgres_transaction_duration_seconds",
					      "Transactions from their first statement to their end.", METRIC_HISTOGRAM,
					      l_txn, 0, 0);
	p->pg_idle = registry__family(reg, "loupe_postgres_idle_in_transaction_seconds",
				      "Time connections spent idle inside a transaction, between a ReadyForQuery in a "
				      "transaction and the next client message.",
				      METRIC_HISTOGRAM, l_side, 0, 0);
	p->sql = sql_cache__new(0);
	if (!p->req_duration || !p->active_requests || !p->ws_opened || !p->ws_active || !p->ws_duration ||
	    !p->ws_messages || !p->ws_size || !p->ws_closes || !p->pg_query || !p->db_client || !p->pg_info ||
	    !p->pg_errors || !p->pg_txn || !p->pg_txn_duration || !p->pg_idle || !p->sql) {
		sql_cache__free(p->sql);
		free(p);
		return -ENOMEM;
	}
	family__set_buckets(p->pg_query, query_bounds, ARRAY_SIZE(query_bounds));
	family__set_buckets(p->db_client, query_bounds, ARRAY_SIZE(query_bounds));
	family__set_buckets(p->pg_txn_duration, txn_bounds, ARRAY_SIZE(txn_bounds));
	family__set_buckets(p->pg_idle, txn_bounds, ARRAY_SIZE(txn_bounds));
	family__set_buckets(p->req_duration, request_bounds, ARRAY_SIZE(request_bounds));
	family__set_buckets(p->ws_duration, session_bounds, ARRAY_SIZE(session_bounds));
	family__set_buckets(p->ws_size, size_bounds, ARRAY_SIZE(size_bounds));

	p->rb = ring_buffer__new(bpf_map__fd(events), on_record, p, NULL);
	if (!p->rb) {
		int err = -errno;
		free(p);
		return err;
	}
	L->opening->hook = L->tp_flavour; /* its programs are the syscalls ones */
	*priv = p;
	return 0;
}

static int payload_attach(void *priv)
{
	(void)priv; /* the syscalls feature attached the programs */
	return 0;
}

static int payload_poll(void *priv)
{
	struct payload *p = priv;
	int n = ring_buffer__consume(p->rb);
	uint64_t now = now_ns(CLOCK_MONOTONIC);
	if (now - p->last_sweep_ns > 30ull * 1000000000ull) {
		p->last_sweep_ns = now;
		sweep(p, now);
	}
	return n < 0 ? n : 0;
}

static int payload_poll_fd(void *priv)
{
	struct payload *p = priv;
	return ring_buffer__epoll_fd(p->rb);
}

static int payload_collect(void *priv, struct registry *reg)
{
	struct payload *p = priv;
	payload_poll(p); /* what arrived since the last wakeup counts in this scrape */
	static const char *const l_kind[] = {"kind", NULL};
	static const char *const l_svc_kind[] = {"service_name", "kind", NULL};
	static const char *const l_svc_dir[] = {"service_name", "direction", NULL};
	static const char *const l_svc_proto[] = {"service_name", "protocol", NULL};
	static const char *const l_svc[] = {"service_name", NULL};
	struct metric_family *redactions = registry__family(
		reg, "loupe_redactions_total",
		"Values abstracted before export: route segments by what they looked like, query strings, authorities, "
		"invalid or truncated targets, routes past the budget (route_budget) or answered 3xx/4xx before any 1xx, 2xx "
		"or 5xx (unmatched_route).",
		METRIC_COUNTER, l_kind, 0, FAMILY_SNAPSHOT);
	struct metric_family *anomalies = registry__family(
		reg, "loupe_http_parser_anomalies_total",
		"HTTP framing the parser had to recover from (truncated heads, lost records, unmatched responses).",
		METRIC_COUNTER, l_svc_kind, 0, FAMILY_SNAPSHOT);
	struct metric_family *ws_errors =
		registry__family(reg, "loupe_websocket_protocol_errors_total",
				 "WebSocket frames breaking RFC 6455, and frame sync lost or found again.",
				 METRIC_COUNTER, l_svc_kind, 0, FAMILY_SNAPSHOT);
	struct metric_family *aborted = registry__family(
		reg, "loupe_http_requests_aborted_total",
		"HTTP requests read that got no response loupe saw (connection closed, status not captured).",
		METRIC_COUNTER, l_svc, 0, FAMILY_SNAPSHOT);
	struct metric_family *records = registry__family(
		reg, "loupe_payload_records_total",
		"Socket reads (received) and writes (sent) of target processes captured for protocol parsing.",
		METRIC_COUNTER, l_svc_dir, 0, FAMILY_SNAPSHOT);
	struct metric_family *bytes = registry__family(reg, "loupe_payload_captured_bytes_total",
						       "Bytes of socket reads and writes captured (at most "
						       "--capture-bytes of each).",
						       METRIC_COUNTER, l_svc_dir, 0, FAMILY_SNAPSHOT);
	struct metric_family *classes = registry__family(
		reg, "loupe_payload_connections_total",
		"Captured connections by protocol found: http, websocket (upgraded), or tls, http2 and unknown, whose "
		"capture then stops in the kernel.",
		METRIC_COUNTER, l_svc_proto, 0, FAMILY_SNAPSHOT);
	struct metric_family *lost = registry__family(
		reg, "loupe_payload_records_lost_total",
		"Times a connection's parser had to resynchronise because capture records were dropped (the records "
		"are in loupe_events_dropped_total{feature=\"payload\"}).",
		METRIC_COUNTER, l_svc, 0, FAMILY_SNAPSHOT);
	struct metric_family *tracked = registry__family(reg, "loupe_payload_connections_parsed",
							 "Connections whose protocol is being parsed now.", METRIC_GAUGE,
							 NULL, 0, FAMILY_SNAPSHOT);
	static const char *const l_svc_side[] = {"service_name", "side", NULL};
	struct metric_family *pg_anomalies = registry__family(
		reg, "loupe_postgres_parser_anomalies_total",
		"PostgreSQL protocol framing the parser had to recover from (capture cut a message header, records lost).",
		METRIC_COUNTER, l_svc_kind, 0, FAMILY_SNAPSHOT);
	struct metric_family *pg_aborted = registry__family(
		reg, "loupe_postgres_queries_unanswered_total",
		"Statement executions with no result seen: skipped after an error in their batch, connection closed, or "
		"the result hidden by the capture.",
		METRIC_COUNTER, l_svc_side, 0, FAMILY_SNAPSHOT);
	if (!redactions || !anomalies || !ws_errors || !aborted || !records || !bytes || !classes || !lost || !tracked ||
	    !pg_anomalies || !pg_aborted)
		return -ENOMEM;

	for (int k = 0; k < ROUTE_KIND_MAX; k++) {
		const char *v[] = {route_kind_name(k)};
		family__add(redactions, v, (double)p->route_stats.n[k]);
	}
	const char *vb[] = {"route_budget"}, *vu[] = {"unmatched_route"}, *vl[] = {"sql_literal"},
		   *vfb[] = {"fingerprint_budget"};
	family__add(redactions, vb, (double)p->route_budget_hits);
	family__add(redactions, vu, (double)p->route_unmatched);
	family__add(redactions, vl, (double)p->sql_stats.literals);
	family__add(redactions, vfb, (double)p->fingerprint_budget_hits);
	family__set(tracked, NULL, p->nconns);

	for (int s = 1; s <= p->L->opt->rules.nservices; s++) {
		struct svc_stats *st = &p->svc[s];
		const char *svc = service_name(p, (uint32_t)s);
		for (int k = 0; k < HTTP_AN_MAX; k++) {
			const char *v[] = {svc, http_anomaly_name(k)};
			family__add(anomalies, v, (double)st->http.n[k]);
		}
		for (int k = 0; k < PG_AN_MAX; k++) {
			const char *v[] = {svc, pg_anomaly_name(k)};
			family__add(pg_anomalies, v, (double)st->pg.n[k]);
		}
		for (int r = 0; r < 2; r++) {
			const char *v[] = {svc, pg_side[r]};
			family__add(pg_aborted, v, (double)st->pg_aborted[r]);
		}
		for (int k = 0; k < WS_ERR_MAX; k++) {
			const char *v[] = {svc, ws_error_name(k)};
			family__add(ws_errors, v, (double)st->ws.errors[k]);
		}
		const char *vd[] = {svc, "desync"}, *vr[] = {svc, "resync"};
		family__add(ws_errors, vd, (double)st->ws.desync);
		family__add(ws_errors, vr, (double)st->ws.resync);
		const char *v1[] = {svc};
		family__add(aborted, v1, (double)st->aborted);
		family__add(lost, v1, (double)st->lost_events);
		for (int d = 0; d < 2; d++) {
			const char *v[] = {svc, d ? "sent" : "received"};
			family__add(records, v, (double)st->records[d]);
			family__add(bytes, v, (double)st->bytes[d]);
		}
		for (int k = 0; k < CLASS_NR; k++) {
			const char *v[] = {svc, class_names[k]};
			family__add(classes, v, (double)st->classes[k]);
		}
	}
	int err = loupe_export_drops(reg, "payload", p->drops_fd, drop_reasons, PL_DROP_NR);
	if (err)
		return err;
	/* Userspace's own limit, next to the kernel's drops. */
	const char *vf[] = {"payload", "conn_table_full"};
	return family__add(loupe_drops_family(reg), vf, (double)p->conn_table_full);
}

static void payload_status(void *priv, struct buf *json)
{
	struct payload *p = priv;
	buf__printf(json,
		    "\"capture_bytes\":%u,\"route_budget\":%u,\"connections_parsed\":%u,\"connections_midstream\":%llu",
		    p->L->opt->capture_bytes, p->L->opt->route_budget, p->nconns, (unsigned long long)p->midstream);
}

static void payload_close(void *priv)
{
	struct payload *p = priv;
	if (!p)
		return;
	for (unsigned b = 0; b < CONN_BUCKETS; b++) {
		while (p->buckets[b]) {
			struct conn *c = p->buckets[b];
			p->buckets[b] = c->next;
			free(c->pg);
			free(c);
		}
	}
	for (int s = 0; s <= LOUPE_MAX_SERVICES; s++) {
		free(p->svc[s].routes.slot);
		free(p->svc[s].fingerprints.slot);
	}
	sql_cache__free(p->sql);
	sql_thread_exit();
	ring_buffer__free(p->rb);
	free(p);
}

const struct collector payload_collector = {
	.name = "payload",
	.open = payload_open,
	.attach = payload_attach,
	.poll = payload_poll,
	.poll_fd = payload_poll_fd,
	.poll_period_ms = PL_POLL_MS, /* the BPF side wakes the reader only when the ring fills up */
	.collect = payload_collect,
	.status = payload_status,
	.close = payload_close,
};
