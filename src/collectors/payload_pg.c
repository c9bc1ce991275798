// SPDX-License-Identifier: BSD-2-Clause
/* The PostgreSQL row of the payload protocol table (src/collectors/payload_int.h): src/parsers/pgwire.c fed with a
 * connection's calls in the role the detector found (the backend, or the application), statements fingerprinted by
 * src/parsers/sql.c, events turned into metrics.
 *
 * Privacy (DESIGN.md section 3): statements leave only as fingerprints and their normalised text (literals
 * replaced); the first --fingerprint-budget fingerprints of a service are labels, later ones "_other". The
 * operation label comes from the server's CommandComplete tag, or from a fixed list of SQL verbs: never from
 * the words of a statement that failed. */
#include "collectors/payload_int.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double query_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
static const double txn_bounds[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300};
static const char *const pg_side[] = {[PG_ROLE_SERVER] = "server", [PG_ROLE_CLIENT] = "client"};

static uint32_t be32(const uint8_t *b)
{
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* The role in which this call shows a PostgreSQL connection, or -1: a startup packet (fresh connections), or
 * (mid-stream) a call that begins with a message only one side sends. */
static int pg_role_of(const struct view *v, bool midstream)
{
	/* The beginning of a startup packet read in pieces (a server that reads its length first): a whole call of 4
	 * to 7 bytes holding a plausible length, then the start of a version or request code (3.x, or 1234.x for SSL,
	 * GSS and cancel requests). No HTTP, TLS or HTTP/2 stream begins with two zero bytes; the parser joins the
	 * pieces, and stops the connection if they do not make a startup packet. */
	if (!midstream && v->cap >= 4 && v->cap < 8 && v->cap == v->len) {
		uint32_t len = be32(v->data);
		size_t k = v->cap - 4 < 2 ? v->cap - 4 : 2; /* bytes of the code's major half present */
		bool code = !memcmp(v->data + 4, "\x00\x03", k) || !memcmp(v->data + 4, "\x04\xd2", k);
		return len >= 8 && len <= 10000 && code ? (v->dir == FLOW_IN ? PG_ROLE_SERVER : PG_ROLE_CLIENT) : -1;
	}
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

static bool pg_detect(struct conn *c, const struct view *v)
{
	int role = pg_role_of(v, c->midstream);
	if (role < 0)
		return false;
	c->pg_role = (uint8_t)role;
	return true;
}

/* The fingerprint label of a statement: its id while the service's budget of fingerprints lasts (the normalised
 * text then goes to loupe_postgres_statement_info), else "_other" (*over is then set). */
static const char *fingerprint_label(struct payload *p, struct svc_stats *st, const char *svc, const struct sql_fp *fp,
				     bool *over)
{
	bool added;
	const char *slot = label_set__admit(&st->fingerprints, fp->hex, p->L->opt->fingerprint_budget, &added);
	*over = !slot;
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

/* Where an execution of a statement was counted, kept per statement slot of the connection: the next execution of
 * the same statement (the same slot and text: pg_event.stmt_gen) that ends with the same CommandComplete
 * operation goes straight to that series, without the fingerprint cache's digest of the text, the label set and
 * the registry's key lookup. Under pgbench -S -M prepared those were a third of loupe's CPU (docs/performance.md).
 * Every input of the series is fixed by the key: the text (so the fingerprint), the service and the role are the
 * connection's, a label once admitted stays, a label past the budget stays "_other" (the budget only fills), and
 * a series lives as long as the registry. */
struct pg_memo {
	uint64_t gen;	  /* the statement text it was made for, 0: empty */
	bool over_budget; /* its fingerprint is "_other": counted in fingerprint_budget_hits at each execution */
	char op[PG_OP_MAX];
	struct series *series;
};

/* Where a statement of a fingerprint was counted, kept per connection for texts that the slot memo cannot key: a
 * simple query's text is new at each execution (its literals differ), but its fingerprint comes back. Keyed by the
 * fingerprint's id and the operation, after the fingerprint cache's lookup: it saves the label set's admission and
 * the registry's key lookup, as the slot memo does (the same reasons make it exact). Under the API's load, where
 * every statement is a simple query, those were ~15% of loupe's CPU (docs/performance.md). */
#define PG_FP_MEMO 8 /* direct-mapped by the id's low bits */
struct pg_fp_memo {
	uint64_t id;
	bool used, over_budget;
	char op[PG_OP_MAX];
	struct series *series;
};

/* A PostgreSQL connection's parser and its memos, in one allocation; struct conn points at the parser, the first
 * member. The transaction and idle series depend only on the connection's service and role (and the outcome). */
struct pg_state {
	struct pg_conn pg;
	struct pg_memo memo[PG_STMT_MAX];
	struct pg_fp_memo fp_memo[PG_FP_MEMO];
	struct series *txn[2], *txn_duration[2]; /* [committed] */
	struct series *idle;
};

static struct pg_state *pg_state_of(struct conn *c)
{
	return (struct pg_state *)c->pg;
}

/* An execution's series, from the memo or looked up (and memoised when it ended with a tag). */
static struct series *query_series(struct payload *p, struct conn *c, const struct pg_event *ev)
{
	struct pg_memo *m = NULL;
	if (ev->query && ev->tag && ev->stmt_slot < PG_STMT_MAX) {
		m = &pg_state_of(c)->memo[ev->stmt_slot];
		if (m->gen == ev->stmt_gen && !strcmp(m->op, ev->operation)) {
			p->fingerprint_budget_hits += m->over_budget;
			return m->series;
		}
	}
	struct svc_stats *st = &p->svc[c->service];
	const char *svc = payload_service(p, c->service);
	/* The operation comes from the server's CommandComplete tag when there is one, else from the fingerprinter's
	 * fixed list: never from the query's own words (a failed statement's could be anything). */
	const struct sql_fp *fp = NULL;
	const char *fingerprint = "unknown", *op = ev->tag ? ev->operation : "UNKNOWN";
	bool over = false;
	struct pg_fp_memo *fm = NULL;
	struct series *s = NULL;
	if (ev->query && (fp = sql_cache__get(p->sql, ev->query, ev->query_len, ev->truncated, &p->sql_stats, NULL))) {
		if (!ev->tag)
			op = fp->operation;
		fm = &pg_state_of(c)->fp_memo[fp->id % PG_FP_MEMO];
		if (fm->used && fm->id == fp->id && !strcmp(fm->op, op)) {
			p->fingerprint_budget_hits += fm->over_budget;
			over = fm->over_budget;
			s = fm->series;
		} else {
			fingerprint = fingerprint_label(p, st, svc, fp, &over);
		}
	}
	if (!s) {
		if (c->pg_role == PG_ROLE_SERVER) {
			const char *v[] = {svc, op, fingerprint};
			s = family__series(p->pg_query, v);
		} else {
			const char *v[] = {svc, "postgresql", op, fingerprint};
			s = family__series(p->db_client, v);
		}
		if (fm && s && strlen(op) < sizeof(fm->op)) {
			*fm = (struct pg_fp_memo){.id = fp->id, .used = true, .over_budget = over, .series = s};
			strcpy(fm->op, op);
		}
	}
	if (m && fp && s && strlen(op) < sizeof(m->op)) {
		m->gen = ev->stmt_gen;
		m->over_budget = over;
		strcpy(m->op, op);
		m->series = s;
	}
	return s;
}

static void pg_event(void *ctx, const struct pg_event *ev)
{
	struct row_call *rc = ctx;
	struct payload *p = rc->p;
	struct conn *c = rc->c;
	struct svc_stats *st = &p->svc[c->service];
	const char *svc = payload_service(p, c->service);
	const char *side = pg_side[c->pg_role];
	char cls[3];

	switch (ev->type) {
	case PG_EV_QUERY: {
		if (ev->aborted) {
			st->pg_aborted[c->pg_role]++;
			break;
		}
		struct series *s = query_series(p, c, ev);
		if (s)
			family__observe_series(c->pg_role == PG_ROLE_SERVER ? p->pg_query : p->db_client, s,
					       ns_to_seconds(ev->duration_ns));
		if (ev->sqlstate[0]) {
			snprintf(cls, sizeof(cls), "%.2s", ev->sqlstate);
			const char *v[] = {svc, side, cls};
			family__add(p->pg_errors, v, 1);
		}
		break;
	}
	case PG_EV_TXN: {
		struct pg_state *ps = pg_state_of(c);
		int k = ev->committed ? 1 : 0;
		if (!ps->txn[k] || !ps->txn_duration[k]) {
			const char *v[] = {svc, side, ev->committed ? "committed" : "rolled_back"};
			ps->txn[k] = family__series(p->pg_txn, v);
			ps->txn_duration[k] = family__series(p->pg_txn_duration, v);
		}
		if (ps->txn[k])
			family__add_series(p->pg_txn, ps->txn[k], 1);
		if (ps->txn_duration[k])
			family__observe_series(p->pg_txn_duration, ps->txn_duration[k], ns_to_seconds(ev->duration_ns));
		break;
	}
	case PG_EV_IDLE_IN_TXN: {
		struct pg_state *ps = pg_state_of(c);
		if (!ps->idle) {
			const char *v[] = {svc, side};
			ps->idle = family__series(p->pg_idle, v);
		}
		if (ps->idle)
			family__observe_series(p->pg_idle, ps->idle, ns_to_seconds(ev->duration_ns));
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

static struct pg_sink pg_sink_of(struct row_call *rc)
{
	return (struct pg_sink){.event = pg_event, .ctx = rc, .stats = &rc->p->svc[rc->c->service].pg};
}

static int pg_start(struct payload *p, struct conn *c, const struct handoff *from)
{
	struct pg_state *s = malloc(sizeof(*s));
	if (!s)
		return -ENOMEM;
	memset(s->memo, 0, sizeof(*s) - offsetof(struct pg_state, memo)); /* every memo empty */
	c->pg = &s->pg;
	pg_conn_init(c->pg, (enum pg_role)c->pg_role, c->midstream ? PG_CONN_MIDSTREAM : 0);
	p->svc[c->service].classes[CLASS_POSTGRES]++;
	return 0;
}

static int pg_feed(struct payload *p, struct conn *c, const struct view *v, struct handoff *up)
{
	struct row_call rc = {p, c, up};
	struct pg_sink s = pg_sink_of(&rc);
	return pg_conn_feed(c->pg, v->dir, v->data, v->cap, v->len, v->tail, v->tailn, p->now_ns, &s) == PG_FEED_DONE
		       ? -1
		       : PROTO_POSTGRES;
}

static void pg_lost(struct payload *p, struct conn *c)
{
	struct row_call rc = {p, c, NULL};
	struct pg_sink s = pg_sink_of(&rc);
	pg_conn_lost(c->pg, p->now_ns, &s);
}

static void pg_drop(struct conn *c)
{
	free(pg_state_of(c));
	c->pg = NULL;
}

static void pg_end(struct payload *p, struct conn *c, uint64_t ts_ns)
{
	struct row_call rc = {p, c, NULL};
	struct pg_sink s = pg_sink_of(&rc);
	pg_conn_close(c->pg, ts_ns, &s);
	pg_drop(c);
}

static int pg_open(struct payload *p, struct registry *reg)
{
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
	if (!p->pg_query || !p->db_client || !p->pg_info || !p->pg_errors || !p->pg_txn || !p->pg_txn_duration ||
	    !p->pg_idle || !p->sql)
		return -ENOMEM;
	family__set_buckets(p->pg_query, query_bounds, ARRAY_SIZE(query_bounds));
	family__set_buckets(p->db_client, query_bounds, ARRAY_SIZE(query_bounds));
	family__set_buckets(p->pg_txn_duration, txn_bounds, ARRAY_SIZE(txn_bounds));
	family__set_buckets(p->pg_idle, txn_bounds, ARRAY_SIZE(txn_bounds));
	return 0;
}

static void pg_close(struct payload *p)
{
	sql_cache__free(p->sql);
	sql_thread_exit();
}

static int pg_collect(struct payload *p, struct registry *reg)
{
	static const char *const l_svc_kind[] = {"service_name", "kind", NULL};
	static const char *const l_svc_side[] = {"service_name", "side", NULL};
	struct metric_family *anomalies = registry__family(
		reg, "loupe_postgres_parser_anomalies_total",
		"PostgreSQL protocol framing the parser had to recover from (capture cut a message header, records lost).",
		METRIC_COUNTER, l_svc_kind, 0, FAMILY_SNAPSHOT);
	struct metric_family *unanswered = registry__family(
		reg, "loupe_postgres_queries_unanswered_total",
		"Statement executions with no result seen: skipped after an error in their batch, connection closed, or "
		"the result hidden by the capture.",
		METRIC_COUNTER, l_svc_side, 0, FAMILY_SNAPSHOT);
	if (!anomalies || !unanswered)
		return -ENOMEM;
	for (int s = 1; s <= p->L->opt->rules.nservices; s++) {
		const struct svc_stats *st = &p->svc[s];
		const char *svc = payload_service(p, (uint32_t)s);
		for (int k = 0; k < PG_AN_MAX; k++) {
			const char *v[] = {svc, pg_anomaly_name(k)};
			family__add(anomalies, v, (double)st->pg.n[k]);
		}
		for (int r = 0; r < 2; r++) {
			const char *v[] = {svc, pg_side[r]};
			family__add(unanswered, v, (double)st->pg_aborted[r]);
		}
	}
	return 0;
}

const struct proto postgres_proto = {
	.name = "postgresql",
	.open = pg_open,
	.collect = pg_collect,
	.close = pg_close,
	.detect = pg_detect,
	.start = pg_start,
	.feed = pg_feed,
	.lost = pg_lost,
	.end = pg_end,
	.drop = pg_drop,
};
