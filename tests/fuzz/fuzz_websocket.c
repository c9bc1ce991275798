/* libFuzzer target for src/websocket.c. The input is a sequence of syscall views (see fuzz_http.c for the
 * record format, without the leading flags byte). Invariants: events carry the session's route and valid
 * opcodes, close events come with their direction, nothing is reported after END, and END comes once.
 * Differential: the same bytes fully captured, fed as given and with consecutive same-direction calls merged,
 * give the same events unless sync was lost (only resynchronising depends on call boundaries). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "websocket.h"

#define CHECK(c)                                                                                             \
	do {                                                                                                 \
		if (!(c)) {                                                                                  \
			fprintf(stderr, "invariant failed: %s (%s:%d)\n", #c, __FILE__, __LINE__);          \
			abort();                                                                             \
		}                                                                                            \
	} while (0)

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

struct dlog {
	char text[1 << 16];
	size_t len;
	int done;
};

static void on_diff(void *ctx, const struct ws_event *ev)
{
	struct dlog *l = ctx;
	int n;

	if (l->done)
		return;
	n = snprintf(l->text + l->len, sizeof(l->text) - l->len, "%d %d %u %d %llu %u %llu %llu %d|", ev->type,
		     ev->dir, ev->opcode, ev->compressed, (unsigned long long)ev->size, ev->code,
		     (unsigned long long)ev->ts_ns, (unsigned long long)ev->duration_ns, ev->clean);
	if (n < 0 || (size_t)n >= sizeof(l->text) - l->len)
		l->done = 1;
	else
		l->len += (size_t)n;
}

struct piece {
	enum flow_dir dir;
	const uint8_t *p;
	size_t n;
};

static void differential(const struct piece *pc, size_t np)
{
	static struct ws_conn a, b;
	static struct dlog la, lb;
	static uint8_t merged[1 << 17];
	struct ws_stats sa = { 0 }, sb = { 0 };
	struct ws_sink ka = { .event = on_diff, .ctx = &la, .stats = &sa };
	struct ws_sink kb = { .event = on_diff, .ctx = &lb, .stats = &sb };
	uint64_t ts = 0;

	la.len = lb.len = 0;
	la.done = lb.done = 0;
	ws_conn_init(&a, "/ws/{id}", 0);
	ws_conn_init(&b, "/ws/{id}", 0);
	for (size_t i = 0; i < np;) {
		size_t j = i, m = 0;
		ts++;
		for (; j < np && pc[j].dir == pc[i].dir; j++) {
			uint8_t *copy = malloc(pc[j].n ? pc[j].n : 1);
			memcpy(copy, pc[j].p, pc[j].n);
			ws_conn_feed(&a, pc[j].dir, copy, pc[j].n, pc[j].n, ts, &ka);
			free(copy);
			if (m + pc[j].n <= sizeof(merged)) {
				memcpy(merged + m, pc[j].p, pc[j].n);
				m += pc[j].n;
			}
		}
		uint8_t *copy = malloc(m ? m : 1);
		memcpy(copy, merged, m);
		ws_conn_feed(&b, pc[i].dir, copy, m, m, ts, &kb);
		free(copy);
		i = j;
	}
	ws_conn_close(&a, ts + 1, &ka);
	ws_conn_close(&b, ts + 1, &kb);
	if (sa.desync || sb.desync || la.done || lb.done)
		return;
	for (int k = 0; k < WS_ERR_MAX; k++)
		CHECK(sa.errors[k] == sb.errors[k]);
	if (la.len != lb.len || memcmp(la.text, lb.text, la.len)) {
		fprintf(stderr, "split:  %.*s\nmerged: %.*s\n", (int)la.len, la.text, (int)lb.len, lb.text);
		CHECK(!"split and merged calls disagree");
	}
}

/* ---- seeds (see fuzz_http.c): LOUPE_FUZZ_SEEDS=DIR writes a few frame sequences there ---- */

struct out {
	uint8_t b[4096];
	size_t n;
};

static void rec(struct out *o, int out_dir, const void *p, size_t n, size_t extra)
{
	o->b[o->n++] = (uint8_t)((out_dir ? 1 : 0) | (n > 255 ? 4 : 0) | (extra & 31) << 3);
	o->b[o->n++] = (uint8_t)n;
	o->b[o->n++] = (uint8_t)(extra >> 5);
	memcpy(o->b + o->n, p, n);
	o->n += n;
}

/* A string literal's bytes, NULs included. */
#define REC(o, dir, lit, extra) rec(o, dir, lit, sizeof(lit) - 1, extra)

static void seed_write(const char *dir, int k, const struct out *o)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/seed-%02d", dir, k);
	f = fopen(path, "wb");
	if (!f)
		return;
	fwrite(o->b, 1, o->n, f);
	fclose(f);
}

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
	static struct piece pieces[4096];
	size_t i = 0, np = 0;

	ws_conn_init(&w, "/ws/{id}", 0);
	while (i + 3 <= size) {
		uint8_t fl = data[i], n8 = data[i + 1], ex = data[i + 2];
		size_t n = n8 + (fl & 4 ? 256 : 0);
		i += 3;
		if (n > size - i)
			n = size - i;
		uint64_t extra = (uint64_t)ex << 5 | fl >> 3;
		if (fl & 2)
			extra <<= 20;
		uint8_t *buf = malloc(n ? n : 1);
		memcpy(buf, data + i, n);
		i += n;
		enum flow_dir dir = fl & 1 ? FLOW_OUT : FLOW_IN;
		if (np < sizeof(pieces) / sizeof(pieces[0]))
			pieces[np++] = (struct piece){ dir, data + i - n, n };
		s.ts++;
		int r = ws_conn_feed(&w, dir, buf, n, n + (size_t)extra, s.ts, &sink);
		CHECK(r == 0 || r == 1);
		free(buf);
	}
	ws_conn_close(&w, s.ts + 1, &sink);
	ws_conn_close(&w, s.ts + 2, &sink);
	CHECK(s.ends == 1);
	CHECK(st.resync <= st.desync);
	differential(pieces, np);
	return 0;
}
