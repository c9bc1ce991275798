// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for src/parsers/websocket.c: RFC 6455 frames from truncated syscall views. Events are compared as text:
 * "MSG in text 5 @1" (direction, opcode, size, ts; " z" when compressed), "CLOSE out 1000 @2",
 * "END 9 clean" / "END 9 unclean" (duration). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "parsers/websocket.h"

struct log {
	char text[16384];
	size_t len;
	struct ws_stats st;
	int msgs, ends;
	bool no_ts;
};

static void on_event(void *ctx, const struct ws_event *ev)
{
	struct log *l = ctx;
	const char *dir = ev->dir == FLOW_IN ? "in" : "out";
	char ts[32] = "";
	int n = 0;

	assert_string_equal(ev->route, "/ws/{id}");
	if (!l->no_ts)
		snprintf(ts, sizeof(ts), " @%llu", (unsigned long long)ev->ts_ns);
	switch (ev->type) {
	case WS_EV_MESSAGE:
		l->msgs++;
		n = snprintf(l->text + l->len, sizeof(l->text) - l->len, "MSG %s %s %llu%s%s\n", dir,
			     ws_opcode_name(ev->opcode), (unsigned long long)ev->size, ev->compressed ? " z" : "", ts);
		break;
	case WS_EV_CLOSE:
		n = snprintf(l->text + l->len, sizeof(l->text) - l->len, "CLOSE %s %u%s\n", dir, ev->code, ts);
		break;
	case WS_EV_END:
		l->ends++;
		n = snprintf(l->text + l->len, sizeof(l->text) - l->len, "END %llu %s\n",
			     (unsigned long long)ev->duration_ns, ev->clean ? "clean" : "unclean");
		break;
	}
	assert_true(n > 0 && (size_t)n < sizeof(l->text) - l->len);
	l->len += (size_t)n;
}

struct t {
	struct ws_conn w;
	struct log l;
	struct ws_sink sink;
};

static struct t *t_new(void)
{
	struct t *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	ws_conn_init(&t->w, "/ws/{id}", 100);
	t->sink = (struct ws_sink){ .event = on_event, .ctx = &t->l, .stats = &t->l.st };
	return t;
}

static void t_done(struct t *t, const char *want)
{
	if (want)
		assert_string_equal(t->l.text, want);
	free(t);
}

static uint64_t errors(const struct t *t)
{
	uint64_t n = 0;
	for (int k = 0; k < WS_ERR_MAX; k++)
		n += t->l.st.errors[k];
	return n;
}

/* ---- frame builder ---- */

struct fb {
	uint8_t b[200000];
	size_t n;
};

#define F_FIN 0x80
#define F_RSV1 0x40
#define F_RSV2 0x20
#define LEN_AUTO 0
#define LEN_16 1
#define LEN_64 2

static const uint8_t key[4] = { 0x37, 0xfa, 0x21, 0x3d };

/* Append a frame: bits (FIN, RSV), opcode, masked or not, payload (NULL: 'p' bytes), length encoding. */
static void frame(struct fb *f, uint8_t bits, uint8_t op, bool masked, const void *payload, uint64_t plen, int form)
{
	uint8_t *h = f->b + f->n;
	size_t i = 2;

	h[0] = bits | op;
	h[1] = masked ? 0x80 : 0;
	if (form == LEN_AUTO && plen < 126) {
		h[1] |= (uint8_t)plen;
	} else if (form == LEN_16 || (form == LEN_AUTO && plen <= 0xffff)) {
		h[1] |= 126;
		h[2] = (uint8_t)(plen >> 8);
		h[3] = (uint8_t)plen;
		i = 4;
	} else {
		h[1] |= 127;
		for (int k = 0; k < 8; k++)
			h[2 + k] = (uint8_t)(plen >> (56 - 8 * k));
		i = 10;
	}
	if (masked) {
		memcpy(h + i, key, 4);
		i += 4;
	}
	f->n += i;
	if (plen > sizeof(f->b) - f->n)
		return; /* header only: the payload is "uncaptured" */
	for (uint64_t k = 0; k < plen; k++) {
		uint8_t c = payload ? ((const uint8_t *)payload)[k] : 'p';
		f->b[f->n + k] = masked ? c ^ key[k & 3] : c;
	}
	f->n += plen;
}

static void close_frame(struct fb *f, bool masked, unsigned code, const char *reason)
{
	uint8_t p[128];
	size_t n = 0;

	p[n++] = (uint8_t)(code >> 8);
	p[n++] = (uint8_t)code;
	n += (size_t)snprintf((char *)p + n, sizeof(p) - n, "%s", reason);
	frame(f, F_FIN, WS_OP_CLOSE, masked, p, n, LEN_AUTO);
}

static int feed(struct t *t, enum flow_dir d, const struct fb *f, uint64_t ts)
{
	return ws_conn_feed(&t->w, d, f->b, f->n, f->n, ts, &t->sink);
}

static int feedc(struct t *t, enum flow_dir d, const void *p, size_t cap, size_t len, uint64_t ts)
{
	return ws_conn_feed(&t->w, d, p, cap, len, ts, &t->sink);
}

/* ---- tests ---- */

static void test_simple_messages(void **state)
{
	struct t *t = t_new();
	struct fb *f = calloc(1, sizeof(*f));

	frame(f, F_FIN, WS_OP_TEXT, true, "hello", 5, LEN_AUTO);
	assert_int_equal(feed(t, FLOW_IN, f, 1), 0);
	f->n = 0;
	frame(f, F_FIN, WS_OP_TEXT, false, "echo: hello", 11, LEN_AUTO);
	feed(t, FLOW_OUT, f, 2);
	f->n = 0;
	frame(f, F_FIN, WS_OP_BINARY, true, NULL, 0, LEN_AUTO);
	frame(f, F_FIN, WS_OP_PING, true, "p", 1, LEN_AUTO);
	feed(t, FLOW_IN, f, 3);
	f->n = 0;
	frame(f, F_FIN, WS_OP_PONG, false, "p", 1, LEN_AUTO);
	frame(f, F_FIN | F_RSV1, WS_OP_TEXT, false, "zz", 2, LEN_AUTO); /* permessage-deflate */
	feed(t, FLOW_OUT, f, 4);
	assert_int_equal(errors(t), 0);
	ws_conn_close(&t->w, 150, &t->sink);
	ws_conn_close(&t->w, 160, &t->sink); /* once */
	assert_int_equal(feed(t, FLOW_IN, f, 5), 0); /* after END: nothing */
	t_done(t, "MSG in text 5 @1\nMSG out text 11 @2\nMSG in binary 0 @3\nMSG in ping 1 @3\n"
		  "MSG out pong 1 @4\nMSG out text 2 z @4\nEND 50 unclean\n");
	free(f);
}

static void test_lengths(void **state)
{
	struct t *t = t_new();
	struct fb *f = calloc(1, sizeof(*f));

	/* Section 5.2: 7-bit up to 125, 16-bit up to 65535, 64-bit beyond. */
	frame(f, F_FIN, WS_OP_BINARY, false, NULL, 125, LEN_AUTO);
	frame(f, F_FIN, WS_OP_BINARY, false, NULL, 126, LEN_AUTO);
	frame(f, F_FIN, WS_OP_BINARY, false, NULL, 65535, LEN_AUTO);
	frame(f, F_FIN, WS_OP_BINARY, false, NULL, 65536, LEN_AUTO);
	feed(t, FLOW_OUT, f, 1);
	assert_int_equal(errors(t), 0);
	/* Masked client frames with 16- and 64-bit lengths. */
	f->n = 0;
	frame(f, F_FIN, WS_OP_TEXT, true, NULL, 300, LEN_AUTO);
	frame(f, F_FIN, WS_OP_TEXT, true, NULL, 70000, LEN_AUTO);
	feed(t, FLOW_IN, f, 2);
	assert_int_equal(errors(t), 0);
	t_done(t, "MSG out binary 125 @1\nMSG out binary 126 @1\nMSG out binary 65535 @1\nMSG out binary 65536 @1\n"
		  "MSG in text 300 @2\nMSG in text 70000 @2\n");
	free(f);
}

static void test_fragments_interleaved_control(void **state)
{
	struct t *t = t_new();
	struct fb *f = calloc(1, sizeof(*f));

	/* Section 5.4: a message in fragments, control frames between them. */
	frame(f, F_RSV1, WS_OP_TEXT, true, "abc", 3, LEN_AUTO);
	frame(f, F_FIN, WS_OP_PING, true, "", 0, LEN_AUTO);
	frame(f, 0, WS_OP_CONT, true, NULL, 200, LEN_AUTO);
	feed(t, FLOW_IN, f, 1);
	f->n = 0;
	frame(f, F_FIN, WS_OP_PONG, false, "", 0, LEN_AUTO); /* the other direction does not interfere */
	feed(t, FLOW_OUT, f, 2);
	f->n = 0;
	frame(f, F_FIN, WS_OP_CONT, true, "z", 1, LEN_AUTO);
	feed(t, FLOW_IN, f, 3);
	assert_int_equal(errors(t), 0);
	t_done(t, "MSG in ping 0 @1\nMSG out pong 0 @2\nMSG in text 204 z @3\n");
	free(f);
}

static void test_close_codes(void **state)
{
	struct t *t = t_new();
	struct fb *f = calloc(1, sizeof(*f));

	close_frame(f, true, 4000, "bye"); /* masked: the code is unmasked with the key (section 5.3) */
	feed(t, FLOW_IN, f, 1);
	f->n = 0;
	close_frame(f, false, 1000, "");
	feed(t, FLOW_OUT, f, 2);
	assert_int_equal(errors(t), 0);
	ws_conn_close(&t->w, 130, &t->sink);
	t_done(t, "MSG in close 5 @1\nCLOSE in 4000 @1\nMSG out close 2 @2\nCLOSE out 1000 @2\nEND 30 clean\n");

	t = t_new();
	f->n = 0;
	frame(f, F_FIN, WS_OP_CLOSE, false, NULL, 0, LEN_AUTO); /* no code: 1005 */
	feed(t, FLOW_OUT, f, 1);
	f->n = 0;
	frame(f, F_FIN, WS_OP_CLOSE, true, "\x03", 1, LEN_AUTO); /* 1 byte: an error, and no code */
	feed(t, FLOW_IN, f, 2);
	assert_int_equal(t->l.st.errors[WS_ERR_CLOSE_PAYLOAD], 1);
	f->n = 0;
	close_frame(f, false, 1005, ""); /* a code no endpoint may send */
	feed(t, FLOW_OUT, f, 3);
	assert_int_equal(t->l.st.errors[WS_ERR_CLOSE_CODE], 1);
	/* After its close frame a side sends no data frames (section 5.5.1). */
	f->n = 0;
	frame(f, F_FIN, WS_OP_TEXT, false, "late", 4, LEN_AUTO);
	feed(t, FLOW_OUT, f, 4);
	assert_int_equal(t->l.st.errors[WS_ERR_AFTER_CLOSE], 1);
	t_done(t, "MSG out close 0 @1\nCLOSE out 1005 @1\nMSG in close 1 @2\nCLOSE in 1005 @2\n"
		  "MSG out close 2 @3\nCLOSE out 1005 @3\n");

	/* The code split across calls, and the code hidden by the capture. */
	t = t_new();
	f->n = 0;
	close_frame(f, true, 1001, "going away");
	feedc(t, FLOW_IN, f->b, 7, 7, 1);
	feedc(t, FLOW_IN, f->b + 7, f->n - 7, f->n - 7, 2);
	f->n = 0;
	close_frame(f, false, 1011, "error");
	feedc(t, FLOW_OUT, f->b, 3, f->n, 3);
	t_done(t, "MSG in close 12 @1\nCLOSE in 1001 @2\nMSG out close 7 @3\nCLOSE out 0 @3\n");
	free(f);
}

static void test_protocol_errors(void **state)
{
	struct t *t = t_new();
	struct fb *f = calloc(1, sizeof(*f));

	frame(f, F_FIN, 0x3, true, "xyz", 3, LEN_AUTO);		  /* reserved opcode: skipped by length */
	frame(f, F_FIN | F_RSV2, WS_OP_TEXT, true, "r", 1, LEN_AUTO); /* RSV2 */
	frame(f, F_FIN, WS_OP_PING, true, NULL, 126, LEN_AUTO);	  /* control > 125 */
	frame(f, 0, WS_OP_PONG, true, "", 0, LEN_AUTO);		  /* control fragmented */
	frame(f, F_FIN, WS_OP_CONT, true, "c", 1, LEN_AUTO);	  /* continuation of nothing */
	frame(f, F_FIN, WS_OP_TEXT, false, "u", 1, LEN_AUTO);	  /* client frame not masked */
	frame(f, F_FIN, WS_OP_TEXT, true, "s", 1, LEN_16);	  /* 16-bit length for 1 byte */
	frame(f, 0, WS_OP_TEXT, true, "a", 1, LEN_AUTO);
	frame(f, F_FIN, WS_OP_BINARY, true, "b", 1, LEN_64);	  /* interleaved, and non-minimal */
	frame(f, F_FIN | F_RSV1, WS_OP_PING, true, "", 0, LEN_AUTO); /* RSV1 on a control frame */
	frame(f, F_FIN, 0xb, true, "", 0, LEN_AUTO);		  /* reserved control opcode */
	frame(f, F_FIN, WS_OP_TEXT, true, "ok", 2, LEN_AUTO);	  /* still in sync */
	feed(t, FLOW_IN, f, 1);
	assert_int_equal(t->l.st.errors[WS_ERR_RESERVED_OPCODE], 2);
	assert_int_equal(t->l.st.errors[WS_ERR_RSV], 2);
	assert_int_equal(t->l.st.errors[WS_ERR_CONTROL_TOO_LONG], 1);
	assert_int_equal(t->l.st.errors[WS_ERR_CONTROL_FRAGMENTED], 1);
	assert_int_equal(t->l.st.errors[WS_ERR_UNEXPECTED_CONT], 1);
	assert_int_equal(t->l.st.errors[WS_ERR_MASK], 1);
	assert_int_equal(t->l.st.errors[WS_ERR_NON_MINIMAL], 2);
	assert_int_equal(t->l.st.errors[WS_ERR_INTERLEAVED], 1);
	assert_int_equal(t->l.st.desync, 0);
	/* Server frames must not be masked. */
	f->n = 0;
	frame(f, F_FIN, WS_OP_TEXT, true, "m", 1, LEN_AUTO);
	feed(t, FLOW_OUT, f, 2);
	assert_int_equal(t->l.st.errors[WS_ERR_MASK], 2);
	t_done(t, "MSG in text 1 @1\nMSG in text 1 @1\nMSG in binary 1 @1\nMSG in text 2 @1\nMSG out text 1 @2\n");
	free(f);
}

static void test_length_top_bit(void **state)
{
	struct t *t = t_new();
	uint8_t h[10] = { 0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 5 };

	/* Section 5.2: the most significant bit of a 64-bit length MUST be 0. No length to trust: sync lost. */
	assert_int_equal(feedc(t, FLOW_OUT, h, sizeof(h), sizeof(h) + 5, 1), 1);
	assert_int_equal(t->l.st.errors[WS_ERR_LENGTH], 1);
	assert_int_equal(t->l.st.desync, 1);
	uint8_t ok[] = { 0x81, 0x01, 'x' };
	assert_int_equal(feedc(t, FLOW_OUT, ok, sizeof(ok), sizeof(ok), 2), 0); /* a whole frame: resync */
	assert_int_equal(t->l.st.resync, 1);
	t_done(t, "MSG out text 1 @2\n");

	/* The largest legal length: skipped without overflow. */
	t = t_new();
	uint8_t big[10] = { 0x82, 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	assert_int_equal(feedc(t, FLOW_OUT, big, sizeof(big), (size_t)1 << 40, 1), 0);
	assert_int_equal(feedc(t, FLOW_OUT, ok, sizeof(ok), (size_t)1 << 40, 2), 0); /* payload */
	t_done(t, "MSG out binary 9223372036854775807 @1\n");
}

static void test_truncated_payloads(void **state)
{
	static const size_t caps[] = { 16, 64, 256 };
	struct fb *f = calloc(1, sizeof(*f));

	/* One frame per call, payloads bigger than the capture: the uncaptured tail is payload. */
	for (int ci = 0; ci < 3; ci++) {
		struct t *t = t_new();
		char want[1024] = "";
		for (int i = 0; i < 6; i++) {
			size_t plen = 100 + 2000 * (size_t)i;
			f->n = 0;
			frame(f, F_FIN, i % 2 ? WS_OP_BINARY : WS_OP_TEXT, true, NULL, plen, LEN_AUTO);
			assert_int_equal(feedc(t, FLOW_IN, f->b, caps[ci], f->n, (uint64_t)i), 0);
			char line[64];
			snprintf(line, sizeof(line), "MSG in %s %zu @%d\n", i % 2 ? "binary" : "text", plen, i);
			strcat(want, line);
		}
		/* A frame split over three calls, each captured only in part. */
		f->n = 0;
		frame(f, F_FIN, WS_OP_BINARY, false, NULL, 5000, LEN_AUTO);
		feedc(t, FLOW_OUT, f->b, caps[ci], 1000, 10);
		feedc(t, FLOW_OUT, f->b + 1000, caps[ci], 3000, 11);
		feedc(t, FLOW_OUT, f->b + 4000, caps[ci], f->n - 4000, 12);
		strcat(want, "MSG out binary 5000 @10\n");
		f->n = 0;
		frame(f, F_FIN, WS_OP_TEXT, false, "t", 1, LEN_AUTO);
		feed(t, FLOW_OUT, f, 13);
		strcat(want, "MSG out text 1 @13\n");
		assert_int_equal(t->l.st.desync, 0);
		t_done(t, want);
	}
	free(f);
}

static void test_desync_resync(void **state)
{
	struct t *t = t_new();
	struct fb *f = calloc(1, sizeof(*f));

	/* Ten client frames in one read; the capture keeps 64 bytes, so a header lies in uncaptured bytes. */
	for (int i = 0; i < 10; i++)
		frame(f, F_FIN, WS_OP_TEXT, true, NULL, 20, LEN_AUTO);
	assert_int_equal(feedc(t, FLOW_IN, f->b, 64, f->n, 1), 1);
	assert_int_equal(t->l.st.desync, 1);
	/* The other direction is unaffected. */
	f->n = 0;
	frame(f, F_FIN, WS_OP_TEXT, false, "o", 1, LEN_AUTO);
	feed(t, FLOW_OUT, f, 2);
	/* A read that starts inside a payload does not resync, even if it parses for a while. */
	uint8_t mid[40];
	memset(mid, 0x81, sizeof(mid)); /* 0x81 0x81: masked text, 1 byte... chained, never ending exactly */
	assert_int_equal(feedc(t, FLOW_IN, mid, sizeof(mid), 1000, 3), 1);
	/* The capture hid a header: no resync either. */
	f->n = 0;
	frame(f, F_FIN, WS_OP_TEXT, true, NULL, 100, LEN_AUTO);
	frame(f, F_FIN, WS_OP_TEXT, true, NULL, 1, LEN_AUTO);
	assert_int_equal(feedc(t, FLOW_IN, f->b, 50, f->n, 4), 1);
	assert_int_equal(t->l.st.resync, 0);
	/* A read of whole frames: sync found; the continuation of a message that began out of sight is dropped. */
	f->n = 0;
	frame(f, F_FIN, WS_OP_CONT, true, NULL, 3, LEN_AUTO);
	frame(f, F_FIN, WS_OP_TEXT, true, NULL, 4, LEN_AUTO);
	assert_int_equal(feed(t, FLOW_IN, f, 5), 0);
	assert_int_equal(t->l.st.resync, 1);
	assert_int_equal(t->l.st.errors[WS_ERR_UNEXPECTED_CONT], 0);
	/* 26-byte frames: the third header ends at byte 58, inside the capture; the fourth does not. */
	t_done(t, "MSG in text 20 @1\nMSG in text 20 @1\nMSG in text 20 @1\nMSG out text 1 @2\nMSG in text 4 @5\n");
	free(f);
}

static void test_records_lost(void **state)
{
	struct t *t = t_new();
	struct fb *f = calloc(1, sizeof(*f));

	frame(f, F_FIN, WS_OP_TEXT, false, "a", 1, LEN_AUTO);
	ws_conn_lost(&t->w, FLOW_OUT, &t->sink);
	ws_conn_lost(&t->w, FLOW_OUT, &t->sink); /* counted once while out of sync */
	assert_int_equal(t->l.st.desync, 1);
	frame(f, F_FIN, WS_OP_TEXT, false, "b", 1, LEN_AUTO);
	assert_int_equal(feedc(t, FLOW_OUT, f->b + 1, f->n - 1, f->n - 1, 1), 1); /* starts inside a frame */
	assert_int_equal(feed(t, FLOW_OUT, f, 2), 0);
	t_done(t, "MSG out text 1 @2\nMSG out text 1 @2\n");
	free(f);
}

static void test_desync_drops_fragmented(void **state)
{
	struct t *t = t_new();
	struct fb *f = calloc(1, sizeof(*f));

	frame(f, 0, WS_OP_TEXT, false, NULL, 10, LEN_AUTO);
	frame(f, 0, WS_OP_CONT, false, NULL, 10, LEN_AUTO);
	feedc(t, FLOW_OUT, f->b, 14, f->n + 5, 1); /* the second header is captured, then 5 hidden bytes... */
	assert_int_equal(t->l.st.desync, 1);	   /* ...past its payload: the next header is hidden */
	f->n = 0;
	frame(f, F_FIN, WS_OP_CONT, false, NULL, 10, LEN_AUTO);
	feed(t, FLOW_OUT, f, 2);
	assert_int_equal(t->l.st.resync, 1);
	t_done(t, ""); /* the message's start was lost: nothing reported, no error */
	free(f);
}

/* Split a valid stream at every byte and into random pieces: the same events. */
static void test_split_invariance(void **state)
{
	struct fb *f = calloc(1, sizeof(*f));
	struct fb *g = calloc(1, sizeof(*g));

	frame(f, F_FIN, WS_OP_TEXT, true, "hello", 5, LEN_AUTO);
	frame(f, 0, WS_OP_BINARY, true, NULL, 300, LEN_AUTO);
	frame(f, F_FIN, WS_OP_PING, true, "x", 1, LEN_AUTO);
	frame(f, F_FIN, WS_OP_CONT, true, NULL, 70000, LEN_64);
	close_frame(f, true, 1000, "done");
	frame(g, F_FIN | F_RSV1, WS_OP_TEXT, false, NULL, 126, LEN_16);
	frame(g, F_FIN, WS_OP_PONG, false, "x", 1, LEN_AUTO);
	close_frame(g, false, 4001, "");

	struct t *ref = t_new();
	ref->l.no_ts = true;
	feed(ref, FLOW_IN, f, 1);
	feed(ref, FLOW_OUT, g, 1);
	ws_conn_close(&ref->w, 200, &ref->sink);
	assert_string_equal(ref->l.text, "MSG in text 5\nMSG in ping 1\nMSG in binary 70300\nMSG in close 6\n"
					 "CLOSE in 1000\nMSG out text 126 z\nMSG out pong 1\nMSG out close 2\n"
					 "CLOSE out 4001\nEND 100 clean\n");
	/* Every split point of the header-dense region (headers of 2..14 bytes), both streams. */
	for (size_t at = 1; at < f->n; at += at < 400 ? 1 : 997) {
		struct t *t = t_new();
		t->l.no_ts = true;
		feedc(t, FLOW_IN, f->b, at, at, 1);
		feedc(t, FLOW_IN, f->b + at, f->n - at, f->n - at, 2);
		feed(t, FLOW_OUT, g, 1);
		ws_conn_close(&t->w, 200, &t->sink);
		if (strcmp(t->l.text, ref->l.text))
			fail_msg("split at %zu:\n%s", at, t->l.text);
		free(t);
	}
	for (size_t at = 1; at < g->n; at++) {
		struct t *t = t_new();
		t->l.no_ts = true;
		feed(t, FLOW_IN, f, 1);
		feedc(t, FLOW_OUT, g->b, at, at, 1);
		feedc(t, FLOW_OUT, g->b + at, g->n - at, g->n - at, 2);
		ws_conn_close(&t->w, 200, &t->sink);
		assert_string_equal(t->l.text, ref->l.text);
		free(t);
	}
	unsigned seed = 3;
	for (int iter = 0; iter < 300; iter++) {
		struct t *t = t_new();
		t->l.no_ts = true;
		size_t off = 0;
		while (off < f->n) {
			seed = seed * 1103515245 + 12345;
			size_t piece = 1 + (seed >> 16) % (iter % 2 ? 20 : 5000);
			if (piece > f->n - off)
				piece = f->n - off;
			feedc(t, FLOW_IN, f->b + off, piece, piece, 1);
			off += piece;
		}
		feed(t, FLOW_OUT, g, 1);
		ws_conn_close(&t->w, 200, &t->sink);
		assert_string_equal(t->l.text, ref->l.text);
		free(t);
	}
	free(ref);
	free(f);
	free(g);
}

static void test_garbage(void **state)
{
	unsigned seed = 42;
	uint8_t buf[300];

	for (int iter = 0; iter < 3000; iter++) {
		struct t *t = t_new();
		for (int call = 0; call < 20; call++) {
			seed = seed * 1103515245 + 12345;
			size_t n = (seed >> 16) % sizeof(buf);
			for (size_t i = 0; i < n; i++) {
				seed = seed * 1103515245 + 12345;
				buf[i] = (uint8_t)(seed >> 16);
				if ((seed >> 8) % 4 == 0) /* plausible headers now and then */
					buf[i] = (uint8_t[]){ 0x81, 0x82, 0x88, 0x89, 0x8a, 0x00, 0x7e, 0x7f, 0x01 }[(seed >> 4) % 9];
			}
			seed = seed * 1103515245 + 12345;
			size_t cap = (seed >> 16) % 3 ? n : (seed >> 8) % (n + 1);
			size_t len = cap + ((seed >> 20) % 2 ? n - cap : (seed >> 2) % 100000);
			int r = feedc(t, (seed >> 24) & 1 ? FLOW_OUT : FLOW_IN, buf, cap, len, (uint64_t)call);
			assert_true(r == 0 || r == 1);
		}
		ws_conn_close(&t->w, 1000, &t->sink);
		assert_int_equal(t->l.ends, 1);
		t_done(t, NULL);
	}
}

static void test_init_and_names(void **state)
{
	struct ws_conn *w = calloc(1, sizeof(*w));
	char longroute[400];

	memset(longroute, 'a', sizeof(longroute) - 1);
	longroute[sizeof(longroute) - 1] = '\0';
	ws_conn_init(w, longroute, 0);
	assert_int_equal(strlen(w->route), ROUTE_MAX_LEN);
	ws_conn_init(w, NULL, 0);
	assert_string_equal(w->route, WS_ROUTE_UNKNOWN);
	/* A NULL sink and NULL data are fine. */
	assert_int_equal(ws_conn_feed(w, FLOW_IN, NULL, 10, 10, 1, NULL), 1);
	ws_conn_close(w, 2, NULL);
	free(w);
	assert_string_equal(ws_opcode_name(WS_OP_TEXT), "text");
	assert_string_equal(ws_opcode_name(WS_OP_PONG), "pong");
	assert_null(ws_opcode_name(3));
	for (int k = 0; k < WS_ERR_MAX; k++)
		assert_non_null(ws_error_name(k));
	assert_null(ws_error_name(WS_ERR_MAX));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple_messages),
		cmocka_unit_test(test_lengths),
		cmocka_unit_test(test_fragments_interleaved_control),
		cmocka_unit_test(test_close_codes),
		cmocka_unit_test(test_protocol_errors),
		cmocka_unit_test(test_length_top_bit),
		cmocka_unit_test(test_truncated_payloads),
		cmocka_unit_test(test_desync_resync),
		cmocka_unit_test(test_records_lost),
		cmocka_unit_test(test_desync_drops_fragmented),
		cmocka_unit_test(test_split_invariance),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_init_and_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
