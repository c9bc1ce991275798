/* SPDX-License-Identifier: BSD-2-Clause */
/* Route templates: the only form in which a request path leaves the agent (DESIGN.md section 3).
 *
 * route_template() turns a raw HTTP request-target (RFC 9112 section 3.2: origin-form "/p?q", absolute-form
 * "http://host/p", asterisk-form "*", authority-form "host:port", or garbage) into a low-cardinality template:
 *  - the scheme and authority of absolute-form are dropped (kind "authority");
 *  - the query and fragment, and ";params" inside segments, are dropped (kind "query");
 *  - empty segments ("//") collapse; a trailing '/' is kept;
 *  - each segment that looks like an identifier becomes "{id}", counted by what it looked like, the first rule
 *    that matches winning:
 *     1. nonascii: a byte outside 0x21-0x7e, or a percent-encoded byte >= 0x80 (encoded UTF-8 text: names);
 *     2. long: more than ROUTE_SEGMENT_MAX bytes;
 *     3. email: contains '@' or "%40";
 *     4. uuid: 8-4-4-4-12 hex digits, optionally in braces;
 *     5. numeric: digits and the separators . , - _ : + and "%20" only, with a digit ("123", "2024-01-31",
 *        "+15551234567"), or an ISO 8601 date-time (4 digits, '-', then only digits, those separators and
 *        T/Z in either case: "2024-01-31T10:00:00Z");
 *     6. hex: "0x" and hex digits, or >= 8 hex digits with a digit;
 *     7. token (base64/base64url-like): >= 16 characters of [A-Za-z0-9-_.~+=%] with a digit and mixed case,
 *        '+', '=', "%2B", "%3D", >= 4 digits or >= 3 letter/digit changes;
 *     8. encoded: a '%' that does not start "%20" ("%2F", "%2E%2E", "%31", a bare "100%"): percent-encoding
 *        hides what it encodes; "%20" (a space) is the only escape kept;
 *     9. special: contains '=' (a key=value pair), starts with '~' (a home directory: a user name), or is a
 *        dot-segment "." or "..";
 *    10. mixed: has a digit (the "20" of "%20" does not count) and, split into words at '-', '_', '.' and "%20":
 *        a. a word is all digits ("user_12345", "id-7", "v1.2"), or
 *        b. the segment is longer than 5 bytes and more than one word has a digit, or a word with a digit is
 *           none of: at most 4 letters and digits with one run of at most 2 digits ("2fa", "k8s", "i18n");
 *           letters, then 1-2 digits ("oauth2", "base64"); 'v', 1-2 digits, "alpha"/"beta"/"rc" (any case),
 *           0-2 digits ("v2beta1").
 *        So "s3cr3t", "abc123xyz", "cafe123", "canary-7f3a9b2c" and "AKIAIOSFODNN7EXAMPLE" become {id}, while
 *        segments of up to 5 bytes ("v1", "h2", "s3", "ipv6") and "user-settings-2fa-enabled" stay;
 *    everything else is a word and stays literal ("memories", "graph", "api", "ws", "app.min.js", "a%20b");
 *  - more than ROUTE_MAX_SEGMENTS segments, or a template longer than the output allows, end in "/..."
 *    (kind "truncated");
 *  - anything that is neither origin-form, absolute-form nor "*" becomes "/{invalid}" (kind "invalid").
 * Bytes are taken literally: nothing is percent-decoded. Words without digits ("memories", "graph", "api") stay:
 * a segment made of letters only cannot be told from a route word, so a letters-only secret does pass.
 *
 * The output is NUL-terminated printable ASCII (0x21-0x7e), starts with '/' (or is exactly "*"), never
 * contains '?' or '#', and is a fixed point: templating a template gives the template back. */
#ifndef LOUPE_ROUTE_H
#define LOUPE_ROUTE_H
#include <stddef.h>
#include <stdint.h>

#define ROUTE_MAX_LEN 128	/* longest template, without the NUL; buffers are ROUTE_MAX_LEN + 1 */
#define ROUTE_MIN_OUT 16	/* smallest output buffer route_template() writes into */
#define ROUTE_MAX_SEGMENTS 12	/* deeper paths end in "/..." */
#define ROUTE_SEGMENT_MAX 64	/* longer segments become {id} */

#define ROUTE_ID "{id}"
#define ROUTE_INVALID "/{invalid}"

/* What was abstracted: the `kind` label of loupe_redactions_total. */
enum route_kind {
	ROUTE_NUMERIC,
	ROUTE_UUID,
	ROUTE_HEX,
	ROUTE_TOKEN,
	ROUTE_EMAIL,
	ROUTE_LONG,
	ROUTE_NONASCII,
	ROUTE_QUERY,
	ROUTE_AUTHORITY,
	ROUTE_INVALID_TARGET,
	ROUTE_TRUNCATED,
	ROUTE_MIXED,
	ROUTE_ENCODED,
	ROUTE_SPECIAL,
	ROUTE_KIND_MAX,
};

/* Counters the caller owns and exports; route_template() only adds to them. */
struct route_stats {
	uint64_t n[ROUTE_KIND_MAX];
};

/* "numeric", "uuid", ... (label values), or NULL past the end. */
const char *route_kind_name(enum route_kind k);

/* Template the request-target path[0..n) into out (outn bytes, at least ROUTE_MIN_OUT; the template is capped at
 * min(outn - 1, ROUTE_MAX_LEN) characters). Returns the template's length; out is always NUL-terminated
 * (with outn < ROUTE_MIN_OUT it is left empty and 0 is returned). st may be NULL. */
size_t route_template(const char *path, size_t n, char *out, size_t outn, struct route_stats *st);

/* The same for a request-target of which only the first n bytes are known (the capture or a line buffer cut
 * it): unless the query already began, the last, possibly incomplete segment becomes "..." (kind "truncated"),
 * so a partly seen identifier never leaks. */
size_t route_template_prefix(const char *path, size_t n, char *out, size_t outn, struct route_stats *st);

#endif
