// SPDX-License-Identifier: BSD-2-Clause
/* Route templates from raw request-targets. Pure functions over bytes: no allocation, no locale, no decoding. */
#include "parsers/route.h"

#include <stdbool.h>
#include <string.h>

static const char *const kind_names[ROUTE_KIND_MAX] = {
	[ROUTE_NUMERIC] = "numeric",
	[ROUTE_UUID] = "uuid",
	[ROUTE_HEX] = "hex",
	[ROUTE_TOKEN] = "token",
	[ROUTE_EMAIL] = "email",
	[ROUTE_LONG] = "long",
	[ROUTE_NONASCII] = "nonascii",
	[ROUTE_QUERY] = "query",
	[ROUTE_AUTHORITY] = "authority",
	[ROUTE_INVALID_TARGET] = "invalid",
	[ROUTE_TRUNCATED] = "truncated",
	[ROUTE_MIXED] = "mixed",
	[ROUTE_ENCODED] = "encoded",
	[ROUTE_SPECIAL] = "special",
};

const char *route_kind_name(enum route_kind k)
{
	return (unsigned)k < ROUTE_KIND_MAX ? kind_names[k] : NULL;
}

static void count(struct route_stats *st, enum route_kind k)
{
	if (st)
		st->n[k]++;
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_hex(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static unsigned char lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* "%XY" at s[i] encoding a byte >= 0x80: percent-encoded UTF-8 (RFC 3986 section 2.5), i.e. text such as a
 * person's name. */
static bool pct_high(const char *s, size_t n, size_t i)
{
	if (i + 2 >= n || s[i] != '%' || !is_hex(s[i + 1]) || !is_hex(s[i + 2]))
		return false;
	unsigned char c = lower(s[i + 1]);
	return c >= '8';
}

static bool pct_is(const char *s, size_t n, size_t i, char h, char l)
{
	return i + 2 < n && s[i] == '%' && s[i + 1] == h && lower(s[i + 2]) == l;
}

/* 8-4-4-4-12 hex digits (RFC 9562 section 4), optionally in braces. */
static bool is_uuid(const char *s, size_t n)
{
	if (n == 38 && s[0] == '{' && s[37] == '}') {
		s++;
		n -= 2;
	}
	if (n != 36)
		return false;
	for (size_t i = 0; i < n; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-' : !is_hex(s[i]))
			return false;
	}
	return true;
}

/* ISO 8601 / RFC 3339 date-time: "2024-01-31T10:00:00Z", "2024-01-31t10:00:00.5+02:00". */
static bool is_datetime(const char *s, size_t n)
{
	if (n < 11 || s[4] != '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];

		if (i < 4 ? !is_digit(c) :
			    !(is_digit(c) || c == '-' || c == ':' || c == '.' || c == ',' || c == '+' ||
			      lower(c) == 't' || lower(c) == 'z'))
			return false;
	}
	return true;
}

/* Words of a segment are split by '-', '_', '.' and "%20" (an encoded space). */
static bool word_sep(const char *s, size_t n, size_t i)
{
	return s[i] == '-' || s[i] == '_' || s[i] == '.' || pct_is(s, n, i, '2', '0');
}

/* "alpha", "beta" or "rc", any case. */
static bool prerelease(const char *s, size_t n)
{
	static const char *const tags[] = { "alpha", "beta", "rc" };

	for (size_t t = 0; t < sizeof(tags) / sizeof(tags[0]); t++) {
		size_t i = 0;

		if (strlen(tags[t]) != n)
			continue;
		while (i < n && lower(s[i]) == (unsigned char)tags[t][i])
			i++;
		if (i == n)
			return true;
	}
	return false;
}

/* A word with a digit that still reads as a name, not an identifier: letters and digits only, and
 *  - at most 4 characters with a letter and one run of at most 2 digits ("2fa", "k8s", "i18n", "e2e"), or
 *  - letters, then 1 or 2 digits ("oauth2", "base64", "http2"), or
 *  - 'v', 1 or 2 digits, "alpha"/"beta"/"rc", at most 2 digits ("v2beta1", "v1alpha1", "v3rc2"). */
static bool versioned_word(const char *s, size_t n)
{
	size_t digits = 0, letters = 0, runs = 0, i;

	for (i = 0; i < n; i++) {
		if (is_digit(s[i])) {
			digits++;
			runs += !i || !is_digit(s[i - 1]);
		} else if (is_alpha(s[i])) {
			letters++;
		} else {
			return false;
		}
	}
	if (n <= 4 && letters && runs == 1 && digits <= 2)
		return true;
	for (i = 0; i < n && is_alpha(s[i]); i++)
		;
	if (i && runs == 1 && digits <= 2 && i + digits == n)
		return true;
	if (n < 2 || lower(s[0]) != 'v')
		return false;
	for (i = 1; i < n && is_digit(s[i]); i++)
		;
	size_t major = i - 1, tag = i;
	if (!major || major > 2)
		return false;
	while (i < n && is_alpha(s[i]))
		i++;
	return prerelease(s + tag, i - tag) && n - i <= 2 && digits == major + (n - i);
}

/* A segment with a digit that does not read as a name: a word that is all digits ("user_12345", "id-7"), or,
 * in a segment longer than 5 bytes, a second word with digits or one that is not a versioned_word() ("s3cr3t",
 * "abc123xyz", "AKIAIOSFODNN7EXAMPLE", "canary-7f3a9b2c"). Segments of up to 5 bytes ("v1", "h2", "s3",
 * "ipv6") keep their words. */
static bool is_mixed(const char *s, size_t n)
{
	size_t i = 0, dwords = 0;

	for (;;) {
		size_t w = i, digits = 0;

		while (i < n && !word_sep(s, n, i))
			digits += is_digit(s[i++]);
		if (digits) {
			if (digits == i - w)
				return true;
			if (n > 5 && (++dwords > 1 || !versioned_word(s + w, i - w)))
				return true;
		}
		if (i == n)
			return false;
		i += s[i] == '%' ? 3 : 1;
	}
}

/* Which identifier a segment looks like, or -1 to keep it. The order matters: a byte the output may not carry
 * wins over everything, then what the segment would leak most (an address), then the most specific shape. */
static int classify(const char *s, size_t n)
{
	size_t digits = 0, upper = 0, lowr = 0, hex = 0, seps = 0, b64 = 0, transitions = 0, pct = 0, spaces = 0;
	bool email = false, nonascii = false, padding = false;
	int prev = 0; /* 1 letter, 2 digit */

	if (!n)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];
		int cls = 0;

		if (c < 0x21 || c > 0x7e || pct_high(s, n, i))
			nonascii = true;
		if (c == '@' || pct_is(s, n, i, '4', '0'))
			email = true;
		if (c == '+' || c == '=' || pct_is(s, n, i, '2', 'b') || pct_is(s, n, i, '3', 'd'))
			padding = true;
		if (c == '%') {
			pct++;
			if (pct_is(s, n, i, '2', '0'))
				spaces++;
		}
		if (is_digit(c)) {
			digits++;
			cls = 2;
		} else if (c >= 'A' && c <= 'Z') {
			upper++;
			cls = 1;
		} else if (c >= 'a' && c <= 'z') {
			lowr++;
			cls = 1;
		}
		if (is_hex(c))
			hex++;
		if (c == '.' || c == ',' || c == '-' || c == '_' || c == ':' || c == '+')
			seps++;
		if (is_alpha(c) || is_digit(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '+' ||
		    c == '=' || c == '%')
			b64++;
		if (cls && prev && cls != prev)
			transitions++;
		if (cls)
			prev = cls;
	}
	/* The digits of "%20" are not digits of the segment. */
	size_t own_digits = digits - 2 * spaces;

	if (nonascii)
		return ROUTE_NONASCII;
	if (n > ROUTE_SEGMENT_MAX)
		return ROUTE_LONG;
	if (email)
		return ROUTE_EMAIL;
	if (is_uuid(s, n))
		return ROUTE_UUID;
	/* Numbers, dates, versions, coordinates, phone numbers: digits and separators ("%20" is one) only. */
	if (own_digits && digits + spaces + seps == n)
		return ROUTE_NUMERIC;
	if (is_datetime(s, n))
		return ROUTE_NUMERIC;
	if (n >= 3 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		size_t i = 2;
		while (i < n && is_hex(s[i]))
			i++;
		if (i == n)
			return ROUTE_HEX;
	}
	/* Hashes, object ids, hex-encoded keys; a digit keeps words like "deadbeef" or "acceded" out. */
	if (hex == n && n >= 8 && digits)
		return ROUTE_HEX;
	/* Tokens: base64, base64url, JWTs, cuid/nanoid-style ids. Long words with one version digit stay. */
	if (n >= 16 && b64 == n && digits &&
	    ((upper && lowr) || padding || digits >= 4 || transitions >= 3))
		return ROUTE_TOKEN;
	/* Percent-encoding hides what it encodes ("%31%32%33" is a number, "%2F" a slash, "%2E%2E" a dot-segment);
	 * only "%20" is taken as what it is, a space. A '%' that starts no escape counts too. */
	if (pct > spaces)
		return ROUTE_ENCODED;
	/* A key=value pair, a ~user home directory (a user name), a dot-segment. */
	if (memchr(s, '=', n) || s[0] == '~' || (s[0] == '.' && (n == 1 || (n == 2 && s[1] == '.'))))
		return ROUTE_SPECIAL;
	if (own_digits && is_mixed(s, n))
		return ROUTE_MIXED;
	return -1;
}

struct out {
	char *p;
	size_t len, limit;
};

static void put(struct out *o, const char *s, size_t n)
{
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

/* Scheme "://" at the start (RFC 3986 section 3.1: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )): its length
 * including "://", or 0. */
static size_t scheme_len(const char *s, size_t n)
{
	size_t i = 0;

	if (!n || !is_alpha(s[0]))
		return 0;
	while (i < n && (is_alpha(s[i]) || is_digit(s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.'))
		i++;
	if (i + 3 <= n && s[i] == ':' && s[i + 1] == '/' && s[i + 2] == '/')
		return i + 3;
	return 0;
}

/* Where the path was cut short: "/..." stands for what is missing. */
static void put_cut(struct out *o, struct route_stats *st)
{
	put(o, "/...", 4);
	count(st, ROUTE_TRUNCATED);
}

/* The segments of path[i..end) as template words, "//" collapsed and ";params" dropped (*params set). cut: the
 * path's last segment is incomplete. True when the template was cut short ("/..." written). */
static bool put_segments(struct out *o, const char *path, size_t i, size_t end, bool cut, struct route_stats *st,
			 bool *params)
{
	size_t nseg = 0;

	while (i < end) {
		size_t s, e;

		while (i < end && path[i] == '/')
			i++; /* "//" collapses */
		if (i == end)
			break;
		s = i;
		while (i < end && path[i] != '/')
			i++;
		e = i;
		bool last = i == end;
		if (last && cut) {
			put_cut(o, st);
			return true;
		}
		/* RFC 3986 section 3.3: ";params" inside a segment (jsessionid=...) are parameters, not the route. */
		const char *semi = memchr(path + s, ';', e - s);
		if (semi) {
			*params = true;
			e = (size_t)(semi - path);
			if (e == s)
				continue;
		}
		if (nseg == ROUTE_MAX_SEGMENTS) {
			put_cut(o, st);
			return true;
		}
		int kind = classify(path + s, e - s);
		const char *w = kind < 0 ? path + s : ROUTE_ID;
		size_t wl = kind < 0 ? e - s : strlen(ROUTE_ID);
		/* Keep room for "/..." unless this is the last segment. */
		size_t room = last ? 0 : 4;
		if (o->len + 1 + wl + room > o->limit) {
			put_cut(o, st);
			return true;
		}
		if (kind >= 0)
			count(st, kind);
		put(o, "/", 1);
		put(o, w, wl);
		nseg++;
	}
	return false;
}

static size_t template(const char *path, size_t n, char *out, size_t outn, struct route_stats *st, bool prefix)
{
	struct out o = { .p = out };
	bool query = false, params = false, truncated;
	size_t i = 0, end;

	if (!out || outn < ROUTE_MIN_OUT) {
		if (out && outn)
			out[0] = '\0';
		return 0;
	}
	o.limit = outn - 1 < ROUTE_MAX_LEN ? outn - 1 : ROUTE_MAX_LEN;
	if (!path)
		n = 0;

	/* RFC 9112 section 3.2.4: asterisk-form, only for a server-wide OPTIONS. */
	if (n == 1 && path[0] == '*' && !prefix) {
		put(&o, "*", 1);
		goto done;
	}
	/* RFC 9112 section 3.2.2: absolute-form; the authority names a host, which never leaves the agent. */
	size_t sl = scheme_len(path, n);
	if (sl) {
		i = sl;
		while (i < n && path[i] != '/' && path[i] != '?' && path[i] != '#')
			i++;
		count(st, ROUTE_AUTHORITY);
		if (i == n && prefix) {
			/* The authority itself may be cut: nothing of the path is known. */
			put_cut(&o, st);
			goto done;
		}
	} else if (!n || path[0] != '/') {
		/* Authority-form (CONNECT), empty, or garbage: nothing that is a path. */
		put(&o, ROUTE_INVALID, strlen(ROUTE_INVALID));
		count(st, ROUTE_INVALID_TARGET);
		goto done;
	}

	/* RFC 9112 section 3.2.1 / RFC 3986 section 3.4-3.5: the query and fragment end the path. */
	end = i;
	while (end < n && path[end] != '?' && path[end] != '#')
		end++;
	if (end < n)
		query = true;
	/* A cut path ends in an incomplete segment; a cut query leaves the path whole. */
	bool cut = prefix && !query;

	truncated = put_segments(&o, path, i, end, cut, st, &params);
	if (!truncated && cut && (end == 0 || path[end - 1] == '/')) {
		/* The cut fell right after a '/': the next segment is unknown. */
		if (o.len + 4 <= o.limit) {
			put_cut(&o, st);
			truncated = true;
		}
	}
	/* Keep a trailing slash: "/memories/" and "/memories" are different routes to most frameworks. */
	if (!truncated && o.len && end > 0 && path[end - 1] == '/') {
		if (o.len + 1 <= o.limit)
			put(&o, "/", 1);
		else
			count(st, ROUTE_TRUNCATED);
	}
	if (!o.len)
		put(&o, "/", 1);
	if (query || params)
		count(st, ROUTE_QUERY);
done:
	o.p[o.len] = '\0';
	return o.len;
}

size_t route_template(const char *path, size_t n, char *out, size_t outn, struct route_stats *st)
{
	return template(path, n, out, outn, st, false);
}

size_t route_template_prefix(const char *path, size_t n, char *out, size_t outn, struct route_stats *st)
{
	return template(path, n, out, outn, st, true);
}
