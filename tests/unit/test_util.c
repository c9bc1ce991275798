// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for src/lib/util.c: the growable buffer, JSON string escaping, small-file reads and gzip. */
#include <ctype.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <cmocka.h>

#include "lib/util.h"

/* ---- buf ---- */

static void test_buf_append_grows(void **state)
{
	struct buf b = {0};
	char want[10000];

	for (size_t i = 0; i < sizeof(want); i++) {
		char c = (char)('a' + i % 26);
		want[i] = c;
		buf__append(&b, &c, 1);
	}
	assert_false(b.oom);
	assert_int_equal(b.len, sizeof(want));
	assert_true(b.cap >= b.len + 1);
	assert_memory_equal(b.p, want, sizeof(want));
	assert_int_equal(b.p[b.len], '\0');

	/* Binary data with NULs: len counts them, strlen does not. */
	buf__reset(&b);
	buf__append(&b, "a\0b", 3);
	assert_int_equal(b.len, 3);
	assert_memory_equal(b.p, "a\0b", 4);
	buf__free(&b);
	assert_null(b.p);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, 0);
	buf__free(NULL);
}

static void test_buf_reset_keeps_storage(void **state)
{
	struct buf b = {0};

	buf__reset(&b); /* on an empty buffer: no crash, nothing allocated */
	assert_null(b.p);
	buf__puts(&b, "hello");
	size_t cap = b.cap;
	char *p = b.p;
	buf__reset(&b);
	assert_int_equal(b.len, 0);
	assert_string_equal(b.p, "");
	assert_int_equal(b.cap, cap);
	assert_ptr_equal(b.p, p);
	buf__puts(&b, "world");
	assert_string_equal(b.p, "world");
	buf__free(&b);
}

static void test_buf_printf(void **state)
{
	struct buf b = {0};

	buf__printf(&b, "%d-%s-%.2f", 42, "x", 1.5);
	assert_string_equal(b.p, "42-x-1.50");
	assert_int_equal(b.len, strlen("42-x-1.50"));
	buf__printf(&b, "|%05u", 7u);
	assert_string_equal(b.p, "42-x-1.50|00007");

	/* One formatted piece bigger than the initial allocation. */
	char big[3000];
	memset(big, 'z', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	buf__printf(&b, "<%s>", big);
	assert_false(b.oom);
	assert_int_equal(b.len, strlen("42-x-1.50|00007") + 2 + strlen(big));
	assert_int_equal(b.p[strlen("42-x-1.50|00007")], '<');
	assert_int_equal(b.p[b.len - 1], '>');
	assert_int_equal(b.p[b.len], '\0');

	/* An empty expansion still leaves a valid string. */
	struct buf e = {0};
	buf__printf(&e, "%s", "");
	assert_non_null(e.p);
	assert_string_equal(e.p, "");
	assert_int_equal(e.len, 0);
	buf__free(&e);
	buf__free(&b);
}

static void test_buf_json_str(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{"plain text", "plain text"},
		{"", ""},
		{"say \"hi\"", "say \\\"hi\\\""},
		{"C:\\dir\\", "C:\\\\dir\\\\"},
		{"a\nb\rc\td", "a\\nb\\rc\\td"},
		{"\x01\x1f", "\\u0001\\u001f"},
		{"esc\x1b[0m", "esc\\u001b[0m"},
		{"del\x7f", "del\\u007f"},
		{"caf\xc3\xa9", "caf\xc3\xa9"}, /* UTF-8 passes through */
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct buf b = {0};
		buf__puts(&b, "[");
		buf__json_str(&b, cases[i].in);
		buf__puts(&b, "]");
		char want[64];
		snprintf(want, sizeof(want), "[%s]", cases[i].out);
		/* JSON allows either case in \u escapes. */
		assert_int_equal(strlen(b.p), strlen(want));
		for (size_t k = 0; want[k]; k++)
			if (tolower((unsigned char)b.p[k]) != tolower((unsigned char)want[k]))
				fail_msg("case %zu: got '%s', want '%s'", i, b.p, want);
		buf__free(&b);
	}
}

/* ---- files ---- */

static char *tmp_file(const void *data, size_t n)
{
	char *path = strdup("/tmp/loupe-test-util-XXXXXX");
	assert_non_null(path);
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, n), (ssize_t)n);
	close(fd);
	return path;
}

static void drop_file(char *path)
{
	unlink(path);
	free(path);
}

static void test_read_file(void **state)
{
	char *text = NULL;

	char *path = tmp_file("line one\nline two\n", 18);
	assert_int_equal(read_file(path, &text), 18);
	assert_string_equal(text, "line one\nline two\n");
	free(text);
	drop_file(path);

	/* Bigger than the 4 KiB read chunk, with embedded NULs. */
	static char big[10001];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)(i % 251);
	path = tmp_file(big, sizeof(big));
	text = NULL;
	assert_int_equal(read_file(path, &text), (long)sizeof(big));
	assert_memory_equal(text, big, sizeof(big));
	assert_int_equal(text[sizeof(big)], '\0');
	free(text);
	drop_file(path);

	path = tmp_file("", 0);
	text = NULL;
	assert_int_equal(read_file(path, &text), 0);
	assert_non_null(text);
	assert_string_equal(text, "");
	free(text);
	drop_file(path);

	text = NULL;
	assert_int_equal(read_file("/nonexistent/loupe-test", &text), -ENOENT);
	assert_null(text);
}

static void test_read_line(void **state)
{
	char line[16];

	char *path = tmp_file("first\nsecond\n", 13);
	assert_int_equal(read_line(path, line, sizeof(line)), 0);
	assert_string_equal(line, "first");
	drop_file(path);

	path = tmp_file("no newline", 10);
	assert_int_equal(read_line(path, line, sizeof(line)), 0);
	assert_string_equal(line, "no newline");
	drop_file(path);

	/* A line longer than the buffer is cut, never overflowed. */
	path = tmp_file("0123456789abcdefghij\n", 21);
	memset(line, 'x', sizeof(line));
	assert_int_equal(read_line(path, line, 8), 0);
	assert_string_equal(line, "0123456");
	assert_int_equal(line[8], 'x');
	drop_file(path);

	path = tmp_file("\nsecond\n", 8);
	assert_int_equal(read_line(path, line, sizeof(line)), 0);
	assert_string_equal(line, "");
	drop_file(path);

	/* An empty file has no first line. */
	path = tmp_file("", 0);
	assert_true(read_line(path, line, sizeof(line)) < 0);
	drop_file(path);

	assert_int_equal(read_line("/nonexistent/loupe-test", line, sizeof(line)), -ENOENT);
}

static void test_now_ns(void **state)
{
	uint64_t a = now_ns(CLOCK_MONOTONIC);
	uint64_t b = now_ns(CLOCK_MONOTONIC);
	assert_true(b >= a);

	uint64_t wall = now_ns(CLOCK_REALTIME);
	time_t t = time(NULL);
	/* 10^9 written out, not NSEC_PER_SEC: the ground truth must not come from the header under test. */
	assert_true(wall / 1000000000ull + 1 >= (uint64_t)t - 1);
	assert_true(wall / 1000000000ull <= (uint64_t)t + 1);
}

/* ---- gzip ---- */

/* Inflate a gzip stream (gzip wrapper only: 16 + window bits) into out; Z_STREAM_END expected. */
static int gunzip(const char *src, size_t n, unsigned char **out, size_t *outlen)
{
	z_stream zs = {0};
	size_t cap = 4096, len = 0;
	unsigned char *p = malloc(cap);
	int rc;

	if (!p || inflateInit2(&zs, 16 + 15) != Z_OK) {
		free(p);
		return Z_MEM_ERROR;
	}
	zs.next_in = (Bytef *)src;
	zs.avail_in = (uInt)n;
	do {
		if (len == cap) {
			cap *= 2;
			unsigned char *q = realloc(p, cap);
			if (!q) {
				rc = Z_MEM_ERROR;
				break;
			}
			p = q;
		}
		zs.next_out = p + len;
		zs.avail_out = (uInt)(cap - len);
		rc = inflate(&zs, Z_NO_FLUSH);
		len = cap - zs.avail_out;
	} while (rc == Z_OK);
	/* The whole input must be one gzip member, nothing after it. */
	if (rc == Z_STREAM_END && zs.avail_in != 0)
		rc = Z_DATA_ERROR;
	inflateEnd(&zs);
	*out = p;
	*outlen = len;
	return rc;
}

static void check_gzip_roundtrip(const char *src, size_t n, struct buf *out)
{
	unsigned char *plain = NULL;
	size_t plain_len = 0;

	assert_int_equal(gzip_buf(src, n, out), 0);
	assert_false(out->oom);
	/* RFC 1952 member header: ID1 ID2 CM=deflate */
	assert_true(out->len >= 18);
	assert_int_equal((unsigned char)out->p[0], 0x1f);
	assert_int_equal((unsigned char)out->p[1], 0x8b);
	assert_int_equal((unsigned char)out->p[2], 8);
	assert_int_equal(gunzip(out->p, out->len, &plain, &plain_len), Z_STREAM_END);
	assert_int_equal(plain_len, n);
	if (n)
		assert_memory_equal(plain, src, n);
	free(plain);
}

static void test_gzip_roundtrip(void **state)
{
	struct buf out = {0};

	check_gzip_roundtrip("", 0, &out);

	const char *small = "# HELP x A metric.\n# TYPE x counter\nx_total 1\n";
	check_gzip_roundtrip(small, strlen(small), &out);

	/* 1 MiB: half repetitive exposition text, half pseudo-random bytes that do not compress. */
	size_t n = 1 << 20;
	char *big = malloc(n);
	assert_non_null(big);
	uint32_t x = 2463534242u;
	for (size_t i = 0; i < n; i++) {
		if (i < n / 2) {
			big[i] = "loupe_syscall_duration_seconds_bucket{le=\"0.001\"} 17\n"[i % 52];
		} else {
			x ^= x << 13; /* xorshift32 */
			x ^= x >> 17;
			x ^= x << 5;
			big[i] = (char)x;
		}
	}
	check_gzip_roundtrip(big, n, &out);
	/* The output buffer is reused: a later small input replaces, not appends. */
	check_gzip_roundtrip(small, strlen(small), &out);
	free(big);
	buf__free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buf_append_grows),
		cmocka_unit_test(test_buf_reset_keeps_storage),
		cmocka_unit_test(test_buf_printf),
		cmocka_unit_test(test_buf_json_str),
		cmocka_unit_test(test_read_file),
		cmocka_unit_test(test_read_line),
		cmocka_unit_test(test_now_ns),
		cmocka_unit_test(test_gzip_roundtrip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
