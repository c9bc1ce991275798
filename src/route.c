/* Route templates from raw request-targets. Pure functions over bytes: no allocation, no locale, no decoding. */
#include "route.h"

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

/* Which identifier a segment looks like, or -1 to keep it. The order matters: a byte the output may not carry
 * wins over everything, then what the segment would leak most (an address), then the most specific shape. */
static int classify(const char *s, size_t n)
{
	size_t digits = 0, upper = 0, lowr = 0, hex = 0, seps = 0, b64 = 0, transitions = 0;
	bool email = false, nonascii = false, padding = false;
	int prev = 0; /* 1 letter, 2 digit */

	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];
		int cls = 0;

		if (c < 0x21 || c > 0x7e || pct_high(s, n, i))
			nonascii = true;
		if (c == '@' || pct_is(s, n, i, '4', '0'))
			email = true;
		if (c == '+' || c == '=' || pct_is(s, n, i, '2', 'b') || pct_is(s, n, i, '3', 'd'))
			padding = true;
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
	if (nonascii)
		return ROUTE_NONASCII;
	if (n > ROUTE_SEGMENT_MAX)
		return ROUTE_LONG;
	if (email)
		return ROUTE_EMAIL;
	if (is_uuid(s, n))
		return ROUTE_UUID;
	/* Numbers, dates, versions and coordinates: digits and separators only. */
	if (digits && digits + seps == n)
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

static size_t template(const char *path, size_t n, char *out, size_t outn, struct route_stats *st, bool prefix)
{
	struct out o = { .p = out };
	bool query = false, params = false, truncated = false;
	size_t nseg = 0, i = 0, end;

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
			put(&o, "/...", 4);
			count(st, ROUTE_TRUNCATED);
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
			put(&o, "/...", 4);
			count(st, ROUTE_TRUNCATED);
			truncated = true;
			break;
		}
		/* RFC 3986 section 3.3: ";params" inside a segment (jsessionid=...) are parameters, not the route. */
		const char *semi = memchr(path + s, ';', e - s);
		if (semi) {
			params = true;
			e = (size_t)(semi - path);
			if (e == s)
				continue;
		}
		if (nseg == ROUTE_MAX_SEGMENTS) {
			put(&o, "/...", 4);
			count(st, ROUTE_TRUNCATED);
			truncated = true;
			break;
		}
		int kind = classify(path + s, e - s);
		const char *w = kind < 0 ? path + s : ROUTE_ID;
		size_t wl = kind < 0 ? e - s : strlen(ROUTE_ID);
		/* Keep room for "/..." unless this is the last segment. */
		size_t room = last ? 0 : 4;
		if (o.len + 1 + wl + room > o.limit) {
			put(&o, "/...", 4);
			count(st, ROUTE_TRUNCATED);
			truncated = true;
			break;
		}
		if (kind >= 0)
			count(st, kind);
		put(&o, "/", 1);
		put(&o, w, wl);
		nseg++;
	}
	if (!truncated && cut && (end == 0 || path[end - 1] == '/')) {
		/* The cut fell right after a '/': the next segment is unknown. */
		if (o.len + 4 <= o.limit) {
			put(&o, "/...", 4);
			count(st, ROUTE_TRUNCATED);
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
