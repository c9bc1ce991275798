// SPDX-License-Identifier: BSD-2-Clause
/* Strict value parsers (params.h). */
#include "parsers/params.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int param_decimal(const char *v, size_t len, unsigned long min, unsigned long max, unsigned long *out)
{
	if (!v || len < 1 || len > 10)
		return -EINVAL;
	unsigned long long n = 0;
	for (size_t i = 0; i < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -EINVAL;
		n = n * 10 + (unsigned)(v[i] - '0'); /* 10 digits fit in 64 bits */
	}
	if (n < min || n > max)
		return -ERANGE;
	*out = (unsigned long)n;
	return 0;
}

int param_duration(const char *v, size_t len, unsigned long min_s, unsigned long max_s, unsigned long *out)
{
	unsigned long mult = 1, n;
	if (!v || !len)
		return -EINVAL;
	if (v[len - 1] == 's' || v[len - 1] == 'm') {
		mult = v[len - 1] == 'm' ? 60 : 1;
		len--;
	}
	int rc = param_decimal(v, len, 0, 9999999999UL, &n);
	if (rc)
		return rc;
	if (n > max_s / mult || n * mult < min_s)
		return -ERANGE;
	*out = n * mult;
	return 0;
}

bool param_name(const char *v, size_t len, size_t maxlen)
{
	if (!v || len < 1 || len > maxlen)
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = v[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
		      ch == '.' || ch == '-'))
			return false;
	}
	return true;
}

bool param_text(const char *v, size_t len, size_t maxlen)
{
	if (!v || len < 1 || len > maxlen)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
			return false;
	return true;
}

int param_choice(const char *v, size_t len, const char *const *words)
{
	if (!v)
		return -1;
	for (int i = 0; words[i]; i++)
		if (strlen(words[i]) == len && !memcmp(words[i], v, len))
			return i;
	return -1;
}

int listen_addr_parse(const char *addr, char *host, size_t hostlen, unsigned *port, char *err, size_t errlen)
{
	const char *h = addr, *p;
	size_t hl;
	if (addr[0] == '[') {
		const char *end = strchr(addr, ']');
		if (!end || end[1] != ':') {
			snprintf(err, errlen, "bad listen address '%s': expected [IPV6]:PORT", addr);
			return -EINVAL;
		}
		h = addr + 1;
		hl = (size_t)(end - h);
		p = end + 2;
	} else {
		const char *colon = strrchr(addr, ':');
		if (!colon || strchr(addr, ':') != colon) {
			snprintf(err, errlen, "bad listen address '%s': expected ADDR:PORT, e.g. 127.0.0.1:9476", addr);
			return -EINVAL;
		}
		hl = (size_t)(colon - addr);
		p = colon + 1;
	}
	if (hl >= hostlen) {
		snprintf(err, errlen, "bad listen address '%.40s...': the address is too long", addr);
		return -EINVAL;
	}
	for (size_t i = 0; i < hl; i++)
		if ((unsigned char)h[i] <= 0x20 || h[i] == 0x7f || h[i] == '[' || h[i] == ']' || h[i] == '/') {
			snprintf(err, errlen, "bad listen address '%s': the address holds a space, a control character, "
				 "a bracket or a slash", addr);
			return -EINVAL;
		}
	unsigned long n;
	if (param_decimal(p, strlen(p), 1, 65535, &n)) {
		snprintf(err, errlen, "bad listen address '%s': the port must be a number 1-65535", addr);
		return -EINVAL;
	}
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = (unsigned)n;
	return 0;
}
