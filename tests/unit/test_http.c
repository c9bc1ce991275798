// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for src/parsers/http.c: server-side HTTP/1.x from truncated syscall views. Every scenario states the exact
 * events it expects, as text: "START GET /memories/{id} @1" (method, route, start ts), "RESP GET /r 200 1-2"
 * (status, start and end ts), "ABORT GET /r 1-9", "UPGRADE GET /ws 1-2 +N" (offset), "NOTHTTP reason". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "parsers/http.h"
#include "parsers/websocket.h"

struct log {
	char text[16384];
	size_t len;
	int starts, ends, upgrades, nothttp;
	struct http_stats st;
	struct route_stats rs;
	bool no_offset; /* leave the upgrade offset out (split tests change call boundaries) */
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

static void on_event(void *ctx, const struct http_event *ev)
{
	struct log *l = ctx;

	switch (ev->type) {
	case HTTP_EV_REQUEST_START:
		l->starts++;
		logf_(l, "START %s %s @%llu\n", ev->method, ev->route, (unsigned long long)ev->start_ns);
		break;
	case HTTP_EV_RESPONSE:
		l->ends++;
		logf_(l, "RESP %s %s %d %llu-%llu\n", ev->method, ev->route, ev->status,
		      (unsigned long long)ev->start_ns, (unsigned long long)ev->end_ns);
		break;
	case HTTP_EV_REQUEST_ABORT:
		l->ends++;
		logf_(l, "ABORT %s %s %llu-%llu\n", ev->method, ev->route, (unsigned long long)ev->start_ns,
		      (unsigned long long)ev->end_ns);
		break;
	case HTTP_EV_UPGRADE:
		l->upgrades++;
		if (l->no_offset)
			logf_(l, "UPGRADE %s %s %llu-%llu%s\n", ev->method, ev->route,
			      (unsigned long long)ev->start_ns, (unsigned long long)ev->end_ns,
			      ev->in_lost ? " in_lost" : "");
		else
			logf_(l, "UPGRADE %s %s %llu-%llu +%zu%s\n", ev->method, ev->route,
			      (unsigned long long)ev->start_ns, (unsigned long long)ev->end_ns, ev->offset,
			      ev->in_lost ? " in_lost" : "");
		break;
	case HTTP_EV_NOT_HTTP:
		l->nothttp++;
		logf_(l, "NOTHTTP %s\n", http_not_http_name(ev->reason));
		break;
	}
}

struct t {
	struct http_conn c;
	struct log l;
	struct http_sink sink;
};

static struct t *t_new(unsigned flags)
{
	struct t *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	http_conn_init(&t->c, flags);
	t->sink = (struct http_sink){ .event = on_event, .ctx = &t->l, .stats = &t->l.st, .routes = &t->l.rs };
	return t;
}

/* Fully captured call. */
static int in(struct t *t, const char *s, uint64_t ts)
{
	return http_conn_feed(&t->c, FLOW_IN, (const uint8_t *)s, strlen(s), strlen(s), ts, &t->sink);
}

static int out(struct t *t, const char *s, uint64_t ts)
{
	return http_conn_feed(&t->c, FLOW_OUT, (const uint8_t *)s, strlen(s), strlen(s), ts, &t->sink);
}

/* A call of len bytes of which the capture kept the first cap bytes of s. */
static int feedc(struct t *t, enum flow_dir d, const char *s, size_t cap, size_t len, uint64_t ts)
{
	return http_conn_feed(&t->c, d, (const uint8_t *)s, cap, len, ts, &t->sink);
}

/* Balance of the active-requests gauge: every START ends once, or is still pending. */
static void check_balance(struct t *t)
{
	assert_int_equal(t->l.starts, t->l.ends + (int)http_conn_pending(&t->c));
}

static void t_done(struct t *t, const char *want)
{
	check_balance(t);
	http_conn_close(&t->c, 999, &t->sink);
	assert_int_equal(t->l.starts, t->l.ends);
	if (want)
		assert_string_equal(t->l.text, want);
	free(t);
}

#define REQ(m, p) m " " p " HTTP/1.1\r\nHost: api\r\nUser-Agent: test\r\n\r\n"

static char *resp(const char *status, const char *body)
{
	static char b[8][1024];
	static int k;
	char *p = b[k++ % 8];
	snprintf(p, 1024, "HTTP/1.1 %s\r\nserver: uvicorn\r\ncontent-length: %zu\r\ncontent-type: text/plain\r\n\r\n%s",
		 status, strlen(body), body);
	return p;
}

/* ---- basic flows ---- */

static void test_keepalive(void **state)
{
	struct t *t = t_new(0);

	assert_int_equal(in(t, REQ("GET", "/memories/42"), 1), HTTP_FEED_OK);
	assert_int_equal(http_conn_pending(&t->c), 1);
	assert_int_equal(out(t, resp("200 OK", "{\"id\":42}"), 2), HTTP_FEED_OK);
	assert_int_equal(http_conn_pending(&t->c), 0);
	in(t, REQ("POST", "/memories?x=secret"), 3);
	out(t, resp("201 Created", "{}"), 4);
	in(t, REQ("DELETE", "/memories/550e8400-e29b-41d4-a716-446655440000"), 5);
	out(t, "HTTP/1.1 204 No Content\r\n\r\n", 6);
	in(t, REQ("GET", "/graph/7/neighbors"), 7);
	out(t, resp("404 Not Found", "no"), 8);
	assert_int_equal(t->l.rs.n[ROUTE_NUMERIC], 2);
	assert_int_equal(t->l.rs.n[ROUTE_UUID], 1);
	assert_int_equal(t->l.rs.n[ROUTE_QUERY], 1);
	for (int k = 0; k < HTTP_AN_MAX; k++)
		assert_int_equal(t->l.st.n[k], 0);
	t_done(t, "START GET /memories/{id} @1\n"
		  "RESP GET /memories/{id} 200 1-2\n"
		  "START POST /memories @3\n"
		  "RESP POST /memories 201 3-4\n"
		  "START DELETE /memories/{id} @5\n"
		  "RESP DELETE /memories/{id} 204 5-6\n"
		  "START GET /graph/{id}/neighbors @7\n"
		  "RESP GET /graph/{id}/neighbors 404 7-8\n");
}

static void test_pipelined(void **state)
{
	struct t *t = t_new(0);

	/* Three requests in one read (RFC 9112 section 9.3.2), answered in order, two in one write. */
	in(t, REQ("GET", "/a") REQ("HEAD", "/b") REQ("GET", "/c"), 1);
	assert_int_equal(http_conn_pending(&t->c), 3);
	char two[2048];
	snprintf(two, sizeof(two), "%s%s", resp("200 OK", "aaaa"),
		 "HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n"); /* HEAD: no body follows */
	out(t, two, 2);
	out(t, resp("500 Internal Server Error", "c"), 3);
	t_done(t, "START GET /a @1\nSTART HEAD /b @1\nSTART GET /c @1\n"
		  "RESP GET /a 200 1-2\nRESP HEAD /b 200 1-2\nRESP GET /c 500 1-3\n");
}

static void test_multiwrite_cl_body(void **state)
{
	struct t *t = t_new(0);

	in(t, REQ("GET", "/big"), 1);
	out(t, "HTTP/1.1 200 OK\r\ncontent-length: 40\r\n\r\n", 2);
	/* Body writes that look like responses: the length says they are body. */
	out(t, "HTTP/1.1 200 OK\r\n\r\n", 3);  /* 19 */
	out(t, "HTTP/1.1 500 Bad\r\n\r\n", 4); /* 20 -> 39 */
	out(t, "x", 5);			       /* 40 */
	in(t, REQ("GET", "/next"), 6);
	out(t, resp("200 OK", ""), 7);
	t_done(t, "START GET /big @1\nRESP GET /big 200 1-2\nSTART GET /next @6\nRESP GET /next 200 6-7\n");
}

static void test_chunked_response(void **state)
{
	struct t *t = t_new(0);

	in(t, REQ("GET", "/stream"), 1);
	out(t, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/event-stream\r\n\r\n", 2);
	out(t, "f\r\nHTTP/1.1 200 OK\r\n", 3); /* 15 bytes of data that look like a status line */
	out(t, "1A;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n", 4);
	out(t, "1", 5); /* chunk-size line split across writes */
	out(t, "0\r\n", 6);
	out(t, "0123456789ABCDEF\r\n", 7);
	out(t, "0\r\nx-trailer: 1\r\n\r\n", 8);
	in(t, REQ("GET", "/after"), 9);
	out(t, resp("200 OK", "ok"), 10);
	t_done(t, "START GET /stream @1\nRESP GET /stream 200 1-2\nSTART GET /after @9\nRESP GET /after 200 9-10\n");
}

static void test_chunked_request(void **state)
{
	struct t *t = t_new(0);

	in(t, "POST /upload HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nGET /\r\n", 1);
	in(t, "10\r\nGET / HTTP/1.1\r\n\r\n0\r\n\r\n", 2);
	in(t, REQ("GET", "/x"), 3);
	out(t, resp("200 OK", ""), 4);
	out(t, resp("200 OK", ""), 5);
	t_done(t, "START POST /upload @1\nSTART GET /x @3\nRESP POST /upload 200 1-4\nRESP GET /x 200 3-5\n");
}

static void test_request_body_cl(void **state)
{
	struct t *t = t_new(0);
	char body[3000];

	/* A body that holds a request line must not be parsed as one. */
	in(t, "POST /memories HTTP/1.1\r\ncontent-length: 19\r\n\r\nGET /x HTTP/1.1\r\n\r\n", 1);
	out(t, resp("201 Created", ""), 2);
	/* A large body, mostly uncaptured (cap 64 of 2000+), over two reads. */
	snprintf(body, sizeof(body), "POST /memories HTTP/1.1\r\nContent-Length: 2000\r\n\r\n");
	size_t h = strlen(body);
	memset(body + h, 'G', 1000);
	body[h + 1000] = '\0';
	feedc(t, FLOW_IN, body, 64, h + 1000, 3);
	feedc(t, FLOW_IN, "GET / HTTP/1.1\r\n\r\n", 18, 1000, 4); /* the rest of the body */
	in(t, REQ("GET", "/next"), 5);
	out(t, resp("201 Created", ""), 6);
	out(t, resp("200 OK", ""), 7);
	t_done(t, "START POST /memories @1\nRESP POST /memories 201 1-2\n"
		  "START POST /memories @3\nSTART GET /next @5\n"
		  "RESP POST /memories 201 3-6\nRESP GET /next 200 5-7\n");
}

static void test_continue_interim(void **state)
{
	struct t *t = t_new(0);

	in(t, "PUT /memories/9 HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n", 1);
	out(t, "HTTP/1.1 100 Continue\r\n\r\n", 2);
	in(t, "data", 3);
	out(t, "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n", 4);
	out(t, resp("200 OK", ""), 5);
	t_done(t, "START PUT /memories/{id} @1\nRESP PUT /memories/{id} 200 1-5\n");
}

static void test_head_204_304(void **state)
{
	struct t *t = t_new(0);

	/* RFC 9112 section 6.3 rule 1: no body, whatever Content-Length says. */
	in(t, REQ("HEAD", "/h"), 1);
	out(t, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", 2);
	in(t, REQ("GET", "/n"), 3);
	out(t, "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", 4);
	in(t, REQ("DELETE", "/d"), 5);
	out(t, "HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", 6);
	in(t, REQ("GET", "/z"), 7);
	out(t, resp("200 OK", "z"), 8);
	assert_int_equal(t->l.st.n[HTTP_AN_RESP_DESYNC], 0);
	t_done(t, "START HEAD /h @1\nRESP HEAD /h 200 1-2\nSTART GET /n @3\nRESP GET /n 304 3-4\n"
		  "START DELETE /d @5\nRESP DELETE /d 204 5-6\nSTART GET /z @7\nRESP GET /z 200 7-8\n");
}

static void test_status_line_split(void **state)
{
	struct t *t = t_new(0);

	in(t, REQ("GET", "/s"), 1);
	out(t, "HTTP/1.1 2", 2);
	out(t, "01 Created\r\nContent-Le", 3);
	out(t, "ngth: 2\r\n\r\nok", 4);
	in(t, REQ("GET", "/t"), 5);
	out(t, "H", 6);
	out(t, "TTP/1.0 503", 7);
	out(t, "\r\n\r\n", 8); /* no reason phrase, no SP: accepted (RFC 9112 section 4) */
	t_done(t, "START GET /s @1\nRESP GET /s 201 1-2\nSTART GET /t @5\nRESP GET /t 503 5-6\n");
}

static void test_methods(void **state)
{
	static const char *const std[] = { "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE",
					   "PATCH" };
	for (size_t i = 0; i < sizeof(std) / sizeof(std[0]); i++) {
		assert_string_equal(http_method_name(http_method_parse(std[i], strlen(std[i]))), std[i]);
	}
	assert_string_equal(http_method_name(http_method_parse("get", 3)), "_OTHER");
	assert_string_equal(http_method_name(http_method_parse("PROPFIND", 8)), "_OTHER");
	assert_string_equal(http_method_name(http_method_parse("GETX", 4)), "_OTHER");
	assert_string_equal(http_method_name(http_method_parse("GE", 2)), "_OTHER");

	struct t *t = t_new(0);
	in(t, REQ("PROPFIND", "/dav"), 1);
	out(t, resp("207 Multi-Status", ""), 2);
	in(t, REQ("get", "/x"), 3);
	out(t, resp("405 Method Not Allowed", ""), 4);
	in(t, "OPTIONS * HTTP/1.1\r\n\r\n", 5);
	out(t, resp("200 OK", ""), 6);
	t_done(t, "START _OTHER /dav @1\nRESP _OTHER /dav 207 1-2\nSTART _OTHER /x @3\nRESP _OTHER /x 405 3-4\n"
		  "START OPTIONS * @5\nRESP OPTIONS * 200 5-6\n");
}

/* ---- WebSocket upgrade ---- */

#define WS_REQ(path)                                                                                         \
	"GET " path " HTTP/1.1\r\nHost: api\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"              \
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
#define WS_101                                                                                               \
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"                 \
	"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"

static void test_upgrade(void **state)
{
	struct t *t = t_new(0);
	char w[512];

	in(t, REQ("GET", "/healthz"), 1);
	out(t, resp("200 OK", "ok"), 2);
	in(t, WS_REQ("/ws/close/4000"), 3);
	/* The 101 and the server's first frame in one write. */
	snprintf(w, sizeof(w), "%s\x81\x02hi", WS_101);
	assert_int_equal(out(t, w, 4), HTTP_FEED_UPGRADED);
	char want[256];
	snprintf(want, sizeof(want),
		 "START GET /healthz @1\nRESP GET /healthz 200 1-2\nSTART GET /ws/close/{id} @3\n"
		 "RESP GET /ws/close/{id} 101 3-4\nUPGRADE GET /ws/close/{id} 3-4 +%zu\n",
		 strlen(WS_101));
	/* After the upgrade nothing is HTTP. */
	assert_int_equal(in(t, "\x81\x85\x01\x02\x03\x04GET /", 5), HTTP_FEED_UPGRADED);
	assert_int_equal(out(t, "HTTP/1.1 200 OK\r\n\r\n", 6), HTTP_FEED_UPGRADED);
	t_done(t, want);
}

/* The hand-over the payload module performs: the bytes after `offset` go to the WebSocket parser. */
static void on_ws(void *ctx, const struct ws_event *ev)
{
	char *s = ctx;
	size_t n = strlen(s);
	if (ev->type == WS_EV_CLOSE)
		snprintf(s + n, 256 - n, "%s %s code %u|", ev->route, ev->dir == FLOW_IN ? "in" : "out", ev->code);
	else
		snprintf(s + n, 256 - n, "%s %s %s %llu|", ev->route, ev->dir == FLOW_IN ? "in" : "out",
			 ws_opcode_name(ev->opcode), (unsigned long long)ev->size);
}

static void test_upgrade_handover(void **state)
{
	struct t *t = t_new(0);
	struct ws_conn w;
	char wslog[256] = "";
	struct ws_sink wsink = { .event = on_ws, .ctx = wslog };
	char buf[512];

	in(t, WS_REQ("/ws/close/4001"), 1);
	snprintf(buf, sizeof(buf), "%s\x81\x02hi\x89", WS_101); /* a frame and a header's first byte */
	size_t n = strlen(buf);
	for (size_t cap = n; cap >= n - 3; cap--) {
		/* Whatever the capture kept of the write, the WebSocket parser gets the rest at the offset. */
		struct t *u = t_new(0);
		in(u, WS_REQ("/ws/close/4001"), 1);
		assert_int_equal(feedc(u, FLOW_OUT, buf, cap, n, 2), HTTP_FEED_UPGRADED);
		free(u);
	}
	assert_int_equal(out(t, buf, 2), HTTP_FEED_UPGRADED);
	size_t off = strlen(WS_101);
	assert_non_null(strstr(t->l.text, "UPGRADE GET /ws/close/{id} 1-2 +"));
	ws_conn_init(&w, "/ws/close/{id}", 2);
	ws_conn_feed(&w, FLOW_OUT, (const uint8_t *)buf + off, n - off, n - off, 2, &wsink);
	ws_conn_feed(&w, FLOW_OUT, (const uint8_t *)"\x00", 1, 1, 3, &wsink); /* the ping's length byte */
	ws_conn_feed(&w, FLOW_IN, (const uint8_t *)"\x88\x82\x00\x00\x00\x00\x0f\xa1", 8, 8, 4, &wsink);
	assert_string_equal(wslog, "/ws/close/{id} out text 2|/ws/close/{id} out ping 0|/ws/close/{id} in close 2|"
				   "/ws/close/{id} in code 4001|");
	t_done(t, NULL);
}

static void test_upgrade_refused(void **state)
{
	struct t *t = t_new(0);

	in(t, WS_REQ("/ws"), 1);
	in(t, "\x81\x80\x00\x00\x00\x00", 2); /* a client that does not wait (RFC 6455 4.1 forbids it) */
	assert_int_equal(t->l.st.n[HTTP_AN_EARLY_DATA], 1);
	out(t, resp("403 Forbidden", "no"), 3);
	in(t, REQ("GET", "/memories"), 4);
	out(t, resp("200 OK", "[]"), 5);
	t_done(t, "START GET /ws @1\nRESP GET /ws 403 1-3\nSTART GET /memories @4\nRESP GET /memories 200 4-5\n");
}

/* A client that sends frames before the 101: they are dropped, and the upgrade says so. */
static void test_upgrade_early_frames(void **state)
{
	struct t *t = t_new(0);

	in(t, WS_REQ("/ws"), 1);
	in(t, "\x81\x85\x01\x02\x03\x04hello", 2);
	char want[128];
	snprintf(want, sizeof(want), "START GET /ws @1\nRESP GET /ws 101 1-3\nUPGRADE GET /ws 1-3 +%zu in_lost\n",
		 strlen(WS_101));
	assert_int_equal(out(t, WS_101, 3), HTTP_FEED_UPGRADED);
	t_done(t, want);
}

static void test_upgrade_truncated(void **state)
{
	/* Both heads cut by a 16-byte capture: the 101 is taken as WebSocket, the stream starts at the next call. */
	struct t *t = t_new(0);
	const char *req = WS_REQ("/ws");
	feedc(t, FLOW_IN, req, 16, strlen(req), 1);
	assert_int_equal(feedc(t, FLOW_OUT, WS_101, 16, strlen(WS_101), 2), HTTP_FEED_UPGRADED);
	char want[128];
	snprintf(want, sizeof(want), "START GET /ws @1\nRESP GET /ws 101 1-2\nUPGRADE GET /ws 1-2 +%zu\n",
		 strlen(WS_101));
	t_done(t, want);

	/* A 101 to another protocol: not HTTP any more. */
	t = t_new(0);
	in(t, "GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n", 1);
	assert_int_equal(out(t, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", 2), HTTP_FEED_NOT_HTTP);
	t_done(t, "START GET / @1\nRESP GET / 101 1-2\nNOTHTTP upgrade_other\n");
}

static void test_upgrade_pipelined_behind(void **state)
{
	struct t *t = t_new(0);

	in(t, REQ("GET", "/a") WS_REQ("/ws"), 1);
	out(t, resp("200 OK", ""), 2);
	out(t, WS_101, 3);
	t_done(t, NULL);
	/* Nothing pending after the upgrade: START/RESP pairs only. */
}

/* ---- not HTTP ---- */

static void test_not_http(void **state)
{
	struct t *t = t_new(0);
	static const uint8_t hello[] = { 0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03 };
	assert_int_equal(http_conn_feed(&t->c, FLOW_IN, hello, sizeof(hello), 517, 1, &t->sink), HTTP_FEED_NOT_HTTP);
	assert_int_equal(in(t, REQ("GET", "/"), 2), HTTP_FEED_NOT_HTTP);
	t_done(t, "NOTHTTP tls\n");

	t = t_new(0);
	assert_int_equal(in(t, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 1), HTTP_FEED_NOT_HTTP);
	t_done(t, "NOTHTTP version\n");

	t = t_new(0);
	/* PostgreSQL startup message: binary from the first byte. */
	static const uint8_t pg[] = { 0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f };
	assert_int_equal(http_conn_feed(&t->c, FLOW_IN, pg, sizeof(pg), sizeof(pg), 1, &t->sink), HTTP_FEED_NOT_HTTP);
	t_done(t, "NOTHTTP garbage\n");

	t = t_new(0);
	assert_int_equal(in(t, "HELLO world\r\n", 1), HTTP_FEED_NOT_HTTP); /* no version */
	t_done(t, "NOTHTTP garbage\n");

	t = t_new(0);
	assert_int_equal(in(t, "GETTHISVERYLONGMETHODNAMEXX / HTTP/1.1\r\n", 1), HTTP_FEED_NOT_HTTP);
	t_done(t, "NOTHTTP garbage\n");

	t = t_new(0);
	assert_int_equal(in(t, "GET /\r\n", 1), HTTP_FEED_NOT_HTTP); /* HTTP/0.9 */
	t_done(t, "NOTHTTP garbage\n");

	t = t_new(0);
	/* The process wrote first: a client connection (e.g. to PostgreSQL), not an HTTP server's. */
	assert_int_equal(out(t, "GET / HTTP/1.1\r\n\r\n", 1), HTTP_FEED_NOT_HTTP);
	t_done(t, "NOTHTTP server_first\n");

	t = t_new(0);
	in(t, "CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n", 1);
	assert_int_equal(out(t, "HTTP/1.1 200 Connection Established\r\n\r\n", 2), HTTP_FEED_NOT_HTTP);
	t_done(t, "START CONNECT /{invalid} @1\nRESP CONNECT /{invalid} 200 1-2\nNOTHTTP tunnel\n");

	/* A long first line judged by what the line buffer kept, in one call or two (found by fuzz_http's
	 * split/merged differential). */
	char longbad[700];
	memset(longbad, 'F', sizeof(longbad));
	memcpy(longbad, "GET /a\0", 7);
	for (int split = 0; split < 2; split++) {
		t = t_new(0);
		int r;
		if (split) {
			feedc(t, FLOW_IN, longbad, 7, 7, 1);
			r = feedc(t, FLOW_IN, longbad + 7, sizeof(longbad) - 7, sizeof(longbad) - 7, 1);
		} else {
			r = feedc(t, FLOW_IN, longbad, sizeof(longbad), sizeof(longbad), 1);
		}
		assert_int_equal(r, HTTP_FEED_NOT_HTTP);
		t_done(t, "NOTHTTP garbage\n");
	}

	/* Another major version, whole or split right after its digit (the reason must not depend on the split). */
	for (int split = 0; split < 2; split++) {
		static const char v0[] = "GET /x HTTP/0 OK\r\n";
		t = t_new(0);
		if (split)
			feedc(t, FLOW_IN, v0, 12, 12, 1);
		assert_int_equal(in(t, split ? v0 + 12 : v0, 1), HTTP_FEED_NOT_HTTP);
		t_done(t, "NOTHTTP version\n");
	}

	/* The prefix is judged before the line ends. */
	t = t_new(0);
	assert_int_equal(in(t, "\x80\x01", 1), HTTP_FEED_NOT_HTTP);
	t_done(t, "NOTHTTP garbage\n");
}

static void test_not_http_aborts_pending(void **state)
{
	struct t *t = t_new(0);

	in(t, REQ("GET", "/a") REQ("GET", "/b"), 1);
	in(t, "GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n", 2);
	out(t, resp("200 OK", ""), 3);
	out(t, resp("200 OK", ""), 4);
	out(t, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", 5);
	t_done(t, "START GET /a @1\nSTART GET /b @1\nSTART GET / @2\nRESP GET /a 200 1-3\nRESP GET /b 200 1-4\n"
		  "RESP GET / 101 2-5\nNOTHTTP upgrade_other\n");
}

/* ---- garbage, desync, resync ---- */

static void test_desync_and_resync(void **state)
{
	struct t *t = t_new(0);

	in(t, REQ("GET", "/a"), 1);
	out(t, resp("200 OK", ""), 2);
	in(t, "\x01\x02garbage\r\n", 3); /* after a good request: desync, not "not HTTP" */
	assert_int_equal(t->l.st.n[HTTP_AN_REQ_DESYNC], 1);
	in(t, "more garbage\r\n", 4);
	in(t, REQ("GET", "/b"), 5); /* a call that begins with a request line: found again */
	assert_int_equal(t->l.st.n[HTTP_AN_RESYNC], 1);
	out(t, "garbage\r\n", 6); /* response desync */
	assert_int_equal(t->l.st.n[HTTP_AN_RESP_DESYNC], 1);
	out(t, "xx HTTP/1.1 200 OK\r\n\r\n", 7);
	out(t, resp("200 OK", ""), 8); /* pending /b: a write that begins with a status line */
	t_done(t, "START GET /a @1\nRESP GET /a 200 1-2\nSTART GET /b @5\nRESP GET /b 200 5-8\n");
}

static void test_unmatched_response(void **state)
{
	struct t *t = t_new(0);

	in(t, REQ("GET", "/a"), 1);
	out(t, resp("200 OK", "a"), 2);
	out(t, "HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n", 3);
	assert_int_equal(t->l.st.n[HTTP_AN_UNMATCHED], 1);
	t_done(t, "START GET /a @1\nRESP GET /a 200 1-2\n");
}

static void test_bad_lengths(void **state)
{
	struct t *t = t_new(0);

	/* Overflowing Content-Length: the server answers 400 and closes (RFC 9112 section 6.3 rule 5). */
	in(t, "POST /a HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\nGET /b HTTP/1.1\r\n\r\n", 1);
	assert_int_equal(t->l.st.n[HTTP_AN_REQ_DESYNC], 1);
	out(t, resp("400 Bad Request", ""), 2);
	t_done(t, "START POST /a @1\nRESP POST /a 400 1-2\n");

	t = t_new(0);
	in(t, "POST /a HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 1);
	assert_int_equal(t->l.st.n[HTTP_AN_REQ_DESYNC], 1);
	t_done(t, "START POST /a @1\nABORT POST /a 1-999\n");

	t = t_new(0);
	in(t, "POST /a HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 1);
	assert_int_equal(t->l.st.n[HTTP_AN_REQ_DESYNC], 1);
	t_done(t, NULL);

	/* Identical values in a list are one value (RFC 9110 section 8.6). */
	t = t_new(0);
	in(t, "POST /a HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabc" REQ("GET", "/b"), 1);
	assert_int_equal(t->l.st.n[HTTP_AN_REQ_DESYNC], 0);
	t_done(t, "START POST /a @1\nSTART GET /b @1\nABORT POST /a 1-999\nABORT GET /b 1-999\n");

	/* A huge but valid response length: every later write is body, even one that looks like a response. */
	t = t_new(0);
	in(t, REQ("GET", "/dl"), 1);
	out(t, "HTTP/1.1 200 OK\r\nContent-Length: 1000000000000000\r\n\r\n", 2);
	in(t, REQ("GET", "/x"), 3);
	out(t, resp("200 OK", ""), 4);
	feedc(t, FLOW_OUT, "HTTP/1.1 200 OK\r\n", 17, (size_t)1 << 40, 5);
	t_done(t, "START GET /dl @1\nRESP GET /dl 200 1-2\nSTART GET /x @3\nABORT GET /x 3-999\n");

	/* Chunk sizes: overflow and garbage lose the framing. */
	t = t_new(0);
	in(t, REQ("GET", "/c"), 1);
	out(t, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 2);
	out(t, "11111111111111111\r\n", 3);
	assert_int_equal(t->l.st.n[HTTP_AN_RESP_DESYNC], 1);
	t_done(t, "START GET /c @1\nRESP GET /c 200 1-2\n");
}

static void test_long_request_line(void **state)
{
	struct t *t = t_new(0);
	char line[3000];

	strcpy(line, "GET /memories");
	for (int i = 0; i < 200; i++)
		strcat(line, "/word");
	strcat(line, "?q=secret HTTP/1.1\r\n\r\n");
	in(t, line, 1);
	out(t, resp("414 URI Too Long", ""), 2);
	t_done(t, NULL);
	/* And the route itself is capped with "/...". */
	t = t_new(0);
	in(t, line, 1);
	assert_int_equal(t->l.st.n[HTTP_AN_REQ_DESYNC], 0);
	assert_non_null(strstr(t->l.text, "START GET /memories/word/word"));
	assert_non_null(strstr(t->l.text, "/... @1\n"));
	assert_null(strstr(t->l.text, "secret"));
	t_done(t, NULL);
}

static void test_pipeline_overflow(void **state)
{
	struct t *t = t_new(0);
	char reqs[4096] = "";
	int n = HTTP_PIPELINE_MAX + 3;

	for (int i = 0; i < n; i++)
		strcat(reqs, REQ("GET", "/p"));
	in(t, reqs, 1);
	assert_int_equal(t->l.starts, HTTP_PIPELINE_MAX);
	assert_int_equal(t->l.st.n[HTTP_AN_PIPELINE_FULL], 3);
	for (int i = 0; i < n; i++)
		out(t, resp("200 OK", ""), 2 + i);
	assert_int_equal(t->l.ends, HTTP_PIPELINE_MAX);
	assert_int_equal(http_conn_pending(&t->c), 0);
	assert_int_equal(t->l.st.n[HTTP_AN_UNMATCHED], 0);
	/* The queue works again afterwards. */
	in(t, REQ("GET", "/after"), 50);
	out(t, resp("200 OK", ""), 51);
	assert_non_null(strstr(t->l.text, "RESP GET /after 200 50-51\n"));
	t_done(t, NULL);
}

static void test_close_aborts(void **state)
{
	struct t *t = t_new(0);

	in(t, REQ("GET", "/slow"), 1);
	in(t, REQ("GET", "/fail"), 1);
	t_done(t, "START GET /slow @1\nSTART GET /fail @1\nABORT GET /slow 1-999\nABORT GET /fail 1-999\n");
	/* Feeding after close does nothing. */
	t = t_new(0);
	http_conn_close(&t->c, 5, &t->sink);
	assert_int_equal(in(t, REQ("GET", "/"), 6), HTTP_FEED_OK);
	assert_string_equal(t->l.text, "");
	free(t);
}

/* ---- truncation ---- */

/* A keep-alive conversation whose heads do not fit the capture: big request headers (cookies), big response
 * headers, bodies of known length. Every request is started and answered, at caps 16, 64 and 256. */
static void test_truncated_conversation(void **state)
{
	static const size_t caps[] = { 16, 64, 256 };
	static const char *const routes[] = { "/memories/1", "/search?q=s3cret", "/graph/77/neighbors", "/ws" };
	char req[1200], res[1200], pad[700];

	memset(pad, 'c', sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = '\0';
	for (size_t ci = 0; ci < 3; ci++) {
		size_t cap = caps[ci];
		struct t *t = t_new(0);
		uint64_t ts = 1;
		for (int r = 0; r < 12; r++) {
			const char *route = routes[r % 3];
			snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: api\r\nCookie: s=%s\r\n\r\n", route, pad);
			snprintf(res, sizeof(res),
				 "HTTP/1.1 %d OK\r\nx-pad: %s\r\ncontent-length: 300\r\n\r\n", 200 + r, pad);
			size_t rl = strlen(req), sl = strlen(res);
			feedc(t, FLOW_IN, req, cap < rl ? cap : rl, rl, ts++);
			/* The head and the start of the body in one write, the rest in a second one. */
			feedc(t, FLOW_OUT, res, cap, sl + 100, ts++);
			feedc(t, FLOW_OUT, "HTTP/1.1 200 OK\r\n\r\n", 19, 200, ts++);
		}
		assert_int_equal(t->l.starts, 12);
		assert_int_equal(t->l.ends, 12);
		assert_null(strstr(t->l.text, "ABORT"));
		assert_null(strstr(t->l.text, "s3cret"));
		for (int r = 0; r < 12; r++) {
			char want[128];
			snprintf(want, sizeof(want), " %d %d-%d\n", 200 + r, 1 + 3 * r, 2 + 3 * r);
			assert_non_null(strstr(t->l.text, want));
		}
		if (cap == 16) {
			/* "GET /memories/1 " holds the whole target; the others are cut. */
			assert_non_null(strstr(t->l.text, "RESP GET /memories/{id} 200 1-2\n"));
			assert_non_null(strstr(t->l.text, "RESP GET /search 201 4-5\n"));
			assert_non_null(strstr(t->l.text, "RESP GET /graph/{id}/... 202 7-8\n"));
		} else {
			assert_non_null(strstr(t->l.text, "RESP GET /memories/{id} 200 1-2\n"));
			assert_non_null(strstr(t->l.text, "RESP GET /search 201 4-5\n"));
			assert_non_null(strstr(t->l.text, "RESP GET /graph/{id}/neighbors 202 7-8\n"));
		}
		assert_int_equal(t->l.st.n[HTTP_AN_REQ_TRUNCATED], 12);
		assert_int_equal(t->l.st.n[HTTP_AN_RESP_TRUNCATED], 12);
		t_done(t, NULL);
	}
}

/* Pipelined requests where the capture hides the third: it is queued unseen, so the third response is not
 * credited to the fourth request. */
static void test_truncated_pipeline_unseen(void **state)
{
	struct t *t = t_new(0);
	const char *two = REQ("GET", "/a") REQ("GET", "/b");
	size_t tl = strlen(two);
	char buf[512];

	snprintf(buf, sizeof(buf), "%s%s", two, REQ("GET", "/hidden"));
	feedc(t, FLOW_IN, buf, tl, strlen(buf), 1);
	assert_int_equal(t->l.st.n[HTTP_AN_REQ_UNSEEN], 1);
	in(t, REQ("GET", "/d"), 2);
	out(t, resp("200 OK", ""), 3);
	out(t, resp("201 OK", ""), 4);
	out(t, resp("202 OK", ""), 5);
	out(t, resp("203 OK", ""), 6);
	t_done(t, "START GET /a @1\nSTART GET /b @1\nSTART GET /d @2\nRESP GET /a 200 1-3\nRESP GET /b 201 1-4\n"
		  "RESP GET /d 203 2-6\n");
}

/* A POST whose body is bigger than the capture, sent with the head in one read: the uncaptured bytes are body. */
static void test_truncated_body_skip(void **state)
{
	for (size_t cap = 16; cap <= 256; cap *= 4) {
		struct t *t = t_new(0);
		char req[600];
		snprintf(req, sizeof(req), "POST /memories HTTP/1.1\r\nContent-Length: 400\r\n\r\n");
		size_t h = strlen(req);
		memset(req + h, 'x', sizeof(req) - h - 1);
		req[sizeof(req) - 1] = '\0';
		feedc(t, FLOW_IN, req, cap, h + 400, 1);
		out(t, resp("201 Created", ""), 2);
		in(t, REQ("GET", "/memories/5"), 3);
		out(t, resp("200 OK", ""), 4);
		assert_non_null(strstr(t->l.text, "RESP GET /memories/{id} 200 3-4\n"));
		t_done(t, NULL);
	}
}

/* The status line itself is cut before the code: the request is aborted, not given a made-up status. */
static void test_truncated_status(void **state)
{
	struct t *t = t_new(0);

	in(t, REQ("GET", "/a"), 1);
	feedc(t, FLOW_OUT, "HTTP/1.1 200 OK\r\n\r\n", 8, 19, 2);
	assert_int_equal(t->l.st.n[HTTP_AN_STATUS_UNKNOWN], 1);
	in(t, REQ("GET", "/b"), 3);
	feedc(t, FLOW_OUT, "HTTP/1.1 404 Not Found\r\n\r\n", 12, 100, 4);
	t_done(t, "START GET /a @1\nABORT GET /a 1-2\nSTART GET /b @3\nRESP GET /b 404 3-4\n");
}

/* Lost response framing: a body write that begins like a status line while nothing is pending is body. */
static void test_lost_response_framing(void **state)
{
	struct t *t = t_new(0);

	in(t, REQ("GET", "/a"), 1);
	feedc(t, FLOW_OUT, "HTTP/1.1 200 OK\r\nx: y\r\n", 20, 5000, 2);
	out(t, "HTTP/1.1 500 oops, I am body\r\n", 3);
	in(t, REQ("GET", "/b"), 4);
	out(t, "HTTP/1.1 2", 5); /* a short write: the rest of the line follows */
	out(t, "02 Accepted\r\ncontent-length: 0\r\n\r\n", 6);
	in(t, REQ("GET", "/c"), 7);
	out(t, resp("200 OK", ""), 8);
	assert_int_equal(t->l.st.n[HTTP_AN_UNMATCHED], 0);
	t_done(t, "START GET /a @1\nRESP GET /a 200 1-2\nSTART GET /b @4\nRESP GET /b 202 4-5\n"
		  "START GET /c @7\nRESP GET /c 200 7-8\n");
}

static void test_midstream(void **state)
{
	struct t *t = t_new(HTTP_CONN_MIDSTREAM);

	/* Capture began inside a response and a request body. */
	out(t, "tail of a body HTTP/1.1 200\r\n", 1);
	in(t, "{\"rest\": \"of a body\"}", 2);
	out(t, "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", 3); /* nothing pending: not a resync */
	in(t, REQ("GET", "/m"), 4);
	out(t, resp("200 OK", ""), 5);
	t_done(t, "START GET /m @4\nRESP GET /m 200 4-5\n");

	t = t_new(HTTP_CONN_MIDSTREAM);
	int r = HTTP_FEED_OK;
	for (int i = 0; i <= HTTP_UNSYNCED_MAX && r == HTTP_FEED_OK; i++)
		r = in(t, "\x81\x85zzzzhello", 1 + i);
	assert_int_equal(r, HTTP_FEED_NOT_HTTP);
	t_done(t, "NOTHTTP unsynced\n");

	t = t_new(HTTP_CONN_MIDSTREAM);
	static const uint8_t appdata[] = { 0x17, 0x03, 0x03, 0x00, 0x20 };
	assert_int_equal(http_conn_feed(&t->c, FLOW_IN, appdata, 5, 37, 1, &t->sink), HTTP_FEED_NOT_HTTP);
	t_done(t, "NOTHTTP tls\n");
}

/* Records dropped on the way (ring buffer full): pending requests are aborted and framing is found again. */
static void test_records_lost(void **state)
{
	struct t *t = t_new(0);

	in(t, REQ("GET", "/a") REQ("GET", "/b"), 1);
	out(t, "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n", 2);
	http_conn_lost(&t->c, 3, &t->sink);
	assert_int_equal(t->l.st.n[HTTP_AN_RECORDS_LOST], 1);
	assert_int_equal(http_conn_pending(&t->c), 0);
	out(t, "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", 4); /* nothing pending: ignored */
	in(t, "y\r\n\r\n", 5);				     /* the end of a lost request */
	in(t, REQ("GET", "/c"), 6);
	out(t, resp("200 OK", ""), 7);
	t_done(t, "START GET /a @1\nSTART GET /b @1\nRESP GET /a 200 1-2\nABORT GET /b 1-3\n"
		  "START GET /c @6\nRESP GET /c 200 6-7\n");

	/* Lost before the first read: the first write is not "server first". */
	t = t_new(0);
	http_conn_lost(&t->c, 1, &t->sink);
	assert_int_equal(out(t, "HTTP/1.1 200 OK\r\n\r\n", 2), HTTP_FEED_OK);
	t_done(t, "");

	/* The first read was not captured at all, and nothing after it ever frames: give up in the end. */
	t = t_new(0);
	int r = feedc(t, FLOW_IN, "", 0, 100, 1);
	for (int i = 0; i <= HTTP_UNSYNCED_MAX && r == HTTP_FEED_OK; i++)
		r = in(t, "\x01\x02\x03", 2 + i);
	assert_int_equal(r, HTTP_FEED_NOT_HTTP);
	t_done(t, "NOTHTTP unsynced\n");
}

static void test_leading_crlf_and_bare_lf(void **state)
{
	struct t *t = t_new(0);

	/* RFC 9112 section 2.2: empty lines before a request line are ignored; a bare LF ends a line. */
	in(t, "\r\n\r\nGET /a HTTP/1.1\nHost: x\n\n", 1);
	out(t, "HTTP/1.1 200 OK\ncontent-length: 1\n\nx", 2);
	t_done(t, "START GET /a @1\nRESP GET /a 200 1-2\n");
}

/* ---- split invariance ---- */

struct call {
	enum flow_dir dir;
	const char *data;
	size_t len; /* 0: strlen */
};

static const struct call script[] = {
	{ FLOW_IN, REQ("GET", "/memories/1") },
	{ FLOW_OUT, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" },
	{ FLOW_IN, "POST /memories HTTP/1.1\r\nContent-Length: 20\r\nExpect: 100-continue\r\n\r\n" },
	{ FLOW_OUT, "HTTP/1.1 100 Continue\r\n\r\n" },
	{ FLOW_IN, "GET / HTTP/1.1\r\n\r\n{}" },
	{ FLOW_OUT, "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nHTTP\r\n0\r\n\r\n" },
	{ FLOW_IN, REQ("GET", "/a") REQ("HEAD", "/b") "\r\n" REQ("DELETE", "/c/0xdeadbeef") },
	{ FLOW_OUT, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nab"
		    "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"
		    "HTTP/1.1 204 No Content\r\n\r\n" },
	{ FLOW_IN, "PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;a=b\r\nabc\r\n0\r\nt: 1\r\n\r\n" },
	{ FLOW_OUT, "HTTP/1.0 500 Internal\r\nContent-Length: 0\r\n\r\n" },
	{ FLOW_IN, WS_REQ("/ws") },
	{ FLOW_OUT, WS_101 },
};

static void run_script(struct t *t, unsigned *seed, int split_call, size_t split_at)
{
	for (size_t i = 0; i < sizeof(script) / sizeof(script[0]); i++) {
		const char *d = script[i].data;
		size_t n = script[i].len ? script[i].len : strlen(d), off = 0;
		uint64_t ts = i + 1;
		while (off < n) {
			size_t piece = n - off;
			if (seed) {
				*seed = *seed * 1103515245 + 12345;
				piece = 1 + (*seed >> 16) % piece;
			} else if ((int)i == split_call && off == 0 && split_at && split_at < n) {
				piece = split_at;
			}
			http_conn_feed(&t->c, script[i].dir, (const uint8_t *)d + off, piece, piece, ts, &t->sink);
			off += piece;
		}
	}
}

static void test_split_invariance(void **state)
{
	struct t *ref = t_new(0);
	ref->l.no_offset = true;
	run_script(ref, NULL, -1, 0);
	assert_int_equal(ref->l.upgrades, 1);
	assert_int_equal(ref->l.starts, 7);
	for (int k = 0; k < HTTP_AN_MAX; k++)
		assert_int_equal(ref->l.st.n[k], 0);

	/* Every call split in two at every byte. */
	for (size_t i = 0; i < sizeof(script) / sizeof(script[0]); i++) {
		size_t n = script[i].len ? script[i].len : strlen(script[i].data);
		for (size_t at = 1; at < n; at++) {
			struct t *t = t_new(0);
			t->l.no_offset = true;
			run_script(t, NULL, (int)i, at);
			if (strcmp(t->l.text, ref->l.text))
				fail_msg("call %zu split at %zu:\n%s\nwant:\n%s", i, at, t->l.text, ref->l.text);
			free(t);
		}
	}
	/* And into random pieces. */
	unsigned seed = 7;
	for (int iter = 0; iter < 300; iter++) {
		struct t *t = t_new(0);
		t->l.no_offset = true;
		run_script(t, &seed, -1, 0);
		assert_string_equal(t->l.text, ref->l.text);
		free(t);
	}
	free(ref);
}

/* ---- adversarial ---- */

static void test_random_garbage(void **state)
{
	static const char *const frags[] = { "GET ", "/a", " HTTP/1.1", "\r\n", "\n", "HTTP/1.1 200 OK", "\r\n\r\n",
					     "Content-Length: 5", "Transfer-Encoding: chunked", "0\r\n", "ffff",
					     "Upgrade: websocket", "HTTP/1.1 101 X", "HTTP/1.1 100 X", "HEAD ",
					     ":", " ", "\x16\x03", "\x00", "x" };
	unsigned seed = 99;

	for (int iter = 0; iter < 3000; iter++) {
		struct t *t = t_new(iter % 5 == 0 ? HTTP_CONN_MIDSTREAM : 0);
		int r = HTTP_FEED_OK;
		for (int call = 0; call < 30 && r == HTTP_FEED_OK; call++) {
			char buf[512];
			size_t n = 0;
			seed = seed * 1103515245 + 12345;
			int parts = 1 + (seed >> 16) % 12;
			for (int k = 0; k < parts; k++) {
				seed = seed * 1103515245 + 12345;
				const char *f = frags[(seed >> 16) % (sizeof(frags) / sizeof(frags[0]))];
				size_t fl = strlen(f) ? strlen(f) : 1;
				if (n + fl > sizeof(buf))
					break;
				memcpy(buf + n, f, fl);
				n += fl;
			}
			seed = seed * 1103515245 + 12345;
			size_t cap = (seed >> 16) % 4 ? n : (seed >> 8) % (n + 1);
			size_t len = cap + ((seed >> 20) % 3 ? n - cap : (seed >> 4) % 10000);
			enum flow_dir d = (seed >> 24) & 1 ? FLOW_OUT : FLOW_IN;
			if (call == 0)
				d = FLOW_IN;
			r = http_conn_feed(&t->c, d, (const uint8_t *)buf, cap, len, call, &t->sink);
			check_balance(t);
		}
		t_done(t, NULL);
	}
}

static void test_names(void **state)
{
	for (int k = 0; k < HTTP_AN_MAX; k++)
		assert_non_null(http_anomaly_name(k));
	for (int k = 0; k < HTTP_NOT_MAX; k++)
		assert_non_null(http_not_http_name(k));
	assert_null(http_anomaly_name(HTTP_AN_MAX));
	assert_string_equal(http_method_name(HTTP_OTHER), "_OTHER");
	assert_string_equal(http_method_name((enum http_method)77), "_OTHER");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keepalive),
		cmocka_unit_test(test_pipelined),
		cmocka_unit_test(test_multiwrite_cl_body),
		cmocka_unit_test(test_chunked_response),
		cmocka_unit_test(test_chunked_request),
		cmocka_unit_test(test_request_body_cl),
		cmocka_unit_test(test_continue_interim),
		cmocka_unit_test(test_head_204_304),
		cmocka_unit_test(test_status_line_split),
		cmocka_unit_test(test_methods),
		cmocka_unit_test(test_upgrade),
		cmocka_unit_test(test_upgrade_handover),
		cmocka_unit_test(test_upgrade_refused),
		cmocka_unit_test(test_upgrade_early_frames),
		cmocka_unit_test(test_upgrade_truncated),
		cmocka_unit_test(test_upgrade_pipelined_behind),
		cmocka_unit_test(test_not_http),
		cmocka_unit_test(test_not_http_aborts_pending),
		cmocka_unit_test(test_desync_and_resync),
		cmocka_unit_test(test_unmatched_response),
		cmocka_unit_test(test_bad_lengths),
		cmocka_unit_test(test_long_request_line),
		cmocka_unit_test(test_pipeline_overflow),
		cmocka_unit_test(test_close_aborts),
		cmocka_unit_test(test_truncated_conversation),
		cmocka_unit_test(test_truncated_pipeline_unseen),
		cmocka_unit_test(test_truncated_body_skip),
		cmocka_unit_test(test_truncated_status),
		cmocka_unit_test(test_lost_response_framing),
		cmocka_unit_test(test_midstream),
		cmocka_unit_test(test_records_lost),
		cmocka_unit_test(test_leading_crlf_and_bare_lf),
		cmocka_unit_test(test_split_invariance),
		cmocka_unit_test(test_random_garbage),
		cmocka_unit_test(test_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
