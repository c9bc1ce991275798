// SPDX-License-Identifier: BSD-2-Clause
/* libFuzzer target for src/parsers/sql.c. The input is statement text; its first byte, when below 0x20, picks the mode
 * (bit 0: truncated capture) and a small output buffer for the scanner, so writes past it are caught by ASan.
 * Every input goes through the scanner (sql_normalize_fallback) and, bounded to 1 KiB like the capture, through
 * sql_fingerprint() (libpg_query for complete text). Invariants of every normalised text: NUL-terminated,
 * printable ASCII, bounded; no quote ' (a constant shows as "$n" or a collapsed list, never as text); a digit
 * only inside "$n", a name or a quoted name; no byte of a string constant of the input in a constant's place,
 * checked with the constants the input's own dollar-quoted strings carry: a dollar-quoted body never reaches
 * the output. The operation is one of a fixed set of upper-case words. The scanner is deterministic and the
 * truncated form ends in "...". The cache (sql_cache__lookup) answers as sql_fingerprint() does: on a miss, on a hit
 * of its text memo, and for the text with its digits changed, whose shape may be the same (new constants). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "parsers/sql.h"

static void check_text(const char *out, size_t len, size_t limit)
{
	bool quoted = false;

	CHECK(len == strlen(out));
	CHECK(len <= limit);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = out[i];
		CHECK(c >= 0x20 && c <= 0x7e);
		CHECK(c != '\'');
		if (c == '"')
			quoted = !quoted;
		if (c >= '0' && c <= '9' && !quoted) {
			size_t j = i;
			while (j > 0 && out[j - 1] >= '0' && out[j - 1] <= '9')
				j--;
			CHECK(j > 0);
			unsigned char p = out[j - 1];
			CHECK(p == '$' || p == '_' || (p >= 'a' && p <= 'z') || (p >= 'A' && p <= 'Z'));
		}
	}
}

/* The operation is a keyword: upper-case letters only. */
static void check_operation(const char *op)
{
	CHECK(*op);
	CHECK(strlen(op) <= SQL_OP_MAX);
	for (const char *c = op; *c; c++)
		CHECK(*c >= 'A' && *c <= 'Z');
}

/* A marker inside a dollar-quoted constant of the input ($x$...MARK...$x$) must never come out. The marker is
 * any 6-byte run of letters from the body: bodies are constants whatever they contain. */
static void check_no_body(const char *in, size_t n, const char *out)
{
	const char *p = memmem(in, n, "$x$", 3);
	if (!p)
		return;
	const char *body = p + 3, *end = memmem(body, n - (size_t)(body - in), "$x$", 3);
	if (!end)
		return;
	/* Only meaningful when the opening $x$ is not inside an earlier constant or comment: require it at the
	 * very start of the text, after "SELECT ". */
	if (p != in + 7 || memcmp(in, "SELECT ", 7))
		return;
	char *low = malloc(n);
	for (size_t k = 0; k < n; k++)
		low[k] = in[k] >= 'A' && in[k] <= 'Z' ? in[k] + 32 : in[k];
	for (const char *m = body; m + 6 <= end; m++) {
		bool letters = true;
		for (int k = 0; k < 6; k++)
			letters &= (m[k] >= 'a' && m[k] <= 'z');
		if (!letters)
			continue;
		char mark[7];
		memcpy(mark, m, 6);
		mark[6] = '\0';
		/* A marker that the input also has outside the body, in any case, may come from there. */
		if (memmem(low, (size_t)(body - in), mark, 6) ||
		    memmem(low + (end - in), n - (size_t)(end - in), mark, 6))
			continue;
		if (strcasestr(out, mark)) {
			free(low);
			fprintf(stderr, "marker \"%s\" of a dollar-quoted body in \"%s\"\n", mark, out);
			CHECK(!"a constant's text reached the output");
		}
	}
	free(low);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char *const seeds[] = {
		"SELECT id, content FROM memories WHERE content ILIKE '%canary%' ORDER BY id LIMIT 20",
		"INSERT INTO memories (content, tags) VALUES ('it''s', ARRAY['a','b']), (E'x\\'y', '{}') RETURNING id",
		"SELECT $x$secret body$x$, $$more$$, 1.5e10, -7, 0x1F, B'101', U&'d\\0061t' UESCAPE '!'",
		"WITH x AS (SELECT 1) UPDATE t SET a = $1 WHERE b IN (1, 2, 3) /* c /* nested */ */ -- d",
		"\x01SELECT * FROM t WHERE a = 'cut here",
		"COPY t FROM '/etc/passwd'; NOTIFY ch, 'payload'; SELECT \"Quo\"\"ted\" :: int[]",
		"SELECT pg_sleep(0.2)",
	};
	const char *dir = getenv("LOUPE_FUZZ_SEEDS");
	struct out o;

	if (!dir)
		return 0;
	for (size_t k = 0; k < sizeof(seeds) / sizeof(seeds[0]); k++) {
		o.n = strlen(seeds[k]);
		memcpy(o.b, seeds[k], o.n);
		seed_write(dir, (int)k, &o);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bool truncated = false;
	size_t outn = SQL_NORM_MAX + 1;

	if (size && data[0] < 0x20) {
		truncated = data[0] & 1;
		outn = data[0] >> 1 ? (size_t)(data[0] >> 1) * 7 : SQL_NORM_MAX + 1;
		data++;
		size--;
	}
	char *text = (char *)heap_copy(data, size);

	/* The scanner alone, into a buffer of exactly outn bytes. */
	char *out = malloc(outn);
	uint64_t id, id2;
	unsigned lits, lits2;
	size_t len = sql_normalize_fallback(text, size, truncated, out, outn, &id, &lits);
	size_t limit = outn - 1 < SQL_NORM_MAX ? outn - 1 : SQL_NORM_MAX;
	check_text(out, len, limit);
	if (truncated && limit >= 4)
		CHECK(len >= 3 && !memcmp(out + len - 3, "...", 3));
	check_no_body(text, size, out);
	char *again = malloc(outn);
	CHECK(sql_normalize_fallback(text, size, truncated, again, outn, &id2, &lits2) == len);
	CHECK(!memcmp(out, again, len + 1) && id == id2 && lits == lits2);
	free(again);
	free(out);
	check_operation(sql_operation(text, size));

	/* The whole path, as the capture would feed it (at most 1 KiB). */
	static struct sql_fp fp;
	struct sql_stats st = { 0 };
	size_t n = size < 1024 ? size : 1024;
	CHECK(sql_fingerprint(text, n, truncated || n < size, &fp, &st) == 0);
	check_text(fp.normalized, strlen(fp.normalized), SQL_NORM_MAX);
	check_no_body(text, n, fp.normalized);
	check_operation(fp.operation);
	CHECK(strlen(fp.hex) == 16);
	CHECK(st.parsed + st.fallback == 1);
	CHECK(fp.fallback == (st.fallback == 1));

	/* Through the cache: its answer is the text's own, on a miss, on the text memo's hit, and for the text with its
	 * digits changed (new constants, same shape: a hit of the shape's entry; or another shape: a miss). */
	struct sql_cache *c = sql_cache__new(8);
	static struct sql_fp cfp, vfp;
	bool trunc = truncated || n < size;
	memset(&st, 0, sizeof(st));
	CHECK(c && sql_cache__lookup(c, text, n, trunc, &cfp, &st) == 0);
	CHECK(cfp.id == fp.id && !strcmp(cfp.normalized, fp.normalized) && !strcmp(cfp.operation, fp.operation));
	CHECK(sql_cache__lookup(c, text, n, trunc, &cfp, &st) == 0 && st.cache_text_hits == 1);
	CHECK(cfp.id == fp.id && !strcmp(cfp.normalized, fp.normalized) && !strcmp(cfp.operation, fp.operation));
	for (size_t i = 0; i < n; i++)
		if (text[i] >= '0' && text[i] <= '9')
			text[i] = (char)('0' + (text[i] - '0' + 7) % 10);
	CHECK(sql_cache__lookup(c, text, n, trunc, &cfp, &st) == 0);
	CHECK(sql_fingerprint(text, n, trunc, &vfp, NULL) == 0);
	CHECK(cfp.id == vfp.id && !strcmp(cfp.normalized, vfp.normalized) && !strcmp(cfp.operation, vfp.operation));
	sql_cache__free(c);
	free(text);
	return 0;
}
