// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for src/parsers/pgwire.c: PostgreSQL protocol 3.0 from truncated syscall views, in both roles. Every
 * scenario states the exact events it expects, as text:
 *   "Q1 SELECT - [select 1] 3-4"          execution id, operation, sqlstate ('-' when ok), text, start-end
 *   "Q3 INSERT aborted [insert ...] 2-5"  no result;  "..." after the text: truncated; "+" suspended
 *   "TXN commit 3-9", "IDLE 4-6", "STARTUP 196608", "CANCEL", "ENCRYPTED tls", "NOTPG http". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "parsers/pgwire.h"

/* ---- building messages ---- */

struct buf {
	uint8_t b[1 << 17];
	size_t n;
};

static void put(struct buf *b, const void *p, size_t n)
{
	assert_true(b->n + n <= sizeof(b->b));
	memcpy(b->b + b->n, p, n);
	b->n += n;
}

static void put32(struct buf *b, uint32_t v)
{
	uint8_t x[4] = { v >> 24, v >> 16, v >> 8, v };
	put(b, x, 4);
}

static void put16(struct buf *b, uint16_t v)
{
	uint8_t x[2] = { v >> 8, v };
	put(b, x, 2);
}

static void puts0(struct buf *b, const char *s)
{
	put(b, s, strlen(s) + 1);
}

/* A typed message with body p[0..n). */
static void msg(struct buf *b, char type, const void *p, size_t n)
{
	put(b, &type, 1);
	put32(b, (uint32_t)n + 4);
	if (n)
		put(b, p, n);
}

static void msg_str(struct buf *b, char type, const char *s)
{
	msg(b, type, s, strlen(s) + 1);
}

static void startup(struct buf *b)
{
	static const char params[] = "user\0app\0database\0mem\0";
	put32(b, 8 + sizeof(params));
	put32(b, PG_PROTOCOL_3_0);
	put(b, params, sizeof(params));
}

static void special(struct buf *b, uint32_t code)
{
	put32(b, code == PG_CANCEL_CODE ? 16 : 8);
	put32(b, code);
	if (code == PG_CANCEL_CODE) {
		put32(b, 4242);
		put32(b, 0xdeadbeef);
	}
}

/* Frontend. */
static void Q(struct buf *b, const char *q)
{
	msg_str(b, 'Q', q);
}

static void P(struct buf *b, const char *name, const char *q)
{
	struct buf *x = calloc(1, sizeof(*x));
	puts0(x, name);
	puts0(x, q);
	put16(x, 0);
	msg(b, 'P', x->b, x->n);
	free(x);
}

static void B(struct buf *b, const char *portal, const char *stmt)
{
	struct buf *x = calloc(1, sizeof(*x));
	puts0(x, portal);
	puts0(x, stmt);
	put16(x, 0);
	put16(x, 1); /* one parameter */
	put32(x, 2);
	put(x, "42", 2);
	put16(x, 0);
	msg(b, 'B', x->b, x->n);
	free(x);
}

static void Dp(struct buf *b, const char *portal)
{
	char x[64];
	x[0] = 'P';
	strcpy(x + 1, portal);
	msg(b, 'D', x, strlen(portal) + 2);
}

static void E(struct buf *b, const char *portal, uint32_t maxrows)
{
	struct buf *x = calloc(1, sizeof(*x));
	puts0(x, portal);
	put32(x, maxrows);
	msg(b, 'E', x->b, x->n);
	free(x);
}

static void S(struct buf *b)
{
	msg(b, 'S', NULL, 0);
}

/* One extended execution of the unnamed statement: P B D E. */
static void PBDE(struct buf *b, const char *q)
{
	P(b, "", q);
	B(b, "", "");
	Dp(b, "");
	E(b, "", 0);
}

/* Backend. */
static void auth_ok(struct buf *b)
{
	uint8_t zero[4] = { 0 };
	msg(b, 'R', zero, 4);
	msg(b, 'S', "server_version\00015.4", 20);
	uint8_t key[8] = { 0, 0, 0x10, 0x92, 1, 2, 3, 4 };
	msg(b, 'K', key, 8);
}

static void Z(struct buf *b, char status)
{
	msg(b, 'Z', &status, 1);
}

static void C(struct buf *b, const char *tag)
{
	msg_str(b, 'C', tag);
}

static void err(struct buf *b, const char *code)
{
	struct buf *x = calloc(1, sizeof(*x));
	puts0(x, "SERROR");
	puts0(x, "VERROR");
	char f[16];
	snprintf(f, sizeof(f), "C%s", code);
	puts0(x, f);
	puts0(x, "Mduplicate key value violates unique constraint");
	put(x, "", 1);
	msg(b, 'E', x->b, x->n);
	free(x);
}

static void rowdesc(struct buf *b)
{
	struct buf *x = calloc(1, sizeof(*x));
	put16(x, 1);
	puts0(x, "id");
	put32(x, 0);
	put16(x, 0);
	put32(x, 23);
	put16(x, 4);
	put32(x, 0xffffffff);
	put16(x, 0);
	msg(b, 'T', x->b, x->n);
	free(x);
}

/* A DataRow of one column of n bytes. Its content looks like messages, to catch a parser that reads it. */
static void datarow(struct buf *b, size_t n)
{
	struct buf *x = calloc(1, sizeof(*x));
	put16(x, 1);
	put32(x, (uint32_t)n);
	for (size_t i = 0; i < n; i++)
		x->b[x->n++] = "Z\0\0\0\5IC\0\0\0\x0dSELECT 1\0"[i % 20];
	msg(b, 'D', x->b, x->n);
	free(x);
}

static void one(struct buf *b, char type)
{
	msg(b, type, NULL, 0);
}

/* ---- the event log ---- */

struct log {
	char text[32768];
	size_t len;
	struct pg_stats st;
	int nq;
};

static void logf_(struct log *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(struct log *l, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(l->text + l->len, sizeof(l->text) - l->len, fmt, ap);
	va_end(ap);
	assert_true(n >= 0 && (size_t)n < sizeof(l->text) - l->len);
	l->len += (size_t)n;
}

static void on_event(void *ctx, const struct pg_event *ev)
{
	struct log *l = ctx;

	switch (ev->type) {
	case PG_EV_QUERY:
		l->nq++;
		assert_true(ev->end_ns >= ev->start_ns);
		assert_int_equal(ev->duration_ns, ev->end_ns - ev->start_ns);
		assert_true(!ev->sqlstate[0] || strlen(ev->sqlstate) == 5);
		if (ev->aborted)
			assert_true(!ev->tag && !ev->sqlstate[0]);
		logf_(l, "Q%u %s %s [%.*s]%s%s %llu-%llu\n", ev->id, ev->operation,
		      ev->aborted ? "aborted" : ev->sqlstate[0] ? ev->sqlstate : "-",
		      ev->query ? (int)ev->query_len : 4, ev->query ? ev->query : "NULL",
		      ev->truncated ? "..." : "", ev->suspended ? "+" : "", (unsigned long long)ev->start_ns,
		      (unsigned long long)ev->end_ns);
		break;
	case PG_EV_TXN:
		logf_(l, "TXN %s %llu-%llu\n", ev->committed ? "commit" : "rollback",
		      (unsigned long long)ev->start_ns, (unsigned long long)ev->end_ns);
		break;
	case PG_EV_IDLE_IN_TXN:
		logf_(l, "IDLE %llu-%llu\n", (unsigned long long)ev->start_ns, (unsigned long long)ev->end_ns);
		break;
	case PG_EV_STARTUP:
		logf_(l, "STARTUP %u\n", ev->version);
		break;
	case PG_EV_CANCEL:
		logf_(l, "CANCEL\n");
		break;
	case PG_EV_ENCRYPTED:
		logf_(l, "ENCRYPTED %s\n", ev->encryption == PG_ENC_TLS ? "tls" : "gss");
		break;
	case PG_EV_NOT_PG:
		logf_(l, "NOTPG %s\n", pg_not_pg_name(ev->reason));
		break;
	}
}

struct t {
	struct pg_conn c;
	struct log l;
	struct pg_sink sink;
	enum pg_role role;
};

static struct t *t_new(enum pg_role role, unsigned flags)
{
	struct t *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	t->role = role;
	pg_conn_init(&t->c, role, flags);
	t->sink = (struct pg_sink){ .event = on_event, .ctx = &t->l, .stats = &t->l.st };
	return t;
}

static enum flow_dir fe_dir(const struct t *t)
{
	return t->role == PG_ROLE_SERVER ? FLOW_IN : FLOW_OUT;
}

static enum flow_dir be_dir(const struct t *t)
{
	return t->role == PG_ROLE_SERVER ? FLOW_OUT : FLOW_IN;
}

/* Fully captured calls. */
static int fe(struct t *t, const struct buf *b, uint64_t ts)
{
	return pg_conn_feed(&t->c, fe_dir(t), b->b, b->n, b->n, NULL, 0, ts, &t->sink);
}

static int be(struct t *t, const struct buf *b, uint64_t ts)
{
	return pg_conn_feed(&t->c, be_dir(t), b->b, b->n, b->n, NULL, 0, ts, &t->sink);
}

/* A call whose capture kept the first cap and the last tailn bytes of b. */
static int feedt(struct t *t, enum flow_dir d, const struct buf *b, size_t cap, size_t tailn, uint64_t ts)
{
	return pg_conn_feed(&t->c, d, b->b, cap, b->n, b->b + b->n - tailn, tailn, ts, &t->sink);
}

static void t_done(struct t *t, const char *want)
{
	pg_conn_close(&t->c, 999, &t->sink);
	assert_int_equal(pg_conn_pending(&t->c), 0);
	if (want && strcmp(t->l.text, want))
		fail_msg("role %d got:\n%s\nwant:\n%s", t->role, t->l.text, want);
	free(t);
}

static void no_anomalies(const struct t *t)
{
	for (int k = 0; k < PG_AN_MAX; k++)
		if (t->l.st.n[k])
			fail_msg("anomaly %s: %llu", pg_anomaly_name(k), (unsigned long long)t->l.st.n[k]);
}

static struct buf *bnew(void)
{
	struct buf *b = calloc(1, sizeof(*b));
	assert_non_null(b);
	return b;
}

static void breset(struct buf *b)
{
	b->n = 0;
}

/* Startup to the first ReadyForQuery at ts 1-2. */
static void connect_(struct t *t, struct buf *b)
{
	breset(b);
	startup(b);
	assert_int_equal(fe(t, b, 1), PG_FEED_OK);
	breset(b);
	auth_ok(b);
	Z(b, 'I');
	assert_int_equal(be(t, b, 2), PG_FEED_OK);
}

static const enum pg_role roles[] = { PG_ROLE_SERVER, PG_ROLE_CLIENT };

/* ---- simple query ---- */

static void test_simple_query(void **state)
{
	for (int r = 0; r < 2; r++) {
		struct t *t = t_new(roles[r], 0);
		struct buf *b = bnew();
		connect_(t, b);
		breset(b);
		Q(b, "select id from memories where id = 42");
		fe(t, b, 3);
		assert_int_equal(pg_conn_pending(&t->c), 1);
		breset(b);
		rowdesc(b);
		datarow(b, 3);
		C(b, "SELECT 1");
		Z(b, 'I');
		be(t, b, 4);
		assert_int_equal(pg_conn_pending(&t->c), 0);
		breset(b);
		Q(b, "insert into m values (1)");
		fe(t, b, 5);
		breset(b);
		C(b, "INSERT 0 1");
		be(t, b, 6);
		breset(b);
		Z(b, 'I');
		be(t, b, 7);
		breset(b);
		Q(b, "  create table x (a int)");
		fe(t, b, 8);
		breset(b);
		C(b, "CREATE TABLE");
		Z(b, 'I');
		be(t, b, 9);
		breset(b);
		Q(b, ";");
		fe(t, b, 10);
		breset(b);
		one(b, 'I');
		Z(b, 'I');
		be(t, b, 11);
		no_anomalies(t);
		assert_int_equal(t->l.st.executions, 4);
		t_done(t, "STARTUP 196608\n"
			  "Q1 SELECT - [select id from memories where id = 42] 3-4\n"
			  "Q2 INSERT - [insert into m values (1)] 5-6\n"
			  "Q3 CREATE TABLE - [  create table x (a int)] 8-9\n"
			  "Q4 UNKNOWN - [;] 10-11\n");
		free(b);
	}
}

static void test_multi_statement_query(void **state)
{
	for (int r = 0; r < 2; r++) {
		struct t *t = t_new(roles[r], 0);
		struct buf *b = bnew();
		connect_(t, b);
		breset(b);
		Q(b, "update a set x=1; delete from b; select 1");
		fe(t, b, 3);
		breset(b);
		C(b, "UPDATE 2");
		be(t, b, 4);
		breset(b);
		C(b, "DELETE 0");
		rowdesc(b);
		be(t, b, 5);
		breset(b);
		err(b, "42P01");
		Z(b, 'I');
		be(t, b, 6);
		no_anomalies(t);
		t_done(t, "STARTUP 196608\n"
			  "Q1 UPDATE - [update a set x=1; delete from b; select 1] 3-4\n"
			  "Q1 DELETE - [update a set x=1; delete from b; select 1] 4-5\n"
			  "Q1 UPDATE 42P01 [update a set x=1; delete from b; select 1] 5-6\n");
		free(b);
	}
}

/* ---- extended protocol ---- */

static void test_extended_unnamed(void **state)
{
	for (int r = 0; r < 2; r++) {
		struct t *t = t_new(roles[r], 0);
		struct buf *b = bnew();
		connect_(t, b);
		breset(b);
		PBDE(b, "select * from m where id = $1");
		S(b);
		fe(t, b, 3);
		breset(b);
		one(b, '1');
		one(b, '2');
		rowdesc(b);
		datarow(b, 10);
		C(b, "SELECT 1");
		Z(b, 'I');
		be(t, b, 4);
		/* Bind and Execute in separate calls: the batch starts at the Bind. */
		breset(b);
		B(b, "", "");
		fe(t, b, 5);
		breset(b);
		E(b, "", 0);
		S(b);
		fe(t, b, 6);
		breset(b);
		one(b, '2');
		C(b, "SELECT 0");
		Z(b, 'I');
		be(t, b, 7);
		no_anomalies(t);
		t_done(t, "STARTUP 196608\n"
			  "Q1 SELECT - [select * from m where id = $1] 3-4\n"
			  "Q2 SELECT - [select * from m where id = $1] 5-7\n");
		free(b);
	}
}

static void test_extended_named(void **state)
{
	for (int r = 0; r < 2; r++) {
		struct t *t = t_new(roles[r], 0);
		struct buf *b = bnew();
		connect_(t, b);
		breset(b);
		P(b, "s_ins", "insert into t values ($1)");
		P(b, "s_sel", "select * from t");
		S(b);
		fe(t, b, 3);
		breset(b);
		one(b, '1');
		one(b, '1');
		Z(b, 'I');
		be(t, b, 4);
		breset(b);
		B(b, "p1", "s_sel");
		B(b, "", "s_ins");
		E(b, "", 0);
		E(b, "p1", 0);
		S(b);
		fe(t, b, 5);
		breset(b);
		one(b, '2');
		one(b, '2');
		C(b, "INSERT 0 1");
		C(b, "SELECT 5");
		Z(b, 'I');
		be(t, b, 6);
		/* An unknown statement: no text; the operation is unknown. */
		breset(b);
		B(b, "", "never_parsed");
		E(b, "", 0);
		S(b);
		fe(t, b, 7);
		breset(b);
		err(b, "26000");
		Z(b, 'I');
		be(t, b, 8);
		assert_int_equal(t->l.st.n[PG_AN_STMT_UNKNOWN], 1);
		t_done(t, "STARTUP 196608\n"
			  "Q1 INSERT - [insert into t values ($1)] 5-6\n"
			  "Q2 SELECT - [select * from t] 5-6\n"
			  "Q3 UNKNOWN 26000 [NULL] 7-8\n");
		free(b);
	}
}

/* The statement table keeps PG_STMT_MAX texts; the least recently used goes first. */
static void test_statement_eviction(void **state)
{
	struct t *t = t_new(PG_ROLE_SERVER, 0);
	struct buf *b = bnew();
	char name[16], q[64];

	connect_(t, b);
	for (int i = 0; i < PG_STMT_MAX + 4; i++) {
		breset(b);
		snprintf(name, sizeof(name), "s%d", i);
		snprintf(q, sizeof(q), "select %d", i);
		P(b, name, q);
		S(b);
		fe(t, b, 3);
		breset(b);
		one(b, '1');
		Z(b, 'I');
		be(t, b, 4);
		if (i == 10) {
			/* s0 used again: it stays. */
			breset(b);
			B(b, "", "s0");
			E(b, "", 0);
			S(b);
			fe(t, b, 5);
			breset(b);
			one(b, '2');
			C(b, "SELECT 1");
			Z(b, 'I');
			be(t, b, 6);
		}
	}
	assert_int_equal(t->l.st.n[PG_AN_STMT_EVICTED], 4);
	const char *names[] = { "s0", "s1", "s19" };
	for (int i = 0; i < 3; i++) {
		breset(b);
		B(b, "", names[i]);
		E(b, "", 0);
		S(b);
		fe(t, b, 10 + i);
		breset(b);
		one(b, '2');
		C(b, "SELECT 1");
		Z(b, 'I');
		be(t, b, 10 + i);
	}
	t_done(t, "STARTUP 196608\n"
		  "Q1 SELECT - [select 0] 5-6\n"
		  "Q2 SELECT - [select 0] 10-10\n"
		  "Q3 SELECT - [NULL] 11-11\n"
		  "Q4 SELECT - [select 19] 12-12\n");
	free(b);
}

/* Pipelining (55.2.4): three executions before one Sync; the second fails, the third is skipped. */
static void test_pipeline_error(void **state)
{
	for (int r = 0; r < 2; r++) {
		struct t *t = t_new(roles[r], 0);
		struct buf *b = bnew();
		connect_(t, b);
		breset(b);
		PBDE(b, "insert into a values (1)");
		PBDE(b, "insert into a values (1)");
		PBDE(b, "insert into b values (2)");
		S(b);
		fe(t, b, 3);
		assert_int_equal(pg_conn_pending(&t->c), 3);
		breset(b);
		one(b, '1');
		one(b, '2');
		one(b, 'n');
		C(b, "INSERT 0 1");
		one(b, '1');
		one(b, '2');
		one(b, 'n');
		be(t, b, 4);
		breset(b);
		err(b, "23505");
		Z(b, 'I');
		be(t, b, 5);
		/* Two batches with their Syncs, the first one failing at Parse. */
		breset(b);
		PBDE(b, "selec oops");
		S(b);
		PBDE(b, "select 2");
		S(b);
		fe(t, b, 6);
		breset(b);
		err(b, "42601");
		Z(b, 'I');
		one(b, '1');
		one(b, '2');
		rowdesc(b);
		C(b, "SELECT 1");
		Z(b, 'I');
		be(t, b, 7);
		no_anomalies(t);
		t_done(t, "STARTUP 196608\n"
			  "Q1 INSERT - [insert into a values (1)] 3-4\n"
			  "Q2 INSERT 23505 [insert into a values (1)] 3-5\n"
			  "Q3 INSERT aborted [insert into b values (2)] 3-5\n"
			  "Q4 SELEC 42601 [selec oops] 6-7\n"
			  "Q5 SELECT - [select 2] 6-7\n");
		free(b);
	}
}

static void test_portal_suspended(void **state)
{
	struct t *t = t_new(PG_ROLE_CLIENT, 0);
	struct buf *b = bnew();

	connect_(t, b);
	breset(b);
	P(b, "", "select * from big");
	B(b, "cur", "");
	E(b, "cur", 100);
	S(b);
	fe(t, b, 3);
	breset(b);
	one(b, '1');
	one(b, '2');
	datarow(b, 4);
	one(b, 's');
	Z(b, 'T');
	be(t, b, 4);
	t_done(t, "STARTUP 196608\nQ1 SELECT - [select * from big]+ 3-4\n");
	free(b);
}

/* ---- transactions ---- */

static void test_transactions(void **state)
{
	for (int r = 0; r < 2; r++) {
		struct t *t = t_new(roles[r], 0);
		struct buf *b = bnew();
		connect_(t, b);
		breset(b);
		Q(b, "BEGIN");
		fe(t, b, 10);
		breset(b);
		C(b, "BEGIN");
		Z(b, 'T');
		be(t, b, 11);
		breset(b);
		Q(b, "insert into a values (1)");
		fe(t, b, 15);
		breset(b);
		C(b, "INSERT 0 1");
		Z(b, 'T');
		be(t, b, 16);
		breset(b);
		Q(b, "COMMIT");
		fe(t, b, 20);
		breset(b);
		C(b, "COMMIT");
		Z(b, 'I');
		be(t, b, 21);
		/* A failed transaction, rolled back. */
		breset(b);
		Q(b, "begin; insert into a values (1)");
		fe(t, b, 30);
		breset(b);
		C(b, "BEGIN");
		err(b, "23505");
		Z(b, 'E');
		be(t, b, 31);
		breset(b);
		Q(b, "commit");
		fe(t, b, 35);
		breset(b);
		C(b, "ROLLBACK");
		Z(b, 'I');
		be(t, b, 36);
		/* Extended protocol, BEGIN in the batch. */
		breset(b);
		PBDE(b, "BEGIN");
		PBDE(b, "update x set a = 1");
		S(b);
		fe(t, b, 40);
		breset(b);
		one(b, '1');
		one(b, '2');
		one(b, 'n');
		C(b, "BEGIN");
		one(b, '1');
		one(b, '2');
		one(b, 'n');
		C(b, "UPDATE 1");
		Z(b, 'T');
		be(t, b, 41);
		breset(b);
		PBDE(b, "ROLLBACK");
		S(b);
		fe(t, b, 45);
		breset(b);
		one(b, '1');
		one(b, '2');
		one(b, 'n');
		C(b, "ROLLBACK");
		Z(b, 'I');
		be(t, b, 46);
		no_anomalies(t);
		t_done(t, "STARTUP 196608\n"
			  "Q1 BEGIN - [BEGIN] 10-11\n"
			  "IDLE 11-15\n"
			  "Q2 INSERT - [insert into a values (1)] 15-16\n"
			  "IDLE 16-20\n"
			  "Q3 COMMIT - [COMMIT] 20-21\n"
			  "TXN commit 10-21\n"
			  "Q4 BEGIN - [begin; insert into a values (1)] 30-31\n"
			  "Q4 BEGIN 23505 [begin; insert into a values (1)] 31-31\n"
			  "IDLE 31-35\n"
			  "Q5 ROLLBACK - [commit] 35-36\n"
			  "TXN rollback 30-36\n"
			  "Q6 BEGIN - [BEGIN] 40-41\n"
			  "Q7 UPDATE - [update x set a = 1] 40-41\n"
			  "IDLE 41-45\n"
			  "Q8 ROLLBACK - [ROLLBACK] 45-46\n"
			  "TXN rollback 40-46\n");
		free(b);
	}
}

/* ---- startup variants ---- */

static void test_ssl_request(void **state)
{
	for (int r = 0; r < 2; r++) {
		/* Refused: the startup packet follows in clear. */
		struct t *t = t_new(roles[r], 0);
		struct buf *b = bnew();
		special(b, PG_SSL_CODE);
		assert_int_equal(fe(t, b, 1), PG_FEED_OK);
		breset(b);
		put(b, "N", 1);
		assert_int_equal(be(t, b, 2), PG_FEED_OK);
		breset(b);
		startup(b);
		fe(t, b, 3);
		breset(b);
		auth_ok(b);
		Z(b, 'I');
		be(t, b, 4);
		breset(b);
		Q(b, "select 1");
		fe(t, b, 5);
		breset(b);
		C(b, "SELECT 1");
		Z(b, 'I');
		be(t, b, 6);
		no_anomalies(t);
		t_done(t, "STARTUP 196608\nQ1 SELECT - [select 1] 5-6\n");

		/* Accepted: TLS follows, nothing more is parsed. */
		t = t_new(roles[r], 0);
		breset(b);
		special(b, PG_SSL_CODE);
		fe(t, b, 1);
		breset(b);
		put(b, "S", 1);
		assert_int_equal(be(t, b, 2), PG_FEED_DONE);
		breset(b);
		put(b, "\x16\x03\x01\x00\x10", 5);
		assert_int_equal(fe(t, b, 3), PG_FEED_DONE);
		t_done(t, "ENCRYPTED tls\n");

		/* GSSENCRequest refused, then SSLRequest accepted. */
		t = t_new(roles[r], 0);
		breset(b);
		special(b, PG_GSSENC_CODE);
		fe(t, b, 1);
		breset(b);
		put(b, "N", 1);
		be(t, b, 2);
		breset(b);
		special(b, PG_SSL_CODE);
		fe(t, b, 3);
		breset(b);
		put(b, "S", 1);
		assert_int_equal(be(t, b, 4), PG_FEED_DONE);
		t_done(t, "ENCRYPTED tls\n");

		t = t_new(roles[r], 0);
		breset(b);
		special(b, PG_GSSENC_CODE);
		fe(t, b, 1);
		breset(b);
		put(b, "G", 1);
		assert_int_equal(be(t, b, 2), PG_FEED_DONE);
		t_done(t, "ENCRYPTED gss\n");
		free(b);
	}
}

static void test_cancel(void **state)
{
	struct t *t = t_new(PG_ROLE_SERVER, 0);
	struct buf *b = bnew();

	special(b, PG_CANCEL_CODE);
	assert_int_equal(fe(t, b, 1), PG_FEED_DONE);
	t_done(t, "CANCEL\n");
	free(b);
}

static void test_not_pg(void **state)
{
	static const struct {
		const char *bytes;
		size_t n;
		const char *want;
		int dir_be;
	} cases[] = {
		{ "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27, "NOTPG http\n", 0 },
		{ "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11, "NOTPG tls\n", 0 },
		{ "\x00\x00\x00\x02\x00\x03\x00\x00", 8, "NOTPG garbage\n", 0 },
		{ "\x00\x01\x00\x00\x00\x03\x00\x00", 8, "NOTPG garbage\n", 0 }, /* 64 KiB startup */
		{ "\x00\x00\x00\x08\x00\x02\x00\x00", 8, "NOTPG version\n", 0 },
		{ "\x00\x00\x00\x08\x12\x34\x99\x99", 8, "NOTPG garbage\n", 0 },
		{ "SSH-2.0-OpenSSH\r\n", 17, "NOTPG server_first\n", 1 },
	};
	for (int r = 0; r < 2; r++)
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			struct t *t = t_new(roles[r], 0);
			enum flow_dir d = cases[i].dir_be ? be_dir(t) : fe_dir(t);
			int ret = pg_conn_feed(&t->c, d, (const uint8_t *)cases[i].bytes, cases[i].n, cases[i].n,
					       NULL, 0, 1, &t->sink);
			assert_int_equal(ret, PG_FEED_DONE);
			t_done(t, cases[i].want);
		}

	/* Midstream: TLS, HTTP; lengths < 4 or > 1 GiB never make a boundary, so garbage ends as unsynced. */
	struct t *t = t_new(PG_ROLE_SERVER, PG_CONN_MIDSTREAM);
	assert_int_equal(pg_conn_feed(&t->c, FLOW_OUT, (const uint8_t *)"\x17\x03\x03\x00\x20", 5, 100, NULL, 0,
				      1, &t->sink),
			 PG_FEED_DONE);
	t_done(t, "NOTPG tls\n");
	t = t_new(PG_ROLE_CLIENT, PG_CONN_MIDSTREAM);
	assert_int_equal(pg_conn_feed(&t->c, FLOW_IN, (const uint8_t *)"HTTP/1.1 200 OK\r\n", 17, 17, NULL, 0, 1,
				      &t->sink),
			 PG_FEED_DONE);
	t_done(t, "NOTPG http\n");
	t = t_new(PG_ROLE_SERVER, PG_CONN_MIDSTREAM);
	int ret = PG_FEED_OK;
	for (int i = 0; i < 200 && ret == PG_FEED_OK; i++)
		ret = pg_conn_feed(&t->c, i & 1 ? FLOW_OUT : FLOW_IN,
				   (const uint8_t *)(i & 2 ? "Q\0\0\0\2xx" : "Z\x7f\0\0\0xx"), 7, 7, NULL, 0, 1, &t->sink);
	assert_int_equal(ret, PG_FEED_DONE);
	t_done(t, "NOTPG unsynced\n");

	/* After a confirmed startup, a bad length is a desync, not the end. */
	t = t_new(PG_ROLE_SERVER, 0);
	struct buf *b = bnew();
	connect_(t, b);
	breset(b);
	msg(b, 'Q', NULL, 0);
	b->b[4] = 2; /* length 2 */
	assert_int_equal(fe(t, b, 3), PG_FEED_OK);
	assert_int_equal(t->l.st.n[PG_AN_BAD_HEADER], 1);
	/* The bad bytes are taken to be a batch ending in a Sync: its answer is absorbed, not reported. */
	breset(b);
	C(b, "SELECT 1");
	Z(b, 'I');
	be(t, b, 4);
	breset(b);
	Q(b, "select 1");
	fe(t, b, 5);
	assert_int_equal(t->l.st.n[PG_AN_RESYNC_HEAD], 1);
	breset(b);
	C(b, "SELECT 1");
	Z(b, 'I');
	be(t, b, 6);
	assert_int_equal(t->l.st.n[PG_AN_UNMATCHED], 0);
	t_done(t, "STARTUP 196608\nQ1 SELECT - [select 1] 5-6\n");
	free(b);
}

/* ---- COPY ---- */

static void test_copy(void **state)
{
	for (int r = 0; r < 2; r++) {
		struct t *t = t_new(roles[r], 0);
		struct buf *b = bnew();
		connect_(t, b);
		/* COPY FROM STDIN: CopyInResponse, CopyData from the frontend, CopyDone. */
		breset(b);
		Q(b, "COPY t FROM STDIN");
		fe(t, b, 3);
		breset(b);
		uint8_t cin[] = { 0, 0, 1, 0, 0 };
		msg(b, 'G', cin, sizeof(cin));
		be(t, b, 4);
		breset(b);
		msg(b, 'd', "1\tQ\0\0\0\x05x\n", 10);
		msg(b, 'd', "2\tS\0\0\0\x04\n", 9);
		fe(t, b, 5);
		breset(b);
		one(b, 'c');
		fe(t, b, 6);
		breset(b);
		C(b, "COPY 2");
		Z(b, 'I');
		be(t, b, 7);
		/* COPY TO STDOUT: CopyOutResponse, CopyData rows, CopyDone. */
		breset(b);
		Q(b, "copy t to stdout");
		fe(t, b, 8);
		breset(b);
		msg(b, 'H', cin, sizeof(cin));
		msg(b, 'd', "1\tC\0\0\0\x05\n", 9);
		be(t, b, 9);
		breset(b);
		msg(b, 'd', "2\tZ\0\0\0\x05I\n", 10);
		one(b, 'c');
		C(b, "COPY 2");
		Z(b, 'I');
		be(t, b, 10);
		/* CopyFail. */
		breset(b);
		Q(b, "COPY t FROM STDIN");
		fe(t, b, 11);
		breset(b);
		msg(b, 'G', cin, sizeof(cin));
		be(t, b, 12);
		breset(b);
		msg_str(b, 'f', "client gave up");
		fe(t, b, 13);
		breset(b);
		err(b, "57014");
		Z(b, 'I');
		be(t, b, 14);
		no_anomalies(t);
		t_done(t, "STARTUP 196608\n"
			  "Q1 COPY - [COPY t FROM STDIN] 3-7\n"
			  "Q2 COPY - [copy t to stdout] 8-10\n"
			  "Q3 COPY 57014 [COPY t FROM STDIN] 11-14\n");
		free(b);
	}
}

/* ---- truncation ---- */

static void test_truncated_query_text(void **state)
{
	for (int r = 0; r < 2; r++) {
		struct t *t = t_new(roles[r], 0);
		struct buf *b = bnew();
		connect_(t, b);
		/* Cut by the capture. */
		char q[2000];
		memset(q, 'x', sizeof(q) - 1);
		q[sizeof(q) - 1] = 0;
		memcpy(q, "select ", 7);
		breset(b);
		Q(b, q);
		assert_int_equal(feedt(t, fe_dir(t), b, 20, 0, 3), PG_FEED_OK);
		/* Cut by PG_QUERY_MAX. */
		breset(b);
		C(b, "SELECT 1");
		Z(b, 'I');
		be(t, b, 4);
		breset(b);
		P(b, "", q);
		B(b, "", "");
		E(b, "", 0);
		S(b);
		fe(t, b, 5);
		breset(b);
		one(b, '1');
		one(b, '2');
		C(b, "SELECT 1");
		Z(b, 'I');
		be(t, b, 6);
		no_anomalies(t);
		char want[1024];
		snprintf(want, sizeof(want),
			 "STARTUP 196608\nQ1 SELECT - [select xxxxxxxx]... 3-4\nQ2 SELECT - [%.*s]... 5-6\n",
			 PG_QUERY_MAX, q);
		t_done(t, want);
		free(b);
	}
}

/* A result set far beyond the capture: only the write's tail shows CommandComplete and ReadyForQuery. */
static void test_big_result_tail(void **state)
{
	for (int r = 0; r < 2; r++) {
		struct t *t = t_new(roles[r], 0);
		struct buf *b = bnew();
		connect_(t, b);
		breset(b);
		Q(b, "select * from big");
		fe(t, b, 3);
		breset(b);
		rowdesc(b);
		for (int i = 0; i < 500; i++)
			datarow(b, 40 + i % 7);
		C(b, "SELECT 500");
		Z(b, 'I');
		assert_int_equal(feedt(t, be_dir(t), b, 256, 32, 4), PG_FEED_OK);
		assert_int_equal(pg_conn_pending(&t->c), 0);
		assert_int_equal(t->l.st.n[PG_AN_BE_DESYNC], 1);
		assert_int_equal(t->l.st.n[PG_AN_RESYNC_TAIL], 1);
		/* In sync after it: the next write is parsed from its start. */
		breset(b);
		Q(b, "delete from m");
		fe(t, b, 5);
		breset(b);
		C(b, "DELETE 3");
		Z(b, 'I');
		be(t, b, 6);
		assert_int_equal(t->l.st.n[PG_AN_RESYNC_HEAD], 0);

		/* Spread over several writes: the ones in between have no ReadyForQuery at their end. */
		breset(b);
		Q(b, "select * from big2");
		fe(t, b, 7);
		breset(b);
		rowdesc(b);
		for (int i = 0; i < 300; i++)
			datarow(b, 30);
		size_t cut1 = b->n - 17, cut2 = b->n + 4000;
		for (int i = 0; i < 300; i++)
			datarow(b, 30);
		err(b, "57014");
		Z(b, 'E');
		/* write 1: [0, cut1), write 2: [cut1, cut2), write 3: the rest. */
		struct buf *w = bnew();
		put(w, b->b, cut1);
		feedt(t, be_dir(t), w, 256, 16, 8);
		breset(w);
		put(w, b->b + cut1, cut2 - cut1);
		feedt(t, be_dir(t), w, 256, 16, 9);
		assert_int_equal(pg_conn_pending(&t->c), 1);
		breset(w);
		put(w, b->b + cut2, b->n - cut2);
		feedt(t, be_dir(t), w, 256, 64, 10);
		assert_int_equal(pg_conn_pending(&t->c), 0);
		/* An ErrorResponse longer than the tail: its end says it is one, its code may be out of view. */
		breset(b);
		Q(b, "select 8");
		fe(t, b, 13);
		breset(b);
		rowdesc(b);
		err(b, "XX000");
		Z(b, 'I');
		feedt(t, be_dir(t), b, 0, 30, 14);
		/* And a result whose head was parsed up to a DataRow that ends inside the tail. */
		breset(b);
		Q(b, "select 7");
		fe(t, b, 15);
		breset(b);
		rowdesc(b);
		datarow(b, 400);
		C(b, "SELECT 1");
		Z(b, 'T');
		feedt(t, be_dir(t), b, 100, 40, 16);
		assert_int_equal(t->l.st.n[PG_AN_BE_DESYNC], 3);
		assert_int_equal(t->l.st.n[PG_AN_RESYNC_TAIL], 3);
		t_done(t, "STARTUP 196608\n"
			  "Q1 SELECT - [select * from big] 3-4\n"
			  "Q2 DELETE - [delete from m] 5-6\n"
			  "Q3 SELECT 57014 [select * from big2] 7-10\n"
			  "IDLE 10-13\n"
			  "Q4 SELECT ????? [select 8] 13-14\n"
			  "TXN rollback 7-14\n"
			  "Q5 SELECT - [select 7] 15-16\n");
		free(w);
		free(b);
	}
}

/* A frontend batch longer than the capture: the tail's "Execute Sync" says how it ended. */
static void test_frontend_tail(void **state)
{
	for (int r = 0; r < 2; r++) {
		struct t *t = t_new(roles[r], 0);
		struct buf *b = bnew();
		connect_(t, b);
		breset(b);
		P(b, "", "insert into blobs values ($1)");
		/* A Bind with a 1000-byte parameter. */
		struct buf *x = bnew();
		puts0(x, "");
		puts0(x, "");
		put16(x, 0);
		put16(x, 1);
		put32(x, 1000);
		for (int i = 0; i < 1000; i++)
			x->b[x->n++] = 'S';
		put16(x, 0);
		msg(b, 'B', x->b, x->n);
		Dp(b, "");
		E(b, "", 0);
		S(b);
		feedt(t, fe_dir(t), b, 256, 32, 3);
		assert_int_equal(t->l.st.n[PG_AN_FE_DESYNC], 0); /* the Bind's body covered the gap */
		breset(b);
		one(b, '1');
		one(b, '2');
		one(b, 'n');
		C(b, "INSERT 0 1");
		Z(b, 'I');
		be(t, b, 4);
		/* The Bind's body ends where the tail begins: Describe, Execute, Sync are parsed from the tail. */
		breset(b);
		P(b, "", "insert into blobs values ($1)");
		msg(b, 'B', x->b, x->n);
		Dp(b, "");
		E(b, "", 0);
		S(b);
		feedt(t, fe_dir(t), b, 64, 22, 5);
		assert_int_equal(t->l.st.n[PG_AN_FE_DESYNC], 0);
		/* Now the Describe's header falls in the gap: the tail's "Execute Sync" ends the batch. */
		breset(b);
		P(b, "", "insert into blobs values ($1)");
		msg(b, 'B', x->b, x->n);
		Dp(b, "");
		E(b, "", 0);
		S(b);
		feedt(t, fe_dir(t), b, 64, 15, 6);
		assert_int_equal(t->l.st.n[PG_AN_FE_DESYNC], 1);
		assert_int_equal(t->l.st.n[PG_AN_RESYNC_TAIL], 1);
		breset(b);
		one(b, '1');
		one(b, '2');
		one(b, 'n');
		C(b, "INSERT 0 1");
		Z(b, 'I');
		one(b, '1');
		one(b, '2');
		one(b, 'n');
		C(b, "INSERT 0 1");
		Z(b, 'I');
		be(t, b, 7);
		t_done(t, "STARTUP 196608\n"
			  "Q1 INSERT - [insert into blobs values ($1)] 3-4\n"
			  "Q2 INSERT - [insert into blobs values ($1)] 5-7\n"
			  "Q3 INSERT - [insert into blobs values ($1)] 6-7\n");
		free(x);
		free(b);
	}
}

/* ---- midstream, lost records, close ---- */

static void test_midstream(void **state)
{
	for (int r = 0; r < 2; r++) {
		struct t *t = t_new(roles[r], PG_CONN_MIDSTREAM);
		struct buf *b = bnew();
		/* The end of a result whose start was before the capture: not a boundary. */
		breset(b);
		datarow(b, 100);
		C(b, "SELECT 9");
		Z(b, 'T');
		assert_int_equal(pg_conn_feed(&t->c, be_dir(t), b->b + 7, b->n - 7, b->n - 7, NULL, 0, 1, &t->sink),
				 PG_FEED_OK);
		breset(b);
		Q(b, "select 1");
		fe(t, b, 2);
		breset(b);
		C(b, "SELECT 1");
		Z(b, 'T');
		be(t, b, 3);
		breset(b);
		Q(b, "commit");
		fe(t, b, 4);
		breset(b);
		C(b, "COMMIT");
		Z(b, 'I');
		be(t, b, 5);
		/* The transaction's start was not seen: no TXN. */
		t_done(t, "Q1 SELECT - [select 1] 2-3\nIDLE 3-4\nQ2 COMMIT - [commit] 4-5\n");

		/* Midstream, and the first backend write ends with its ReadyForQuery in the tail. */
		t = t_new(roles[r], PG_CONN_MIDSTREAM);
		breset(b);
		datarow(b, 300);
		C(b, "SELECT 9");
		Z(b, 'I');
		pg_conn_feed(&t->c, be_dir(t), b->b + 3, 100, b->n - 3, b->b + b->n - 30, 30, 1, &t->sink);
		assert_int_equal(t->l.st.n[PG_AN_RESYNC_TAIL], 1);
		breset(b);
		PBDE(b, "select 1");
		S(b);
		fe(t, b, 2);
		breset(b);
		one(b, '1');
		one(b, '2');
		rowdesc(b);
		C(b, "SELECT 1");
		Z(b, 'I');
		be(t, b, 3);
		t_done(t, "Q1 SELECT - [select 1] 2-3\n");
		free(b);
	}
}

static void test_lost_and_close(void **state)
{
	for (int r = 0; r < 2; r++) {
		struct t *t = t_new(roles[r], 0);
		struct buf *b = bnew();
		connect_(t, b);
		breset(b);
		Q(b, "BEGIN");
		fe(t, b, 3);
		breset(b);
		C(b, "BEGIN");
		Z(b, 'T');
		be(t, b, 4);
		breset(b);
		Q(b, "select pg_sleep(10)");
		fe(t, b, 5);
		pg_conn_lost(&t->c, 6, &t->sink);
		assert_int_equal(pg_conn_pending(&t->c), 0);
		/* Both streams look for a boundary; this write starts at one. */
		breset(b);
		Q(b, "select 2");
		fe(t, b, 7);
		breset(b);
		C(b, "SELECT 1");
		Z(b, 'T');
		be(t, b, 8);
		breset(b);
		Q(b, "select 3");
		fe(t, b, 9);
		assert_int_equal(pg_conn_pending(&t->c), 1);
		t_done(t, "STARTUP 196608\n"
			  "Q1 BEGIN - [BEGIN] 3-4\n"
			  "IDLE 4-5\n"
			  "Q2 SELECT aborted [select pg_sleep(10)] 5-6\n"
			  "Q3 SELECT - [select 2] 7-8\n"
			  "IDLE 8-9\n"
			  "Q4 SELECT aborted [select 3] 9-999\n");
		free(b);
	}
}

/* ---- split invariance: a conversation cut at every byte gives the same events ---- */

struct call {
	int be;
	uint8_t *p;
	size_t n;
	uint64_t ts;
};

static size_t build_script(struct call *calls, struct buf *all)
{
	size_t k = 0;
	struct buf *b = bnew();
#define CALL(isbe, ts_)                                                                                      \
	do {                                                                                                 \
		calls[k] = (struct call){ isbe, all->b + all->n, b->n, ts_ };                                \
		put(all, b->b, b->n);                                                                        \
		k++;                                                                                         \
		breset(b);                                                                                   \
	} while (0)
	special(b, PG_SSL_CODE);
	CALL(0, 1);
	put(b, "N", 1);
	CALL(1, 2);
	startup(b);
	CALL(0, 3);
	auth_ok(b);
	Z(b, 'I');
	CALL(1, 4);
	Q(b, "BEGIN");
	CALL(0, 5);
	C(b, "BEGIN");
	Z(b, 'T');
	CALL(1, 6);
	P(b, "s1", "insert into t values ($1)");
	B(b, "", "s1");
	E(b, "", 0);
	PBDE(b, "select * from t");
	S(b);
	CALL(0, 7);
	one(b, '1');
	one(b, '2');
	C(b, "INSERT 0 1");
	one(b, '1');
	one(b, '2');
	rowdesc(b);
	datarow(b, 20);
	datarow(b, 5);
	C(b, "SELECT 2");
	Z(b, 'T');
	CALL(1, 8);
	Q(b, "COPY t FROM STDIN");
	CALL(0, 9);
	uint8_t cin[] = { 0, 0, 1, 0, 0 };
	msg(b, 'G', cin, sizeof(cin));
	CALL(1, 10);
	msg(b, 'd', "1\n", 2);
	one(b, 'c');
	CALL(0, 11);
	C(b, "COPY 1");
	Z(b, 'T');
	CALL(1, 12);
	Q(b, "commit; select 1");
	CALL(0, 13);
	C(b, "COMMIT");
	err(b, "42P01");
	Z(b, 'I');
	CALL(1, 14);
	one(b, 'X');
	CALL(0, 15);
	free(b);
	return k;
#undef CALL
}

static const char split_want[] = "STARTUP 196608\n"
				 "Q1 BEGIN - [BEGIN] 5-6\n"
				 "IDLE 6-7\n"
				 "Q2 INSERT - [insert into t values ($1)] 7-8\n"
				 "Q3 SELECT - [select * from t] 7-8\n"
				 "IDLE 8-9\n"
				 "Q4 COPY - [COPY t FROM STDIN] 9-12\n"
				 "IDLE 12-13\n"
				 "Q5 COMMIT - [commit; select 1] 13-14\n"
				 "Q5 COMMIT 42P01 [commit; select 1] 14-14\n"
				 "TXN rollback 5-14\n";

static void run_script(struct t *t, const struct call *calls, size_t n, int split_call, size_t at,
		       unsigned *seed)
{
	for (size_t i = 0; i < n; i++) {
		enum flow_dir d = calls[i].be ? be_dir(t) : fe_dir(t);
		size_t pos = 0;
		while (pos < calls[i].n) {
			size_t take = calls[i].n - pos;
			if ((int)i == split_call && pos < at)
				take = at - pos;
			else if (seed) {
				*seed = *seed * 1103515245 + 12345;
				size_t r = 1 + (*seed >> 16) % 9;
				take = take < r ? take : r;
			}
			uint8_t *copy = malloc(take);
			memcpy(copy, calls[i].p + pos, take);
			pg_conn_feed(&t->c, d, copy, take, take, NULL, 0, calls[i].ts, &t->sink);
			free(copy);
			pos += take;
		}
	}
}

static void test_split_invariance(void **state)
{
	static struct call calls[64];
	struct buf *all = bnew();
	size_t n = build_script(calls, all);

	for (int r = 0; r < 2; r++) {
		struct t *ref = t_new(roles[r], 0);
		run_script(ref, calls, n, -1, 0, NULL);
		no_anomalies(ref);
		/* "commit" failed: the transaction is reported rolled back. */
		assert_string_equal(ref->l.text, split_want);
		t_done(ref, NULL);
		for (size_t i = 0; i < n; i++)
			for (size_t at = 1; at < calls[i].n; at++) {
				struct t *t = t_new(roles[r], 0);
				run_script(t, calls, n, (int)i, at, NULL);
				if (strcmp(t->l.text, split_want))
					fail_msg("call %zu split at %zu:\n%s", i, at, t->l.text);
				no_anomalies(t);
				t_done(t, NULL);
			}
		unsigned seed = 5;
		for (int iter = 0; iter < 200; iter++) {
			struct t *t = t_new(roles[r], 0);
			run_script(t, calls, n, -1, 0, &seed);
			assert_string_equal(t->l.text, split_want);
			t_done(t, NULL);
		}
	}
	free(all);
}

/* Truncating every call of the script at every cap, with and without a tail: no crash, balanced, and the
 * queries that are reported keep their order. */
static void test_truncation_sweep(void **state)
{
	static struct call calls[64];
	struct buf *all = bnew();
	size_t n = build_script(calls, all);

	for (int r = 0; r < 2; r++)
		for (size_t i = 0; i < n; i++)
			for (size_t cap = 0; cap < calls[i].n; cap++)
				for (size_t tailn = 0; tailn <= 40 && tailn <= calls[i].n - cap; tailn += 8) {
					struct t *t = t_new(roles[r], 0);
					for (size_t j = 0; j < n; j++) {
						enum flow_dir d = calls[j].be ? be_dir(t) : fe_dir(t);
						size_t c = j == i ? cap : calls[j].n;
						size_t tn = j == i ? tailn : 0;
						pg_conn_feed(&t->c, d, calls[j].p, c, calls[j].n,
							     calls[j].p + calls[j].n - tn, tn, calls[j].ts, &t->sink);
					}
					uint64_t execs = t->l.st.executions;
					pg_conn_close(&t->c, 999, &t->sink);
					assert_int_equal(pg_conn_pending(&t->c), 0);
					assert_true((uint64_t)t->l.nq >= execs);
					free(t);
				}
	free(all);
}

static void test_random_garbage(void **state)
{
	static const char *const frags[] = { "Q\0\0\0\x09sel\0", "Z\0\0\0\x05I", "Z\0\0\0\x05T", "C\0\0\0\x0dSELECT 1\0",
					     "S\0\0\0\x04", "E\0\0\0\x09\0\0\0\0\0", "1\0\0\0\x04", "\0\0\0\x08\x04\xd2\x16\x2f",
					     "\0\0\0\x08\0\x03\0\0", "D\0\0\0\x06\0\0", "N", "S", "\xff", "\0", "d\0\0\x01\0" };
	static const size_t lens[] = { 10, 6, 6, 14, 5, 10, 5, 8, 8, 7, 1, 1, 1, 1, 5 };
	unsigned seed = 1;

	for (int iter = 0; iter < 4000; iter++) {
		struct t *t = t_new(roles[iter & 1], iter % 3 == 0 ? PG_CONN_MIDSTREAM : 0);
		int ret = PG_FEED_OK;
		for (int call = 0; call < 30 && ret == PG_FEED_OK; call++) {
			uint8_t buf[256];
			size_t n = 0;
			seed = seed * 1103515245 + 12345;
			int parts = 1 + (seed >> 16) % 8;
			for (int k = 0; k < parts; k++) {
				seed = seed * 1103515245 + 12345;
				size_t f = (seed >> 16) % (sizeof(frags) / sizeof(frags[0]));
				if (n + lens[f] > sizeof(buf))
					break;
				memcpy(buf + n, frags[f], lens[f]);
				n += lens[f];
			}
			seed = seed * 1103515245 + 12345;
			size_t cap = (seed >> 16) % 4 ? n : n / 2;
			size_t len = n + ((seed >> 20) % 3 ? 0 : 100);
			size_t tailn = cap < n ? n - cap : 0;
			ret = pg_conn_feed(&t->c, (seed >> 24) & 1 ? FLOW_OUT : FLOW_IN, buf, cap, len,
					   buf + cap, tailn, (uint64_t)call, &t->sink);
			if (call == 20)
				pg_conn_lost(&t->c, (uint64_t)call, &t->sink);
		}
		pg_conn_close(&t->c, 99, &t->sink);
		assert_int_equal(pg_conn_pending(&t->c), 0);
		assert_true((uint64_t)t->l.nq >= t->l.st.executions);
		free(t);
	}
}

static void test_operations(void **state)
{
	char op[PG_OP_MAX];

	assert_true(pg_tag_operation("INSERT 0 1", 10, op));
	assert_string_equal(op, "INSERT");
	assert_true(pg_tag_operation("SELECT 3", 8, op));
	assert_string_equal(op, "SELECT");
	assert_true(pg_tag_operation("CREATE TABLE", 12, op));
	assert_string_equal(op, "CREATE TABLE");
	assert_true(pg_tag_operation("FETCH 10", 8, op));
	assert_string_equal(op, "FETCH");
	assert_false(pg_tag_operation("", 0, op));
	assert_false(pg_tag_operation("12", 2, op));
	assert_false(pg_tag_operation("select 1", 8, op));
	pg_query_operation("  -- hi\n/* x */ (select 1)", 26, op);
	assert_string_equal(op, "SELECT");
	pg_query_operation("with x as (select 1) select * from x", 36, op);
	assert_string_equal(op, "WITH");
	pg_query_operation("'secret'", 8, op);
	assert_string_equal(op, "UNKNOWN");
	pg_query_operation(NULL, 0, op);
	assert_string_equal(op, "UNKNOWN");
	for (int k = 0; k < PG_AN_MAX; k++)
		assert_non_null(pg_anomaly_name(k));
	for (int k = 0; k < PG_NOT_MAX; k++)
		assert_non_null(pg_not_pg_name(k));
	assert_null(pg_anomaly_name(PG_AN_MAX));
	assert_string_equal(pg_event_name(PG_EV_QUERY), "query");
	assert_true(sizeof(struct pg_conn) <= 6 * 1024);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple_query),
		cmocka_unit_test(test_multi_statement_query),
		cmocka_unit_test(test_extended_unnamed),
		cmocka_unit_test(test_extended_named),
		cmocka_unit_test(test_statement_eviction),
		cmocka_unit_test(test_pipeline_error),
		cmocka_unit_test(test_portal_suspended),
		cmocka_unit_test(test_transactions),
		cmocka_unit_test(test_ssl_request),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_not_pg),
		cmocka_unit_test(test_copy),
		cmocka_unit_test(test_truncated_query_text),
		cmocka_unit_test(test_big_result_tail),
		cmocka_unit_test(test_frontend_tail),
		cmocka_unit_test(test_midstream),
		cmocka_unit_test(test_lost_and_close),
		cmocka_unit_test(test_split_invariance),
		cmocka_unit_test(test_truncation_sweep),
		cmocka_unit_test(test_random_garbage),
		cmocka_unit_test(test_operations),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
