// SPDX-License-Identifier: BSD-2-Clause
/* Server-side HTTP/1.x state machine over truncated syscall views (see http.h for what it promises).
 *
 * Each direction is a small state machine over captured bytes; uncaptured bytes (len - cap) are only ever
 * skipped by a known length. Lines (request line, status line, header lines, chunk-size lines) are gathered
 * into a fixed buffer that keeps the first bytes of a long line and drops the rest, so memory is bounded and
 * a line split across calls at any byte parses as if it came in one piece. Every step consumes at least one
 * byte or leaves the call, so no input loops forever. */
#include "parsers/http.h"

#include <string.h>

enum {
	ST_LINE,	 /* at a message boundary: request line / status line */
	ST_HEADERS,	 /* RFC 9112 section 5: field lines up to an empty line */
	ST_BODY,	 /* RFC 9112 section 6.3 rule 6: Content-Length bytes */
	ST_CHUNK_SIZE,	 /* RFC 9112 section 7.1: chunk-size [ chunk-ext ] CRLF */
	ST_CHUNK_DATA,
	ST_CHUNK_END,	 /* the CRLF after chunk-data */
	ST_TRAILERS,	 /* RFC 9112 section 7.1.2: trailer section after the last chunk */
	ST_UNTIL_CLOSE,	 /* response: RFC 9112 section 6.3 rules 4 and 8, body ends when the connection does */
	ST_UPGRADE_WAIT, /* request: an Upgrade request awaits its response (RFC 9110 section 7.8) */
	ST_LOST,	 /* framing unknown: look for a message start at the next call */
};

enum { MODE_OPEN, MODE_UPGRADED, MODE_NOT_HTTP, MODE_CLOSED };

#define CF_MIDSTREAM 0x01
#define CF_SEEN_IN 0x02
#define CF_SYNCED 0x04	/* a request line has been parsed */
#define CF_IN_SKIPPED 0x08	/* client bytes were dropped since the last request line */

/* Facts from the header section being read. */
#define HF_CL 0x01
#define HF_CL_BAD 0x02
#define HF_TE 0x04
#define HF_CHUNKED 0x08
#define HF_TE_BAD 0x10
#define HF_UPGRADE_WS 0x20
#define HF_UPGRADE_OTHER 0x40
#define HF_STATUS 0x80	/* response: the status line has been validated */

/* Pending request flags. */
#define PE_HEAD 0x01
#define PE_CONNECT 0x02
#define PE_UPGRADE_WS 0x04
#define PE_PARTIAL 0x08		/* its head was cut by the capture */
#define PE_UNSEEN 0x10		/* it began in uncaptured bytes: nothing known, nothing reported */
#define PE_RESPONDED 0x20	/* its final status was reported, the response head is still being read */

/* One call being fed. */
struct feed {
	struct http_conn *c;
	const struct http_sink *sink;
	uint64_t ts;
	size_t pos;	/* offset in the call of the next byte */
	size_t len;
};

static const char *const method_names[] = {
	[HTTP_GET] = "GET",	[HTTP_HEAD] = "HEAD",	    [HTTP_POST] = "POST",
	[HTTP_PUT] = "PUT",	[HTTP_DELETE] = "DELETE",   [HTTP_CONNECT] = "CONNECT",
	[HTTP_OPTIONS] = "OPTIONS", [HTTP_TRACE] = "TRACE", [HTTP_PATCH] = "PATCH",
	[HTTP_OTHER] = "_OTHER",
};

static const char *const not_http_names[HTTP_NOT_MAX] = {
	[HTTP_NOT_TLS] = "tls",
	[HTTP_NOT_VERSION] = "version",
	[HTTP_NOT_GARBAGE] = "garbage",
	[HTTP_NOT_SERVER_FIRST] = "server_first",
	[HTTP_NOT_UPGRADE_OTHER] = "upgrade_other",
	[HTTP_NOT_TUNNEL] = "tunnel",
	[HTTP_NOT_UNSYNCED] = "unsynced",
};

static const char *const anomaly_names[HTTP_AN_MAX] = {
	[HTTP_AN_REQ_DESYNC] = "request_desync",
	[HTTP_AN_RESP_DESYNC] = "response_desync",
	[HTTP_AN_REQ_TRUNCATED] = "request_truncated",
	[HTTP_AN_RESP_TRUNCATED] = "response_truncated",
	[HTTP_AN_REQ_UNSEEN] = "request_unseen",
	[HTTP_AN_UNMATCHED] = "response_unmatched",
	[HTTP_AN_STATUS_UNKNOWN] = "status_unknown",
	[HTTP_AN_PIPELINE_FULL] = "pipeline_full",
	[HTTP_AN_EARLY_DATA] = "early_data",
	[HTTP_AN_RESYNC] = "resync",
	[HTTP_AN_RECORDS_LOST] = "records_lost",
};

const char *http_method_name(enum http_method m)
{
	return (unsigned)m <= HTTP_OTHER ? method_names[m] : method_names[HTTP_OTHER];
}

const char *http_not_http_name(enum http_not_http r)
{
	return (unsigned)r < HTTP_NOT_MAX ? not_http_names[r] : NULL;
}

const char *http_anomaly_name(enum http_anomaly a)
{
	return (unsigned)a < HTTP_AN_MAX ? anomaly_names[a] : NULL;
}

enum http_method http_method_parse(const char *m, size_t n)
{
	for (unsigned i = 0; i < HTTP_OTHER; i++)
		if (strlen(method_names[i]) == n && !memcmp(method_names[i], m, n))
			return i;
	return HTTP_OTHER;
}

/* ---- small lexical helpers ---- */

/* RFC 9110 section 5.6.2: tchar. */
static bool is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c);
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int hex_val(unsigned char c)
{
	if (is_digit(c))
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool ieq(const char *a, size_t n, const char *lit)
{
	size_t i;

	for (i = 0; i < n && lit[i]; i++) {
		unsigned char x = a[i], y = lit[i];
		if (x >= 'A' && x <= 'Z')
			x += 32;
		if (x != y)
			return false;
	}
	return i == n && !lit[i];
}

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* ---- events and the pending queue ---- */

static void emit(struct feed *f, const struct http_event *ev)
{
	if (f->sink && f->sink->event)
		f->sink->event(f->sink->ctx, ev);
}

static void anomaly(struct feed *f, enum http_anomaly a)
{
	if (f->sink && f->sink->stats)
		f->sink->stats->n[a]++;
}

static struct http_pending *q_at(struct http_conn *c, unsigned i)
{
	return &c->q[(c->qhead + i) % HTTP_PIPELINE_MAX];
}

static struct http_pending *q_head(struct http_conn *c)
{
	return c->qlen ? q_at(c, 0) : NULL;
}

/* The request whose head is being read, if it is queued. */
static struct http_pending *q_current(struct http_conn *c)
{
	struct http_pending *p = c->qlen ? q_at(c, c->qlen - 1) : NULL;

	return p && c->cur_seq && p->seq == c->cur_seq ? p : NULL;
}

/* Queue a request, or NULL when it cannot keep its place in line: the queue is full, or older requests wait
 * outside it (then it must wait too, FIFO). */
static struct http_pending *q_push(struct http_conn *c)
{
	struct http_pending *p;

	if (c->qlen == HTTP_PIPELINE_MAX || c->unseen) {
		c->unseen++;
		c->cur_seq = 0;
		return NULL;
	}
	p = q_at(c, c->qlen++);
	memset(p, 0, sizeof(*p));
	p->seq = ++c->seq ? c->seq : ++c->seq; /* 0 means none */
	c->cur_seq = p->seq;
	return p;
}

static void q_pop(struct http_conn *c)
{
	if (!c->qlen)
		return;
	c->qhead = (c->qhead + 1) % HTTP_PIPELINE_MAX;
	c->qlen--;
	/* A request that waited outside the full queue takes the free place, unseen: only its position counts. */
	if (c->unseen) {
		struct http_pending *p = q_at(c, c->qlen++);
		memset(p, 0, sizeof(*p));
		p->flags = PE_UNSEEN;
		c->unseen--;
	}
}

static void ev_request(struct http_event *ev, enum http_event_type type, const struct http_pending *p)
{
	memset(ev, 0, sizeof(*ev));
	ev->type = type;
	ev->method = http_method_name(p->method);
	ev->route = p->route;
	ev->start_ns = p->start_ns;
}

/* Abort every started request that will get no response; keep_head keeps the queue's head in place. */
static void abort_pending(struct feed *f, bool keep_head)
{
	struct http_conn *c = f->c;
	struct http_event ev;

	for (unsigned i = keep_head ? 1 : 0; i < c->qlen; i++) {
		struct http_pending *p = q_at(c, i);
		if (p->flags & (PE_UNSEEN | PE_RESPONDED))
			continue;
		ev_request(&ev, HTTP_EV_REQUEST_ABORT, p);
		ev.end_ns = f->ts;
		emit(f, &ev);
	}
	c->qlen = keep_head && c->qlen ? 1 : 0;
	c->unseen = 0;
}

static void stop(struct feed *f, enum http_not_http why)
{
	struct http_event ev = { .type = HTTP_EV_NOT_HTTP, .reason = why };

	abort_pending(f, false);
	f->c->mode = MODE_NOT_HTTP;
	emit(f, &ev);
}

/* ---- line gathering ---- */

static void side_reset(struct http_side *s, int state)
{
	uint64_t first = s->first_ns;

	memset(s, 0, sizeof(*s));
	s->state = state;
	s->first_ns = first;
}

static void line_reset(struct http_side *s)
{
	s->linelen = 0;
	s->overflow = 0;
}

/* Append p[0..n) up to and including the first LF to the side's line. Returns the bytes consumed; *done says
 * whether the line ended (the LF is not stored). A line longer than the buffer keeps its first bytes. */
static size_t line_take(struct http_side *s, char *line, size_t max, const uint8_t *p, size_t n, bool *done)
{
	const uint8_t *lf = memchr(p, '\n', n);
	size_t take = lf ? (size_t)(lf - p) + 1 : n;
	size_t copy = lf ? take - 1 : take;

	if (copy > max - s->linelen) {
		copy = max - s->linelen;
		s->overflow = 1;
	}
	memcpy(line + s->linelen, p, copy);
	s->linelen += copy;
	*done = lf != NULL;
	return take;
}

/* A complete line without its CR (RFC 9112 section 2.2: a recipient may accept a bare LF too). */
static size_t line_strip(const struct http_side *s, const char *line)
{
	size_t n = s->linelen;

	if (n && line[n - 1] == '\r' && !s->overflow)
		n--;
	return n;
}

/* ---- request line ---- */

enum { RL_BAD, RL_MORE, RL_OK, RL_VERSION };

struct reqline {
	size_t mlen, tstart, tlen;
	bool target_end;
};

/* RFC 9112 section 3: request-line = method SP request-target SP HTTP-version, HTTP-version = "HTTP/" DIGIT "."
 * DIGIT (section 2.3). With complete false, s[0..n) is a prefix and RL_MORE means "valid so far". */
static int reqline_parse(const char *s, size_t n, bool complete, struct reqline *rl)
{
	size_t i = 0;

	memset(rl, 0, sizeof(*rl));
	if (!complete && n == 1 && s[0] == '\r')
		return RL_MORE; /* an empty line's CR */
	while (i < n && is_tchar(s[i]))
		i++;
	rl->mlen = i;
	if (i > HTTP_METHOD_MAX)
		return RL_BAD;
	if (i == n)
		return complete ? RL_BAD : RL_MORE;
	if (!i || s[i] != ' ')
		return RL_BAD;
	rl->tstart = ++i;
	/* request-target: visible characters; obs-text (>= 0x80) is left to route_template() to abstract. */
	while (i < n && (unsigned char)s[i] > 0x20 && s[i] != 0x7f)
		i++;
	rl->tlen = i - rl->tstart;
	if (i == n)
		return complete ? RL_BAD : RL_MORE;
	if (s[i] != ' ' || !rl->tlen)
		return RL_BAD;
	rl->target_end = true;
	i++;
	static const char pat[] = "HTTP/d.d";
	size_t k;
	for (k = 0; k < 8 && i + k < n; k++) {
		char want = pat[k];
		if (want == 'd' ? !is_digit(s[i + k]) : s[i + k] != want)
			return RL_BAD;
		/* Decided as soon as the major digit is seen, so a split line is judged like a whole one. */
		if (k == 5 && s[i + k] != '1')
			return RL_VERSION;
	}
	if (k < 8)
		return complete ? RL_BAD : RL_MORE;
	if (i + 8 == n)
		return complete ? RL_OK : RL_MORE;
	if (!complete && i + 9 == n && s[i + 8] == '\r')
		return RL_MORE;
	return RL_BAD;
}

/* A request line was read: queue the request and report it. target_cut: the buffer or the capture cut the line
 * inside the target; head_cut: the capture hid the rest of the request's head. */
static void request_start(struct feed *f, const char *line, const struct reqline *rl, bool target_cut,
			  bool head_cut)
{
	struct http_conn *c = f->c;
	struct http_pending *p = q_push(c);
	struct http_event ev;
	struct route_stats *rs = f->sink ? f->sink->routes : NULL;

	c->flags |= CF_SYNCED;
	c->flags &= ~CF_IN_SKIPPED;
	if (!p) {
		anomaly(f, HTTP_AN_PIPELINE_FULL);
		return;
	}
	p->start_ns = c->rq.first_ns;
	p->method = http_method_parse(line, rl->mlen);
	if (p->method == HTTP_HEAD)
		p->flags |= PE_HEAD;
	else if (p->method == HTTP_CONNECT)
		p->flags |= PE_CONNECT;
	if (target_cut && !rl->target_end)
		route_template_prefix(line + rl->tstart, rl->tlen, p->route, sizeof(p->route), rs);
	else
		route_template(line + rl->tstart, rl->tlen, p->route, sizeof(p->route), rs);
	if (head_cut)
		p->flags |= PE_PARTIAL;
	ev_request(&ev, HTTP_EV_REQUEST_START, p);
	emit(f, &ev);
}

/* A request began in bytes we cannot see: hold its place in line. */
static void request_unseen(struct feed *f)
{
	struct http_pending *p = q_push(f->c);

	if (p)
		p->flags = PE_UNSEEN;
	f->c->cur_seq = 0;
	anomaly(f, HTTP_AN_REQ_UNSEEN);
}

static void lost(struct http_side *s)
{
	side_reset(s, ST_LOST);
}

static void bad_request_line(struct feed *f, int r)
{
	struct http_conn *c = f->c;

	if (!(c->flags & (CF_SYNCED | CF_MIDSTREAM))) {
		/* The connection's first bytes: it is not HTTP/1.x at all. */
		if ((unsigned char)c->rq_line[0] == 0x16)
			stop(f, HTTP_NOT_TLS); /* TLS handshake record (RFC 8446 section 5.1) */
		else
			stop(f, r == RL_VERSION ? HTTP_NOT_VERSION : HTTP_NOT_GARBAGE);
		return;
	}
	anomaly(f, HTTP_AN_REQ_DESYNC);
	lost(&c->rq);
}

/* ---- header fields ---- */

/* RFC 9110 section 8.6 / RFC 9112 section 6.3 rule 5: 1*DIGIT; a list of identical values is one value. */
static bool parse_content_length(const char *v, size_t n, uint64_t *out)
{
	bool have = false;
	uint64_t val = 0;
	size_t i = 0;

	while (i < n) {
		uint64_t x = 0;
		size_t d = 0;
		while (i < n && is_ows(v[i]))
			i++;
		while (i < n && is_digit(v[i])) {
			if (x > (UINT64_MAX - 9) / 10)
				return false; /* overflow */
			x = x * 10 + (uint64_t)(v[i] - '0');
			i++;
			d++;
		}
		while (i < n && is_ows(v[i]))
			i++;
		if (!d || (have && x != val))
			return false;
		have = true;
		val = x;
		if (i < n && v[i++] != ',')
			return false;
		if (i == n && v[n - 1] == ',')
			return false;
	}
	*out = val;
	return have;
}

/* Call fn for each comma-separated token of a field value (RFC 9110 section 5.6.1). */
static void each_token(const char *v, size_t n, void (*fn)(struct http_side *s, const char *t, size_t tn),
		       struct http_side *s)
{
	size_t i = 0;

	while (i < n) {
		while (i < n && (is_ows(v[i]) || v[i] == ','))
			i++;
		size_t b = i;
		while (i < n && v[i] != ',')
			i++;
		size_t e = i;
		while (e > b && is_ows(v[e - 1]))
			e--;
		if (e > b)
			fn(s, v + b, e - b);
	}
}

static void te_token(struct http_side *s, const char *t, size_t n)
{
	/* RFC 9112 section 6.3 rules 3-4: only a final "chunked" frames the body. Coding parameters follow ';'. */
	const char *semi = memchr(t, ';', n);
	size_t tn = semi ? (size_t)(semi - t) : n;
	while (tn && is_ows(t[tn - 1]))
		tn--;
	if (ieq(t, tn, "chunked"))
		s->hflags |= HF_CHUNKED;
	else
		s->hflags &= ~HF_CHUNKED;
}

static void upgrade_token(struct http_side *s, const char *t, size_t n)
{
	/* RFC 9110 section 7.8: protocol-name [ "/" protocol-version ]; RFC 6455 section 4.1: "websocket". */
	const char *slash = memchr(t, '/', n);
	if (ieq(t, slash ? (size_t)(slash - t) : n, "websocket"))
		s->hflags |= HF_UPGRADE_WS;
	else
		s->hflags |= HF_UPGRADE_OTHER;
}

/* RFC 9112 section 5: field-line = field-name ":" OWS field-value OWS. Only the fields that frame a message or
 * switch protocols matter here; a line cut by the buffer leaves those unknown. */
static void header_line(struct http_side *s, const char *l, size_t n, bool cut)
{
	const char *colon;

	if (!n || is_ows(l[0]))
		return; /* obs-fold continuation (section 5.2): part of a field we do not need */
	colon = memchr(l, ':', n);
	if (!colon)
		return;
	size_t nl = (size_t)(colon - l);
	const char *v = colon + 1;
	size_t vn = n - nl - 1;
	while (vn && is_ows(v[0])) {
		v++;
		vn--;
	}
	while (vn && is_ows(v[vn - 1]))
		vn--;

	if (ieq(l, nl, "content-length")) {
		uint64_t x;
		if (cut || !parse_content_length(v, vn, &x) || ((s->hflags & HF_CL) && s->cl != x))
			s->hflags |= HF_CL_BAD;
		else {
			s->hflags |= HF_CL;
			s->cl = x;
		}
	} else if (ieq(l, nl, "transfer-encoding")) {
		s->hflags |= HF_TE;
		if (cut)
			s->hflags |= HF_TE_BAD;
		else
			each_token(v, vn, te_token, s);
	} else if (ieq(l, nl, "upgrade")) {
		each_token(v, vn, upgrade_token, s);
	}
}

/* RFC 9112 section 7.1: chunk-size = 1*HEXDIG, then optional BWS ";" chunk-ext. */
static bool parse_chunk_size(const char *l, size_t n, uint64_t *out)
{
	uint64_t x = 0;
	size_t i = 0;

	while (i < n && hex_val(l[i]) >= 0) {
		if (x >> 60)
			return false;
		x = x << 4 | (uint64_t)hex_val(l[i]);
		i++;
	}
	if (!i)
		return false;
	while (i < n && is_ows(l[i]))
		i++;
	if (i < n && l[i] != ';')
		return false;
	*out = x;
	return true;
}

/* ST_BODY, ST_CHUNK_DATA: pass up to n bytes of a body or chunk, captured or not, in either direction. A chunk's
 * end moves on to its CRLF; *body_done says the message's body ended (the caller ends the message). */
static uint64_t data_skip(struct http_side *s, uint64_t n, bool *body_done)
{
	uint64_t used = min_u64(n, s->remaining);
	s->remaining -= used;
	*body_done = !s->remaining && s->state == ST_BODY;
	if (!s->remaining && s->state == ST_CHUNK_DATA)
		s->state = ST_CHUNK_END;
	return used;
}

/* ST_CHUNK_SIZE, ST_CHUNK_END (RFC 9112 section 7.1): gather the chunk-size line, or the empty line after a chunk's
 * data, in either direction. Returns the bytes used. */
static size_t chunk_line(struct feed *f, struct http_side *s, char *line, size_t max, const uint8_t *p, size_t n,
			 enum http_anomaly desync)
{
	bool done;
	size_t used = line_take(s, line, max, p, n, &done);
	if (!done)
		return used;
	size_t ln = line_strip(s, line);
	if (s->state == ST_CHUNK_END) {
		if (ln || s->overflow) {
			anomaly(f, desync);
			lost(s);
			return used;
		}
		s->state = ST_CHUNK_SIZE;
	} else if (!parse_chunk_size(line, ln, &s->remaining)) {
		anomaly(f, desync);
		lost(s);
		return used;
	} else {
		s->state = s->remaining ? ST_CHUNK_DATA : ST_TRAILERS;
	}
	line_reset(s);
	return used;
}

/* ---- request side ---- */

static void request_done(struct feed *f)
{
	struct http_side *s = &f->c->rq;
	bool upgrade = s->hflags & HF_UPGRADE_WS;

	side_reset(s, upgrade ? ST_UPGRADE_WAIT : ST_LINE);
}

static void request_head_done(struct feed *f)
{
	struct http_side *s = &f->c->rq;

	/* RFC 9112 section 6.3: Transfer-Encoding overrides Content-Length (rule 3); a request whose final coding
	 * is not chunked, or whose Content-Length is invalid, gets 400 and a closed connection (rules 4-5). */
	if (s->hflags & HF_TE) {
		if (s->hflags & HF_TE_BAD) {
			anomaly(f, HTTP_AN_REQ_TRUNCATED);
			lost(s);
		} else if (!(s->hflags & HF_CHUNKED)) {
			anomaly(f, HTTP_AN_REQ_DESYNC);
			lost(s);
		} else {
			s->state = ST_CHUNK_SIZE;
		}
	} else if (s->hflags & HF_CL_BAD) {
		anomaly(f, HTTP_AN_REQ_DESYNC);
		lost(s);
	} else if ((s->hflags & HF_CL) && s->cl) {
		s->state = ST_BODY;
		s->remaining = s->cl;
	} else {
		request_done(f); /* rule 6: no body */
	}
}

static size_t request_step(struct feed *f, const uint8_t *p, size_t n)
{
	struct http_conn *c = f->c;
	struct http_side *s = &c->rq;
	struct reqline rl;
	bool done;
	size_t used, ln;
	int r;

	switch (s->state) {
	case ST_LINE:
		if (!s->linelen && !s->overflow)
			s->first_ns = f->ts;
		used = line_take(s, c->rq_line, sizeof(c->rq_line), p, n, &done);
		if (!done) {
			/* Judge the prefix now (what the buffer kept of a long line too): a binary protocol may never
			 * send a LF. */
			r = reqline_parse(c->rq_line, s->linelen, false, &rl);
			if (r == RL_BAD || r == RL_VERSION)
				bad_request_line(f, r);
			return used;
		}
		ln = line_strip(s, c->rq_line);
		if (!ln && !s->overflow) {
			/* RFC 9112 section 2.2: a server SHOULD ignore empty lines before a request-line. */
			line_reset(s);
			return used;
		}
		if (s->overflow) {
			/* The line outgrew the buffer: what it kept is a prefix (the route's cut segment becomes "..."). */
			r = reqline_parse(c->rq_line, s->linelen, false, &rl);
			if (r == RL_MORE && rl.tlen) {
				request_start(f, c->rq_line, &rl, true, false);
				s->state = ST_HEADERS;
				line_reset(s);
				return used;
			}
			bad_request_line(f, r == RL_VERSION ? r : RL_BAD);
			return used;
		}
		r = reqline_parse(c->rq_line, ln, true, &rl);
		if (r != RL_OK) {
			bad_request_line(f, r);
			return used;
		}
		request_start(f, c->rq_line, &rl, false, false);
		s->state = ST_HEADERS;
		line_reset(s);
		return used;

	case ST_HEADERS:
	case ST_TRAILERS:
		used = line_take(s, c->rq_line, sizeof(c->rq_line), p, n, &done);
		if (!done)
			return used;
		ln = line_strip(s, c->rq_line);
		if (!ln && !s->overflow) {
			line_reset(s);
			if (s->state == ST_HEADERS)
				request_head_done(f);
			else
				request_done(f);
			return used;
		}
		if (s->state == ST_HEADERS) {
			header_line(s, c->rq_line, ln, s->overflow);
			struct http_pending *q = q_current(c);
			if (q && (s->hflags & HF_UPGRADE_WS))
				q->flags |= PE_UPGRADE_WS;
		}
		line_reset(s);
		return used;

	case ST_CHUNK_SIZE:
	case ST_CHUNK_END:
		return chunk_line(f, s, c->rq_line, sizeof(c->rq_line), p, n, HTTP_AN_REQ_DESYNC);

	case ST_BODY:
	case ST_CHUNK_DATA:
		used = (size_t)data_skip(s, n, &done);
		if (done)
			request_done(f);
		return used;

	case ST_UPGRADE_WAIT:
		/* RFC 6455 section 4.1: the client sends no data before the server's handshake response. */
		anomaly(f, HTTP_AN_EARLY_DATA);
		c->flags |= CF_IN_SKIPPED;
		return n;

	default: /* ST_LOST: the rest of this call is of unknown framing */
		return n;
	}
}

/* The capture hid `gap` bytes at the end of a read. */
static void request_gap(struct feed *f, uint64_t gap)
{
	struct http_conn *c = f->c;
	struct http_side *s = &c->rq;
	struct reqline rl;

	while (gap && c->mode == MODE_OPEN) {
		switch (s->state) {
		case ST_BODY:
		case ST_CHUNK_DATA: {
			bool done;
			gap -= data_skip(s, gap, &done);
			if (done)
				request_done(f);
			break;
		}
		case ST_LINE: {
			/* A request begins in the hidden bytes: a client sends nothing else after a complete one. */
			int r = reqline_parse(c->rq_line, s->linelen, false, &rl);
			if ((s->linelen || s->overflow) && r == RL_MORE && rl.tlen) {
				request_start(f, c->rq_line, &rl, true, true);
				anomaly(f, HTTP_AN_REQ_TRUNCATED);
			} else if (r == RL_VERSION && !(c->flags & (CF_SYNCED | CF_MIDSTREAM))) {
				stop(f, HTTP_NOT_VERSION);
				return;
			} else {
				request_unseen(f);
			}
			lost(s);
			return;
		}
		case ST_HEADERS: {
			struct http_pending *q = q_current(c);
			if (q)
				q->flags |= PE_PARTIAL;
			anomaly(f, HTTP_AN_REQ_TRUNCATED);
			lost(s);
			return;
		}
		case ST_CHUNK_SIZE:
		case ST_CHUNK_END:
		case ST_TRAILERS:
			anomaly(f, HTTP_AN_REQ_TRUNCATED);
			lost(s);
			return;
		case ST_UPGRADE_WAIT:
			anomaly(f, HTTP_AN_EARLY_DATA);
			c->flags |= CF_IN_SKIPPED;
			return;
		default:
			return;
		}
	}
}

/* Does a read begin with what can only be a request line? Used to find framing again (ST_LOST): a complete
 * valid line, or, when the capture cut the line, a standard method and an origin-form or absolute-form target. */
static bool looks_like_request(const uint8_t *p, size_t cap)
{
	const uint8_t *lf = memchr(p, '\n', cap);
	struct reqline rl;

	if (lf) {
		size_t n = (size_t)(lf - p);
		if (n && p[n - 1] == '\r')
			n--;
		return reqline_parse((const char *)p, n, true, &rl) == RL_OK;
	}
	if (reqline_parse((const char *)p, cap, false, &rl) != RL_MORE || !rl.tlen)
		return false;
	if (http_method_parse((const char *)p, rl.mlen) == HTTP_OTHER)
		return false;
	return p[rl.tstart] == '/' || p[rl.tstart] == '*' || p[rl.tstart] == 'h' || p[rl.tstart] == 'H';
}

/* ---- response side ---- */

/* RFC 9112 section 4: status-line = HTTP-version SP status-code SP [ reason-phrase ]. Returns RL_OK once the
 * status code is known (12 bytes and a SP, CR or the line's end after them), RL_MORE for a valid prefix. */
static int status_parse(const char *s, size_t n, bool complete, int *status)
{
	static const char pat[] = "HTTP/1.d ddd";
	size_t k;

	for (k = 0; k < 12 && k < n; k++) {
		char want = pat[k];
		if (want == 'd' ? !is_digit(s[k]) : s[k] != want)
			return RL_BAD;
	}
	if (k < 12)
		return complete ? RL_BAD : RL_MORE;
	if (n == 12 && !complete)
		return RL_MORE;
	if (n > 12 && s[12] != ' ' && s[12] != '\r')
		return RL_BAD;
	*status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
	return *status >= 100 ? RL_OK : RL_BAD;
}

static void response_status(struct feed *f, int status)
{
	struct http_conn *c = f->c;
	struct http_side *s = &c->rs;
	struct http_pending *h;
	struct http_event ev;

	s->status = (int16_t)status;
	s->hflags |= HF_STATUS;
	if (s->tentative) {
		anomaly(f, HTTP_AN_RESYNC);
		s->tentative = 0;
	}
	c->matched = c->qlen > 0;
	/* RFC 9110 section 15.2: 1xx responses are interim; the request waits for its final one. */
	if (status < 200 && status != 101)
		return;
	h = q_head(c);
	if (!h) {
		anomaly(f, HTTP_AN_UNMATCHED);
		return;
	}
	if (h->flags & PE_UNSEEN)
		return;
	ev_request(&ev, HTTP_EV_RESPONSE, h);
	ev.status = status;
	/* Not before its request: after a desync, the head of the queue can be a request read after this response
	 * began (found by fuzz_http); its duration is then 0, not an unsigned wrap of 584 years. */
	ev.end_ns = s->first_ns < ev.start_ns ? ev.start_ns : s->first_ns;
	h->flags |= PE_RESPONDED;
	emit(f, &ev);
}

static void response_done(struct http_side *s)
{
	side_reset(s, ST_LINE);
}

/* The 101's head is complete (or cut, truncated): leave HTTP for WebSocket, or stop. */
static void response_upgrade(struct feed *f, bool truncated)
{
	struct http_conn *c = f->c;
	struct http_side *s = &c->rs;
	struct http_pending *h = c->matched ? q_head(c) : NULL;
	uint8_t hf = s->hflags;
	bool ws;

	/* RFC 9110 section 7.8: a 101 names the new protocol in Upgrade; RFC 6455 section 4.2.2: "websocket". When
	 * neither the request's nor the response's headers could be read, WebSocket is the only upgrade an ASGI
	 * server performs. */
	ws = (hf & HF_UPGRADE_WS) ||
	     (!(hf & HF_UPGRADE_OTHER) && (truncated || (h && (h->flags & (PE_UPGRADE_WS | PE_PARTIAL)))));
	if (!ws) {
		stop(f, HTTP_NOT_UPGRADE_OTHER);
		return;
	}
	struct http_event ev = {
		.type = HTTP_EV_UPGRADE,
		.method = "GET", /* RFC 6455 section 4.1: the handshake is a GET */
		.route = HTTP_ROUTE_UNKNOWN,
		.start_ns = s->first_ns,
		.end_ns = s->first_ns,
		.offset = truncated ? f->len : f->pos,
		.in_lost = c->flags & CF_IN_SKIPPED,
	};
	if (h && !(h->flags & PE_UNSEEN)) {
		ev.method = http_method_name(h->method);
		ev.route = h->route;
		/* Never after the 101 (a request read after it began, after a desync: see response_status()). */
		ev.start_ns = h->start_ns < s->first_ns ? h->start_ns : s->first_ns;
	}
	/* Requests pipelined behind the upgrade will not be answered in HTTP. */
	abort_pending(f, h != NULL);
	c->mode = MODE_UPGRADED;
	emit(f, &ev);
}

static void response_head_done(struct feed *f, bool truncated)
{
	struct http_conn *c = f->c;
	struct http_side *s = &c->rs;
	struct http_pending *h = c->matched ? q_head(c) : NULL;
	int st = s->status;
	uint8_t pf = h ? h->flags : 0;

	if (st < 200 && st != 101) {
		/* Interim: the final response follows (RFC 9112 section 6.3 rule 1: no body). */
		if (truncated) {
			anomaly(f, HTTP_AN_RESP_TRUNCATED);
			lost(s);
		} else {
			response_done(s);
		}
		return;
	}
	if (st == 101) {
		response_upgrade(f, truncated);
		return;
	}
	if (h)
		q_pop(c);
	c->matched = 0;
	/* An Upgrade the server declined: the request side reads requests again. */
	if (c->rq.state == ST_UPGRADE_WAIT && !c->qlen && !c->unseen)
		side_reset(&c->rq, ST_LINE);
	if ((pf & PE_CONNECT) && st / 100 == 2) {
		stop(f, HTTP_NOT_TUNNEL); /* RFC 9110 section 9.3.6 */
		return;
	}
	if (truncated) {
		anomaly(f, HTTP_AN_RESP_TRUNCATED);
		lost(s);
		return;
	}
	/* RFC 9112 section 6.3: the message body length of a response. */
	if ((pf & PE_HEAD) || st == 204 || st == 304) {
		response_done(s); /* rule 1 */
	} else if (s->hflags & HF_TE) {
		if (s->hflags & HF_TE_BAD) {
			anomaly(f, HTTP_AN_RESP_TRUNCATED);
			lost(s);
		} else if (s->hflags & HF_CHUNKED) {
			s->state = ST_CHUNK_SIZE; /* rule 4 */
		} else {
			s->state = ST_UNTIL_CLOSE; /* rule 4: not chunked, read until close */
		}
	} else if (s->hflags & HF_CL_BAD) {
		anomaly(f, HTTP_AN_RESP_DESYNC); /* rule 5: unrecoverable */
		lost(s);
	} else if (s->hflags & HF_CL) {
		if (s->cl) {
			s->state = ST_BODY;
			s->remaining = s->cl;
		} else {
			response_done(s);
		}
	} else {
		s->state = ST_UNTIL_CLOSE; /* rule 8 */
	}
}

static void bad_status_line(struct feed *f)
{
	struct http_side *s = &f->c->rs;

	if (!s->tentative)
		anomaly(f, HTTP_AN_RESP_DESYNC);
	lost(s);
}

static size_t response_step(struct feed *f, const uint8_t *p, size_t n)
{
	struct http_conn *c = f->c;
	struct http_side *s = &c->rs;
	bool done;
	size_t used, ln;
	int r, status = 0;

	switch (s->state) {
	case ST_LINE:
		if (!s->linelen && !s->overflow)
			s->first_ns = f->ts;
		used = line_take(s, c->rs_line, sizeof(c->rs_line), p, n, &done);
		f->pos += used;
		ln = done ? line_strip(s, c->rs_line) : s->linelen;
		if (!(s->hflags & HF_STATUS)) {
			r = status_parse(c->rs_line, ln, done, &status);
			if (r == RL_BAD) {
				bad_status_line(f);
				return used;
			}
			if (r == RL_OK)
				response_status(f, status);
		}
		if (done) {
			s->state = ST_HEADERS;
			line_reset(s);
		}
		return used;

	case ST_HEADERS:
	case ST_TRAILERS:
		used = line_take(s, c->rs_line, sizeof(c->rs_line), p, n, &done);
		f->pos += used;
		if (!done)
			return used;
		ln = line_strip(s, c->rs_line);
		if (!ln && !s->overflow) {
			line_reset(s);
			if (s->state == ST_HEADERS)
				response_head_done(f, false);
			else
				response_done(s);
			return used;
		}
		if (s->state == ST_HEADERS)
			header_line(s, c->rs_line, ln, s->overflow);
		line_reset(s);
		return used;

	case ST_CHUNK_SIZE:
	case ST_CHUNK_END:
		used = chunk_line(f, s, c->rs_line, sizeof(c->rs_line), p, n, HTTP_AN_RESP_DESYNC);
		f->pos += used;
		return used;

	case ST_BODY:
	case ST_CHUNK_DATA:
		used = (size_t)data_skip(s, n, &done);
		f->pos += used;
		if (done)
			response_done(s);
		return used;

	default: /* ST_UNTIL_CLOSE, ST_LOST */
		f->pos += n;
		return n;
	}
}

static void response_gap(struct feed *f, uint64_t gap)
{
	struct http_conn *c = f->c;
	struct http_side *s = &c->rs;
	int status = 0;

	while (gap && c->mode == MODE_OPEN) {
		switch (s->state) {
		case ST_BODY:
		case ST_CHUNK_DATA: {
			bool done;
			gap -= data_skip(s, gap, &done);
			if (done)
				response_done(s);
			break;
		}
		case ST_LINE:
			if (!(s->hflags & HF_STATUS) &&
			    status_parse(c->rs_line, s->linelen, true, &status) == RL_OK)
				response_status(f, status); /* exactly "HTTP/1.1 200" was captured */
			if (s->hflags & HF_STATUS) {
				response_head_done(f, true);
				return;
			}
			/* A response begins in the hidden bytes and its status is unknown. */
			if (!s->tentative && c->qlen) {
				struct http_pending *h = q_head(c);
				if (!(h->flags & PE_UNSEEN)) {
					struct http_event ev;
					ev_request(&ev, HTTP_EV_REQUEST_ABORT, h);
					ev.end_ns = f->ts;
					emit(f, &ev);
				}
				anomaly(f, HTTP_AN_STATUS_UNKNOWN);
				q_pop(c);
				if (c->rq.state == ST_UPGRADE_WAIT && !c->qlen && !c->unseen)
					side_reset(&c->rq, ST_LINE);
			}
			lost(s);
			return;
		case ST_HEADERS:
			response_head_done(f, true);
			return;
		case ST_CHUNK_SIZE:
		case ST_CHUNK_END:
		case ST_TRAILERS:
			anomaly(f, HTTP_AN_RESP_TRUNCATED);
			lost(s);
			return;
		default:
			return;
		}
	}
}

/* Does a write begin with a status line? Only asked while framing is lost and a request waits for its answer:
 * "HTTP/1.x NNN" at the start of a write is then taken as the next response. A write too short to hold the
 * status code must hold nothing else (the rest of the line follows in the next write). */
static bool looks_like_status(const uint8_t *p, size_t cap, size_t len)
{
	int status;
	int r = status_parse((const char *)p, cap, cap == len && cap >= 12, &status);

	return r == RL_OK || (r == RL_MORE && (cap >= 12 || cap == len));
}

/* ---- public ---- */

void http_conn_init(struct http_conn *c, unsigned flags)
{
	memset(c, 0, sizeof(*c));
	c->mode = MODE_OPEN;
	if (flags & HTTP_CONN_MIDSTREAM) {
		c->flags |= CF_MIDSTREAM;
		c->rq.state = ST_LOST;
		c->rs.state = ST_LOST;
	} else {
		c->rq.state = ST_LINE;
		c->rs.state = ST_LINE;
	}
}

static int mode_result(const struct http_conn *c)
{
	switch (c->mode) {
	case MODE_UPGRADED:
		return HTTP_FEED_UPGRADED;
	case MODE_NOT_HTTP:
		return HTTP_FEED_NOT_HTTP;
	default:
		return HTTP_FEED_OK;
	}
}

static bool tls_record(const uint8_t *p, size_t cap)
{
	/* RFC 8446 section 5.1: ContentType (20-24), legacy_record_version 0x03 0x0N. */
	return cap >= 3 && p[0] >= 0x14 && p[0] <= 0x18 && p[1] == 0x03 && p[2] <= 0x04;
}

int http_conn_feed(struct http_conn *c, enum flow_dir dir, const uint8_t *data, size_t cap, size_t len,
		   uint64_t ts_ns, const struct http_sink *sink)
{
	struct feed f = { .c = c, .sink = sink, .ts = ts_ns, .len = len };
	struct http_side *s = dir == FLOW_IN ? &c->rq : &c->rs;

	if (c->mode != MODE_OPEN)
		return mode_result(c);
	if (!data || cap > len)
		cap = data ? len : 0;
	if (!len)
		return HTTP_FEED_OK;

	if (dir == FLOW_IN) {
		c->flags |= CF_SEEN_IN;
	} else if (!(c->flags & (CF_SEEN_IN | CF_MIDSTREAM))) {
		stop(&f, HTTP_NOT_SERVER_FIRST);
		return mode_result(c);
	}
	/* Never seen a request, and no framing to judge the bytes by: give up on TLS, or after a while. */
	if (!(c->flags & CF_SYNCED) && ((c->flags & CF_MIDSTREAM) || c->rq.state == ST_LOST)) {
		if (tls_record(data, cap)) {
			stop(&f, HTTP_NOT_TLS);
			return mode_result(c);
		}
		if (++c->unsynced_calls > HTTP_UNSYNCED_MAX) {
			stop(&f, HTTP_NOT_UNSYNCED);
			return mode_result(c);
		}
	}

	/* Lost framing is found again only at the start of a call. */
	if (s->state == ST_LOST) {
		if (dir == FLOW_IN) {
			if (!cap || !looks_like_request(data, cap)) {
				c->flags |= CF_IN_SKIPPED;
				return HTTP_FEED_OK;
			}
			if (c->flags & CF_SYNCED)
				anomaly(&f, HTTP_AN_RESYNC);
			side_reset(s, ST_LINE);
		} else {
			if (!cap || (!c->qlen && !c->unseen) || !looks_like_status(data, cap, len))
				return HTTP_FEED_OK;
			/* A guess until the status code is read; a wrong one goes back to lost silently. */
			side_reset(s, ST_LINE);
			s->tentative = 1;
		}
	}

	while (f.pos < cap && c->mode == MODE_OPEN && s->state != ST_LOST) {
		size_t used;
		if (dir == FLOW_IN) {
			used = request_step(&f, data + f.pos, cap - f.pos);
			f.pos += used;
		} else {
			used = response_step(&f, data + f.pos, cap - f.pos);
		}
		if (!used) /* cannot happen: every step consumes; never spin if it does */
			lost(s);
	}
	if (c->mode != MODE_OPEN)
		return mode_result(c);
	if (len > cap && s->state != ST_LOST) {
		f.pos = len;
		if (dir == FLOW_IN)
			request_gap(&f, len - cap);
		else
			response_gap(&f, len - cap);
	}
	return mode_result(c);
}

void http_conn_lost(struct http_conn *c, uint64_t ts_ns, const struct http_sink *sink)
{
	struct feed f = { .c = c, .sink = sink, .ts = ts_ns };

	if (c->mode != MODE_OPEN)
		return;
	anomaly(&f, HTTP_AN_RECORDS_LOST);
	abort_pending(&f, false);
	c->matched = 0;
	c->cur_seq = 0;
	c->flags |= CF_SEEN_IN; /* the lost calls may have held the first read */
	lost(&c->rq);
	lost(&c->rs);
}

void http_conn_close(struct http_conn *c, uint64_t ts_ns, const struct http_sink *sink)
{
	struct feed f = { .c = c, .sink = sink, .ts = ts_ns };

	if (c->mode == MODE_OPEN)
		abort_pending(&f, false);
	c->mode = MODE_CLOSED;
}

size_t http_conn_pending(const struct http_conn *c)
{
	size_t n = 0;

	if (c->mode != MODE_OPEN)
		return 0;
	for (unsigned i = 0; i < c->qlen; i++) {
		const struct http_pending *p = &c->q[(c->qhead + i) % HTTP_PIPELINE_MAX];
		if (!(p->flags & (PE_UNSEEN | PE_RESPONDED)))
			n++;
	}
	return n;
}
