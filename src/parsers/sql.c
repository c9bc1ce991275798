// SPDX-License-Identifier: BSD-2-Clause
/* SQL fingerprints: libpg_query for complete statements, a PostgreSQL-aware scanner for the rest, and a cache
 * keyed by a digest of the text. The scanner is pure (no allocation, no state); see src/parsers/sql.h for the rules. */
#include "parsers/sql.h"
#include "lib/hash.h"

#include <errno.h>
#include <inttypes.h>
#include <pg_query.h>

/* pg_query_exit() on a thread that never called libpg_query dereferences its missing memory context. */
static __thread bool pg_query_used;
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* Words written in upper case: reserved words and clause words that are unlikely column names ("name",
 * "type", "value" and "data" are PostgreSQL keywords too, but stay lower case as names). Sorted. */
static const char *const keywords[] = {
	"ABORT", "ALL", "ALTER", "ANALYSE", "ANALYZE", "AND", "ANY", "ARRAY", "AS", "ASC", "ASYMMETRIC", "AT",
	"AUTHORIZATION", "BEGIN", "BETWEEN", "BOTH", "BY", "CALL", "CASCADE", "CASE", "CAST", "CHECK",
	"CHECKPOINT", "CLOSE", "CLUSTER", "COALESCE", "COLLATE", "COLUMN", "COMMENT", "COMMIT", "CONCURRENTLY",
	"CONFLICT", "CONSTRAINT", "COPY", "CREATE", "CROSS", "CURRENT_DATE", "CURRENT_ROLE", "CURRENT_TIME",
	"CURRENT_TIMESTAMP", "CURRENT_USER", "CURSOR", "DATABASE", "DEALLOCATE", "DECLARE", "DEFAULT",
	"DEFERRABLE", "DELETE", "DESC", "DISCARD", "DISTINCT", "DO", "DROP", "ELSE", "END", "ESCAPE", "EXCEPT",
	"EXECUTE", "EXISTS", "EXPLAIN", "EXTENSION", "EXTRACT", "FETCH", "FILTER", "FIRST", "FOR", "FOREIGN",
	"FROM", "FULL", "FUNCTION", "GRANT", "GREATEST", "GROUP", "HAVING", "IF", "ILIKE", "IN", "INDEX",
	"INNER", "INSERT", "INTERSECT", "INTERVAL", "INTO", "IS", "ISNULL", "JOIN", "LATERAL", "LEADING",
	"LEAST", "LEFT", "LIKE", "LIMIT", "LISTEN", "LOCAL", "LOCK", "LOCKED", "MATERIALIZED", "MERGE",
	"NATURAL", "NOT", "NOTHING", "NOTIFY", "NOTNULL", "NOWAIT", "NULL", "NULLIF", "NULLS", "OFFSET", "ON",
	"ONLY", "OR", "ORDER", "OUTER", "OVER", "OVERLAPS", "PARTITION", "PLACING", "PREPARE", "PRIMARY",
	"RECURSIVE", "REFERENCES", "REINDEX", "RELEASE", "RESET", "RETURNING", "REVOKE", "RIGHT", "ROLLBACK",
	"ROWS", "SAVEPOINT", "SCHEMA", "SELECT", "SEQUENCE", "SESSION_USER", "SET", "SHOW", "SIMILAR", "SKIP",
	"SOME", "START", "SYMMETRIC", "TABLE", "TABLESAMPLE", "TEMP", "TEMPORARY", "THEN", "TIME", "TIMESTAMP",
	"TO", "TRAILING", "TRANSACTION", "TRIGGER", "TRUNCATE", "UESCAPE", "UNION", "UNIQUE", "UNLISTEN",
	"UNLOGGED", "UPDATE", "USER", "USING", "VACUUM", "VALUES", "VARIADIC", "VERBOSE", "VIEW", "WHEN",
	"WHERE", "WINDOW", "WITH", "WITHIN", "WORK", "ZONE",
};

/* Statement verbs (sql/sql-commands.html): the only values operation takes, besides "UNKNOWN". */
static const char *const verbs[] = {
	"ABORT", "ALTER", "ANALYZE", "ANALYSE", "BEGIN", "CALL", "CHECKPOINT", "CLOSE", "CLUSTER", "COMMENT",
	"COMMIT", "COPY", "CREATE", "DEALLOCATE", "DECLARE", "DELETE", "DISCARD", "DO", "DROP", "END", "EXECUTE",
	"EXPLAIN", "FETCH", "GRANT", "IMPORT", "INSERT", "LISTEN", "LOAD", "LOCK", "MERGE", "MOVE", "NOTIFY",
	"PREPARE", "REASSIGN", "REFRESH", "REINDEX", "RELEASE", "RESET", "REVOKE", "ROLLBACK", "SAVEPOINT",
	"SECURITY", "SELECT", "SET", "SHOW", "START", "TABLE", "TRUNCATE", "UNLISTEN", "UPDATE", "VACUUM", "VALUES",
	"WITH",
};

/* What may follow a WITH list as the statement proper. */
static const char *const main_verbs[] = { "SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "VALUES", "TABLE" };

/* Keywords written without a space before '(' (function-like syntax). */
static const char *const call_keywords[] = { "ANY", "CAST", "COALESCE", "EXTRACT", "GREATEST", "LEAST",
					      "NULLIF", "SOME" };

/* ---- lexer (sql/sql-syntax-lexical.html) ---- */

enum tok_type {
	T_WORD,
	T_QIDENT,
	T_STRING,
	T_NUMBER,
	T_BOOL,
	T_PARAM,
	T_OP,
	T_LPAREN,
	T_RPAREN,
	T_LBRACK,
	T_RBRACK,
	T_COMMA,
	T_SEMI,
	T_DOT,
	T_CAST,
};

struct tok {
	enum tok_type type;
	size_t start, len;
	bool cut;     /* runs to the end of the text: unterminated, or possibly longer in the statement */
	bool keyword; /* T_WORD in keywords[] */
	char upper[24]; /* T_WORD of at most 23 bytes, upper-cased; "" otherwise */
};

struct lexer {
	const char *s;
	size_t n, i;
	bool truncated;
	bool raw; /* words are not classified (upper, keyword, T_BOOL): sql_shape() needs only their bounds */
};

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool ident_start(unsigned char c)
{
	return is_alpha(c) || c == '_' || c >= 0x80;
}

static bool ident_cont(unsigned char c)
{
	return ident_start(c) || is_digit(c) || c == '$';
}

static bool op_char(unsigned char c)
{
	return c && strchr("+-*/<>=~!@#%^&|`?", c);
}

static unsigned char upper(unsigned char c)
{
	return c >= 'a' && c <= 'z' ? c - 32 : c;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool in_list(const char *w, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(w, list[i]))
			return true;
	return false;
}

#define IN_LIST(w, list) in_list((w), (list), sizeof(list) / sizeof((list)[0]))

/* A string constant from its opening quote at q: '' doubles a quote; a backslash escapes the next byte in
 * every string, not only E'..': with standard_conforming_strings off (old clients) 'it\'s' is one constant,
 * and reading it so can only make a constant longer, never let its content out. */
static size_t scan_string(const char *s, size_t n, size_t q, bool *cut)
{
	size_t k = q + 1;

	while (k < n) {
		if (s[k] == '\\') {
			k += 2;
		} else if (s[k] == '\'') {
			if (k + 1 < n && s[k + 1] == '\'') {
				k += 2;
			} else {
				*cut = false;
				return k + 1;
			}
		} else {
			k++;
		}
	}
	*cut = true;
	return n;
}

static size_t scan_qident(const char *s, size_t n, size_t q, bool *cut)
{
	for (size_t k = q + 1; k < n; k++) {
		if (s[k] != '"')
			continue;
		if (k + 1 < n && s[k + 1] == '"') {
			k++;
			continue;
		}
		*cut = false;
		return k + 1;
	}
	*cut = true;
	return n;
}

static void skip_space(struct lexer *L)
{
	const char *s = L->s;
	size_t n = L->n, i = L->i;

	while (i < n) {
		unsigned char c = s[i];

		if (c <= ' ' || c == 0x7f) {
			i++;
		} else if (c == '-' && i + 1 < n && s[i + 1] == '-') {
			while (i < n && s[i] != '\n')
				i++;
		} else if (c == '/' && i + 1 < n && s[i + 1] == '*') {
			/* Block comments nest in PostgreSQL. */
			unsigned depth = 1;
			for (i += 2; i < n && depth;) {
				if (s[i] == '/' && i + 1 < n && s[i + 1] == '*') {
					depth++;
					i += 2;
				} else if (s[i] == '*' && i + 1 < n && s[i + 1] == '/') {
					depth--;
					i += 2;
				} else {
					i++;
				}
			}
		} else {
			break;
		}
	}
	L->i = i;
}

static void classify_word(const struct lexer *L, struct tok *t)
{
	t->upper[0] = '\0';
	if (t->len >= sizeof(t->upper))
		return;
	for (size_t k = 0; k < t->len; k++)
		t->upper[k] = upper(L->s[t->start + k]);
	t->upper[t->len] = '\0';
	const char *w = t->upper;
	if (!strcmp(w, "TRUE") || !strcmp(w, "FALSE"))
		t->type = T_BOOL;
	else
		t->keyword = bsearch(&w, keywords, sizeof(keywords) / sizeof(keywords[0]), sizeof(keywords[0]),
				     cmp_str) != NULL;
}

/* A word from s[i] on (ident_start), or the string or quoted name a one-letter prefix opens (E'..', B'..', X'..',
 * N'..', U&'..', U&".."): where the token ends. */
static size_t scan_word(const struct lexer *L, size_t i, struct tok *t)
{
	const char *s = L->s;
	size_t n = L->n, j = i + 1;
	while (j < n && ident_cont(s[j]))
		j++;
	unsigned char u = upper(s[i]);
	if (j == i + 1 && j < n && s[j] == '\'' && strchr("EBXN", u)) {
		t->type = T_STRING;
		return scan_string(s, n, j, &t->cut);
	}
	if (j == i + 1 && u == 'U' && j + 1 < n && s[j] == '&' && s[j + 1] == '\'') {
		t->type = T_STRING;
		return scan_string(s, n, j + 1, &t->cut);
	}
	if (j == i + 1 && u == 'U' && j + 1 < n && s[j] == '&' && s[j + 1] == '"') {
		t->type = T_QIDENT;
		return scan_qident(s, n, j + 1, &t->cut);
	}
	t->type = T_WORD;
	t->cut = j == n;
	t->len = j - i;
	if (!L->raw)
		classify_word(L, t);
	return j;
}

/* A number from s[i] on, and anything glued to it: "0x1F", "1_000", "1.5e-3", "12abc" are one constant. */
static size_t scan_number(const char *s, size_t n, size_t i, struct tok *t)
{
	size_t j = i + 1;
	bool hex = s[i] == '0' && j < n && upper(s[j]) == 'X';
	t->type = T_NUMBER;
	for (; j < n; j++) {
		unsigned char d = s[j];
		if (ident_cont(d) && d != '$')
			continue;
		if (d == '.' && !(j + 1 < n && s[j + 1] == '.'))
			continue;
		if ((d == '+' || d == '-') && !hex && upper(s[j - 1]) == 'E' && j + 1 < n && is_digit(s[j + 1]))
			continue;
		break;
	}
	t->cut = j == n;
	return j;
}

/* What a '$' at s[i] opens: a parameter ($1), a dollar-quoted string ($tag$ .. $tag$, the tag a name without '$',
 * or empty), or an operator character. */
static size_t scan_dollar(const char *s, size_t n, size_t i, struct tok *t)
{
	size_t j = i + 1;
	if (j < n && is_digit(s[j])) {
		t->type = T_PARAM;
		while (j < n && ident_cont(s[j]))
			j++;
		return j;
	}
	size_t k = j;
	if (k < n && ident_start(s[k]))
		for (k++; k < n && ident_cont(s[k]) && s[k] != '$'; k++)
			;
	if (k >= n) {
		/* the text ends inside what may be a delimiter */
		t->type = T_STRING;
		t->cut = true;
		return n;
	}
	if (s[k] == '$') {
		size_t d = k + 1 - i;
		const char *end = memmem(s + k + 1, n - k - 1, s + i, d);
		t->type = T_STRING;
		t->cut = !end;
		return end ? (size_t)(end - s) + d : n;
	}
	t->type = T_OP;
	return j;
}

/* An operator from s[i] on (op_char), stopping before a comment's start. */
static size_t scan_operator(const char *s, size_t n, size_t i, struct tok *t)
{
	size_t j = i + 1;
	while (j < n && op_char(s[j]) && !(s[j] == '-' && j + 1 < n && s[j + 1] == '-') &&
	       !(s[j] == '/' && j + 1 < n && s[j + 1] == '*'))
		j++;
	/* A multi-character operator cannot end in + or - unless it has one of ~ ! @ # % ^ & | ` ?
	 * ("=-5" is "=" and "-5"). */
	bool special = false;
	for (size_t k = i; k < j; k++)
		special |= strchr("~!@#%^&|`?", s[k]) != NULL;
	while (!special && j - i > 1 && (s[j - 1] == '+' || s[j - 1] == '-'))
		j--;
	t->type = T_OP;
	return j;
}

/* The type of a one-character token. */
static enum tok_type punct_type(unsigned char c)
{
	switch (c) {
	case '(': return T_LPAREN;
	case ')': return T_RPAREN;
	case '[': return T_LBRACK;
	case ']': return T_RBRACK;
	case ',': return T_COMMA;
	case ';': return T_SEMI;
	case '.': return T_DOT;
	default: return T_OP; /* ':', '\\', '{', ... */
	}
}

/* The next token, or false at the end. With a truncated text, a word or quoted name that reaches the end may
 * be cut and ends the text; an unterminated quoted name always does. */
static bool lex(struct lexer *L, struct tok *t)
{
	const char *s = L->s;
	size_t n = L->n, i, j;

	skip_space(L);
	i = L->i;
	if (i >= n)
		return false;
	memset(t, 0, sizeof(*t));
	t->start = i;
	unsigned char c = s[i];
	j = i + 1;
	if (c == '\'') {
		t->type = T_STRING;
		j = scan_string(s, n, i, &t->cut);
	} else if (c == '"') {
		t->type = T_QIDENT;
		j = scan_qident(s, n, i, &t->cut);
	} else if (ident_start(c)) {
		j = scan_word(L, i, t);
	} else if (is_digit(c) || (c == '.' && j < n && is_digit(s[j]))) {
		j = scan_number(s, n, i, t);
	} else if (c == '$') {
		j = scan_dollar(s, n, i, t);
	} else if (op_char(c)) {
		j = scan_operator(s, n, i, t);
	} else if (c == ':' && j < n && s[j] == ':') {
		t->type = T_CAST;
		j++;
	} else {
		t->type = punct_type(c);
	}
	t->len = j - i;
	L->i = j;
	if (t->type == T_QIDENT && t->cut)
		return false;
	if (L->truncated && t->cut && (t->type == T_WORD || t->type == T_QIDENT))
		return false;
	return true;
}

static bool is_const(const struct tok *t)
{
	return t->type == T_STRING || t->type == T_NUMBER || t->type == T_BOOL;
}

static bool is_placeholder(const struct tok *t)
{
	return is_const(t) || t->type == T_PARAM;
}

static bool is_sign(const struct lexer *L, const struct tok *t)
{
	return t->type == T_OP && t->len == 1 && (L->s[t->start] == '-' || L->s[t->start] == '+');
}

/* ---- operation ---- */

const char *sql_operation(const char *text, size_t n)
{
	struct lexer L = { .s = text, .n = text ? n : 0 };
	struct tok t;
	bool got;

	while ((got = lex(&L, &t)) && t.type == T_LPAREN)
		;
	if (!got || t.type != T_WORD)
		return "UNKNOWN";
	for (size_t v = 0; v < sizeof(verbs) / sizeof(verbs[0]); v++) {
		if (strcmp(t.upper, verbs[v]))
			continue;
		if (strcmp(verbs[v], "WITH"))
			return verbs[v];
		/* WITH [RECURSIVE] name [(cols)] AS [[NOT] MATERIALIZED] (query) [, ...] verb: the CTE bodies are
		 * in parentheses, so the verb is the first main verb at depth 0 that is not a CTE name. */
		int depth = 0;
		bool expect_name = true;
		while (lex(&L, &t)) {
			if (t.type == T_LPAREN) {
				depth++;
			} else if (t.type == T_RPAREN) {
				depth--;
			} else if (depth == 0 && t.type == T_COMMA) {
				expect_name = true;
			} else if (depth == 0 && (t.type == T_WORD || t.type == T_QIDENT)) {
				if (expect_name && !strcmp(t.upper, "RECURSIVE"))
					continue;
				if (expect_name) {
					expect_name = false;
					continue;
				}
				for (size_t m = 0; m < sizeof(main_verbs) / sizeof(main_verbs[0]); m++)
					if (!strcmp(t.upper, main_verbs[m]))
						return main_verbs[m];
			}
		}
		return "WITH";
	}
	return "UNKNOWN";
}

/* ---- normaliser ---- */

enum cls {
	C_NONE,
	C_KEYWORD,
	C_CALL_KEYWORD,
	C_NAME,
	C_PLACEHOLDER,
	C_OPEN,
	C_BRACKET,
	C_CLOSE,
	C_COMMA,
	C_SEMI,
	C_DOT,
	C_CAST,
	C_OP,
	C_ELLIPSIS,
};

#define FALLBACK_DOMAIN "loupe-sql-fallback-v1:"

struct emitter {
	char *out;
	size_t limit; /* characters of content out may take (" ..." fits after them) */
	size_t len;
	bool full;
	uint64_t h;
	unsigned next;	   /* number of the next $n */
	unsigned literals; /* constants seen */
	enum cls prev;
	bool prev_string;
};

static void hash_bytes(struct emitter *e, const char *p, size_t k)
{
	e->h = fnv1a(e->h, p, k);
}

static bool need_space(enum cls prev, enum cls cur)
{
	if (prev == C_NONE || prev == C_OPEN || prev == C_BRACKET || prev == C_DOT || prev == C_CAST)
		return false;
	if (cur == C_CLOSE || cur == C_COMMA || cur == C_SEMI || cur == C_DOT || cur == C_CAST || cur == C_BRACKET)
		return false;
	if (cur == C_OPEN && (prev == C_NAME || prev == C_CALL_KEYWORD))
		return false;
	return true;
}

/* Append one token's text, whole or not at all; the hash covers everything, also what no longer fits. */
static void put(struct emitter *e, enum cls c, const char *p, size_t k)
{
	bool sp = need_space(e->prev, c);

	if (sp)
		hash_bytes(e, " ", 1);
	hash_bytes(e, p, k);
	e->prev = c;
	e->prev_string = false;
	if (e->full)
		return;
	if (e->len + sp + k > e->limit) {
		e->full = true;
		return;
	}
	if (sp)
		e->out[e->len++] = ' ';
	memcpy(e->out + e->len, p, k);
	e->len += k;
}

static void put_placeholder(struct emitter *e)
{
	char b[16];
	int k = snprintf(b, sizeof(b), "$%u", e->next++);

	put(e, C_PLACEHOLDER, b, (size_t)k);
}

static char name_char(unsigned char c)
{
	return c >= 0x21 && c <= 0x7e ? (char)c : '_';
}

static void put_word(struct emitter *e, const struct lexer *L, const struct tok *t)
{
	char b[SQL_NAME_MAX];
	size_t k = t->len < sizeof(b) ? t->len : sizeof(b);

	if (t->keyword) {
		put(e, IN_LIST(t->upper, call_keywords) ? C_CALL_KEYWORD : C_KEYWORD, t->upper, t->len);
		return;
	}
	for (size_t i = 0; i < k; i++) {
		unsigned char c = L->s[t->start + i];
		b[i] = c >= 'A' && c <= 'Z' ? (char)(c + 32) : name_char(c);
	}
	put(e, C_NAME, b, k);
}

/* A byte of a quoted name: letters, digits and _ $ - . space stay, anything else becomes '_'. A quoted name
 * is schema, but "a name" that holds a quote ' or '""' is not one a schema would use: it may be a constant the
 * client mangled, and keeping it out keeps the promise that ' never appears. */
static char qname_char(unsigned char c)
{
	return is_alpha(c) || is_digit(c) || (c && strchr("_$-. ", c)) ? (char)c : '_';
}

/* "name" or U&"name": the name between the quotes, at most SQL_NAME_MAX bytes of it. */
static void put_qident(struct emitter *e, const struct lexer *L, const struct tok *t)
{
	char b[SQL_NAME_MAX + 8];
	size_t k = 0, i = t->start, end = t->start + t->len - 1, chars = 0;

	if (L->s[i] != '"') {
		b[k++] = 'U';
		b[k++] = '&';
		i += 2;
	}
	b[k++] = '"';
	for (i++; i < end && chars < SQL_NAME_MAX; i++, chars++) {
		if (L->s[i] == '"')
			i++; /* '""' */
		b[k++] = qname_char(L->s[i]);
	}
	b[k++] = '"';
	put(e, C_NAME, b, k);
}

/* One list element made of constants: [+-] constant-or-parameter (:: type [ [] ]...)... Counts constants. */
static bool match_item(struct lexer *L, unsigned *consts, bool *eof)
{
	struct tok t;
	struct lexer save;

	if (!lex(L, &t))
		return *eof = true, false;
	if (is_sign(L, &t) && !lex(L, &t))
		return *eof = true, false;
	if (!is_placeholder(&t))
		return false;
	*consts += is_const(&t);
	for (;;) {
		save = *L;
		if (!lex(L, &t))
			return true; /* the end closes the item; the caller sees it next */
		if (t.type != T_CAST) {
			*L = save;
			return true;
		}
		if (!lex(L, &t))
			return *eof = true, false;
		if (t.type != T_WORD && t.type != T_QIDENT)
			return false;
		for (;;) {
			save = *L;
			if (!lex(L, &t) || t.type != T_LBRACK) {
				*L = save;
				break;
			}
			if (!lex(L, &t))
				return *eof = true, false;
			if (t.type != T_RBRACK)
				return false;
		}
	}
}

/* After the opening token: item (, item)* then the closing type, or nested lists if nested_open. Returns
 * true when the list is made of constants only: *closed says whether it ended before the text did. */
static bool match_list(struct lexer *L, enum tok_type close, bool nested, unsigned *consts, bool *closed)
{
	struct tok t;
	bool eof = false;

	*closed = false;
	for (size_t items = 0;; items++) {
		struct lexer save = *L;
		if (!lex(L, &t))
			return items > 0 || nested;
		if (nested && t.type == T_LBRACK) {
			bool inner;
			if (!match_list(L, T_RBRACK, true, consts, &inner))
				return false;
			if (!inner)
				return true;
		} else {
			*L = save;
			if (!match_item(L, consts, &eof))
				return eof;
		}
		if (!lex(L, &t))
			return true;
		if (t.type == close) {
			*closed = true;
			return true;
		}
		if (t.type != T_COMMA)
			return false;
	}
}

/* Emit "(...)" / "[...]" for a list of constants starting at the next token, if it is one. */
static bool collapse(struct emitter *e, struct lexer *L, enum tok_type open)
{
	struct lexer look = *L;
	struct tok t;
	unsigned consts = 0;
	bool closed;
	bool bracket = open == T_LBRACK;

	if (!lex(&look, &t) || t.type != open)
		return false;
	if (!match_list(&look, bracket ? T_RBRACK : T_RPAREN, bracket, &consts, &closed))
		return false;
	if (closed && look.i == t.start + 2)
		return false; /* "()" or "[]": nothing to collapse */
	put(e, bracket ? C_BRACKET : C_OPEN, bracket ? "[" : "(", 1);
	put(e, C_ELLIPSIS, "...", 3);
	if (closed)
		put(e, C_CLOSE, bracket ? "]" : ")", 1);
	e->literals += consts;
	*L = look;
	return true;
}

/* After the first row of a VALUES list: further rows of constants only become ", ...". */
static void collapse_rows(struct emitter *e, struct lexer *L)
{
	struct lexer look = *L, done = *L;
	struct tok t;
	unsigned consts = 0, rows = 0;
	bool closed = true;

	while (closed) {
		if (!lex(&look, &t) || t.type != T_COMMA)
			break;
		if (!lex(&look, &t)) {
			done = look; /* the text ends after a comma: more rows were cut */
			rows++;
			break;
		}
		if (t.type != T_LPAREN || !match_list(&look, T_RPAREN, false, &consts, &closed))
			break;
		rows++;
		done = look;
	}
	if (!rows)
		return;
	put(e, C_COMMA, ",", 1);
	put(e, C_ELLIPSIS, "...", 3);
	e->literals += consts;
	*L = done;
}

static void normalize(const char *s, size_t n, bool truncated, struct emitter *e)
{
	struct lexer L = { .s = s, .n = n, .truncated = truncated };
	struct tok t;
	int depth = 0, values_depth = -1;
	bool values = false;

	e->next = 1;
	e->h = FNV1A_SEED;
	hash_bytes(e, FALLBACK_DOMAIN, strlen(FALLBACK_DOMAIN));
	while (lex(&L, &t)) {
		switch (t.type) {
		case T_WORD:
			put_word(e, &L, &t);
			if (!strcmp(t.upper, "IN")) {
				collapse(e, &L, T_LPAREN);
			} else if (!strcmp(t.upper, "ARRAY")) {
				collapse(e, &L, T_LBRACK);
			} else if (!strcmp(t.upper, "VALUES")) {
				values = true;
				values_depth = -1;
			}
			break;
		case T_QIDENT:
			put_qident(e, &L, &t);
			break;
		case T_STRING:
			/* 'a' 'b' on two lines is one constant */
			if (e->prev_string)
				break;
			/* fall through */
		case T_NUMBER:
		case T_BOOL:
		case T_PARAM:
			e->literals += t.type != T_PARAM;
			put_placeholder(e);
			e->prev_string = t.type == T_STRING;
			break;
		case T_OP: {
			struct lexer look = L;
			struct tok nx;
			bool operand = e->prev == C_NAME || e->prev == C_PLACEHOLDER || e->prev == C_CLOSE;
			if (is_sign(&L, &t) && !operand && lex(&look, &nx) && nx.type == T_NUMBER)
				break; /* -5 is one constant: the number comes next */
			char b[64];
			size_t k = t.len < sizeof(b) ? t.len : sizeof(b);
			for (size_t i = 0; i < k; i++)
				b[i] = name_char(s[t.start + i]);
			put(e, C_OP, b, k);
			break;
		}
		case T_LPAREN:
			put(e, C_OPEN, "(", 1);
			depth++;
			if (values && values_depth < 0)
				values_depth = depth;
			break;
		case T_RPAREN:
			put(e, C_CLOSE, ")", 1);
			if (values && depth == values_depth) {
				values = false;
				collapse_rows(e, &L);
			}
			depth--;
			break;
		case T_LBRACK:
			put(e, C_BRACKET, "[", 1);
			break;
		case T_RBRACK:
			put(e, C_CLOSE, "]", 1);
			break;
		case T_COMMA:
			put(e, C_COMMA, ",", 1);
			break;
		case T_SEMI:
			put(e, C_SEMI, ";", 1);
			values = false;
			break;
		case T_DOT:
			put(e, C_DOT, ".", 1);
			break;
		case T_CAST:
			put(e, C_CAST, "::", 2);
			break;
		}
	}
	if (truncated)
		hash_bytes(e, " ...", 4);
}

size_t sql_normalize_fallback(const char *text, size_t n, bool truncated, char *out, size_t outn, uint64_t *id,
			      unsigned *literals)
{
	size_t limit = outn ? outn - 1 : 0;
	struct emitter e = { .out = out };

	if (limit > SQL_NORM_MAX)
		limit = SQL_NORM_MAX;
	e.limit = limit >= 4 ? limit - 4 : 0;
	if (!text)
		n = 0;
	normalize(text, n, truncated, &e);
	if ((truncated || e.full) && limit >= 4) {
		const char *tail = e.len ? " ..." : "...";
		memcpy(out + e.len, tail, strlen(tail));
		e.len += strlen(tail);
	}
	if (outn)
		out[e.len] = '\0';
	if (id)
		*id = e.h;
	if (literals)
		*literals = e.literals;
	return e.len;
}

/* ---- fingerprints ---- */

static void set_hex(struct sql_fp *fp)
{
	snprintf(fp->hex, sizeof(fp->hex), "%016" PRIx64, fp->id);
}

/* Complete text through libpg_query; false on a parse error. */
static bool fingerprint_pg(const char *text, size_t n, struct sql_fp *out, int *err)
{
	char stack[1024], *z = n < sizeof(stack) ? stack : malloc(n + 1);
	bool ok = false;

	if (!z) {
		*err = -ENOMEM;
		return false;
	}
	memcpy(z, text, n);
	z[n] = '\0';
	pg_query_used = true;
	PgQueryFingerprintResult f = pg_query_fingerprint(z);
	if (!f.error) {
		PgQueryNormalizeResult r = pg_query_normalize(z);
		if (!r.error && r.normalized_query) {
			/* libpg_query keeps comments and the constants of utility statements: the scanner
			 * removes what it left. */
			sql_normalize_fallback(r.normalized_query, strlen(r.normalized_query), false, out->normalized,
					       sizeof(out->normalized), NULL, NULL);
			out->id = f.fingerprint;
			ok = true;
		}
		pg_query_free_normalize_result(r);
	}
	pg_query_free_fingerprint_result(f);
	if (z != stack)
		free(z);
	return ok;
}

/* Check and trim an input statement: NULL only with length 0, and a protocol string ends at its NUL. */
static int sql_input(const char **text, size_t *n)
{
	if (!*text && *n)
		return -EINVAL;
	if (!*text)
		*text = "";
	const char *nul = memchr(*text, '\0', *n);
	if (nul)
		*n = (size_t)(nul - *text);
	return 0;
}

int sql_fingerprint(const char *text, size_t n, bool truncated, struct sql_fp *out, struct sql_stats *st)
{
	unsigned literals = 0;
	int err = 0;

	if (!out || sql_input(&text, &n))
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->truncated = truncated;
	snprintf(out->operation, sizeof(out->operation), "%s", sql_operation(text, n));
	if (!truncated && n <= SQL_PARSE_MAX) {
		if (fingerprint_pg(text, n, out, &err)) {
			sql_normalize_fallback(text, n, false, NULL, 0, NULL, &literals);
			set_hex(out);
			if (st) {
				st->parsed++;
				st->literals += literals;
			}
			return 0;
		}
		if (err)
			return err;
		if (st)
			st->parse_errors++;
	}
	sql_normalize_fallback(text, n, truncated, out->normalized, sizeof(out->normalized), &out->id, &literals);
	out->fallback = true;
	set_hex(out);
	if (st) {
		st->fallback++;
		st->truncated += truncated;
		st->literals += literals;
	}
	return 0;
}

void sql_thread_exit(void)
{
	if (pg_query_used)
		pg_query_exit();
	pg_query_used = false;
}

/* ---- cache ---- */

#define CACHE_WAYS 4

struct cache_entry {
	uint64_t k0, k1, stamp; /* stamp 0: empty */
	uint64_t fill;		/* which filling of the entry this is: a text memo naming an older one is stale */
	size_t len;
	bool truncated;
	struct sql_fp fp;
};

/* The text memo: a text's digest to the entry its shape found, so a text seen lately (a prepared statement run
 * again, or the client and the server side of one connection, both targets, reporting the same statement) is a
 * hit without the shape's scanner pass. Direct-mapped; a newer text takes the place of an older one. */
struct text_memo {
	uint64_t k0, k1, fill; /* fill 0: empty */
	size_t len;
	uint32_t slot;
	bool truncated;
};

struct sql_cache {
	size_t sets; /* a power of two; so is the number of text memos, equal to it */
	uint64_t tick, fills, seed0, seed1;
	struct text_memo *memo;
	struct cache_entry e[];
};

static uint64_t rotl(uint64_t x, int r)
{
	return x << r | x >> (64 - r);
}

static uint64_t fmix(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdULL;
	k ^= k >> 33;
	k *= 0xc4ceb9fe1a85ec53ULL;
	k ^= k >> 33;
	return k;
}

/* MurmurHash3 x64-128 (Austin Appleby, public domain) with two seeds: 16 bytes per round. */
static void digest(const char *p, size_t n, uint64_t s0, uint64_t s1, uint64_t *o0, uint64_t *o1)
{
	const uint64_t c1 = 0x87c37b91114253d5ULL, c2 = 0x4cf5ad432745937fULL;
	uint64_t h1 = s0, h2 = s1, k1, k2;
	size_t i = 0;

	for (; i + 16 <= n; i += 16) {
		memcpy(&k1, p + i, 8);
		memcpy(&k2, p + i + 8, 8);
		k1 *= c1;
		k1 = rotl(k1, 31);
		k1 *= c2;
		h1 ^= k1;
		h1 = rotl(h1, 27);
		h1 += h2;
		h1 = h1 * 5 + 0x52dce729;
		k2 *= c2;
		k2 = rotl(k2, 33);
		k2 *= c1;
		h2 ^= k2;
		h2 = rotl(h2, 31);
		h2 += h1;
		h2 = h2 * 5 + 0x38495ab5;
	}
	unsigned char tail[16] = { 0 };
	memcpy(tail, p + i, n - i);
	memcpy(&k1, tail, 8);
	memcpy(&k2, tail + 8, 8);
	k2 *= c2;
	k2 = rotl(k2, 33);
	k2 *= c1;
	h2 ^= k2;
	k1 *= c1;
	k1 = rotl(k1, 31);
	k1 *= c2;
	h1 ^= k1;
	h1 ^= n;
	h2 ^= n;
	h1 += h2;
	h2 += h1;
	h1 = fmix(h1);
	h2 = fmix(h2);
	h1 += h2;
	h2 += h1;
	*o0 = h1;
	*o1 = h2;
}

struct sql_cache *sql_cache__new(size_t entries)
{
	size_t sets = 1;
	uint64_t seed[2];

	if (!entries)
		entries = SQL_CACHE_DEFAULT;
	while (sets * CACHE_WAYS < entries)
		sets <<= 1;
	struct sql_cache *c = calloc(1, sizeof(*c) + sets * CACHE_WAYS * sizeof(c->e[0]));
	if (!c)
		return NULL;
	if (!(c->memo = calloc(sets, sizeof(*c->memo)))) {
		free(c);
		return NULL;
	}
	/* A per-cache seed: texts that collide in one process's cache do not in another's. */
	if (getrandom(seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
		seed[0] = (uint64_t)time(NULL) ^ (uintptr_t)c;
		seed[1] = fmix(seed[0] + 1);
	}
	c->sets = sets;
	c->seed0 = seed[0];
	c->seed1 = seed[1];
	return c;
}

void sql_cache__free(struct sql_cache *c)
{
	if (c)
		free(c->memo);
	free(c);
}

/* The text's shape: its tokens, one space apart, with every string and number constant written "?". Texts of one
 * shape differ only in constants, which neither the fingerprint nor the normalised text depends on, so they share
 * a cache entry: a client that writes its values into the statement (psycopg2, most ORMs) parses once per
 * statement, not once per value. Booleans stay words. False (no shape: the cache keys the text itself) when the lexer
 * could misread the constants: a backslash anywhere (its meaning depends on standard_conforming_strings), an
 * unterminated string or quoted name, a number beyond digits, point and exponent, a truncated text, or no room. */
static bool sql_shape(const char *text, size_t n, bool truncated, char *out, size_t outn, size_t *len)
{
	if (truncated || memchr(text, '\\', n))
		return false;
	struct lexer L = {.s = text, .n = n, .raw = true};
	struct tok t;
	size_t o = 0;
	while (lex(&L, &t)) {
		if (t.cut && (t.type == T_STRING || t.type == T_QIDENT))
			return false; /* unterminated */
		/* Numbers only in the forms every PostgreSQL reads alike: 0x1F or 1_000 are constants from 16 on, and
		 * before it a number followed by a name (a parse error, or an alias). */
		for (size_t k = 0; t.type == T_NUMBER && k < t.len; k++)
			if (!is_digit(text[t.start + k]) && !strchr(".eE+-", text[t.start + k]))
				return false;
		bool c = t.type == T_STRING || t.type == T_NUMBER;
		size_t w = c ? 1 : t.len;
		if (o + w + 1 > outn)
			return false;
		if (o)
			out[o++] = ' ';
		if (c)
			out[o++] = '?';
		else
			memcpy(out + o, text + t.start, t.len), o += t.len;
	}
	*len = o;
	return true;
}

const struct sql_fp *sql_cache__get(struct sql_cache *c, const char *text, size_t n, bool truncated,
				    struct sql_stats *st, int *err)
{
	uint64_t k0, k1;
	char shape[2048];
	size_t sn;
	int dummy;

	if (!err)
		err = &dummy;
	*err = 0;
	if (!c || sql_input(&text, &n)) {
		*err = -EINVAL;
		return NULL;
	}
	/* The text's digest: the memo's key, and the entry's key when the text has no shape. */
	uint64_t t0, t1;
	digest(text, n, c->seed0 ^ truncated, c->seed1, &t0, &t1);
	struct text_memo *m = &c->memo[t0 & (c->sets - 1)];
	struct cache_entry *e = NULL;
	if (m->fill && m->k0 == t0 && m->k1 == t1 && m->len == n && m->truncated == truncated &&
	    c->e[m->slot].fill == m->fill) {
		e = &c->e[m->slot];
		if (st)
			st->cache_text_hits++;
	} else {
		/* The key: the shape's digest when it has one, else the text's (in separate domains of the seed). */
		bool shaped = sql_shape(text, n, truncated, shape, sizeof(shape), &sn);
		if (shaped) {
			digest(shape, sn, c->seed0 ^ 2, c->seed1, &k0, &k1);
		} else {
			k0 = t0;
			k1 = t1;
		}
		size_t klen = shaped ? sn : n;
		struct cache_entry *set = &c->e[(k0 & (c->sets - 1)) * CACHE_WAYS], *victim = set;
		for (int w = 0; w < CACHE_WAYS && !e; w++) {
			if (set[w].stamp && set[w].k0 == k0 && set[w].k1 == k1 && set[w].len == klen &&
			    set[w].truncated == truncated)
				e = &set[w];
			else if (set[w].stamp < victim->stamp)
				victim = &set[w];
		}
		if (!e) {
			if (st)
				st->cache_misses++;
			/* Fingerprinted in place: empty, and with a new fill (no memo names it), until it succeeds. */
			victim->stamp = 0;
			victim->fill = ++c->fills;
			if ((*err = sql_fingerprint(text, n, truncated, &victim->fp, st)))
				return NULL;
			victim->k0 = k0;
			victim->k1 = k1;
			victim->len = klen;
			victim->truncated = truncated;
			victim->stamp = ++c->tick;
			*m = (struct text_memo){t0, t1, victim->fill, n, (uint32_t)(victim - c->e), truncated};
			return &victim->fp;
		}
		*m = (struct text_memo){t0, t1, e->fill, n, (uint32_t)(e - c->e), truncated};
	}
	e->stamp = ++c->tick;
	if (st)
		st->cache_hits++;
	return &e->fp;
}

int sql_cache__lookup(struct sql_cache *c, const char *text, size_t n, bool truncated, struct sql_fp *out,
		      struct sql_stats *st)
{
	if (!c)
		return sql_fingerprint(text, n, truncated, out, st);
	if (!out)
		return -EINVAL;
	int err;
	const struct sql_fp *fp = sql_cache__get(c, text, n, truncated, st, &err);
	if (!fp)
		return err;
	*out = *fp;
	return 0;
}
