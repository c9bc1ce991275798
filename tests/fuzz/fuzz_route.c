// SPDX-License-Identifier: BSD-2-Clause
/* libFuzzer target for src/parsers/route.c. The input is a raw request-target; its first byte also picks the output
 * buffer's size, so writes past a small buffer are caught by ASan. Invariants: the template is printable ASCII,
 * starts with '/' (or is "*"), has no query, fragment, params or '@', fits its bounds, and templating it again
 * gives it back. No segment is a dot-segment, starts with '~', carries '=' or a '%' other than "%20", or has a
 * word that is all digits. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "parsers/route.h"

static void check_template(const char *out, size_t n, size_t outn)
{
	size_t limit = outn - 1 < ROUTE_MAX_LEN ? outn - 1 : ROUTE_MAX_LEN;

	CHECK(n == strlen(out));
	CHECK(n >= 1 && n <= limit);
	CHECK(out[0] == '/' || !strcmp(out, "*"));
	for (size_t i = 0; i < n; i++) {
		CHECK(out[i] >= 0x21 && out[i] <= 0x7e);
		CHECK(out[i] != '?' && out[i] != '#' && out[i] != ';' && out[i] != '@');
	}
	CHECK(!strstr(out, "//"));
	/* What src/parsers/route.h promises never to show literally. */
	for (size_t i = 0; i < n; i++) {
		CHECK(out[i] != '=');
		CHECK(out[i] != '%' || (i + 2 < n && out[i + 1] == '2' && out[i + 2] == '0'));
		if (out[i] == '/' && i + 1 < n) {
			CHECK(out[i + 1] != '~');
			CHECK(strncmp(out + i, "/.", 2) || (i + 2 < n && out[i + 2] != '/' &&
							  (out[i + 2] != '.' || (i + 3 < n && out[i + 3] != '/'))));
		}
	}
	for (size_t i = 0, w = 0, digits = 0; i <= n; i++) {
		if (i == n || strchr("/-_.", out[i]) || (out[i] == '%' && i + 2 < n)) {
			CHECK(!digits || digits < i - w); /* no all-digit word */
			if (i < n && out[i] == '%')
				i += 2;
			w = i + 1;
			digits = 0;
		} else if (out[i] >= '0' && out[i] <= '9') {
			digits++;
		}
	}
}

static void run(const char *path, size_t n, size_t outn, int prefix)
{
	char *out = malloc(outn), *again = malloc(outn);
	struct route_stats st = { 0 };
	size_t len;

	if (prefix)
		len = route_template_prefix(path, n, out, outn, &st);
	else
		len = route_template(path, n, out, outn, &st);
	if (outn < ROUTE_MIN_OUT) {
		CHECK(len == 0);
		CHECK(!outn || out[0] == '\0');
	} else {
		check_template(out, len, outn);
		/* A fixed point: nothing in a template looks like an identifier any more. */
		struct route_stats st2 = { 0 };
		size_t len2 = route_template(out, len, again, outn, &st2);
		CHECK(len2 == len && !memcmp(out, again, len + 1));
		for (int k = 0; k < ROUTE_KIND_MAX; k++)
			if (k != ROUTE_TRUNCATED)
				CHECK(st2.n[k] == 0);
	}
	free(out);
	free(again);
}

/* With LOUPE_FUZZ_SEEDS=DIR, write a few request-targets there (one file each), so a fresh corpus starts from
 * paths with identifiers and secrets in them rather than from nothing. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char *const seeds[] = {
		"/memories/123e4567-e89b-12d3-a456-426614174000?x=1",
		"/api/v1/graph/42/neighbors",
		"/x/canary-7f3a9b2c/s3cr3t/user_12345/abc123xyz",
		"/k/AKIAIOSFODNN7EXAMPLE/sk_live_4eC39HqLyjWDarjtT1zdp7dc",
		"/t/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc",
		"/u/john.doe%40example.com/2024-01-31T10:00:00Z/+15551234567",
		"/a/secret=abc/%2Fetc%2Fpasswd/../~root/./100%",
		"/apis/apps/v2beta1/oauth2/ipv6/user-settings-2fa-enabled/hello%20world/555%20123",
		"http://host:80/v1.2/id-7/a1b2c/x509;p=1#f",
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
	size_t outn = ROUTE_MAX_LEN + 1;

	if (size && data[0] < 0x20) {
		/* A control byte first: use it to pick a small output buffer (0..31 bytes + ROUTE_MIN_OUT/2). */
		outn = data[0] + ROUTE_MIN_OUT / 2;
		data++;
		size--;
	}
	/* A copy of exactly size bytes: reads past the end are caught. */
	char *path = malloc(size ? size : 1);
	memcpy(path, data, size);
	run(path, size, outn, 0);
	run(path, size, outn, 1);
	free(path);
	return 0;
}
