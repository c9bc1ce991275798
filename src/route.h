/* Route templates: the only form in which a request path leaves the agent (DESIGN.md section 3).
 *
 * route_template() turns a raw HTTP request-target (RFC 9112 section 3.2: origin-form "/p?q", absolute-form
 * "http://host/p", asterisk-form "*", authority-form "host:port", or garbage) into a low-cardinality template:
 *  - the scheme and authority of absolute-form are dropped (kind "authority");
 *  - the query and fragment, and ";params" inside segments, are dropped (kind "query");
 *  - empty segments ("//") collapse; a trailing '/' is kept;
 *  - each segment that looks like an identifier becomes "{id}", counted by what it looked like: numeric
 *    ("123", "2024-01-31"), uuid, hex (>= 8 hex digits with a digit, or 0x...), token (base64/base64url-like:
 *    >= 16 characters with digits and mixed case, '+', '=', or many digits), email (contains '@' or "%40"),
 *    long (> ROUTE_SEGMENT_MAX bytes), nonascii (a byte outside 0x21-0x7e, or a percent-encoded byte >= 0x80:
 *    encoded UTF-8 text such as names);
 *  - more than ROUTE_MAX_SEGMENTS segments, or a template longer than the output allows, end in "/..."
 *    (kind "truncated");
 *  - anything that is neither origin-form, absolute-form nor "*" becomes "/{invalid}" (kind "invalid").
 * Bytes are taken literally: nothing is percent-decoded. Words ("memories", "graph", "v1", "api", "ws") stay.
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
