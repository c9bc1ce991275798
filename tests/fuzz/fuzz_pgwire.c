// SPDX-License-Identifier: BSD-2-Clause
/* libFuzzer target for src/parsers/pgwire.c. The input is a sequence of syscall views, so splits, truncation and tails
 * are fuzzed along with the bytes:
 *   byte 0: bit 0 PG_CONN_MIDSTREAM, bit 1 PG_ROLE_CLIENT, bits 2-7 tail size T
 *   then records: [flags][n][extra] n bytes (struct call, fuzz.h); when a call has uncaptured bytes, the last
 *   min(T, n) of its n captured bytes are its tail, the rest its head.
 * Invariants: every execution (pg_stats.executions) ends in exactly one aborted QUERY or in QUERY results, in
 * order of id (a simple Q may report several statements under one id), and none is left at close; nothing
 * follows ENCRYPTED, CANCEL or NOT_PG and the feed then says DONE; end >= start; sqlstate is empty or 5
 * characters; text pointers lie inside the connection (texts are copied there) and within PG_QUERY_MAX;
 * operations are upper-case words or "UNKNOWN".
 * Differential: the same bytes fully captured, fed as given and with consecutive same-direction calls merged,
 * give the same events whenever framing was never lost (call boundaries only matter for resynchronising). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "parsers/pgwire.h"

struct state {
	const struct pg_conn *c;
	uint32_t last_id;	/* id of the last execution that ended */
	bool last_multi;	/* it was a simple Q that reported a result (more may follow under its id) */
	int final;
	uint64_t ts;
};

static void check_op(const char *op)
{
	size_t n = strlen(op);

	CHECK(n >= 1 && n < PG_OP_MAX);
	for (size_t i = 0; i < n; i++)
		CHECK((op[i] >= 'A' && op[i] <= 'Z') || op[i] == ' ' || op[i] == '_');
}

static void on_event(void *ctx, const struct pg_event *ev)
{
	struct state *s = ctx;

	CHECK(!s->final);
	CHECK(pg_event_name(ev->type) != NULL);
	switch (ev->type) {
	case PG_EV_QUERY:
		if (ev->id == s->last_id) {
			/* Another statement of the same simple Q. */
			CHECK(s->last_multi && ev->simple && !ev->aborted);
		} else {
			CHECK(ev->id == s->last_id + 1);
		}
		s->last_id = ev->id;
		s->last_multi = ev->simple && !ev->aborted;
		CHECK(ev->start_ns <= ev->end_ns && ev->end_ns <= s->ts + 1);
		CHECK(ev->duration_ns == ev->end_ns - ev->start_ns);
		CHECK(ev->sqlstate[0] == 0 || strlen(ev->sqlstate) == 5);
		CHECK(!ev->aborted || (!ev->sqlstate[0] && !ev->tag));
		if (ev->query) {
			const char *lo = (const char *)s->c, *hi = lo + sizeof(*s->c);
			CHECK(ev->query >= lo && ev->query + ev->query_len <= hi);
			CHECK(ev->query_len <= PG_QUERY_MAX);
		} else {
			CHECK(ev->query_len == 0);
		}
		check_op(ev->operation);
		if (ev->tag)
			CHECK(strlen(ev->tag) < PG_TAG_MAX);
		break;
	case PG_EV_TXN:
	case PG_EV_IDLE_IN_TXN:
		CHECK(ev->start_ns <= ev->end_ns && ev->duration_ns == ev->end_ns - ev->start_ns);
		break;
	case PG_EV_STARTUP:
		CHECK(ev->version >> 16 == 3);
		break;
	case PG_EV_CANCEL:
	case PG_EV_ENCRYPTED:
		s->final = 1;
		break;
	case PG_EV_NOT_PG:
		s->final = 1;
		CHECK(pg_not_pg_name(ev->reason) != NULL);
		break;
	}
}

/* ---- differential: split vs merged ---- */

static void on_diff(void *ctx, const struct pg_event *ev)
{
	dlog_printf(ctx, "%d %u %.*s %d %s %s %d %d %llu %llu %d|", ev->type, ev->id,
		    ev->query ? (int)ev->query_len : 0, ev->query ? ev->query : "", ev->truncated,
		    ev->operation ? ev->operation : "-", ev->sqlstate, ev->aborted, ev->committed,
		    (unsigned long long)ev->start_ns, (unsigned long long)ev->end_ns,
		    ev->type == PG_EV_NOT_PG ? (int)ev->reason : -1);
}

/* Anomalies after which framing depends on call boundaries. */
static bool framing_lost(const struct pg_stats *st)
{
	return st->n[PG_AN_FE_DESYNC] || st->n[PG_AN_BE_DESYNC] || st->n[PG_AN_RESYNC_HEAD] ||
	       st->n[PG_AN_RESYNC_TAIL] || st->n[PG_AN_BAD_HEADER];
}

struct diff {
	struct pg_conn c[2];
	struct pg_sink k[2];
};

static void diff_feed(void *ctx, int merged, enum flow_dir dir, const uint8_t *p, size_t n, uint64_t ts)
{
	struct diff *d = ctx;
	pg_conn_feed(&d->c[merged], dir, p, n, n, NULL, 0, ts, &d->k[merged]);
}

static void differential(const struct call *pc, size_t np, enum pg_role role)
{
	static struct diff d;
	static struct dlog l[2];
	struct pg_stats st[2] = { 0 };
	for (int k = 0; k < 2; k++) {
		l[k].len = 0;
		l[k].done = 0;
		d.k[k] = (struct pg_sink){ .event = on_diff, .ctx = &l[k], .stats = &st[k] };
		pg_conn_init(&d.c[k], role, 0);
	}
	uint64_t ts = replay_split_merged(pc, np, diff_feed, &d);
	for (int k = 0; k < 2; k++)
		pg_conn_close(&d.c[k], ts + 1, &d.k[k]);
	if (framing_lost(&st[0]) || framing_lost(&st[1]) || l[0].done || l[1].done)
		return;
	dlog_compare(&l[0], &l[1]);
}

/* ---- seeds ---- */

struct msgbuf {
	uint8_t b[2048];
	size_t n;
};

static void m_put(struct msgbuf *m, const void *p, size_t n)
{
	if (n && m->n + n <= sizeof(m->b)) {
		memcpy(m->b + m->n, p, n);
		m->n += n;
	}
}

static void m_32(struct msgbuf *m, uint32_t v)
{
	uint8_t x[4] = { v >> 24, v >> 16, v >> 8, v };
	m_put(m, x, 4);
}

static void m_msg(struct msgbuf *m, char t, const void *p, size_t n)
{
	m_put(m, &t, 1);
	m_32(m, (uint32_t)n + 4);
	m_put(m, p, n);
}

#define m_lit(m, t, lit) m_msg(m, t, lit, sizeof(lit) - 1)

static void m_str(struct msgbuf *m, char t, const char *s)
{
	m_msg(m, t, s, strlen(s) + 1);
}

static void m_startup(struct msgbuf *m)
{
	static const char params[] = "user\0app\0";
	m_32(m, 8 + sizeof(params));
	m_32(m, PG_PROTOCOL_3_0);
	m_put(m, params, sizeof(params));
}

static void rec(struct out *o, int out_dir, struct msgbuf *m, size_t cap, size_t extra)
{
	if (cap > m->n)
		cap = m->n;
	if (cap > 511)
		cap = 511;
	extra += m->n - cap;
	if (extra > 8191)
		extra = 8191;
	if (o->n + 3 + cap <= sizeof(o->b))
		out_rec(o, out_dir, m->b, cap, extra);
	m->n = 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = getenv("LOUPE_FUZZ_SEEDS");
	struct out o;
	struct msgbuf m = { .n = 0 };
	int k = 0;
	/* SERVER role: frontend = FLOW_IN (0), backend = FLOW_OUT (1). */

	if (!dir)
		return 0;
	o.n = 0;
	o.b[o.n++] = 0;
	m_32(&m, 8);
	m_32(&m, PG_SSL_CODE);
	rec(&o, 0, &m, 999, 0);
	m_put(&m, "N", 1);
	rec(&o, 1, &m, 999, 0);
	m_startup(&m);
	rec(&o, 0, &m, 999, 0);
	m_lit(&m, 'R', "\0\0\0\0");
	m_lit(&m, 'K', "\0\0\0\1\0\0\0\2");
	m_lit(&m, 'Z', "I");
	rec(&o, 1, &m, 999, 0);
	m_str(&m, 'Q', "BEGIN");
	rec(&o, 0, &m, 999, 0);
	m_str(&m, 'C', "BEGIN");
	m_lit(&m, 'Z', "T");
	rec(&o, 1, &m, 999, 0);
	m_lit(&m, 'P', "s1\0insert into t values ($1)\0\0\0");
	m_lit(&m, 'B', "\0s1\0\0\0\0\1\0\0\0\0012\0\0");
	m_lit(&m, 'E', "\0\0\0\0\0");
	m_msg(&m, 'S', NULL, 0);
	rec(&o, 0, &m, 999, 0);
	m_msg(&m, '1', NULL, 0);
	m_msg(&m, '2', NULL, 0);
	m_str(&m, 'C', "INSERT 0 1");
	m_lit(&m, 'Z', "T");
	rec(&o, 1, &m, 999, 0);
	m_str(&m, 'Q', "commit; select 1");
	rec(&o, 0, &m, 999, 0);
	m_str(&m, 'C', "COMMIT");
	m_lit(&m, 'E', "SERROR\0C42P01\0Mx\0\0");
	m_lit(&m, 'Z', "I");
	rec(&o, 1, &m, 999, 0);
	seed_write(dir, k++, &o);

	/* Pipelined batch with an error, COPY, a big result with its end in the tail. */
	o.n = 0;
	o.b[o.n++] = 2 | 20 << 2; /* client role, tails of 20 bytes */
	m_startup(&m);
	rec(&o, 1, &m, 999, 0);
	m_lit(&m, 'Z', "I");
	rec(&o, 0, &m, 999, 0);
	for (int i = 0; i < 3; i++) {
		m_lit(&m, 'P', "\0insert into a values (1)\0\0\0");
		m_lit(&m, 'B', "\0\0\0\0\0\0\0\0");
		m_lit(&m, 'D', "P\0");
		m_lit(&m, 'E', "\0\0\0\0\0");
	}
	m_msg(&m, 'S', NULL, 0);
	rec(&o, 1, &m, 999, 0);
	m_msg(&m, '1', NULL, 0);
	m_msg(&m, '2', NULL, 0);
	m_msg(&m, 'n', NULL, 0);
	m_str(&m, 'C', "INSERT 0 1");
	m_lit(&m, 'E', "SERROR\0C23505\0\0");
	m_lit(&m, 'Z', "I");
	rec(&o, 0, &m, 999, 0);
	m_str(&m, 'Q', "COPY t FROM STDIN");
	rec(&o, 1, &m, 999, 0);
	m_lit(&m, 'G', "\0\0\1\0\0");
	rec(&o, 0, &m, 999, 0);
	m_lit(&m, 'd', "1\n");
	m_msg(&m, 'c', NULL, 0);
	rec(&o, 1, &m, 999, 0);
	m_str(&m, 'C', "COPY 1");
	m_lit(&m, 'Z', "I");
	rec(&o, 0, &m, 999, 0);
	m_str(&m, 'Q', "select * from big");
	rec(&o, 1, &m, 999, 0);
	m_lit(&m, 'T', "\0\1id\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
	for (int i = 0; i < 20; i++)
		m_lit(&m, 'D', "\0\1\0\0\0\x0aZ\0\0\0\5IC\0\0\0");
	m_str(&m, 'C', "SELECT 20");
	m_lit(&m, 'Z', "I");
	rec(&o, 0, &m, 64, 0);
	seed_write(dir, k++, &o);

	/* Midstream, then junk. */
	o.n = 0;
	o.b[o.n++] = 1;
	m_lit(&m, 'D', "\0\1\0\0\0\4abcd");
	m_str(&m, 'C', "SELECT 1");
	m_lit(&m, 'Z', "I");
	rec(&o, 1, &m, 999, 0);
	m_str(&m, 'Q', "select 2");
	rec(&o, 0, &m, 999, 0);
	m_str(&m, 'C', "SELECT 1");
	m_lit(&m, 'Z', "I");
	rec(&o, 1, &m, 999, 0);
	seed_write(dir, k++, &o);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct pg_conn c;
	struct state s = { .c = &c };
	struct pg_stats st = { 0 };
	struct pg_sink sink = { .event = on_event, .ctx = &s, .stats = &st };
	size_t i = 0;
	static struct call calls[4096];
	struct call cl;
	size_t np = 0;

	if (!size)
		return 0;
	bool midstream = data[0] & 1;
	enum pg_role role = data[0] & 2 ? PG_ROLE_CLIENT : PG_ROLE_SERVER;
	size_t tail_max = data[0] >> 2;
	i = 1;
	pg_conn_init(&c, role, midstream ? PG_CONN_MIDSTREAM : 0);
	while (next_call(data, size, &i, &cl)) {
		if (np < sizeof(calls) / sizeof(calls[0]))
			calls[np++] = cl;
		s.ts++;
		size_t tailn = 0;
		if (cl.len > cl.n)
			tailn = cl.n < tail_max ? cl.n : tail_max;
		uint8_t *head = heap_copy(cl.p, cl.n - tailn);
		uint8_t *tail = tailn ? heap_copy(cl.p + cl.n - tailn, tailn) : NULL;
		/* The head is followed by the unknown bytes, then the tail: len stays n + extra. */
		int r = pg_conn_feed(&c, cl.dir, head, cl.n - tailn, cl.len, tail, tailn, s.ts, &sink);
		CHECK(r == PG_FEED_OK || r == PG_FEED_DONE);
		CHECK((r == PG_FEED_OK) == !s.final);
		free(head);
		free(tail);
		/* Executions end in order: those ended plus those pending are those started. */
		CHECK((uint64_t)s.last_id + pg_conn_pending(&c) == st.executions);
		if (cl.n && cl.p[0] == 0xa5)
			pg_conn_lost(&c, s.ts, &sink);
	}
	pg_conn_close(&c, s.ts + 1, &sink);
	CHECK(pg_conn_pending(&c) == 0);
	CHECK(s.last_id == st.executions);
	if (!midstream)
		differential(calls, np, role);
	return 0;
}
