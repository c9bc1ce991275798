/* SPDX-License-Identifier: BSD-2-Clause */
/* Shared by the libFuzzer targets: the invariant check, the record format of syscall views, the event log of
 * the split/merged differential, and seed writing. Header-only: each target is built alone (fuzz.mk). */
#ifndef LOUPE_FUZZ_H
#define LOUPE_FUZZ_H
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "parsers/flow.h"

/* One syscall view decoded from the input: [flags][n][extra] then n bytes.
 *   flags bit 0: direction (1 = FLOW_OUT); bit 1: the uncaptured tail is huge (extra << 20);
 *   bit 2: n += 256; bits 3-7: low bits of the uncaptured tail, the extra byte its high bits. */
struct call {
	enum flow_dir dir;
	const uint8_t *p; /* n bytes inside the input */
	size_t n, len;	  /* captured, transferred (n + uncaptured tail) */
};

static inline bool next_call(const uint8_t *data, size_t size, size_t *i, struct call *c)
{
	if (*i + 3 > size)
		return false;
	uint8_t fl = data[*i], n8 = data[*i + 1], ex = data[*i + 2];
	size_t n = n8 + (fl & 4 ? 256 : 0);
	*i += 3;
	if (n > size - *i)
		n = size - *i;
	uint64_t extra = (uint64_t)ex << 5 | fl >> 3;
	if (fl & 2)
		extra <<= 20;
	c->dir = fl & 1 ? FLOW_OUT : FLOW_IN;
	c->p = data + *i;
	c->n = n;
	c->len = n + (size_t)extra;
	*i += n;
	return true;
}

/* A copy of exactly n bytes on the heap, so ASan catches a parser reading past the capture. */
static inline uint8_t *heap_copy(const uint8_t *p, size_t n)
{
	uint8_t *b = malloc(n ? n : 1);
	memcpy(b, p, n);
	return b;
}

/* Events of one run, as text, for the differential. */
struct dlog {
	char text[1 << 16];
	size_t len;
	int done; /* full: compare what fits */
};

__attribute__((format(printf, 2, 3))) static inline void dlog_printf(struct dlog *l, const char *fmt, ...)
{
	if (l->done)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(l->text + l->len, sizeof(l->text) - l->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(l->text) - l->len)
		l->done = 1;
	else
		l->len += (size_t)n;
}

static inline void dlog_compare(const struct dlog *a, const struct dlog *b)
{
	if (a->len != b->len || memcmp(a->text, b->text, a->len)) {
		fprintf(stderr, "split:  %.*s\nmerged: %.*s\n", (int)a->len, a->text, (int)b->len, b->text);
		CHECK(!"split and merged calls disagree");
	}
}

/* Differential replay of fully captured calls: feed(0, ...) gets them as given, feed(1, ...) one merged call
 * per run of same-direction calls (with that run's timestamp). Returns the last timestamp. */
typedef void (*feed_fn)(void *ctx, int merged, enum flow_dir dir, const uint8_t *p, size_t n, uint64_t ts);

static inline uint64_t replay_split_merged(const struct call *pc, size_t np, feed_fn feed, void *ctx)
{
	static uint8_t merged[1 << 17];
	uint64_t ts = 0;
	for (size_t i = 0; i < np;) {
		size_t j = i, m = 0;
		ts++;
		for (; j < np && pc[j].dir == pc[i].dir; j++) {
			uint8_t *copy = heap_copy(pc[j].p, pc[j].n);
			feed(ctx, 0, pc[j].dir, copy, pc[j].n, ts);
			free(copy);
			if (m + pc[j].n <= sizeof(merged)) {
				memcpy(merged + m, pc[j].p, pc[j].n);
				m += pc[j].n;
			}
		}
		uint8_t *copy = heap_copy(merged, m);
		feed(ctx, 1, pc[i].dir, copy, m, ts);
		free(copy);
		i = j;
	}
	return ts;
}

/* ---- seeds: LLVMFuzzerInitialize writes a few realistic inputs to $LOUPE_FUZZ_SEEDS, so a fresh corpus
 * starts from the protocol rather than from nothing ---- */
struct out {
	uint8_t b[4096];
	size_t n;
};

/* One record: n captured bytes of p, `extra` more transferred. */
static inline void out_rec(struct out *o, int out_dir, const void *p, size_t n, size_t extra)
{
	o->b[o->n++] = (uint8_t)((out_dir ? 1 : 0) | (n > 255 ? 4 : 0) | (extra & 31) << 3);
	o->b[o->n++] = (uint8_t)n;
	o->b[o->n++] = (uint8_t)(extra >> 5);
	memcpy(o->b + o->n, p, n);
	o->n += n;
}

static inline void seed_write(const char *dir, int k, const struct out *o)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/seed-%02d", dir, k);
	FILE *f = fopen(path, "wb");
	if (!f)
		return;
	fwrite(o->b, 1, o->n, f);
	fclose(f);
}

#endif
