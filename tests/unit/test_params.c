// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for src/parsers/params.c: the strict parsers of query parameters and of --listen. Every value is
 * passed with its length, as libmicrohttpd gives it after %-decoding: "1\0002" is three bytes, not "1". */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "parsers/params.h"

#define S(lit) lit, sizeof(lit) - 1 /* a literal with its length, NULs inside included */

static void test_decimal(void **state)
{
	(void)state;
	unsigned long n = 7;
	assert_int_equal(param_decimal(S("5"), 1, 600, &n), 0);
	assert_int_equal(n, 5);
	assert_int_equal(param_decimal(S("600"), 1, 600, &n), 0);
	assert_int_equal(n, 600);
	assert_int_equal(param_decimal(S("007"), 1, 600, &n), 0); /* leading zeros are digits */
	assert_int_equal(n, 7);
	n = 42;
	assert_int_equal(param_decimal(S("601"), 1, 600, &n), -ERANGE);
	assert_int_equal(param_decimal(S("0"), 1, 600, &n), -ERANGE);
	assert_int_equal(n, 42); /* untouched on error */
	/* Not decimals: sign, space, NUL, empty, units, hex, too many digits. */
	static const struct {
		const char *v;
		size_t len;
	} bad[] = {{S("")}, {S("+5")}, {S("-5")}, {S(" 5")}, {S("5 ")}, {S("1\0002")}, {S("5s")}, {S("0x10")},
		   {S("12345678901")}, {S("1e3")}, {S("5.0")}, {S("\xd9\xa5")} /* ARABIC-INDIC FIVE */};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(param_decimal(bad[i].v, bad[i].len, 0, 4294967295UL, &n), -EINVAL);
	assert_int_equal(param_decimal(NULL, 0, 0, 1, &n), -EINVAL);
	/* 10 digits: the largest accepted length, no overflow in between. */
	assert_int_equal(param_decimal(S("9999999999"), 0, 9999999999UL, &n), 0);
	assert_int_equal(n, 9999999999UL);
}

static void test_duration(void **state)
{
	(void)state;
	unsigned long n = 0;
	assert_int_equal(param_duration(S("90"), 1, 600, &n), 0);
	assert_int_equal(n, 90);
	assert_int_equal(param_duration(S("90s"), 1, 600, &n), 0);
	assert_int_equal(n, 90);
	assert_int_equal(param_duration(S("5m"), 1, 600, &n), 0);
	assert_int_equal(n, 300);
	assert_int_equal(param_duration(S("10m"), 1, 600, &n), 0);
	assert_int_equal(n, 600);
	assert_int_equal(param_duration(S("1s"), 1, 600, &n), 0);
	assert_int_equal(n, 1);
	/* Out of range, including what used to wrap around: 307445734561825861 minutes x 60 overflows 64 bits to 44 s. */
	assert_int_equal(param_duration(S("11m"), 1, 600, &n), -ERANGE);
	assert_int_equal(param_duration(S("601"), 1, 600, &n), -ERANGE);
	assert_int_equal(param_duration(S("0m"), 1, 600, &n), -ERANGE);
	assert_int_equal(param_duration(S("307445734561825861m"), 1, 600, &n), -EINVAL); /* > 10 digits */
	assert_int_equal(param_duration(S("9999999999m"), 1, 600, &n), -ERANGE);
	static const struct {
		const char *v;
		size_t len;
	} bad[] = {{S("")}, {S("s")}, {S("m")}, {S("5h")}, {S("5ms")}, {S("+5m")}, {S(" 5m")}, {S("5 m")}, {S("5m ")},
		   {S("5\000m")}, {S("5M")}, {S("5mm")}};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(param_duration(bad[i].v, bad[i].len, 1, 600, &n), -EINVAL);
}

static void test_name_text_choice(void **state)
{
	(void)state;
	assert_true(param_name(S("api"), 31));
	assert_true(param_name(S("_untargeted"), 31));
	assert_true(param_name(S("pg-15.main"), 31));
	assert_false(param_name(S(""), 31));
	assert_false(param_name(S("api\000"), 31));
	assert_false(param_name(S("api "), 31));
	assert_false(param_name(S("a/b"), 31));
	assert_false(param_name(S("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), 31)); /* 32 */
	assert_true(param_name(S("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), 31));	/* 31 */

	assert_true(param_text(S("app\\.handler|db.*"), 256));
	assert_false(param_text(S(""), 256));
	assert_false(param_text(S("a\nb"), 256));
	assert_false(param_text(S("a\rb"), 256));
	assert_false(param_text(S("a\000b"), 256));
	assert_false(param_text(S("a\x7f"), 256));
	assert_false(param_text(S("abc"), 2));

	static const char *const kinds[] = {"cpu", "offcpu", NULL};
	assert_int_equal(param_choice(S("cpu"), kinds), 0);
	assert_int_equal(param_choice(S("offcpu"), kinds), 1);
	assert_int_equal(param_choice(S("cpu\000"), kinds), -1);
	assert_int_equal(param_choice(S("CPU"), kinds), -1);
	assert_int_equal(param_choice(S("off"), kinds), -1);
	assert_int_equal(param_choice(S(""), kinds), -1);
	assert_int_equal(param_choice(NULL, 0, kinds), -1);
}

static void test_listen_addr(void **state)
{
	(void)state;
	char host[64], err[200];
	unsigned port = 0;
	assert_int_equal(listen_addr_parse("127.0.0.1:9476", host, sizeof(host), &port, err, sizeof(err)), 0);
	assert_string_equal(host, "127.0.0.1");
	assert_int_equal(port, 9476);
	assert_int_equal(listen_addr_parse("[::1]:80", host, sizeof(host), &port, err, sizeof(err)), 0);
	assert_string_equal(host, "::1");
	assert_int_equal(port, 80);
	assert_int_equal(listen_addr_parse(":9476", host, sizeof(host), &port, err, sizeof(err)), 0);
	assert_string_equal(host, "");
	assert_int_equal(listen_addr_parse("localhost:65535", host, sizeof(host), &port, err, sizeof(err)), 0);
	assert_int_equal(port, 65535);
	static const char *const bad[] = {"127.0.0.1:99999", "127.0.0.1:0", "127.0.0.1:", "127.0.0.1", "127.0.0.1:+80",
					  "127.0.0.1: 80", "127.0.0.1:80x", "::1:80", "[::1:80", "[::1]80", "[::1]:",
					  "127.0.0.1:4294967376", "[[]:4", "a]:80", "a b:80", "[::1/64]:80"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(listen_addr_parse(bad[i], host, sizeof(host), &port, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "bad listen address"));
	}
	char longhost[100];
	memset(longhost, 'a', 80);
	strcpy(longhost + 80, ":80");
	assert_int_equal(listen_addr_parse(longhost, host, sizeof(host), &port, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "too long"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decimal),
		cmocka_unit_test(test_duration),
		cmocka_unit_test(test_name_text_choice),
		cmocka_unit_test(test_listen_addr),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
