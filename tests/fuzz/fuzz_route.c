/* libFuzzer target for src/route.c. The input is a raw request-target; its first byte also picks the output
 * buffer's size, so writes past a small buffer are caught by ASan. Invariants: the template is printable ASCII,
 * starts with '/' (or is "*"), has no query, fragment, params or '@', fits its bounds, and templating it again
 * gives it back. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "route.h"

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
