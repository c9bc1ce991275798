// SPDX-License-Identifier: BSD-2-Clause
/* libFuzzer target for src/parsers/websocket.c. The input is a sequence of syscall views (see fuzz_http.c for the
 * record format, without the leading flags byte). Invariants: events carry the session's route and valid
 * opcodes, close events come with their direction, nothing is reported after END, and END comes once.
 * Differential: the same bytes fully captured, fed as given and with consecutive same-direction calls merged,
 * give the same events unless sync was lost (only resynchronising depends on call boundaries). */
#include "fuzz.h"
#include "parsers/websocket.h"

struct state {
	int ends;
	uint64_t ts;
	uint64_t fed[2]; /* bytes fed per direction */
	long msgs[2], closes[2];
};

static void on_ws(void *ctx, const struct ws_event *ev)
{
	struct state *s = ctx;

	CHECK(!strcmp(ev->route, "/ws/{id}"));
	CHECK(s->ends == 0);
	switch (ev->type) {
	case WS_EV_MESSAGE:
		CHECK(ev->dir == FLOW_IN || ev->dir == FLOW_OUT);
		CHECK(ws_opcode_name(ev->opcode) && ev->opcode != WS_OP_CONT);
		if (ev->opcode & 0x8)
			CHECK(ev->size <= 125 && !ev->compressed); /* RFC 6455 section 5.5 */
		CHECK(ev->ts_ns == s->ts);
		s->msgs[ev->dir]++;
		break;
	case WS_EV_CLOSE:
		CHECK(ev->opcode == WS_OP_CLOSE);
		s->closes[ev->dir]++;
		CHECK(s->closes[ev->dir] <= s->msgs[ev->dir]); /* each close follows its close message */
		break;
	case WS_EV_END:
		s->ends++;
		break;
	default:
		CHECK(!"event type");
	}
}

/* ---- differential: split vs merged ---- */

static void on_diff(void *ctx, const struct ws_event *ev)
{
	dlog_printf(ctx, "%d %d %u %d %llu %u %llu %llu %d|", ev->type, ev->dir, ev->opcode, ev->compressed,
		    (unsigned long long)ev->size, ev->code, (unsigned long long)ev->ts_ns,
		    (unsigned long long)ev->duration_ns, ev->clean);
}

struct diff {
	struct ws_conn c[2];
	struct ws_sink k[2];
};

static void diff_feed(void *ctx, int merged, enum flow_dir dir, const uint8_t *p, size_t n, uint64_t ts)
{
	struct diff *d = ctx;
	ws_conn_feed(&d->c[merged], dir, p, n, n, ts, &d->k[merged]);
}

static void differential(const struct call *pc, size_t np)
{
	static struct diff d;
	static struct dlog l[2];
	struct ws_stats st[2] = { 0 };
	for (int k = 0; k < 2; k++) {
		l[k].len = 0;
		l[k].done = 0;
		d.k[k] = (struct ws_sink){ .event = on_diff, .ctx = &l[k], .stats = &st[k] };
		ws_conn_init(&d.c[k], "/ws/{id}", 0);
	}
	uint64_t ts = replay_split_merged(pc, np, diff_feed, &d);
	for (int k = 0; k < 2; k++)
		ws_conn_close(&d.c[k], ts + 1, &d.k[k]);
	if (st[0].desync || st[1].desync || l[0].done || l[1].done)
		return;
	for (int k = 0; k < WS_ERR_MAX; k++)
		CHECK(st[0].errors[k] == st[1].errors[k]);
	dlog_compare(&l[0], &l[1]);
}

/* ---- seeds (fuzz.h): a few frame sequences ---- */

/* A string literal's bytes, NULs included. */
#define REC(o, dir, lit, extra) out_rec(o, dir, lit, sizeof(lit) - 1, extra)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = getenv("LOUPE_FUZZ_SEEDS");
	struct out o;

	if (!dir)
		return 0;
	/* Text, ping/pong, fragments with a control frame between, close with a code, both directions. */
	o.n = 0;
	REC(&o, 0, "\x81\x85\x01\x02\x03\x04iguoo", 0);
	REC(&o, 1, "\x81\x05hello", 0);
	REC(&o, 0, "\x01\x83\x01\x02\x03\x04" "abc\x89\x80\x01\x02\x03\x04\x80\x81\x01\x02\x03\x04z", 0);
	REC(&o, 1, "\x8a\x00", 0);
	REC(&o, 0, "\x88\x82\x01\x02\x03\x04\x0e\xea", 0);
	REC(&o, 1, "\x88\x02\x03\xe8", 0);
	seed_write(dir, 0, &o);
	/* 16- and 64-bit lengths, payloads beyond the capture, a header split across calls. */
	o.n = 0;
	REC(&o, 1, "\x82\x7e\x01\x00", 256);
	REC(&o, 1, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 8000);
	REC(&o, 0, "\x81\xfe\x00", 0);
	REC(&o, 0, "\x80\x01\x02\x03\x04", 128);
	REC(&o, 0, "\x81\x81\x01\x02\x03\x04x\x81\x81\x01\x02\x03\x04y", 3000);
	REC(&o, 0, "\x81\x81\x01\x02\x03\x04x", 0);
	seed_write(dir, 1, &o);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ws_conn w;
	struct state s = { 0 };
	struct ws_stats st = { 0 };
	struct ws_sink sink = { .event = on_ws, .ctx = &s, .stats = &st };
	static struct call calls[4096];
	struct call c;
	size_t i = 0, np = 0;

	ws_conn_init(&w, "/ws/{id}", 0);
	while (next_call(data, size, &i, &c)) {
		if (np < sizeof(calls) / sizeof(calls[0]))
			calls[np++] = c;
		s.ts++;
		uint8_t *buf = heap_copy(c.p, c.n);
		int r = ws_conn_feed(&w, c.dir, buf, c.n, c.len, s.ts, &sink);
		CHECK(r == 0 || r == 1);
		free(buf);
	}
	ws_conn_close(&w, s.ts + 1, &sink);
	ws_conn_close(&w, s.ts + 2, &sink);
	CHECK(s.ends == 1);
	CHECK(st.resync <= st.desync);
	differential(calls, np);
	return 0;
}
