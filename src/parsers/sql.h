/* SPDX-License-Identifier: BSD-2-Clause */
/* SQL fingerprints: the only form in which a PostgreSQL statement leaves the agent (DESIGN.md section 3).
 *
 * sql_fingerprint() turns the text of a statement, as a wire-protocol parser captured it (a simple Query or a
 * Parse message; the capture may cut it), into
 *  - id/hex: a 64-bit fingerprint that groups statements as pg_stat_statements would: equal for texts that
 *    differ only in literal values, whitespace, comments, the length of IN/VALUES/ARRAY lists; hex is its 16
 *    lowercase hex digits (the metric label value);
 *  - operation: the statement's verb ("SELECT", "INSERT", ... ; for WITH the main statement's verb, else
 *    "WITH"), one of a fixed list (sql_operations), "UNKNOWN" otherwise: never a word of the input;
 *  - normalized: the statement with every literal replaced, printable ASCII, at most SQL_NORM_MAX characters.
 *
 * Two paths:
 *  1. Complete text (truncated == false) that libpg_query (PostgreSQL 15's own parser) accepts: id is
 *     pg_query_fingerprint(), the text is pg_query_normalize() (constants become $n) passed through the
 *     scanner below, because libpg_query leaves comments and whitespace as they were and does not replace
 *     constants of utility statements (COPY t FROM '/path', COMMENT ... IS '...', NOTIFY c, '...',
 *     EXECUTE p('...'), CREATE TABLE ... DEFAULT '...', ALTER SYSTEM SET x = '...', PREPARE p AS SELECT 1).
 *  2. Truncated text, a parse error or text longer than SQL_PARSE_MAX: the scanner alone
 *     (fallback = true). The scanner knows PostgreSQL's lexical rules (sql/syntax-lexical.html): keywords and
 *     identifiers, "quoted identifiers", string constants '..' with '' doubling, E'..' with backslash escapes,
 *     B'..', X'..', N'..', U&'..', adjacent strings (one constant), dollar quoting $tag$..$tag$, numbers
 *     (1, .5, 1.5e10, 0x1F, 1_000, and anything glued to a number: "12abc" is one constant), TRUE/FALSE,
 *     parameters $1, casts ::, operators, comments (-- to the line end, and nested C-style
 *     ones). It
 *      - replaces every constant and parameter by $n, numbered 1, 2, ... in order of appearance (parameters
 *        are renumbered too, so the text does not depend on how many constants came before), with a sign in
 *        front of a number folded into it (-5 is one constant, as in PostgreSQL's grammar);
 *      - collapses lists of constants: IN ($1, $2, ...) -> IN (...), ARRAY[$1, ...] -> ARRAY[...], and after
 *        the first row of a VALUES list the further rows made of constants only -> ", ...";
 *      - drops comments, separates tokens by one space (none inside "f(", "a.b", "x::int", "(a, b)"),
 *        uppercases keywords (a fixed list of reserved and clause words) and lowercases other unquoted names
 *        (PostgreSQL folds them), caps names at 63 bytes (NAMEDATALEN - 1) and shows a byte outside printable
 *        ASCII in a name, and in a "quoted name" anything but letters, digits, _ $ - . and space, as '_';
 *      - treats a constant cut by the end of the text (unterminated quote, number at the end) as a constant:
 *        "$n", never its prefix; when the text is truncated, also drops the last word or quoted name (it may
 *        be cut) and ends the text with " ...". So no character of a string constant and no digit of a number
 *        reaches the output: digits appear only inside names and "$n", the quote ' never appears.
 *     The fallback id is FNV-1a 64 of "loupe-sql-fallback-v1:" followed by the whole normalised text (also
 *     the part beyond SQL_NORM_MAX). The prefix puts it in its own domain: a fallback id equals a libpg_query
 *     id only by a 2^-64 accident, and fallback = true says which kind an id is. A statement and a truncated
 *     capture of it have different ids, by design: the prefix alone does not tell what the statement was.
 * A normalised text longer than SQL_NORM_MAX is cut at a token boundary and ends in " ...". Names (tables,
 * columns, roles in GRANT/CREATE USER) are schema, not data, and stay.
 *
 * Threads: libpg_query keeps its memory contexts per thread; call sql_fingerprint() and the cache from one
 * thread only (the one that parses the capture), and sql_thread_exit() on that thread at shutdown to release
 * them (valgrind then reports no leak). The scanner itself keeps no state.
 *
 * Cost (gcc -O2, the 2-core development VM, SQL_COST_ITERS=200000 ./build/tests/test_sql: test_cost times
 * 200000 calls each on the reference app's 107-byte "SELECT id, content, tags, created_at FROM memories WHERE
 * content ILIKE '%cat and dog%' ORDER BY id LIMIT 20"; quiet machine, then the range under load from others):
 *   cache hit (128-bit digest of the text, 4-way set lookup, copy of the result):  ~34 ns    (34-49 ns)
 *   miss, libpg_query path (fingerprint + normalize + two scanner passes):          ~10.5 us (10.5-17 us)
 *   miss, fallback scanner alone (truncated text):                                   ~1.1 us  (1.1-2 us)
 * The cache is keyed by the text's shape (its tokens with every constant made "?"), so that a statement with new
 * values is a hit, not a parse: the shape costs a scanner pass, which makes a hit ~0.65 us against a ~33 us parse
 * in a later run on the same VM while it was three times slower (test_cost prints both: 107 bytes, and a 70-byte
 * statement with a new constant each call). In front of the shapes, a direct-mapped memo of texts seen lately (a
 * prepared statement executed again; the client and the server side of one statement when both are targets) finds
 * the entry by the text's digest alone, without the scanner's pass: the "cache hit" figure above is that path.
 * sql_cache__lookup() is what the capture path calls.
 * The cache keeps no statement text: a key is a 128-bit digest of the shape (or of the text, when the scanner
 * cannot be sure of its constants: sql_shape()), seeded per cache from getrandom(), its length and the truncated
 * flag; a memo holds only the text's digest. So literals are not stored beyond parsing (DESIGN.md section 3). Two
 * keys with equal digests would share a result (probability 2^-128 per pair; even a crafted collision only
 * mislabels a statement, it reveals nothing). */
#ifndef LOUPE_SQL_H
#define LOUPE_SQL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SQL_NORM_MAX 512     /* longest normalised text, without the NUL */
#define SQL_OP_MAX 23	     /* longest operation name, without the NUL */
#define SQL_PARSE_MAX 65536  /* longer texts go to the fallback: bounds the parser's time and memory */
#define SQL_NAME_MAX 63	     /* PostgreSQL truncates names to NAMEDATALEN - 1 bytes */
#define SQL_CACHE_DEFAULT 1024

struct sql_fp {
	uint64_t id;
	char hex[17];			    /* id as 16 lowercase hex digits */
	char operation[SQL_OP_MAX + 1];	    /* "SELECT", ..., "UNKNOWN" */
	char normalized[SQL_NORM_MAX + 1];  /* literals replaced; printable ASCII */
	bool truncated;			    /* the input was a cut capture */
	bool fallback;			    /* id and text come from the scanner, not libpg_query */
};

/* Counters the caller owns and exports; the functions only add to them. */
struct sql_stats {
	uint64_t parsed;       /* statements libpg_query fingerprinted */
	uint64_t fallback;     /* statements the scanner fingerprinted (truncated + parse_errors + too long) */
	uint64_t truncated;    /* ... of which the capture was cut */
	uint64_t parse_errors; /* ... of which were complete but libpg_query rejected them */
	uint64_t literals;     /* constants replaced (in the input: each element of a collapsed list counts) */
	uint64_t cache_hits;
	uint64_t cache_text_hits; /* ... of which the text memo answered (the text itself was seen lately) */
	uint64_t cache_misses;
};

/* Fingerprint text[0..n) (not NUL-terminated; the text ends at n or at a NUL before it). truncated: the
 * capture cut the statement. Returns 0, -EINVAL (out or text NULL) or -ENOMEM. st may be NULL. */
int sql_fingerprint(const char *text, size_t n, bool truncated, struct sql_fp *out, struct sql_stats *st);

/* The scanner alone: writes the normalised text of text[0..n) into out (outn bytes, NUL-terminated, capped at
 * min(outn - 1, SQL_NORM_MAX)), returns its length; *id (may be NULL) gets the fallback id and *literals (may
 * be NULL) the number of constants replaced. No allocation, no libpg_query: what the fuzz target checks. */
size_t sql_normalize_fallback(const char *text, size_t n, bool truncated, char *out, size_t outn, uint64_t *id,
			      unsigned *literals);

/* The operation of text[0..n): a string constant from a fixed list ("SELECT", ..., "UNKNOWN"). */
const char *sql_operation(const char *text, size_t n);

/* A fixed-size cache from statement text to result; entries is rounded up to a power of two (at least 4;
 * 0 means SQL_CACHE_DEFAULT). NULL when out of memory. free accepts NULL. */
struct sql_cache *sql_cache__new(size_t entries);
void sql_cache__free(struct sql_cache *c);

/* sql_fingerprint() through the cache: a hit costs a digest of the text and a copy, a miss the fingerprint;
 * the least recently used entry of the set is replaced. c may be NULL (no cache). Returns as sql_fingerprint. */
int sql_cache__lookup(struct sql_cache *c, const char *text, size_t n, bool truncated, struct sql_fp *out,
		      struct sql_stats *st);
/* The same without the copy (~570 bytes): the result inside the cache, valid until the next call on c; NULL when c
 * is NULL or on an error, which *err (may be NULL) gets as sql_fingerprint returns it. */
const struct sql_fp *sql_cache__get(struct sql_cache *c, const char *text, size_t n, bool truncated,
				    struct sql_stats *st, int *err);

/* Release this thread's libpg_query memory (pg_query_exit()); call at shutdown from the thread that
 * fingerprinted. */
void sql_thread_exit(void);

#endif
