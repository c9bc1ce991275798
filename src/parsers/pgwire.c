// SPDX-License-Identifier: BSD-2-Clause
/* PostgreSQL protocol 3.0 over truncated syscall views (see pgwire.h for what it promises).
 *
 * Each stream (frontend, backend) is a small state machine: gather a header (startup: length + code; typed:
 * type + length), then pass the body by its length, interpreting the few bodies that matter byte by byte as
 * they are captured (names are hashed, texts and tags copied into fixed buffers), so a message split across
 * calls at any byte parses as if it came in one piece. Uncaptured bytes are only ever skipped by a known
 * length. Every step consumes at least one byte, so no input loops forever.
 *
 * Executions and Syncs wait in a FIFO (55.2.3: the backend answers in order). A placeholder item stands for
 * frontend bytes that could not be parsed (lost framing, a full queue); it absorbs results up to the
 * ReadyForQuery of the Syncs it stands for. */
#include "parsers/pgwire.h"
#include "lib/hash.h"

#include <string.h>

enum {
	S_STARTUP,	/* frontend: length + code, no type byte (protocol-message-formats.html, StartupMessage) */
	S_HDR,		/* at a message boundary: type + length */
	S_BODY,		/* passing a body of known length */
	S_SSL_ANSWER,	/* backend: the one-byte answer to SSLRequest / GSSENCRequest */
	S_LOST,		/* framing unknown */
};

enum { MODE_OPEN, MODE_DONE, MODE_CLOSED };

#define CF_MIDSTREAM 0x01
#define CF_CONFIRMED 0x02	/* a startup packet or a ReadyForQuery was seen: this is PostgreSQL */
#define CF_FE_STARTED 0x04	/* the frontend sent a startup packet or an encryption request */
#define CF_FE_EVER 0x08		/* the frontend stream was in sync at some point */
#define CF_BE_EVER 0x10
#define CF_BATCH 0x20		/* batch_start is set */
#define CF_SINCE_Z 0x40		/* since_z_start is set */
#define CF_IDLE 0x80		/* idle_since is set */

enum { IT_EXEC, IT_SIMPLE, IT_SYNC, IT_MARKER };
enum { R_OK, R_ERR, R_EMPTY, R_SUSPENDED, R_ABORT };
enum { K_OK, K_UNKNOWN, K_BAD };

#define F_DONE 0xff
#define NO_SLOT 0xff
#define PG_MSG_MAX 0x40000000u		/* 1 GiB: PostgreSQL's MaxAllocSize bounds any message */
#define PG_RESYNC_LEN_MAX (64u << 20)	/* a message boundary guessed at is believed up to this length */
#define PG_STARTUP_MAX 10000u		/* MAX_STARTUP_PACKET_LENGTH (src/include/libpq/pqcomm.h) */

/* One call being fed. */
struct feed {
	struct pg_conn *c;
	const struct pg_sink *sink;
	struct pg_side *s;
	uint64_t ts;
	bool fe;
	bool lost_here;	/* this call lost framing (not: began without it) */
};

static const char *const event_names[] = {
	[PG_EV_QUERY] = "query",	 [PG_EV_TXN] = "txn",	      [PG_EV_IDLE_IN_TXN] = "idle_in_txn",
	[PG_EV_STARTUP] = "startup",	 [PG_EV_CANCEL] = "cancel",   [PG_EV_ENCRYPTED] = "encrypted",
	[PG_EV_NOT_PG] = "not_pg",
};

static const char *const not_pg_names[PG_NOT_MAX] = {
	[PG_NOT_TLS] = "tls",
	[PG_NOT_HTTP] = "http",
	[PG_NOT_VERSION] = "version",
	[PG_NOT_GARBAGE] = "garbage",
	[PG_NOT_SERVER_FIRST] = "server_first",
	[PG_NOT_UNSYNCED] = "unsynced",
};

static const char *const anomaly_names[PG_AN_MAX] = {
	[PG_AN_FE_DESYNC] = "frontend_desync",
	[PG_AN_BE_DESYNC] = "backend_desync",
	[PG_AN_RESYNC_HEAD] = "resync_head",
	[PG_AN_RESYNC_TAIL] = "resync_tail",
	[PG_AN_BAD_HEADER] = "bad_header",
	[PG_AN_UNKNOWN_MESSAGE] = "unknown_message",
	[PG_AN_PIPELINE_FULL] = "pipeline_full",
	[PG_AN_UNMATCHED] = "unmatched",
	[PG_AN_STMT_UNKNOWN] = "statement_unknown",
	[PG_AN_STMT_EVICTED] = "statement_evicted",
	[PG_AN_RECORDS_LOST] = "records_lost",
};

const char *pg_event_name(enum pg_event_type t)
{
	return (unsigned)t <= PG_EV_NOT_PG ? event_names[t] : NULL;
}

const char *pg_not_pg_name(enum pg_not_pg r)
{
	return (unsigned)r < PG_NOT_MAX ? not_pg_names[r] : NULL;
}

const char *pg_anomaly_name(enum pg_anomaly a)
{
	return (unsigned)a < PG_AN_MAX ? anomaly_names[a] : NULL;
}

/* ---- small helpers ---- */

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static bool is_upper(unsigned char b)
{
	return b >= 'A' && b <= 'Z';
}

static bool is_digit(unsigned char b)
{
	return b >= '0' && b <= '9';
}

static bool status_ok(uint8_t b)
{
	return b == 'I' || b == 'T' || b == 'E';
}

/* One byte more into an FNV-1a hash of a name. */
static uint64_t fnv(uint64_t h, uint8_t b)
{
	return fnv1a(h, &b, 1);
}

static void emit(struct feed *f, const struct pg_event *ev)
{
	if (f->sink && f->sink->event)
		f->sink->event(f->sink->ctx, ev);
}

static void anomaly(struct feed *f, enum pg_anomaly a)
{
	if (f->sink && f->sink->stats)
		f->sink->stats->n[a]++;
}

/* ---- operations ---- */

bool pg_tag_operation(const char *t, size_t n, char *out)
{
	size_t end = n;

	/* CommandComplete tags (protocol-message-formats.html): words, then row counts ("INSERT oid rows"). */
	for (;;) {
		while (end && t[end - 1] == ' ')
			end--;
		size_t k = end;
		while (k && is_digit(t[k - 1]))
			k--;
		if (k == end || !k || t[k - 1] != ' ')
			break;
		end = k;
	}
	if (!end || end >= PG_OP_MAX || !is_upper(t[0]))
		return false;
	for (size_t i = 0; i < end; i++)
		if (!is_upper(t[i]) && t[i] != ' ' && t[i] != '_')
			return false;
	memcpy(out, t, end);
	out[end] = 0;
	return true;
}

void pg_query_operation(const char *q, size_t n, char *out)
{
	size_t i = 0, k = 0;

	while (q && i < n) {
		unsigned char b = q[i];
		if (b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\f' || b == '(' || b == ';') {
			i++;
		} else if (b == '-' && i + 1 < n && q[i + 1] == '-') {
			while (i < n && q[i] != '\n')
				i++;
		} else if (b == '/' && i + 1 < n && q[i + 1] == '*') {
			i += 2;
			while (i < n && !(q[i] == '*' && i + 1 < n && q[i + 1] == '/'))
				i++;
			i += 2;
		} else {
			break;
		}
	}
	while (q && i < n && k < PG_OP_MAX - 1) {
		unsigned char b = q[i++];
		if (b >= 'a' && b <= 'z')
			b -= 32;
		if (!is_upper(b) && b != '_')
			break;
		out[k++] = (char)b;
	}
	if (!k) {
		strcpy(out, "UNKNOWN");
		return;
	}
	out[k] = 0;
}

/* ---- statements and portals ---- */

static struct pg_stmt *stmt_ref(struct pg_conn *c, uint8_t slot, uint64_t gen)
{
	if (slot >= PG_STMT_MAX || !gen || c->stmts[slot].gen != gen)
		return NULL;
	return &c->stmts[slot];
}

/* A slot for a new text: an empty one, else the least recently used one no name finds, else the least
 * recently used. */
static uint8_t stmt_alloc(struct feed *f)
{
	struct pg_conn *c = f->c;
	int best = 0;
	uint64_t least = UINT64_MAX;

	/* The first slot of least key: an empty slot's key is its index, below every used slot's (2^33, then
	 * findable, then the LRU stamp). Computed without data-dependent branches: the loop of compares it replaces
	 * mispredicted its way to 5% of loupe's CPU under the API load (perf), a Q or P on each side of a statement. */
	for (int i = 0; i < PG_STMT_MAX; i++) {
		const struct pg_stmt *st = &c->stmts[i];
		uint64_t key = st->gen ? 1ull << 33 | (uint64_t)st->findable << 32 | st->used : (uint64_t)i;
		bool less = key < least;
		least = less ? key : least;
		best = less ? i : best;
	}
	struct pg_stmt *st = &c->stmts[best];
	if (st->gen && st->findable && st->name != FNV1A_SEED)
		anomaly(f, PG_AN_STMT_EVICTED);
	st->gen = ++c->gen;
	st->used = ++c->stamp;
	st->name = 0;
	st->len = 0;
	st->findable = 0;
	st->truncated = 0;
	return (uint8_t)best;
}

static int stmt_find(struct pg_conn *c, uint64_t name)
{
	for (int i = 0; i < PG_STMT_MAX; i++)
		if (c->stmts[i].gen && c->stmts[i].findable && c->stmts[i].name == name) {
			c->stmts[i].used = ++c->stamp;
			return i;
		}
	return -1;
}

static void stmt_forget(struct pg_conn *c, uint64_t name)
{
	for (int i = 0; i < PG_STMT_MAX; i++)
		if (c->stmts[i].findable && c->stmts[i].name == name)
			c->stmts[i].findable = 0;
}

static struct pg_portal *portal_find(struct pg_conn *c, uint64_t name)
{
	for (int i = 0; i < PG_PORTAL_MAX; i++)
		if (c->portals[i].valid && c->portals[i].name == name)
			return &c->portals[i];
	return NULL;
}

static void portal_bind(struct pg_conn *c, uint64_t name, int slot)
{
	struct pg_portal *p = portal_find(c, name);

	if (!p) {
		p = &c->portals[0];
		for (int i = 0; i < PG_PORTAL_MAX; i++) {
			if (!c->portals[i].valid) {
				p = &c->portals[i];
				break;
			}
			if (c->portals[i].used < p->used)
				p = &c->portals[i];
		}
	}
	p->name = name;
	p->valid = 1;
	p->used = (uint16_t)++c->stamp;
	p->slot = slot < 0 ? NO_SLOT : (uint8_t)slot;
	p->gen = slot < 0 ? 0 : c->stmts[slot].gen;
}

/* ---- the queue of executions and Syncs ---- */

static struct pg_item *q_at(struct pg_conn *c, unsigned i)
{
	return &c->q[(c->qhead + i) % PG_PIPELINE_MAX];
}

static struct pg_item *q_head(struct pg_conn *c)
{
	return c->qlen ? q_at(c, 0) : NULL;
}

static void q_pop(struct pg_conn *c)
{
	if (!c->qlen)
		return;
	c->qhead = (c->qhead + 1) % PG_PIPELINE_MAX;
	c->qlen--;
}

static struct pg_item *q_append(struct pg_conn *c, int kind)
{
	struct pg_item *it = q_at(c, c->qlen++);

	memset(it, 0, sizeof(*it));
	it->kind = (uint8_t)kind;
	it->slot = NO_SLOT;
	return it;
}

/* A placeholder for frontend bytes that could not be followed, taken to end with one Sync. */
static void push_marker(struct feed *f, uint32_t nsync)
{
	struct pg_conn *c = f->c;
	struct pg_item *last = c->qlen ? q_at(c, c->qlen - 1) : NULL;

	if (last && last->kind == IT_MARKER) {
		if (!last->id)
			last->id = nsync;
		return;
	}
	q_append(c, IT_MARKER)->id = nsync;
}

/* Queue an execution or a Sync. The last place is kept for a placeholder: when the queue is that full, what
 * the frontend sends is folded into it (counted, not reported), so later results still meet their
 * executions in order. */
static struct pg_item *push(struct feed *f, int kind, uint64_t start, uint8_t slot, uint64_t gen)
{
	struct pg_conn *c = f->c;
	struct pg_item *last = c->qlen ? q_at(c, c->qlen - 1) : NULL;

	if (c->qlen >= PG_PIPELINE_MAX - 1) {
		if (!last || last->kind != IT_MARKER)
			last = q_append(c, IT_MARKER);
		if (kind == IT_SYNC)
			last->id++;
		else
			anomaly(f, PG_AN_PIPELINE_FULL);
		return NULL;
	}
	struct pg_item *it = q_append(c, kind);
	it->start_ns = start;
	it->slot = slot;
	it->gen = gen;
	if (kind == IT_EXEC || kind == IT_SIMPLE) {
		it->id = ++c->exec_id ? c->exec_id : ++c->exec_id;
		if (f->sink && f->sink->stats)
			f->sink->stats->executions++;
	}
	return it;
}

static void emit_query(struct feed *f, struct pg_item *it, int how, uint64_t end)
{
	struct pg_conn *c = f->c;
	struct pg_stmt *st = stmt_ref(c, it->slot, it->gen);
	struct pg_event ev = { .type = PG_EV_QUERY };
	char op[PG_OP_MAX];

	ev.id = it->id;
	ev.simple = it->kind == IT_SIMPLE;
	if (st) {
		ev.query = st->text;
		ev.query_len = st->len;
		ev.truncated = st->truncated;
		ev.stmt_gen = st->gen;
		ev.stmt_slot = it->slot;
	}
	ev.start_ns = it->start_ns;
	ev.end_ns = end < it->start_ns ? it->start_ns : end;
	ev.duration_ns = ev.end_ns - ev.start_ns;
	ev.aborted = how == R_ABORT;
	ev.suspended = how == R_SUSPENDED;
	c->tag[c->taglen < PG_TAG_MAX ? c->taglen : PG_TAG_MAX - 1] = 0;
	if (how == R_OK && c->tag_ok && pg_tag_operation(c->tag, c->taglen, op))
		ev.tag = c->tag;
	else
		pg_query_operation(ev.query, ev.query_len, op);
	ev.operation = op;
	if (how == R_ERR) {
		bool ok = c->errlen == 5;
		for (int i = 0; ok && i < 5; i++)
			ok = is_upper(c->sqlstate[i]) || is_digit(c->sqlstate[i]);
		memcpy(ev.sqlstate, ok ? c->sqlstate : "?????", 5);
	}
	if (!(c->flags & CF_SINCE_Z)) {
		c->flags |= CF_SINCE_Z;
		c->since_z_start = it->start_ns;
	}
	emit(f, &ev);
}

/* An item leaves the queue's head without a result of its own. */
static void drop_head(struct feed *f, uint64_t ts)
{
	struct pg_item *it = q_head(f->c);

	if ((it->kind == IT_EXEC || it->kind == IT_SIMPLE) && !it->done)
		emit_query(f, it, R_ABORT, ts);
	q_pop(f->c);
}

static void abort_all(struct feed *f)
{
	while (f->c->qlen)
		drop_head(f, f->ts);
	f->c->flags &= ~(CF_BATCH | CF_SINCE_Z);
}

/* CommandComplete, ErrorResponse, EmptyQueryResponse or PortalSuspended ends the execution at the head. */
static void result(struct feed *f, int how, uint64_t ts)
{
	struct pg_conn *c = f->c;
	struct pg_item *it = q_head(c);

	c->last_commit = how == R_OK && c->tag_ok && c->taglen == 6 && !memcmp(c->tag, "COMMIT", 6);
	if (!it || it->kind == IT_SYNC) {
		/* An error may answer a Parse or Bind of a batch without Execute, or the startup. */
		if (how != R_ERR)
			anomaly(f, PG_AN_UNMATCHED);
		return;
	}
	if (it->kind == IT_MARKER)
		return;
	emit_query(f, it, how, ts);
	if (it->kind == IT_SIMPLE) {
		/* Its next statement's result, if any, is timed from here. */
		it->done = 1;
		it->start_ns = ts < it->start_ns ? it->start_ns : ts;
	} else {
		q_pop(c);
	}
}

/* Index of the item that ends the oldest batch (a Sync, or a placeholder standing for one), or -1. */
static int batch_end(struct pg_conn *c)
{
	for (unsigned i = 0; i < c->qlen; i++) {
		struct pg_item *it = q_at(c, i);
		if (it->kind == IT_SYNC || (it->kind == IT_MARKER && it->id))
			return (int)i;
	}
	return -1;
}

static void end_txn_idle(struct pg_conn *c)
{
	c->flags &= ~CF_IDLE;
}

/* ReadyForQuery (status 0: not captured) answers the oldest batch. */
static void ready(struct feed *f, uint8_t status, uint64_t ts)
{
	struct pg_conn *c = f->c;
	int end = batch_end(c);

	if (end >= 0) {
		/* 55.2.3: after an error the backend skipped the rest of the batch; what got no result is aborted. */
		for (int i = 0; i < end; i++)
			drop_head(f, ts);
		struct pg_item *it = q_head(c);
		if (it->kind == IT_SYNC || !--it->id)
			q_pop(c);
	} else if (c->qlen) {
		anomaly(f, PG_AN_UNMATCHED); /* executions waiting, but no Sync: a frontend message was missed */
	}
	c->flags |= CF_CONFIRMED;
	end_txn_idle(c);
	if (!status_ok(status)) {
		c->txn_status = 0;
		c->txn_open = 0;
	} else {
		uint8_t prev = c->txn_status;
		if (prev == 'I' && status != 'I') {
			c->txn_open = 1;
			c->txn_start = c->flags & CF_SINCE_Z ? c->since_z_start : ts;
		} else if ((prev == 'T' || prev == 'E') && status == 'I' && c->txn_open) {
			struct pg_event ev = { .type = PG_EV_TXN };
			ev.committed = c->last_commit && prev == 'T';
			ev.start_ns = c->txn_start;
			ev.end_ns = ts < c->txn_start ? c->txn_start : ts;
			ev.duration_ns = ev.end_ns - ev.start_ns;
			emit(f, &ev);
		}
		if (status == 'I')
			c->txn_open = 0;
		c->txn_status = status;
		if (status != 'I' && !c->qlen) {
			c->flags |= CF_IDLE;
			c->idle_since = ts;
		}
	}
	c->flags &= ~CF_SINCE_Z;
}

/* ---- ending the connection's parsing ---- */

static void finish(struct feed *f, const struct pg_event *ev)
{
	abort_all(f);
	f->c->mode = MODE_DONE;
	if (ev)
		emit(f, ev);
}

static void stop(struct feed *f, enum pg_not_pg why)
{
	struct pg_event ev = { .type = PG_EV_NOT_PG, .reason = why };

	finish(f, &ev);
}

/* What the first bytes of something that is not PostgreSQL look like, or -1. */
static int signature(const uint8_t *p, size_t n)
{
	static const char *const http[] = { "GET ", "POST ", "PUT ", "HEAD ", "DELETE ", "OPTIONS ", "PATCH ",
					     "CONNECT ", "PRI * ", "HTTP/1." };

	/* TLS record header (RFC 8446 section 5.1): content type 20-23, legacy version 3.x. */
	if (n >= 3 && p[0] >= 0x14 && p[0] <= 0x17 && p[1] == 0x03 && p[2] <= 0x04)
		return PG_NOT_TLS;
	for (size_t i = 0; i < sizeof(http) / sizeof(http[0]); i++) {
		size_t k = strlen(http[i]);
		if (n >= k && !memcmp(p, http[i], k))
			return PG_NOT_HTTP;
	}
	return -1;
}

/* ---- message validation ---- */

/* Message types of each stream (protocol-message-formats.html): known, and whether the length is exactly 4. A
 * table, not strchr() over the type letters: the check runs for every message. */
enum { T_KNOWN = 1, T_EMPTY = 2 };
static const uint8_t fe_types[256] = {
	['Q'] = T_KNOWN, ['P'] = T_KNOWN, ['B'] = T_KNOWN, ['D'] = T_KNOWN, ['E'] = T_KNOWN,
	['C'] = T_KNOWN, ['d'] = T_KNOWN, ['f'] = T_KNOWN, ['F'] = T_KNOWN, ['p'] = T_KNOWN,
	['S'] = T_KNOWN | T_EMPTY, ['H'] = T_KNOWN | T_EMPTY, ['X'] = T_KNOWN | T_EMPTY, ['c'] = T_KNOWN | T_EMPTY,
};
static const uint8_t be_types[256] = {
	['R'] = T_KNOWN, ['S'] = T_KNOWN, ['K'] = T_KNOWN, ['Z'] = T_KNOWN, ['T'] = T_KNOWN, ['D'] = T_KNOWN,
	['C'] = T_KNOWN, ['E'] = T_KNOWN, ['N'] = T_KNOWN, ['A'] = T_KNOWN, ['t'] = T_KNOWN, ['G'] = T_KNOWN,
	['H'] = T_KNOWN, ['W'] = T_KNOWN, ['d'] = T_KNOWN, ['v'] = T_KNOWN, ['V'] = T_KNOWN,
	['1'] = T_KNOWN | T_EMPTY, ['2'] = T_KNOWN | T_EMPTY, ['3'] = T_KNOWN | T_EMPTY, ['n'] = T_KNOWN | T_EMPTY,
	['I'] = T_KNOWN | T_EMPTY, ['s'] = T_KNOWN | T_EMPTY, ['c'] = T_KNOWN | T_EMPTY,
};

static int type_check(bool fe, uint8_t t, uint32_t ml)
{
	if (ml < 4 || ml > PG_MSG_MAX)
		return K_BAD;
	uint8_t k = fe ? fe_types[t] : be_types[t];
	if (!k)
		return K_UNKNOWN;
	if ((k & T_EMPTY) && ml != 4)
		return K_BAD;
	if (!fe && ((t == 'Z' && ml != 5) || (t == 'K' && ml < 12) || (t == 'R' && ml < 8)))
		return K_BAD;
	return K_OK;
}

/* A CommandComplete body: a NUL-terminated tag of upper-case words and numbers. */
static bool tag_valid(const uint8_t *p, size_t n)
{
	if (n < 2 || p[n - 1] || !is_upper(p[0]))
		return false;
	for (size_t i = 0; i + 1 < n; i++)
		if (!is_upper(p[i]) && !is_digit(p[i]) && p[i] != ' ' && p[i] != '_')
			return false;
	return true;
}

/* An ErrorResponse / NoticeResponse body: fields (type byte, NUL-terminated string), then a zero byte. */
static bool fields_valid(const uint8_t *p, size_t n, char *code, uint8_t *codelen)
{
	size_t i = 0;
	int fields = 0;

	while (i < n && p[i]) {
		uint8_t ft = p[i++];
		const uint8_t *z = memchr(p + i, 0, n - i);
		if (!z || !is_upper(ft))
			return false;
		if (ft == 'C' && code && z - (p + i) == 5) {
			memcpy(code, p + i, 5);
			*codelen = 5;
		}
		i = (size_t)(z - p) + 1;
		fields++;
	}
	return fields && i + 1 == n;
}

/* The body of a fully captured message, judged when guessing at a boundary. */
static bool body_plausible(bool fe, uint8_t t, const uint8_t *p, size_t n)
{
	if (fe) {
		switch (t) {
		case 'Q':
			return n && !p[n - 1] && !memchr(p, 0, n - 1);
		case 'D':
		case 'C':
			return n >= 2 && (p[0] == 'S' || p[0] == 'P') && !p[n - 1];
		case 'E':
			return n >= 5 && memchr(p, 0, n - 4);
		}
		return true;
	}
	switch (t) {
	case 'Z':
		return status_ok(p[0]);
	case 'C':
		return tag_valid(p, n);
	case 'E':
	case 'N':
		return fields_valid(p, n, NULL, NULL);
	}
	return true;
}

/* Do the captured bytes of a call begin at a message boundary? Every header captured must be valid, and every
 * body captured whole plausible. */
static bool plausible(bool fe, const uint8_t *p, size_t cap)
{
	size_t pos = 0;
	int n = 0;

	while (pos + 5 <= cap) {
		uint8_t t = p[pos];
		uint32_t ml = be32(p + pos + 1);
		if (type_check(fe, t, ml) != K_OK || ml > PG_RESYNC_LEN_MAX)
			return false;
		size_t end = pos + 1 + ml;
		if (end <= cap && !body_plausible(fe, t, p + pos + 5, ml - 4))
			return false;
		n++;
		pos = end;
	}
	return n > 0;
}

/* ---- streams ---- */

static void side_reset(struct pg_side *s, int state)
{
	memset(s, 0, sizeof(*s));
	s->state = (uint8_t)state;
}

static unsigned ever_flag(bool fe)
{
	return fe ? CF_FE_EVER : CF_BE_EVER;
}

/* A header would begin in unknown bytes, or was impossible. */
static void desync(struct feed *f, enum pg_anomaly a)
{
	anomaly(f, a);
	side_reset(f->s, S_LOST);
	f->lost_here = true;
}

static void bad_header(struct feed *f)
{
	struct pg_conn *c = f->c;

	if (!(c->flags & (CF_CONFIRMED | CF_MIDSTREAM))) {
		int why = signature(f->s->hdr, f->s->hdrlen);
		stop(f, why >= 0 ? why : PG_NOT_GARBAGE);
		return;
	}
	if (!(c->flags & CF_CONFIRMED)) {
		/* Midstream, a boundary guessed wrong: look again. */
		side_reset(f->s, S_LOST);
		return;
	}
	desync(f, PG_AN_BAD_HEADER);
}

static void startup_header(struct feed *f)
{
	struct pg_conn *c = f->c;
	struct pg_side *s = f->s;
	uint32_t ml = be32(s->hdr), code = be32(s->hdr + 4);

	s->hdrlen = 0;
	if (ml < 8 || ml > PG_STARTUP_MAX) {
		int why = signature(s->hdr, 8);
		stop(f, why >= 0 ? why : PG_NOT_GARBAGE);
		return;
	}
	if ((code == PG_SSL_CODE || code == PG_GSSENC_CODE) && ml == 8) {
		/* 55.2.10 / 55.2.11: one byte answers, the startup packet follows on 'N'. */
		c->flags |= CF_FE_STARTED;
		side_reset(&c->be, S_SSL_ANSWER);
		c->be.sub = code == PG_SSL_CODE ? 'S' : 'G';
		return;
	}
	if (code == PG_CANCEL_CODE && ml == 16) {
		struct pg_event ev = { .type = PG_EV_CANCEL };
		finish(f, &ev);
		return;
	}
	if (code >> 16 != 3) {
		stop(f, code >> 16 && code >> 16 < 3 ? PG_NOT_VERSION : PG_NOT_GARBAGE);
		return;
	}
	struct pg_event ev = { .type = PG_EV_STARTUP, .version = code };
	c->flags |= CF_FE_STARTED | CF_CONFIRMED | CF_FE_EVER;
	emit(f, &ev);
	s->type = 0;
	s->field = F_DONE;
	s->remaining = ml - 8;
	s->state = s->remaining ? S_BODY : S_HDR;
}

static void ssl_answer(struct feed *f, uint8_t b)
{
	struct pg_side *s = f->s;

	if ((b == 'S' && s->sub == 'S') || (b == 'G' && s->sub == 'G')) {
		struct pg_event ev = { .type = PG_EV_ENCRYPTED };
		ev.encryption = b == 'S' ? PG_ENC_TLS : PG_ENC_GSS;
		finish(f, &ev);
	} else if (b == 'N') {
		side_reset(s, S_HDR);
	} else if (b == 'E') {
		/* A server too old for the request answers with an ErrorResponse. */
		side_reset(s, S_HDR);
		s->hdr[0] = b;
		s->hdrlen = 1;
		s->first_ns = f->ts;
	} else {
		stop(f, PG_NOT_GARBAGE);
	}
}

static void msg_start(struct feed *f)
{
	struct pg_conn *c = f->c;
	struct pg_side *s = f->s;

	if (f->fe) {
		switch (s->type) {
		case 'P':
		case 'B':
		case 'E':
			if (!(c->flags & CF_BATCH)) {
				c->flags |= CF_BATCH;
				c->batch_start = s->first_ns;
			}
			if (s->type == 'P')
				s->slot = stmt_alloc(f);
			break;
		case 'Q':
			s->slot = stmt_alloc(f);
			break;
		}
	} else if (s->type == 'C') {
		c->taglen = 0;
		c->tag_ok = 0;
	} else if (s->type == 'E') {
		c->errlen = 0;
	}
}

static void text_byte(struct feed *f, struct pg_side *s, uint8_t b, unsigned bit)
{
	struct pg_stmt *st = &f->c->stmts[s->slot];

	if (!b) {
		s->names_ok |= bit;
		s->field = F_DONE;
	} else if (st->len < PG_QUERY_MAX) {
		st->text[st->len++] = (char)b;
	} else {
		st->truncated = 1;
		s->names_ok |= bit; /* not cut by the capture: cut here */
		s->field = F_DONE;
	}
}

/* A NUL-terminated name field, hashed. */
static void name_byte(struct pg_side *s, uint64_t *h, uint8_t b, unsigned bit, uint8_t next)
{
	if (b) {
		*h = fnv(*h, b);
		return;
	}
	s->names_ok |= bit;
	s->field = next;
}

static void body_byte(struct feed *f, struct pg_side *s, uint8_t b)
{
	struct pg_conn *c = f->c;

	if (f->fe) {
		switch (s->type) {
		case 'Q':
			text_byte(f, s, b, 1);
			return;
		case 'P':
			if (s->field == 0)
				name_byte(s, &s->h1, b, 1, 1);
			else
				text_byte(f, s, b, 2);
			return;
		case 'B':
			if (s->field == 0)
				name_byte(s, &s->h1, b, 1, 1);
			else
				name_byte(s, &s->h2, b, 2, F_DONE);
			return;
		case 'E':
			name_byte(s, &s->h1, b, 1, F_DONE);
			return;
		case 'C':
			if (s->field == 0) {
				s->sub = b;
				s->field = 1;
			} else {
				name_byte(s, &s->h1, b, 1, F_DONE);
			}
			return;
		}
	} else {
		switch (s->type) {
		case 'C':
			if (!b) {
				c->tag_ok = 1;
				s->field = F_DONE;
			} else if (c->taglen < PG_TAG_MAX - 1) {
				c->tag[c->taglen++] = (char)b;
			} else {
				s->field = F_DONE; /* too long for a tag: unknown */
			}
			return;
		case 'E':
			/* Fields: a type byte, then a NUL-terminated string; a zero type byte ends them. */
			if (s->field == 0) {
				if (!b) {
					s->field = F_DONE;
					return;
				}
				s->sub = b;
				s->field = 1;
			} else if (!b) {
				s->field = 0;
			} else if (s->sub == 'C' && c->errlen < 5) {
				c->sqlstate[c->errlen++] = (char)b;
			}
			return;
		case 'Z':
			s->sub = b;
			s->names_ok = 1;
			s->field = F_DONE;
			return;
		}
	}
	s->field = F_DONE;
}

static void msg_end_fe(struct feed *f, struct pg_side *s)
{
	struct pg_conn *c = f->c;
	struct pg_stmt *st;
	struct pg_portal *po;

	switch (s->type) {
	case 'Q':
		st = &c->stmts[s->slot];
		if (!(s->names_ok & 1))
			st->truncated = 1;
		push(f, IT_SIMPLE, s->first_ns, s->slot, st->gen);
		push(f, IT_SYNC, 0, NO_SLOT, 0);
		c->flags &= ~CF_BATCH;
		break;
	case 'P':
		st = &c->stmts[s->slot];
		if (!(s->names_ok & 2))
			st->truncated = 1;
		if (s->names_ok & 1) {
			/* Unnamed: the new text replaces the old (55.2.3); named: closed ones may be reused. */
			stmt_forget(c, s->h1);
			st->name = s->h1;
			st->findable = 1;
		}
		break;
	case 'B':
		if (s->names_ok & 1)
			portal_bind(c, s->h1, s->names_ok & 2 ? stmt_find(c, s->h2) : -1);
		break;
	case 'E': {
		uint64_t start = c->flags & CF_BATCH ? c->batch_start : s->first_ns;
		po = s->names_ok & 1 ? portal_find(c, s->h1) : NULL;
		if (!po || !stmt_ref(c, po->slot, po->gen))
			anomaly(f, PG_AN_STMT_UNKNOWN);
		push(f, IT_EXEC, start, po ? po->slot : NO_SLOT, po ? po->gen : 0);
		c->flags &= ~CF_BATCH;
		break;
	}
	case 'S':
	case 'F': /* FunctionCall: answered by FunctionCallResponse and ReadyForQuery */
		push(f, IT_SYNC, 0, NO_SLOT, 0);
		c->flags &= ~CF_BATCH;
		break;
	case 'C':
		if (s->names_ok & 1) {
			if (s->sub == 'S')
				stmt_forget(c, s->h1);
			else if (s->sub == 'P' && (po = portal_find(c, s->h1)))
				po->valid = 0;
		}
		break;
	}
}

static void msg_end_be(struct feed *f, struct pg_side *s)
{
	switch (s->type) {
	case 'C':
		result(f, R_OK, s->first_ns);
		break;
	case 'E':
		result(f, R_ERR, s->first_ns);
		break;
	case 'I':
		result(f, R_EMPTY, s->first_ns);
		break;
	case 's':
		result(f, R_SUSPENDED, s->first_ns);
		break;
	case 'Z':
		ready(f, s->names_ok ? s->sub : 0, s->first_ns);
		break;
	}
}

static void msg_end(struct feed *f)
{
	struct pg_side *s = f->s;
	struct pg_side done = *s;

	side_reset(s, S_HDR);
	if (f->fe)
		msg_end_fe(f, &done);
	else
		msg_end_be(f, &done);
}

/* A typed message's header, its 5 bytes at h (s->hdr, or the capture itself when they came whole in it). */
static void header(struct feed *f, const uint8_t *h)
{
	struct pg_conn *c = f->c;
	struct pg_side *s = f->s;
	uint8_t t = h[0];
	uint32_t ml = be32(h + 1);
	int k = type_check(f->fe, t, ml);

	s->hdrlen = 0;
	if (k == K_BAD || (k == K_UNKNOWN && !(c->flags & CF_CONFIRMED))) {
		bad_header(f);
		return;
	}
	if (k == K_UNKNOWN)
		anomaly(f, PG_AN_UNKNOWN_MESSAGE);
	c->flags |= ever_flag(f->fe);
	s->type = k == K_OK ? t : 0;
	s->remaining = ml - 4;
	s->field = 0;
	s->sub = 0;
	s->cut = 0;
	s->names_ok = 0;
	s->slot = NO_SLOT;
	s->h1 = s->h2 = FNV1A_SEED;
	s->state = S_BODY;
	msg_start(f);
	if (!s->remaining)
		msg_end(f);
}

/* text_byte() over a run of bytes at once: the statement text up to its NUL, as far as n goes. The bytes used. */
static size_t text_run(struct feed *f, struct pg_side *s, const uint8_t *p, size_t n, unsigned bit)
{
	struct pg_stmt *st = &f->c->stmts[s->slot];
	const uint8_t *nul = memchr(p, 0, n);
	size_t len = nul ? (size_t)(nul - p) : n, room = PG_QUERY_MAX - st->len;

	if (len <= room) {
		memcpy(st->text + st->len, p, len);
		st->len += len;
		if (!nul)
			return len;
		s->names_ok |= bit;
		s->field = F_DONE;
		return len + 1;
	}
	memcpy(st->text + st->len, p, room);
	st->len += room;
	st->truncated = 1;
	s->names_ok |= bit; /* not cut by the capture: cut here */
	s->field = F_DONE;
	return room + 1;
}

/* Pass n captured bytes of the current body. A statement's text (Query, Parse) is copied in runs; the other
 * fields go byte by byte. */
static void body_bytes(struct feed *f, const uint8_t *p, size_t n)
{
	struct pg_side *s = f->s;

	for (size_t i = 0; i < n && s->field != F_DONE;) {
		if (f->fe && (s->type == 'Q' || (s->type == 'P' && s->field == 1)))
			i += text_run(f, s, p + i, n - i, s->type == 'Q' ? 1 : 2);
		else
			body_byte(f, s, p[i++]);
	}
	s->remaining -= (uint32_t)n;
	if (!s->remaining)
		msg_end(f);
}

/* Pass n uncaptured bytes of the current body (n <= remaining). */
static void body_gap(struct feed *f, size_t n)
{
	struct pg_side *s = f->s;

	s->cut = 1;
	s->field = F_DONE;
	s->remaining -= (uint32_t)n;
	if (!s->remaining)
		msg_end(f);
}

static size_t step(struct feed *f, const uint8_t *p, size_t n)
{
	struct pg_side *s = f->s;
	size_t need, take;

	switch (s->state) {
	case S_HDR:
		if (!s->hdrlen && n >= 5) {
			/* The common case, a whole header in the capture: read in place, not gathered in s->hdr. */
			s->first_ns = f->ts;
			header(f, p);
			return 5;
		}
		/* fall through */
	case S_STARTUP:
		need = (s->state == S_STARTUP ? 8 : 5) - s->hdrlen;
		take = n < need ? n : need;
		if (!s->hdrlen)
			s->first_ns = f->ts;
		memcpy(s->hdr + s->hdrlen, p, take);
		s->hdrlen += (uint8_t)take;
		if (take == need) {
			if (s->state == S_STARTUP)
				startup_header(f);
			else
				header(f, s->hdr);
		}
		return take;
	case S_SSL_ANSWER:
		ssl_answer(f, p[0]);
		return 1;
	case S_BODY:
		take = n < s->remaining ? n : s->remaining;
		body_bytes(f, p, take);
		return take;
	}
	side_reset(s, S_LOST); /* cannot happen */
	return n;
}

static void consume(struct feed *f, const uint8_t *p, size_t n)
{
	size_t pos = 0;

	while (pos < n && f->c->mode == MODE_OPEN && f->s->state != S_LOST)
		pos += step(f, p + pos, n - pos);
}

/* The backend's tail ends with ReadyForQuery: answer the oldest batch with it and the result just before it.
 * Scanning backward, the first 'C'/'E' whose length ends exactly at the 'Z' and whose body is well formed is
 * taken (a shorter false match would need its length bytes to be tag or field text, which they never are). */
static bool be_tail(struct feed *f, const uint8_t *t, size_t n)
{
	struct pg_conn *c = f->c;
	int how = -1;

	if (n < 6)
		return false;
	size_t z = n - 6;
	if (t[z] != 'Z' || be32(t + z + 1) != 5 || !status_ok(t[z + 5]))
		return false;
	if (z >= 5 && be32(t + z - 4) == 4 && (t[z - 5] == 'I' || t[z - 5] == 's')) {
		how = t[z - 5] == 'I' ? R_EMPTY : R_SUSPENDED;
	} else {
		for (size_t p = z >= 6 ? z - 6 : 0; z >= 6; p--) {
			if ((t[p] == 'C' || t[p] == 'E') && be32(t + p + 1) == z - p - 1) {
				const uint8_t *b = t + p + 5;
				size_t bl = z - p - 5;
				uint8_t codelen = 0;
				char code[5];
				if (t[p] == 'C' && tag_valid(b, bl)) {
					memcpy(c->tag, b, bl - 1 < PG_TAG_MAX - 1 ? bl - 1 : PG_TAG_MAX - 1);
					c->taglen = (uint8_t)(bl - 1 < PG_TAG_MAX - 1 ? bl - 1 : PG_TAG_MAX - 1);
					c->tag_ok = bl - 1 < PG_TAG_MAX - 1;
					how = R_OK;
					break;
				}
				if (t[p] == 'E' && fields_valid(b, bl, code, &codelen)) {
					memcpy(c->sqlstate, code, 5);
					c->errlen = codelen;
					how = R_ERR;
					break;
				}
			}
			if (!p)
				break;
		}
	}
	if (how < 0 && z >= 2 && !t[z - 1] && !t[z - 2]) {
		/* Only the end of an ErrorResponse fits: its last field's NUL and the terminator ("\0\0"), where a
		 * CommandComplete ends with a tag character and one NUL. Its code field may still be in view. */
		how = R_ERR;
		c->errlen = 0;
		for (size_t p = z - 2; p >= 7; p--) {
			bool code = !t[p] && t[p - 6] == 'C' && !t[p - 7];
			for (size_t i = p - 5; code && i < p; i++)
				code = is_upper(t[i]) || is_digit(t[i]);
			if (code) {
				memcpy(c->sqlstate, t + p - 5, 5);
				c->errlen = 5;
				break;
			}
		}
	}
	anomaly(f, PG_AN_RESYNC_TAIL);
	int end = batch_end(c);
	if (end >= 0 && how >= 0) {
		/* Results before the tail's were hidden: what precedes the batch's last execution is aborted. */
		int last = -1;
		for (int i = 0; i < end; i++)
			if (q_at(c, (unsigned)i)->kind != IT_MARKER)
				last = i;
		for (int i = 0; i < last; i++)
			drop_head(f, f->ts);
		result(f, how, f->ts);
	}
	ready(f, t[z + 5], f->ts);
	side_reset(f->s, S_HDR);
	c->flags |= CF_BE_EVER;
	return true;
}

/* The frontend's tail ends with Sync, maybe right after an Execute (libpq ends a batch with "E S"). */
static bool fe_tail(struct feed *f, const uint8_t *t, size_t n)
{
	struct pg_conn *c = f->c;

	if (n < 5)
		return false;
	size_t z = n - 5;
	if (t[z] != 'S' || be32(t + z + 1) != 4)
		return false;
	bool exec = false;
	uint64_t h = FNV1A_SEED;
	/* Execute: 'E', length, portal name, NUL, int32 row limit. */
	for (size_t p = z >= 10 ? z - 10 : 0; z >= 10 && !exec; p--) {
		if (t[p] == 'E' && be32(t + p + 1) == z - p - 1 && !t[z - 5] && !memchr(t + p + 5, 0, z - p - 10)) {
			exec = true;
			for (size_t i = p + 5; i < z - 5; i++)
				h = fnv(h, t[i]);
		}
		if (!p)
			break;
	}
	anomaly(f, PG_AN_RESYNC_TAIL);
	if (exec) {
		struct pg_portal *po = portal_find(c, h);
		uint64_t start = c->flags & CF_BATCH ? c->batch_start : f->ts;
		push(f, IT_EXEC, start, po ? po->slot : NO_SLOT, po ? po->gen : 0);
		push(f, IT_SYNC, 0, NO_SLOT, 0);
	} else {
		push_marker(f, 1);
	}
	c->flags &= ~CF_BATCH;
	side_reset(f->s, S_HDR);
	return true;
}

/* Framing was lost during this call: the tail may give it back. Frontend bytes that could not be followed
 * are represented by a placeholder unless the tail says how the batch ended. */
static void lost_tail(struct feed *f, const uint8_t *t, size_t n)
{
	if (f->c->mode != MODE_OPEN)
		return;
	if (!f->fe) {
		if (n)
			be_tail(f, t, n);
		return;
	}
	if (!fe_tail(f, t, n))
		push_marker(f, 1);
}

static void run(struct feed *f, const uint8_t *data, size_t cap, size_t len, const uint8_t *tail, size_t tailn)
{
	struct pg_conn *c = f->c;
	struct pg_side *s = f->s;
	size_t gap = len - cap - tailn;

	consume(f, data, cap);
	if (c->mode != MODE_OPEN)
		return;
	if (s->state != S_LOST && gap) {
		if (s->state == S_BODY && s->remaining >= gap) {
			body_gap(f, gap);
		} else {
			if (s->state == S_BODY)
				body_gap(f, s->remaining);
			if (c->mode != MODE_OPEN)
				return;
			desync(f, f->fe ? PG_AN_FE_DESYNC : PG_AN_BE_DESYNC);
		}
	}
	if (s->state != S_LOST)
		consume(f, tail, tailn);
	if (f->lost_here && s->state == S_LOST)
		lost_tail(f, tail, tailn);
}

/* ---- API ---- */

void pg_conn_init(struct pg_conn *c, enum pg_role role, unsigned flags)
{
	memset(c, 0, sizeof(*c));
	c->role = (uint8_t)role;
	c->mode = MODE_OPEN;
	if (flags & PG_CONN_MIDSTREAM) {
		c->flags |= CF_MIDSTREAM;
		c->fe.state = S_LOST;
		c->be.state = S_LOST;
	} else {
		c->fe.state = S_STARTUP;
		c->be.state = S_HDR;
	}
}

int pg_conn_feed(struct pg_conn *c, enum flow_dir dir, const uint8_t *data, size_t cap, size_t len,
		 const uint8_t *tail, size_t tailn, uint64_t ts_ns, const struct pg_sink *sink)
{
	bool fe = (dir == FLOW_IN) == (c->role == PG_ROLE_SERVER);
	struct feed f = { .c = c, .sink = sink, .ts = ts_ns, .fe = fe, .s = fe ? &c->fe : &c->be };

	if (c->mode != MODE_OPEN)
		return PG_FEED_DONE;
	if (!data || cap > len)
		cap = data ? len : 0;
	if (!tail || tailn > len - cap)
		tailn = tail ? len - cap : 0;
	if (!len)
		return PG_FEED_OK;

	if (fe) {
		if (c->flags & CF_IDLE) {
			/* The frontend spoke again after a ReadyForQuery left the transaction open. */
			struct pg_event ev = { .type = PG_EV_IDLE_IN_TXN, .start_ns = c->idle_since };
			ev.end_ns = ts_ns < c->idle_since ? c->idle_since : ts_ns;
			ev.duration_ns = ev.end_ns - ev.start_ns;
			c->flags &= ~CF_IDLE;
			emit(&f, &ev);
		}
	} else if (!(c->flags & (CF_FE_STARTED | CF_MIDSTREAM))) {
		stop(&f, PG_NOT_SERVER_FIRST);
		return PG_FEED_DONE;
	}

	if (f.s->state == S_LOST) {
		if (!(c->flags & CF_CONFIRMED)) {
			int why = signature(data, cap);
			if (why >= 0) {
				stop(&f, why);
				return PG_FEED_DONE;
			}
			if (++c->unsynced_calls > PG_UNSYNCED_MAX) {
				stop(&f, PG_NOT_UNSYNCED);
				return PG_FEED_DONE;
			}
		}
		if (cap && plausible(fe, data, cap)) {
			if (c->flags & ever_flag(fe))
				anomaly(&f, PG_AN_RESYNC_HEAD);
			side_reset(f.s, S_HDR);
		} else {
			/* Only the backend's tail: a frontend tail alone does not say where the lost bytes began. */
			if (!fe && tailn)
				be_tail(&f, tail, tailn);
			return c->mode == MODE_OPEN ? PG_FEED_OK : PG_FEED_DONE;
		}
	}
	run(&f, data, cap, len, tail, tailn);
	return c->mode == MODE_OPEN ? PG_FEED_OK : PG_FEED_DONE;
}

void pg_conn_lost(struct pg_conn *c, uint64_t ts_ns, const struct pg_sink *sink)
{
	struct feed f = { .c = c, .sink = sink, .ts = ts_ns };

	if (c->mode != MODE_OPEN)
		return;
	anomaly(&f, PG_AN_RECORDS_LOST);
	abort_all(&f);
	side_reset(&c->fe, S_LOST);
	side_reset(&c->be, S_LOST);
	c->txn_status = 0;
	c->txn_open = 0;
	c->flags &= ~(CF_IDLE | CF_BATCH | CF_SINCE_Z);
	/* Startup-time rules (the server never speaks first) no longer apply. */
	c->flags |= CF_MIDSTREAM;
}

void pg_conn_close(struct pg_conn *c, uint64_t ts_ns, const struct pg_sink *sink)
{
	struct feed f = { .c = c, .sink = sink, .ts = ts_ns };

	if (c->mode == MODE_OPEN)
		abort_all(&f);
	c->mode = MODE_CLOSED;
}

size_t pg_conn_pending(const struct pg_conn *c)
{
	size_t n = 0;

	for (unsigned i = 0; i < c->qlen; i++) {
		const struct pg_item *it = &c->q[(c->qhead + i) % PG_PIPELINE_MAX];
		if ((it->kind == IT_EXEC || it->kind == IT_SIMPLE) && !it->done)
			n++;
	}
	return n;
}
