// SPDX-License-Identifier: BSD-2-Clause
/* libFuzzer target for src/parsers/http.c (and the hand-over to src/parsers/websocket.c). The input is a sequence of syscall
 * views, so splits and truncation are fuzzed along with the bytes:
 *   byte 0: bit 0 HTTP_CONN_MIDSTREAM
 *   then records: [flags][n][extra] n bytes (struct call, fuzz.h)
 * Invariants: every REQUEST_START ends exactly once (RESPONSE or ABORT), nothing follows NOT_HTTP or UPGRADE,
 * methods and routes are well formed, statuses are 100-999, times are ordered, offsets lie within the call.
 * Differential: the same bytes fully captured, fed as given and with consecutive same-direction calls merged,
 * give the same events whenever framing was never lost (call boundaries only matter for resynchronising). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "parsers/http.h"
#include "parsers/websocket.h"

struct state {
	long starts, ends;
	int final;		/* NOT_HTTP or UPGRADE seen */
	int upgraded;
	size_t upgrade_offset;
	bool in_lost;
	size_t call_len;
	uint64_t ts;
	char route[ROUTE_MAX_LEN + 1];
};

static void check_route(const char *r)
{
	size_t n = strlen(r);

	CHECK(n >= 1 && n <= ROUTE_MAX_LEN);
	CHECK(r[0] == '/' || !strcmp(r, "*") || !strcmp(r, HTTP_ROUTE_UNKNOWN));
	for (size_t i = 0; i < n; i++)
		CHECK(r[i] >= 0x21 && r[i] <= 0x7e && r[i] != '?' && r[i] != '#');
}

static void check_method(const char *m)
{
	static const char *const ok[] = { "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE",
					  "PATCH", "_OTHER" };
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (!strcmp(m, ok[i]))
			return;
	CHECK(!"method");
}

static void on_http(void *ctx, const struct http_event *ev)
{
	struct state *s = ctx;

	CHECK(!s->final);
	switch (ev->type) {
	case HTTP_EV_REQUEST_START:
		s->starts++;
		check_method(ev->method);
		check_route(ev->route);
		CHECK(ev->start_ns <= s->ts);
		break;
	case HTTP_EV_RESPONSE:
		s->ends++;
		check_method(ev->method);
		check_route(ev->route);
		CHECK(ev->status >= 100 && ev->status <= 999);
		CHECK(ev->end_ns <= s->ts);
		CHECK(ev->start_ns <= ev->end_ns);
		break;
	case HTTP_EV_REQUEST_ABORT:
		s->ends++;
		check_method(ev->method);
		check_route(ev->route);
		CHECK(ev->start_ns <= ev->end_ns);
		break;
	case HTTP_EV_UPGRADE:
		s->final = 1;
		s->upgraded = 1;
		check_route(ev->route);
		CHECK(ev->offset <= s->call_len);
		CHECK(ev->start_ns <= ev->end_ns);
		s->upgrade_offset = ev->offset;
		s->in_lost = ev->in_lost;
		snprintf(s->route, sizeof(s->route), "%s", ev->route);
		break;
	case HTTP_EV_NOT_HTTP:
		s->final = 1;
		CHECK(http_not_http_name(ev->reason) != NULL);
		break;
	default:
		CHECK(!"event type");
	}
}

static void on_ws(void *ctx, const struct ws_event *ev)
{
	struct state *s = ctx;

	CHECK(!strcmp(ev->route, s->route));
	if (ev->type == WS_EV_MESSAGE)
		CHECK(ws_opcode_name(ev->opcode) && ev->opcode != WS_OP_CONT);
}

/* ---- differential: split vs merged ---- */

static void on_diff(void *ctx, const struct http_event *ev)
{
	dlog_printf(ctx, "%d %s %s %d %llu %llu %d|", ev->type, ev->method ? ev->method : "-",
		    ev->route ? ev->route : "-", ev->status, (unsigned long long)ev->start_ns,
		    (unsigned long long)ev->end_ns, ev->type == HTTP_EV_NOT_HTTP ? (int)ev->reason : -1);
}

/* Anomalies after which framing depends on call boundaries. */
static bool framing_lost(const struct http_stats *st)
{
	for (int k = 0; k < HTTP_AN_MAX; k++)
		if (st->n[k] && k != HTTP_AN_UNMATCHED && k != HTTP_AN_EARLY_DATA && k != HTTP_AN_PIPELINE_FULL)
			return true;
	return false;
}

struct diff {
	struct http_conn c[2];
	struct http_sink k[2];
};

static void diff_feed(void *ctx, int merged, enum flow_dir dir, const uint8_t *p, size_t n, uint64_t ts)
{
	struct diff *d = ctx;
	http_conn_feed(&d->c[merged], dir, p, n, n, ts, &d->k[merged]);
}

static void differential(const struct call *pc, size_t np)
{
	static struct diff d;
	static struct dlog l[2];
	struct http_stats st[2] = { 0 };
	for (int k = 0; k < 2; k++) {
		l[k].len = 0;
		l[k].done = 0;
		d.k[k] = (struct http_sink){ .event = on_diff, .ctx = &l[k], .stats = &st[k] };
		http_conn_init(&d.c[k], 0);
	}
	uint64_t ts = replay_split_merged(pc, np, diff_feed, &d);
	for (int k = 0; k < 2; k++)
		http_conn_close(&d.c[k], ts + 1, &d.k[k]);
	if (framing_lost(&st[0]) || framing_lost(&st[1]) || l[0].done || l[1].done)
		return;
	dlog_compare(&l[0], &l[1]);
}

/* ---- seeds ----
 * LLVMFuzzerInitialize runs before libFuzzer reads its corpus: with LOUPE_FUZZ_SEEDS=DIR it writes a few
 * realistic conversations there, so a fresh corpus starts from HTTP rather than from nothing. */

/* A text record: at most cap bytes of s captured (the rest joins the uncaptured tail). */
static void rec(struct out *o, int out_dir, const char *s, size_t cap, size_t extra)
{
	size_t n = strlen(s);

	if (cap > n)
		cap = n;
	if (cap > 511)
		cap = 511;
	extra += n - cap;
	if (extra > 8191)
		extra = 8191;
	out_rec(o, out_dir, s, cap, extra);
}

#define GET(p) "GET " p " HTTP/1.1\r\nHost: api\r\n\r\n"
#define OK(b) "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n" b

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = getenv("LOUPE_FUZZ_SEEDS");
	struct out o;
	int k = 0;

	if (!dir)
		return 0;
	o.n = 0;
	o.b[o.n++] = 0;
	rec(&o, 0, GET("/memories/1"), 999, 0);
	rec(&o, 1, OK("ab"), 999, 0);
	rec(&o, 0, "POST /memories HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", 999, 0);
	rec(&o, 1, "HTTP/1.1 100 Continue\r\n\r\n", 999, 0);
	rec(&o, 0, "hello", 999, 0);
	rec(&o, 1, "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n", 999, 0);
	seed_write(dir, k++, &o);

	o.n = 0;
	o.b[o.n++] = 0;
	rec(&o, 0, GET("/a") "HEAD /b HTTP/1.1\r\n\r\n" GET("/c"), 999, 0);
	rec(&o, 1, OK("ab") "HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n" "HTTP/1.1 204 No Content\r\n\r\n", 999, 0);
	rec(&o, 0, "PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;a=b\r\nabc\r\n0\r\nt: 1\r\n\r\n", 999, 0);
	rec(&o, 1, "HTTP/1.0 500 X\r\n\r\n", 999, 0);
	seed_write(dir, k++, &o);

	o.n = 0;
	o.b[o.n++] = 0;
	rec(&o, 0, "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", 999, 0);
	rec(&o, 1, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi", 999, 0);
	rec(&o, 0, "\x81\x85\x01\x02\x03\x04hello", 999, 0);
	rec(&o, 0, "\x88\x82\x01\x02\x03\x04\x03\xe8", 999, 0);
	seed_write(dir, k++, &o);

	/* Truncated heads and bodies. */
	o.n = 0;
	o.b[o.n++] = 0;
	rec(&o, 0, GET("/graph/7/neighbors"), 16, 300);
	rec(&o, 1, "HTTP/1.1 200 OK\r\ncontent-length: 300\r\n\r\n", 20, 400);
	rec(&o, 1, "HTTP/1.1 200 OK\r\n\r\n", 999, 100);
	rec(&o, 0, "POST /m HTTP/1.1\r\nContent-Length: 1000\r\n\r\nxxxx", 64, 900);
	rec(&o, 1, OK("ab"), 999, 0);
	seed_write(dir, k++, &o);

	o.n = 0;
	o.b[o.n++] = 1; /* midstream */
	rec(&o, 1, "body HTTP/1.1 200\r\n", 999, 0);
	rec(&o, 0, "{}", 999, 0);
	rec(&o, 0, GET("/x"), 999, 0);
	rec(&o, 1, OK("ab"), 999, 0);
	seed_write(dir, k++, &o);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct http_conn c;
	static struct ws_conn w;
	struct state s = { 0 };
	struct http_stats hs = { 0 };
	struct route_stats rs = { 0 };
	struct ws_stats wst = { 0 };
	struct http_sink sink = { .event = on_http, .ctx = &s, .stats = &hs, .routes = &rs };
	struct ws_sink wsink = { .event = on_ws, .ctx = &s, .stats = &wst };
	size_t i = 0;

	static struct call calls[4096];
	struct call cl;
	size_t np = 0;
	bool midstream;

	if (!size)
		return 0;
	midstream = data[i++] & 1;
	http_conn_init(&c, midstream ? HTTP_CONN_MIDSTREAM : 0);
	while (next_call(data, size, &i, &cl)) {
		uint8_t *buf = heap_copy(cl.p, cl.n);
		size_t n = cl.n, len = cl.len;
		enum flow_dir dir = cl.dir;
		if (np < sizeof(calls) / sizeof(calls[0]))
			calls[np++] = cl;
		s.ts++;
		s.call_len = len;
		if (!s.upgraded) {
			int r = http_conn_feed(&c, dir, buf, n, len, s.ts, &sink);
			CHECK(r == HTTP_FEED_OK || r == HTTP_FEED_UPGRADED || r == HTTP_FEED_NOT_HTTP);
			CHECK((r == HTTP_FEED_OK) == !s.final);
			CHECK(s.starts == s.ends + (long)http_conn_pending(&c));
			if (s.upgraded) {
				/* Hand the rest of this call to the WebSocket parser, as the payload module will. */
				size_t off = s.upgrade_offset;
				ws_conn_init(&w, s.route, s.ts);
				if (s.in_lost)
					ws_conn_lost(&w, FLOW_IN, &wsink);
				if (off < len)
					ws_conn_feed(&w, dir, buf + (off < n ? off : n), off < n ? n - off : 0, len - off,
						     s.ts, &wsink);
			}
		} else {
			int r = ws_conn_feed(&w, dir, buf, n, len, s.ts, &wsink);
			CHECK(r == 0 || r == 1);
		}
		free(buf);
	}
	http_conn_close(&c, s.ts + 1, &sink);
	CHECK(s.starts == s.ends);
	CHECK(http_conn_pending(&c) == 0);
	if (s.upgraded)
		ws_conn_close(&w, s.ts + 1, &wsink);
	if (!midstream)
		differential(calls, np);
	return 0;
}
