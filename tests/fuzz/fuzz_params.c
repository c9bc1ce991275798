// SPDX-License-Identifier: BSD-2-Clause
/* libFuzzer target for src/parsers/params.c, the parsers of query parameters and --listen. The input is the value
 * itself (NULs included, as libmicrohttpd hands a %-decoded value over with its length). Invariants: whatever a
 * parser accepts is what it promises: a decimal is digits only and in range, and printing it back gives the same
 * number; a duration is digits with an optional s or m unit and in range; a name or text has no byte outside its
 * set; a --listen address that parses has a port 1-65535 and a host shorter than its buffer, and parses again to
 * the same from "HOST:PORT" (or "[HOST]:PORT"). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "parsers/params.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *v = (const char *)data;
	unsigned long n = 12345, lo = size ? data[0] % 8 : 0, hi = lo + 600;
	int rc;

	rc = param_decimal(v, size, lo, hi, &n);
	CHECK(rc == 0 || rc == -EINVAL || rc == -ERANGE);
	if (!rc) {
		CHECK(size >= 1 && size <= 10 && n >= lo && n <= hi);
		for (size_t i = 0; i < size; i++)
			CHECK(v[i] >= '0' && v[i] <= '9');
		char *copy = strndup(v, size);
		CHECK(copy && strtoul(copy, NULL, 10) == n);
		free(copy);
	} else {
		CHECK(n == 12345);
	}

	n = 12345;
	rc = param_duration(v, size, 1, 600, &n);
	CHECK(rc == 0 || rc == -EINVAL || rc == -ERANGE);
	if (!rc) {
		CHECK(n >= 1 && n <= 600);
		size_t digits = size - (v[size - 1] == 's' || v[size - 1] == 'm');
		for (size_t i = 0; i < digits; i++)
			CHECK(v[i] >= '0' && v[i] <= '9');
	}

	if (param_name(v, size, 31)) {
		CHECK(size >= 1 && size <= 31);
		for (size_t i = 0; i < size; i++)
			CHECK(strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-", v[i]) && v[i]);
	}
	if (param_text(v, size, 256))
		for (size_t i = 0; i < size; i++)
			CHECK((unsigned char)v[i] >= 0x20 && v[i] != 0x7f);
	static const char *const words[] = {"cpu", "offcpu", NULL};
	int c = param_choice(v, size, words);
	CHECK(c == -1 || (size == strlen(words[c]) && !memcmp(v, words[c], size)));

	/* --listen: a C string (up to the first NUL). */
	char *addr = strndup(v, size), host[64], host2[64], err[200], again[200];
	unsigned port = 0, port2 = 0;
	if (!listen_addr_parse(addr, host, sizeof(host), &port, err, sizeof(err))) {
		CHECK(port >= 1 && port <= 65535 && strlen(host) < sizeof(host));
		snprintf(again, sizeof(again), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
		CHECK(!listen_addr_parse(again, host2, sizeof(host2), &port2, err, sizeof(err)));
		CHECK(port2 == port && !strcmp(host2, host));
	} else {
		CHECK(strstr(err, "bad listen address"));
	}
	free(addr);
	return 0;
}
