// SPDX-License-Identifier: BSD-2-Clause
/* Payload collector: captured socket reads and writes of target processes (bpf/payload.bpf.c, on the socket
 * tracepoints) -> per-connection protocol parsers -> request, session and statement metrics.
 *
 * Each captured connection gets one struct conn, found by the kernel's connection id. Its calls go to the
 * protocol it speaks, through the table of protocols alone (src/collectors/payload_protos.c; the rows are
 * src/collectors/payload_http.c and src/collectors/payload_pg.c): the first calls choose, each row asked in table
 * order whether the call opens its protocol (a PostgreSQL startup packet, else HTTP); a row's feed may hand the
 * rest of the call to another row (HTTP's upgrade to WebSocket); a connection no protocol claims (TLS, HTTP/2, a
 * server speaking first, anything else) is marked PL_STOPPED in the kernel map, which then stops capturing it, and
 * its state is freed.
 *
 * Privacy (DESIGN.md section 3): parsers see at most --capture-bytes of each call (and the last bytes of longer
 * ones) and keep no payload; what leaves is route templates and SQL fingerprints, admitted per service by the
 * rows' budgets; loupe_redactions_total{kind} counts every abstraction. */
#include "collectors/payload_int.h"
#include "lib/bpf_util.h"
#include "lib/cpurings.h"
#include "lib/log.h"
#include "payload.skel.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const drop_reasons[PL_DROP_NR] = {
	[PL_DROP_RINGBUF] = "ringbuf_full",
	[PL_DROP_CLOSE_RINGBUF] = "close_ringbuf_full",
	[PL_DROP_CONN_MAP_FULL] = "conn_map_full",
};

static const char *const class_names[CLASS_NR] = {"http", "websocket", "tls", "http2", "unknown", "postgresql",
						   "postgresql_encrypted"};

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

/* End a connection's parsing (closed, expired or given up) and free it. */
static void conn_end(struct payload *p, struct conn **pp, uint64_t ts_ns)
{
	struct conn *c = *pp;
	const struct proto *row = payload_protos[c->proto];
	if (row && row->end)
		row->end(p, c, ts_ns);
	*pp = c->next;
	free(c);
	p->nconns--;
}

/* ------------------------------------------------------------------------------------------ parsers --- */

/* The first calls of a connection choose its protocol: the row that claims the call, asked in table order. A fresh
 * connection is always claimed (HTTP takes what no protocol before it recognised, and then decides whether it is
 * HTTP). A connection captured mid-stream waits for a call that begins at a message boundary of some protocol,
 * for up to DETECT_CALLS_MAX calls. The row claiming it, PROTO_DETECT to wait, or -1 to give up. */
static int detect(struct payload *p, struct conn *c, const struct view *v)
{
	for (int i = 0; i < PROTO_NR; i++)
		if (payload_protos[i] && payload_protos[i]->detect && payload_protos[i]->detect(c, v))
			return i;
	if (c->midstream && ++c->detect_calls < DETECT_CALLS_MAX)
		return PROTO_DETECT;
	p->svc[c->service].classes[CLASS_UNKNOWN]++;
	return -1;
}

/* The part of call v from byte off on (the bytes a hand-over gives the new protocol): false when nothing is left. */
static bool view_from(const struct view *v, size_t off, struct view *rest)
{
	if (off >= v->len)
		return false;
	*rest = *v;
	rest->data = v->data + (off < v->cap ? off : v->cap);
	rest->cap = off < v->cap ? v->cap - off : 0;
	rest->len = v->len - off;
	if (rest->tailn > rest->len) {
		rest->tail += rest->tailn - rest->len;
		rest->tailn = rest->len;
	}
	return true;
}

/* One call into the connection's protocol, following hand-overs (detection is one from no protocol): the
 * protocol to continue with, PROTO_DETECT while none is found, or -1 to stop capturing. */
/* An empty hand-over. Not "= {0}": that zeroes the whole route buffer for every record (rep stos: 30% of
 * on_record's own time, perf), and the route is read as a string only. */
static void handoff_clear(struct handoff *up)
{
	up->offset = 0;
	up->in_lost = false;
	up->ts_ns = 0;
	up->route[0] = '\0';
}

static int conn_feed(struct payload *p, struct conn *c, const struct view *v)
{
	struct handoff up;
	struct view rest;
	handoff_clear(&up);
	int next = c->proto == PROTO_DETECT ? detect(p, c, v) : payload_protos[c->proto]->feed(p, c, v, &up);
	while (next > PROTO_DETECT && next != c->proto) {
		const struct proto *to = payload_protos[next];
		bool detected = c->proto == PROTO_DETECT; /* the whole call is the new protocol's */
		if (to->start && to->start(p, c, detected ? NULL : &up))
			return -1;
		c->proto = (uint8_t)next;
		if (!detected) {
			if (!view_from(v, up.offset, &rest))
				break;
			v = &rest;
		}
		handoff_clear(&up);
		next = to->feed(p, c, v, &up);
	}
	return next;
}

/* -------------------------------------------------------------------------------------------- records --- */

/* Records of the connection were dropped before they reached us: its parser resynchronises. */
static void conn_lost(struct payload *p, struct conn *c)
{
	const struct proto *row = payload_protos[c->proto];
	if (row && row->lost)
		row->lost(p, c);
}

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
	if (h->flags & PL_F_LOST) {
		st->lost_events++;
		conn_lost(p, c);
	}
	struct view v = {.dir = dir ? FLOW_OUT : FLOW_IN, .data = data, .cap = cap, .len = h->len, .tail = tail,
			 .tailn = tailn};
	int next = conn_feed(p, c, &v);
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
			conn_lost(p, *pp);
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

/* Every row's collector-level state (families, caches), also after a failed open. */
static void rows_close(struct payload *p)
{
	for (int i = 0; i < PROTO_NR; i++)
		if (payload_protos[i] && payload_protos[i]->close)
			payload_protos[i]->close(p);
}

static int payload_open(struct loupe *L, void **priv)
{
	if (!L->opt->capture_bytes) {
		snprintf(L->opening->detail, sizeof(L->opening->detail), "off (--capture-bytes 0)");
		return LOUPE_FEATURE_DISABLED;
	}
	struct payload *p = calloc(1, sizeof(*p));
	const char *hook;
	int err = 0;
	if (!p)
		return -ENOMEM;
	p->L = L;
	if (!(p->skel = payload_bpf__open())) {
		err = -errno;
		free(p);
		return err;
	}
	p->skel->rodata->capture_bytes = L->opt->capture_bytes;
	/* One ring per possible CPU (bpf/payload.bpf.c, pl_rings): PL_RINGS_BYTES shared out, a quarter of a ring
	 * waiting wakes the reader. */
	int ncpu = libbpf_num_possible_cpus();
	size_t ring_bytes = cpurings_size(ncpu > 0 ? (unsigned)ncpu : 1, PL_RINGS_BYTES, PL_RING_MIN, PL_RING_MAX);
	p->skel->rodata->ring_wakeup_bytes = (uint32_t)(ring_bytes / 4);
	/* The rings exist before the object is loaded: the first is the array's inner map (libbpf 1.1 crashes when its
	 * own inner map template is resized: that map has no object). */
	if (ncpu > 0)
		p->rings = cpurings__new((unsigned)ncpu, ring_bytes, offsetof(struct pl_hdr, ts_ns), on_record, p);
	if ((err = ncpu < 0 ? ncpu : !p->rings ? -errno : 0) ||
	    (err = bpf_map__set_max_entries(p->skel->maps.pl_rings, (uint32_t)ncpu)) ||
	    (err = bpf_map__set_inner_map_fd(p->skel->maps.pl_rings, cpurings__inner_fd(p->rings))) ||
	    (err = bpf_map__set_max_entries(p->skel->maps.target_svc, L->pid_max)) ||
	    (err = bpf_map__reuse_fd(p->skel->maps.target_svc, L->target_svc_fd)) ||
	    (err = loupe__select_tp_flavour(L, p->skel->obj, &hook)) || (err = payload_bpf__load(p->skel)) ||
	    (err = cpurings__publish(p->rings, bpf_map__fd(p->skel->maps.pl_rings)))) {
		cpurings__free(p->rings);
		payload_bpf__destroy(p->skel);
		free(p);
		return err;
	}
	p->conns_fd = bpf_map__fd(p->skel->maps.pl_conns);
	p->drops_fd = bpf_map__fd(p->skel->maps.pl_drops);

	for (int i = 0; i < PROTO_NR && !err; i++)
		if (payload_protos[i] && payload_protos[i]->open)
			err = payload_protos[i]->open(p, L->reg);
	if (err) {
		rows_close(p);
		cpurings__free(p->rings);
		payload_bpf__destroy(p->skel);
		free(p);
		return err;
	}
	loupe__add_object(L, p->skel->obj);
	*priv = p;
	return 0;
}

static int payload_attach(void *priv)
{
	struct payload *p = priv;
	return payload_bpf__attach(p->skel);
}

static int payload_poll(void *priv)
{
	struct payload *p = priv;
	int n = cpurings__consume(p->rings);
	uint64_t now = now_ns(CLOCK_MONOTONIC);
	if (now - p->last_sweep_ns > 30 * NSEC_PER_SEC) {
		p->last_sweep_ns = now;
		sweep(p, now);
	}
	return n < 0 ? n : 0;
}

static int payload_poll_fd(void *priv)
{
	struct payload *p = priv;
	return cpurings__epoll_fd(p->rings);
}

static int payload_collect(void *priv, struct registry *reg)
{
	struct payload *p = priv;
	payload_poll(p); /* what arrived since the last wakeup counts in this scrape */
	static const char *const l_kind[] = {"kind", NULL};
	static const char *const l_svc_dir[] = {"service_name", "direction", NULL};
	static const char *const l_svc_proto[] = {"service_name", "protocol", NULL};
	static const char *const l_svc[] = {"service_name", NULL};
	struct metric_family *redactions = registry__family(
		reg, "loupe_redactions_total",
		"Values abstracted before export: route segments by what they looked like, query strings, authorities, "
		"invalid or truncated targets, routes past the budget (route_budget) or answered 3xx/4xx before any 1xx, "
		"2xx or 5xx (unmatched_route), SQL constants (sql_literal), statements past the fingerprint budget.",
		METRIC_COUNTER, l_kind, 0, FAMILY_SNAPSHOT);
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
		"Captured connections by protocol found: http, websocket (upgraded), postgresql, or "
		"postgresql_encrypted, tls, http2 and unknown, whose capture then stops in the kernel.",
		METRIC_COUNTER, l_svc_proto, 0, FAMILY_SNAPSHOT);
	struct metric_family *lost = registry__family(
		reg, "loupe_payload_records_lost_total",
		"Times a connection's parser had to resynchronise because capture records were dropped (the records "
		"are in loupe_events_dropped_total{feature=\"payload\"}).",
		METRIC_COUNTER, l_svc, 0, FAMILY_SNAPSHOT);
	struct metric_family *tracked = registry__family(reg, "loupe_payload_connections_parsed",
							 "Connections whose protocol is being parsed now.", METRIC_GAUGE,
							 NULL, 0, FAMILY_SNAPSHOT);
	if (!redactions || !records || !bytes || !classes || !lost || !tracked)
		return -ENOMEM;
	int err = 0;
	for (int i = 0; i < PROTO_NR && !err; i++)
		if (payload_protos[i] && payload_protos[i]->collect)
			err = payload_protos[i]->collect(p, reg);
	if (err)
		return err;

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
		const struct svc_stats *st = &p->svc[s];
		const char *svc = payload_service(p, (uint32_t)s);
		const char *v1[] = {svc};
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
	err = loupe_export_drops(reg, "payload", p->drops_fd, drop_reasons, PL_DROP_NR);
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
			const struct proto *row = payload_protos[c->proto];
			if (row && row->drop)
				row->drop(c); /* not end(): no events while shutting down */
			free(c);
		}
	}
	for (int s = 0; s <= LOUPE_MAX_SERVICES; s++) {
		label_set__free(&p->svc[s].routes);
		label_set__free(&p->svc[s].fingerprints);
	}
	rows_close(p);
	cpurings__free(p->rings);
	payload_bpf__destroy(p->skel);
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
