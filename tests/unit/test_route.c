// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for src/parsers/route.c: request-targets become route templates that carry no identifier, no query and
 * no host, and loupe_redactions_total{kind} counts what was abstracted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "parsers/route.h"

static char out[ROUTE_MAX_LEN + 1];
static struct route_stats st;

/* Template a C string with fresh stats. */
static const char *T(const char *in)
{
	memset(&st, 0, sizeof(st));
	size_t n = route_template(in, strlen(in), out, sizeof(out), &st);
	assert_int_equal(n, strlen(out));
	return out;
}

static const char *P(const char *in)
{
	memset(&st, 0, sizeof(st));
	size_t n = route_template_prefix(in, strlen(in), out, sizeof(out), &st);
	assert_int_equal(n, strlen(out));
	return out;
}

static uint64_t total(void)
{
	uint64_t t = 0;
	for (int k = 0; k < ROUTE_KIND_MAX; k++)
		t += st.n[k];
	return t;
}

/* The routes of the reference workload (tests/workload/app.py) keep their words. */
static void test_words_stay(void **state)
{
	assert_string_equal(T("/"), "/");
	assert_string_equal(T("/memories"), "/memories");
	assert_string_equal(T("/search"), "/search");
	assert_string_equal(T("/healthz"), "/healthz");
	assert_string_equal(T("/ws"), "/ws");
	assert_string_equal(T("/api/v1/graph/neighbors"), "/api/v1/graph/neighbors");
	assert_string_equal(T("/v2beta1/users"), "/v2beta1/users");
	assert_string_equal(T("/static/app.min.js"), "/static/app.min.js");
	assert_string_equal(T("/deadbeef"), "/deadbeef"); /* hex letters only: a word */
	assert_string_equal(T("/user-settings-2fa-enabled"), "/user-settings-2fa-enabled");
	assert_int_equal(total(), 0);
}

static void test_numeric(void **state)
{
	assert_string_equal(T("/memories/123"), "/memories/{id}");
	assert_int_equal(st.n[ROUTE_NUMERIC], 1);
	assert_int_equal(total(), 1);
	assert_string_equal(T("/graph/42/neighbors"), "/graph/{id}/neighbors");
	assert_string_equal(T("/ws/close/4000"), "/ws/close/{id}");
	assert_string_equal(T("/reports/2024-01-31"), "/reports/{id}");
	assert_string_equal(T("/tiles/12.5,-3.25"), "/tiles/{id}");
	assert_string_equal(T("/a/0"), "/a/{id}");
	assert_string_equal(T("/1/2/3"), "/{id}/{id}/{id}");
	assert_int_equal(st.n[ROUTE_NUMERIC], 3);
}

static void test_uuid_hex(void **state)
{
	assert_string_equal(T("/memories/123e4567-e89b-12d3-a456-426614174000"), "/memories/{id}");
	assert_int_equal(st.n[ROUTE_UUID], 1);
	assert_string_equal(T("/m/{123E4567-E89B-12D3-A456-426614174000}/x"), "/m/{id}/x");
	assert_int_equal(st.n[ROUTE_UUID], 1);
	/* All-digit UUIDs are UUIDs, not numbers. */
	assert_string_equal(T("/u/12345678-1234-1234-1234-123456789012"), "/u/{id}");
	assert_int_equal(st.n[ROUTE_UUID], 1);
	assert_string_equal(T("/commit/9fceb02d0ae598e95dc970b74767f19372d61af8"), "/commit/{id}");
	assert_int_equal(st.n[ROUTE_HEX], 1);
	assert_string_equal(T("/obj/507f1f77bcf86cd799439011"), "/obj/{id}");
	assert_string_equal(T("/addr/0x1f"), "/addr/{id}");
	assert_int_equal(st.n[ROUTE_HEX], 1);
	assert_string_equal(T("/a/cafe1234"), "/a/{id}"); /* 8 hex with a digit */
	assert_int_equal(st.n[ROUTE_HEX], 1);
	assert_string_equal(T("/a/cafe123"), "/a/{id}"); /* 7: too short for hex, but mixed */
	assert_int_equal(st.n[ROUTE_HEX], 0);
	assert_int_equal(st.n[ROUTE_MIXED], 1);
	assert_string_equal(T("/a/cafe"), "/a/cafe");
}

static void test_token_email(void **state)
{
	/* base64 / base64url / JWT. */
	assert_string_equal(T("/reset/dGhpc2lzYXNlY3JldDEyMw=="), "/reset/{id}");
	assert_int_equal(st.n[ROUTE_TOKEN], 1);
	assert_string_equal(T("/t/aB3xY9kLmN2pQ7rS"), "/t/{id}");
	assert_string_equal(T("/t/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"), "/t/{id}");
	assert_string_equal(T("/c/cjld2cjxh0000qzrmn831i7rn"), "/c/{id}"); /* cuid: lower case, many digits */
	assert_int_equal(st.n[ROUTE_TOKEN], 1);
	assert_string_equal(T("/users/john.doe@example.com/posts"), "/users/{id}/posts");
	assert_int_equal(st.n[ROUTE_EMAIL], 1);
	assert_string_equal(T("/users/john.doe%40example.com"), "/users/{id}");
	assert_int_equal(st.n[ROUTE_EMAIL], 1);
	assert_string_equal(T("/@alice"), "/{id}");
}

static void test_long_nonascii(void **state)
{
	char in[200];

	memset(in, 'a', sizeof(in));
	in[0] = '/';
	in[1 + ROUTE_SEGMENT_MAX] = '\0';
	assert_string_equal(T(in), in); /* exactly the limit: kept */
	in[1 + ROUTE_SEGMENT_MAX] = 'a';
	in[2 + ROUTE_SEGMENT_MAX] = '\0';
	assert_string_equal(T(in), "/{id}");
	assert_int_equal(st.n[ROUTE_LONG], 1);

	assert_string_equal(T("/caf\xc3\xa9/menu"), "/{id}/menu");
	assert_int_equal(st.n[ROUTE_NONASCII], 1);
	assert_string_equal(T("/users/J%C3%B6rg"), "/users/{id}"); /* percent-encoded UTF-8: a name */
	assert_int_equal(st.n[ROUTE_NONASCII], 1);
	assert_string_equal(T("/a%20b/c"), "/a%20b/c"); /* encoded ASCII stays literal */
	assert_string_equal(T("/a\x01z"), "/{id}");
	assert_string_equal(T("/a\x7f"), "/{id}");
	/* A NUL inside the target: length-delimited, and NUL is not printable. */
	memset(&st, 0, sizeof(st));
	route_template("/x\0y/z", 6, out, sizeof(out), &st);
	assert_string_equal(out, "/{id}/z");
	assert_int_equal(st.n[ROUTE_NONASCII], 1);
}

static void test_query_fragment_params(void **state)
{
	assert_string_equal(T("/search?q=alice%40example.com&token=s3cr3t"), "/search");
	assert_int_equal(st.n[ROUTE_QUERY], 1);
	assert_int_equal(total(), 1);
	assert_string_equal(T("/memories?"), "/memories");
	assert_string_equal(T("/?x=1"), "/");
	assert_string_equal(T("/a#frag"), "/a");
	assert_int_equal(st.n[ROUTE_QUERY], 1);
	assert_string_equal(T("/login;jsessionid=1A2B3C4D5E6F/next"), "/login/next");
	assert_int_equal(st.n[ROUTE_QUERY], 1);
	assert_string_equal(T("/;x=1/a"), "/a");
	assert_string_equal(T("/a/?q"), "/a/");
	assert_string_equal(T("?q=1"), ROUTE_INVALID);
}

static void test_forms(void **state)
{
	assert_string_equal(T("*"), "*"); /* OPTIONS * */
	assert_int_equal(total(), 0);
	assert_string_equal(T("http://internal.example:8080/memories/7?x=y"), "/memories/{id}");
	assert_int_equal(st.n[ROUTE_AUTHORITY], 1);
	assert_int_equal(st.n[ROUTE_NUMERIC], 1);
	assert_int_equal(st.n[ROUTE_QUERY], 1);
	assert_string_equal(T("HTTPS://user:pw@host"), "/");
	assert_int_equal(st.n[ROUTE_AUTHORITY], 1);
	assert_int_equal(st.n[ROUTE_EMAIL], 0); /* the authority is dropped, not templated */
	assert_string_equal(T("http://host?x"), "/");
	assert_string_equal(T("db.internal:5432"), ROUTE_INVALID); /* authority-form (CONNECT) */
	assert_int_equal(st.n[ROUTE_INVALID_TARGET], 1);
	assert_string_equal(T(""), ROUTE_INVALID);
	assert_string_equal(T("memories/1"), ROUTE_INVALID);
	assert_string_equal(T("**"), ROUTE_INVALID);
	memset(&st, 0, sizeof(st));
	assert_int_equal(route_template(NULL, 0, out, sizeof(out), &st), strlen(ROUTE_INVALID));
}

static void test_slashes(void **state)
{
	assert_string_equal(T("//memories///1//"), "/memories/{id}/");
	assert_string_equal(T("/memories/"), "/memories/");
	assert_string_equal(T("//"), "/");
	/* Dot-segments are not resolved (a server may or may not), and never shown. */
	assert_string_equal(T("/./../a"), "/{id}/{id}/a");
	assert_int_equal(st.n[ROUTE_SPECIAL], 2);
	assert_string_equal(T("/a/.../b"), "/a/.../b"); /* not a dot-segment: the truncation mark stays a fixed point */
}

static void test_truncation(void **state)
{
	char in[512] = "";
	char want[256] = "";

	for (int i = 0; i < ROUTE_MAX_SEGMENTS + 3; i++)
		strcat(in, "/a");
	for (int i = 0; i < ROUTE_MAX_SEGMENTS; i++)
		strcat(want, "/a");
	strcat(want, "/...");
	assert_string_equal(T(in), want);
	assert_int_equal(st.n[ROUTE_TRUNCATED], 1);

	/* Exactly ROUTE_MAX_SEGMENTS: no truncation. */
	in[2 * ROUTE_MAX_SEGMENTS] = '\0';
	assert_string_equal(T(in), in);
	assert_int_equal(st.n[ROUTE_TRUNCATED], 0);

	/* Length: 60-byte segments overflow ROUTE_MAX_LEN after two. */
	char seg[62];
	memset(seg, 'b', sizeof(seg));
	seg[0] = '/';
	seg[61] = '\0';
	snprintf(in, sizeof(in), "%s%s%s%s", seg, seg, seg, seg);
	const char *r = T(in);
	assert_true(strlen(r) <= ROUTE_MAX_LEN);
	assert_int_equal(st.n[ROUTE_TRUNCATED], 1);
	assert_string_equal(r + strlen(r) - 4, "/...");

	/* A small output buffer caps the template. */
	char small[ROUTE_MIN_OUT];
	memset(&st, 0, sizeof(st));
	size_t n = route_template("/memories/abc/def", 17, small, sizeof(small), &st);
	assert_string_equal(small, "/memories/...");
	assert_int_equal(n, 13);
	/* Below the minimum: empty. */
	char tiny[4] = "xyz";
	assert_int_equal(route_template("/a", 2, tiny, sizeof(tiny), NULL), 0);
	assert_string_equal(tiny, "");
}

static void test_prefix(void **state)
{
	/* A cut identifier never shows: the last segment of a cut target is unknown. */
	assert_string_equal(P("/memories/123e4567-e89b"), "/memories/...");
	assert_int_equal(st.n[ROUTE_TRUNCATED], 1);
	assert_string_equal(P("/memories/"), "/memories/...");
	assert_string_equal(P("/"), "/...");
	assert_string_equal(P("/memories/1?sec"), "/memories/{id}"); /* the query began: the path is whole */
	assert_string_equal(P("http://host"), "/...");
	assert_string_equal(P("http://host/a/b"), "/a/...");
	assert_string_equal(P("x"), ROUTE_INVALID);
}

/* Template one segment after "/x/" and expect "/x/{id}", counted once, as kind. */
static void expect_id(const char *seg, enum route_kind kind)
{
	char in[256];

	snprintf(in, sizeof(in), "/x/%s", seg);
	const char *r = T(in);
	if (strcmp(r, "/x/{id}") || st.n[kind] != 1 || total() != 1)
		fail_msg("\"%s\" -> \"%s\" (want /x/{id}, kind %s x1, total %llu)", seg, r, route_kind_name(kind),
			 (unsigned long long)total());
}

static void expect_kept(const char *seg)
{
	char in[256];

	snprintf(in, sizeof(in), "/x/%s", seg);
	const char *r = T(in);
	if (strcmp(r, in) || total())
		fail_msg("\"%s\" -> \"%s\" (want it kept)", seg, r);
}

/* Canary secrets planted in path segments: none survives as route text. */
static void test_secret_segments(void **state)
{
	static const struct {
		const char *seg;
		enum route_kind kind;
	} cases[] = {
		{ "canary-7f3a9b2c", ROUTE_MIXED },
		{ "s3cr3t", ROUTE_MIXED },
		{ "user_12345", ROUTE_MIXED },
		{ "Bearer-abc123def", ROUTE_TOKEN },
		{ "sk_live_4eC39HqLyjWDarjtT1zdp7dc", ROUTE_TOKEN },
		{ "ghp_16C7e42F292c6912E7710c838347Ae178B4a", ROUTE_TOKEN },
		{ "AKIAIOSFODNN7EXAMPLE", ROUTE_MIXED },
		{ "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc", ROUTE_TOKEN },
		{ "john.doe%40example.com", ROUTE_EMAIL },
		{ "2024-01-31T10:00:00Z", ROUTE_NUMERIC },
		{ "2024-01-31t10:00:00.5+02:00", ROUTE_NUMERIC },
		{ "+15551234567", ROUTE_NUMERIC },
		{ "555%20123%204567", ROUTE_NUMERIC },
		{ "5f4dcc3b5aa765d61d8327deb882cf99", ROUTE_HEX },
		{ "a1b2c3d4", ROUTE_HEX },
		{ "secret=abc", ROUTE_SPECIAL },
		{ "=", ROUTE_SPECIAL },
		{ "%2Fetc%2Fpasswd", ROUTE_ENCODED },
		{ "%2E%2E", ROUTE_ENCODED },
		{ "%31%32%33", ROUTE_ENCODED }, /* "123", encoded */
		{ "%7Eroot", ROUTE_ENCODED },
		{ "100%", ROUTE_ENCODED }, /* a '%' that starts no escape */
		{ "a%2", ROUTE_ENCODED },
		{ "..", ROUTE_SPECIAL },
		{ ".", ROUTE_SPECIAL },
		{ "~root", ROUTE_SPECIAL },
		{ "abc123xyz", ROUTE_MIXED },
		{ "abc123", ROUTE_MIXED }, /* 3 trailing digits */
		{ "id-7", ROUTE_MIXED }, /* a word that is a number, however short */
		{ "order_42", ROUTE_MIXED },
		{ "v1.2", ROUTE_MIXED },
		{ "(555)1234567", ROUTE_MIXED },
		{ "icon-32x32.png", ROUTE_MIXED },
		{ "favicon-32x32.png", ROUTE_TOKEN }, /* >= 16 characters, 4 digits */
		{ "ec2-s3-bucket", ROUTE_MIXED }, /* two words with digits */
		{ "a1b2c3", ROUTE_MIXED },
		{ "7f3a9b2", ROUTE_MIXED },
		{ "v2beta1x", ROUTE_MIXED },
		{ "v123beta1", ROUTE_MIXED },
		{ "v2gamma1", ROUTE_MIXED },
		{ "20240131T1000Z", ROUTE_MIXED }, /* basic format */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_id(cases[i].seg, cases[i].kind);
	/* Several in one target, and in a cut one. */
	assert_string_equal(T("/u/s3cr3t/keys/AKIAIOSFODNN7EXAMPLE/~root/../a=b"), "/u/{id}/keys/{id}/{id}/{id}/{id}");
	assert_int_equal(st.n[ROUTE_MIXED], 2);
	assert_int_equal(st.n[ROUTE_SPECIAL], 3);
	assert_string_equal(P("/u/s3cr3t/abc123xyz/x"), "/u/{id}/{id}/...");
}

/* Route words, version-like words, and short segments with a digit stay. */
static void test_kept_words(void **state)
{
	static const char *const kept[] = {
		"memories", "graph", "v1", "v2", "api", "ws", "neighbors", "close", "healthz", "slow", "search",
		"edges", "oauth2", "h2", "s3", "ipv6", "2fa", "k8s", "i18n", "e2e", "x509", "base64", "http2",
		"v2beta1", "v1alpha1", "V3RC2", "v10beta", "user-settings-2fa-enabled", "oauth2-callback",
		"app.min.js", "a%20b", "hello%20world", "deadbeef", "cafe", "a1b2c", "...", "{id}", "a~b",
	};
	for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
		expect_kept(kept[i]);
	assert_string_equal(T("/api/v1/graph/neighbors"), "/api/v1/graph/neighbors");
	assert_string_equal(T("/ws/close/4000"), "/ws/close/{id}");
	assert_string_equal(T("/api/oauth2/s3/ipv6/h2/v2"), "/api/oauth2/s3/ipv6/h2/v2");
	assert_int_equal(total(), 0);
}

static void test_no_leak_canaries(void **state)
{
	static const char *const targets[] = {
		"/memories/CANARY0123456789abcdef",
		"/u/canary.secret@example.org",
		"/q?CANARY=1",
		"http://CANARY.example/x",
		"/x;CANARY=1",
		"/CANARY%C3%A9",
		"/c/CANARYCANARYCANARYCANARYCANARYCANARYCANARYCANARYCANARYCANARYCANARY",
		"/t/CaNaRy0000000000000",
		"/x/canary-7f3a9b2c",
		"/x/canary=1",
		"/x/~canary",
		"/x/%63anary",
		"/x/CANARY_12345",
		"/x/canary.1",
		"/x/1canary",
		"/x/c4n4ry",
	};
	for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
		const char *r = T(targets[i]);
		assert_null(strcasestr(r, "canary"));
		assert_true(total() >= 1);
	}
}

/* Invariants over many generated targets: printable, starts with '/' or is "*", no '?' or '#', bounded, and a
 * template templates to itself. */
static void test_invariants_random(void **state)
{
	static const char alphabet[] = "/?#;@%.-_=+~aZ09fF\x80\xff \t\x01:*";
	char in[300], again[ROUTE_MAX_LEN + 1];
	unsigned seed = 12345;

	for (int iter = 0; iter < 20000; iter++) {
		size_t n = (seed = seed * 1103515245 + 12345) % sizeof(in);
		for (size_t i = 0; i < n; i++) {
			seed = seed * 1103515245 + 12345;
			in[i] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
		}
		if (iter % 3 == 0 && n)
			in[0] = '/';
		size_t len = route_template(in, n, out, sizeof(out), NULL);
		assert_int_equal(len, strlen(out));
		assert_true(len >= 1 && len <= ROUTE_MAX_LEN);
		assert_true(out[0] == '/' || !strcmp(out, "*"));
		for (size_t i = 0; i < len; i++) {
			assert_true(out[i] >= 0x21 && out[i] <= 0x7e);
			assert_true(out[i] != '?' && out[i] != '#' && out[i] != ';' && out[i] != '@');
		}
		route_template(out, len, again, sizeof(again), NULL);
		assert_string_equal(again, out);
	}
}

static void test_kind_names(void **state)
{
	assert_string_equal(route_kind_name(ROUTE_NUMERIC), "numeric");
	assert_string_equal(route_kind_name(ROUTE_TRUNCATED), "truncated");
	assert_string_equal(route_kind_name(ROUTE_MIXED), "mixed");
	assert_string_equal(route_kind_name(ROUTE_ENCODED), "encoded");
	assert_string_equal(route_kind_name(ROUTE_SPECIAL), "special");
	for (int k = 0; k < ROUTE_KIND_MAX; k++)
		assert_non_null(route_kind_name(k));
	assert_null(route_kind_name(ROUTE_KIND_MAX));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_words_stay),
		cmocka_unit_test(test_numeric),
		cmocka_unit_test(test_uuid_hex),
		cmocka_unit_test(test_token_email),
		cmocka_unit_test(test_long_nonascii),
		cmocka_unit_test(test_query_fragment_params),
		cmocka_unit_test(test_forms),
		cmocka_unit_test(test_slashes),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_prefix),
		cmocka_unit_test(test_secret_segments),
		cmocka_unit_test(test_kept_words),
		cmocka_unit_test(test_no_leak_canaries),
		cmocka_unit_test(test_invariants_random),
		cmocka_unit_test(test_kind_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
