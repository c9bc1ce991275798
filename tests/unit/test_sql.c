// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for src/parsers/sql.c: statements that differ only in constants, whitespace, comments or list lengths share
 * a fingerprint, different shapes do not, and no constant of the input, nor any part of one cut by the capture,
 * reaches the normalised text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "lib/util.h"
#include "parsers/sql.h"

static struct sql_fp fp;
static struct sql_stats st;

static const struct sql_fp *F(const char *q)
{
	assert_int_equal(sql_fingerprint(q, strlen(q), false, &fp, &st), 0);
	return &fp;
}

/* The first n bytes of q, as a capture that cut it. */
static const struct sql_fp *T(const char *q, size_t n)
{
	char *copy = malloc(n + 1); /* exactly the captured bytes: valgrind sees a read past them */
	memcpy(copy, q, n);
	assert_int_equal(sql_fingerprint(copy, n, true, &fp, &st), 0);
	free(copy);
	return &fp;
}

static uint64_t id_of(const char *q)
{
	return F(q)->id;
}

/* What src/parsers/sql.h promises of every normalised text: printable ASCII, bounded, no quote ', and digits only in
 * "$n" or inside a name (after a letter, '_' or another name character). */
static void assert_clean(const char *s)
{
	size_t n = strlen(s);

	assert_true(n <= SQL_NORM_MAX);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];
		assert_true(c >= 0x20 && c <= 0x7e);
		assert_true(c != '\'');
		if (c >= '0' && c <= '9') {
			size_t j = i;
			while (j > 0 && s[j - 1] >= '0' && s[j - 1] <= '9')
				j--;
			bool param = j > 0 && s[j - 1] == '$';
			bool name = j > 0 && (s[j - 1] == '_' || (s[j - 1] >= 'a' && s[j - 1] <= 'z') ||
					      (s[j - 1] >= 'A' && s[j - 1] <= 'Z'));
			bool quoted = false;
			for (size_t k = 0; k < i; k++)
				quoted ^= s[k] == '"';
			if (!param && !name && !quoted)
				fail_msg("digit outside $n or a name at %zu in \"%s\"", i, s);
		}
	}
}

/* Statements that differ only in constants, whitespace, comments, keyword case or list lengths. */
static void test_same_shape(void **state)
{
	static const char *const groups[][5] = {
		{ "SELECT * FROM t WHERE a = 1", "select * from t where a = 42", "SELECT *\n\tFROM t  WHERE a=-7",
		  "SELECT * FROM t /* who */ WHERE a = 1 -- why", "SELECT * FROM t WHERE a = $1" },
		{ "SELECT * FROM t WHERE a IN (1, 2, 3)", "SELECT * FROM t WHERE a IN (9)",
		  "SELECT * FROM t WHERE a IN ('x', 'y', 'z', 'w')", "SELECT * FROM t WHERE a IN ($1, $2)", NULL },
		{ "INSERT INTO t (a, b) VALUES (1, 'one')", "INSERT INTO t (a, b) VALUES (2, 'two'), (3, 'three')",
		  "insert into t (a, b) values ($1, $2)", NULL },
		{ "SELECT ARRAY[1, 2, 3] && tags FROM m", "SELECT ARRAY[4] && tags FROM m",
		  "SELECT ARRAY['a', 'b'] && tags FROM m", NULL },
		{ "UPDATE m SET content = 'x', n = 1.5e10 WHERE id = 3",
		  "UPDATE m SET content = E'y\\'z', n = 0 WHERE id = 99",
		  "UPDATE m SET content = $tag$x'y$tag$, n = -.5 WHERE id = 1", NULL },
		{ "SELECT true AND x", "SELECT false AND x", NULL },
	};

	for (size_t g = 0; g < sizeof(groups) / sizeof(groups[0]); g++) {
		uint64_t first = id_of(groups[g][0]);
		assert_false(fp.fallback);
		for (size_t k = 1; k < 5 && groups[g][k]; k++) {
			assert_int_equal(id_of(groups[g][k]), first);
			assert_false(fp.fallback);
		}
	}
	/* The normalised texts agree too, except for VALUES with more than one row. */
	char a[SQL_NORM_MAX + 1];
	memcpy(a, F("SELECT * FROM t WHERE a IN (1, 2, 3) AND b = 'x' -- c")->normalized, sizeof(a));
	assert_string_equal(a, "SELECT * FROM t WHERE a IN (...) AND b = $1");
	assert_string_equal(F("select *  from T where A in ($1) and b = $2")->normalized, a);
	assert_string_equal(F("INSERT INTO t (a, b) VALUES (2, 'two'), (3, 'three')")->normalized,
			    "INSERT INTO t(a, b) VALUES ($1, $2), ...");
	assert_string_equal(F("SELECT ARRAY[[1, 2], [3, 4]], x::text[] FROM m")->normalized,
			    "SELECT ARRAY[...], x::text[] FROM m");
}

/* Different shapes: different fingerprints, on both paths. */
static void test_different_shapes(void **state)
{
	static const char *const q[] = {
		"SELECT * FROM t WHERE a = 1",
		"SELECT * FROM t WHERE b = 1",
		"SELECT * FROM u WHERE a = 1",
		"SELECT a FROM t WHERE a = 1",
		"SELECT * FROM t WHERE a = 1 AND b = 2",
		"SELECT * FROM t WHERE a > 1",
		"SELECT * FROM t WHERE a = 1 ORDER BY a",
		"DELETE FROM t WHERE a = 1",
		"UPDATE t SET a = 1",
		"INSERT INTO t (a) VALUES (1)",
		"INSERT INTO t (b) VALUES (1)",
		"BEGIN",
		"COMMIT",
	};
	size_t n = sizeof(q) / sizeof(q[0]);
	uint64_t ids[2][sizeof(q) / sizeof(q[0])];

	for (size_t i = 0; i < n; i++) {
		ids[0][i] = id_of(q[i]);
		assert_false(fp.fallback);
		char cut[64];
		int k = snprintf(cut, sizeof(cut), "%s ", q[i]); /* cut after a space: the last word is whole */
		ids[1][i] = T(cut, (size_t)k)->id;
		assert_true(fp.fallback);
	}
	for (int p = 0; p < 2; p++)
		for (size_t i = 0; i < n; i++)
			for (size_t j = i + 1; j < n; j++)
				if (ids[p][i] == ids[p][j])
					fail_msg("same id for \"%s\" and \"%s\" (path %d)", q[i], q[j], p);
	/* A fallback id is not the libpg_query id of the same text. */
	for (size_t i = 0; i < n; i++)
		assert_true(ids[0][i] != ids[1][i]);
}

/* Canaries in every kind of constant, including the ones libpg_query leaves in utility statements: none
 * reaches the output, complete or truncated, and the texts stay clean. */
static void test_no_literal_canary(void **state)
{
	static const char *const q[] = {
		"SELECT * FROM users WHERE email = 'canary@example.com' AND pin = 987654321",
		"SELECT E'canary\\'s', N'canary', U&'canary', B'1010', X'CAFE', $$canary$$, $x$canary$x$",
		"SELECT 'canary' 'more canary', 1.5e10, .987654321, 0x987654321, 987_654_321, 987654321abc",
		"SELECT * FROM t WHERE a = -987654321 AND b = +987654321 AND c = true",
		"COPY t FROM '/home/canary/secret.csv'",
		"COMMENT ON TABLE t IS 'canary'",
		"NOTIFY ch, 'canary'",
		"PREPARE p AS SELECT 987654321, 'canary'",
		"EXECUTE p(987654321, 'canary')",
		"CREATE TABLE t (a int DEFAULT 987654321, b text DEFAULT 'canary')",
		"ALTER SYSTEM SET work_mem = '987654321kB'",
		"ALTER TABLE t SET (fillfactor = 98)",
		"CREATE VIEW v AS SELECT 'canary' AS x",
		"DO $$ BEGIN RAISE NOTICE 'canary %', 987654321; END $$",
		"CREATE FUNCTION f() RETURNS int AS $body$ SELECT 987654321 $body$ LANGUAGE sql",
		"CREATE USER bob PASSWORD 'canary'",
		"SET application_name = 'canary'",
		"SELECT 'it''s canary', 'canary\\' OR 1=1 --', '/* canary */'",
		"SELECT \"col\" FROM t WHERE x = 'canary\" AND y = 987654321 AND \"'",
		"SELECT * FROM t WHERE a = 'canary", /* unterminated: a parse error */
		"SELECT * FROM t WHERE a = $q$canary",
		"SELECT 1 + 'canary'::text FROM t /* canary unterminated",
		"SELECT 0x987654321abc FROM t", /* PostgreSQL 15: trailing junk, a parse error */
	};

	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
		for (int trunc = 0; trunc < 2; trunc++) {
			const struct sql_fp *f = trunc ? T(q[i], strlen(q[i])) : F(q[i]);
			if (strstr(f->normalized, "canary") || strstr(f->normalized, "987") ||
			    strstr(f->normalized, "98") || strstr(f->normalized, "CAFE"))
				fail_msg("\"%s\" -> \"%s\"", q[i], f->normalized);
			assert_clean(f->normalized);
			assert_true(strlen(f->hex) == 16);
		}
	}
	/* What libpg_query alone leaves is gone. */
	assert_string_equal(F("COPY t FROM '/home/canary/secret.csv'")->normalized, "COPY t FROM $1");
	assert_false(fp.fallback);
	assert_string_equal(F("ALTER TABLE t SET (fillfactor = 98)")->normalized,
			    "ALTER TABLE t SET (fillfactor = $1)");
}

/* Every cut of statements with constants: no character of a constant appears. Each statement comes with the
 * characters its constants use and nothing else in it does (names, keywords, operators, in either case). */
static void test_truncated_cuts(void **state)
{
	static const char *const q[][2] = {
		{ "SELECT id, content FROM memories WHERE content ILIKE '%zxq#vjp@!' AND tags = E'uv\\'zx''q' "
		  "ORDER BY id LIMIT 20",
		  "jpquvxz%#@!\\" },
		{ "INSERT INTO memories (content, tags) VALUES ('qjz bp%', '{yx;zz}'), ($q$pbk'zq$q$, 'xy') "
		  "RETURNING id",
		  "bfhjkpqwxyz%{};$" },
		{ "UPDATE memories SET content = $$bzq jv$$ WHERE id = 12345 AND content <> U&'q\\0061x'",
		  "bfgjkqvxyz\\" },
		{ "SELECT * FROM edges WHERE relation IN ('bq', 'vz', 'xj') AND src = 98765", "bjkpquvxyz" },
	};

	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
		size_t len = strlen(q[i][0]);
		for (size_t cut = 0; cut <= len; cut++) {
			const struct sql_fp *f = T(q[i][0], cut);
			assert_true(f->fallback && f->truncated);
			assert_clean(f->normalized);
			for (const char *c = f->normalized; *c; c++)
				if (*c != '$' && strchr(q[i][1], *c >= 'A' && *c <= 'Z' ? *c + 32 : *c))
					fail_msg("cut %zu of \"%s\" -> \"%s\"", cut, q[i][0], f->normalized);
			/* The 5-digit numbers never show, not even in part. */
			assert_null(strstr(f->normalized, "12"));
			assert_null(strstr(f->normalized, "98"));
			size_t n = strlen(f->normalized);
			assert_true(n >= 3 && !strcmp(f->normalized + n - 3, "..."));
		}
	}
	/* A cut right after a constant began keeps none of it. */
	assert_string_equal(T("SELECT * FROM t WHERE a = 'sec", 30)->normalized, "SELECT * FROM t WHERE a = $1 ...");
	assert_string_equal(T("SELECT * FROM t WHERE a = 1234", 30)->normalized, "SELECT * FROM t WHERE a = $1 ...");
	/* ... and a name that may be cut is dropped. */
	assert_string_equal(T("SELECT * FROM memor", 19)->normalized, "SELECT * FROM ...");
	/* Cuts that differ only in constant values share a fallback id. */
	uint64_t a = T("SELECT * FROM t WHERE a IN (1, 2, 3) AND b = 'x", 48)->id;
	assert_int_equal(T("SELECT * FROM t WHERE a IN (7) AND b = 'secret value", 52)->id, a);
}

/* The reference application's statements (tests/workload/app.py; psycopg2 interpolates the values client-side,
 * so they arrive as constants): one fingerprint per statement whatever the values, the same on every build
 * with libpg_query 15-4 (the ids below are label values on dashboards: a change here is a breaking change). */
static void test_app_queries(void **state)
{
	static const struct {
		const char *q[2];
		const char *op;
		const char *hex;
		const char *norm;
	} app[] = {
		{ { "INSERT INTO memories (content, tags) VALUES ('hello', ARRAY['a','b']) RETURNING id",
		    "INSERT INTO memories (content, tags) VALUES ('other text', ARRAY['x','y','z']) RETURNING id" },
		  "INSERT", "33d3b4fd1c65a79f", NULL },
		{ { "SELECT id, content, tags, created_at FROM memories ORDER BY id LIMIT 20 OFFSET 0",
		    "SELECT id, content, tags, created_at FROM memories ORDER BY id LIMIT 1000 OFFSET 40" },
		  "SELECT", "c6e86a8bf8f64d71",
		  "SELECT id, content, tags, created_at FROM memories ORDER BY id LIMIT $1 OFFSET $2" },
		{ { "SELECT id, content, tags, created_at FROM memories WHERE id = 1",
		    "SELECT id, content, tags, created_at FROM memories WHERE id = 424242" },
		  "SELECT", "f8e5c6969e88c330", NULL },
		{ { "UPDATE memories SET content = COALESCE('new', content), tags = COALESCE(NULL, tags) WHERE id = 5 "
		    "RETURNING id, content, tags, created_at",
		    "UPDATE memories SET content = COALESCE('other', content), tags = COALESCE(NULL, tags) WHERE "
		    "id = 6 RETURNING id, content, tags, created_at" },
		  "UPDATE", "304edee49297232b", NULL },
		{ { "DELETE FROM memories WHERE id = 5", "DELETE FROM memories WHERE id = 77" },
		  "DELETE", "06184546b0ce4e67", "DELETE FROM memories WHERE id = $1" },
		{ { "SELECT id, content, tags, created_at FROM memories WHERE content ILIKE '%cat%' "
		    "ORDER BY id LIMIT 20",
		    "SELECT id, content, tags, created_at FROM memories WHERE content ILIKE '%50\\%%' ORDER BY id "
		    "LIMIT 3" },
		  "SELECT", "d51fd3b6cf709aab", NULL },
		{ { "INSERT INTO edges (src, dst, relation) VALUES (1, 2, 'knows') ON CONFLICT DO NOTHING",
		    "INSERT INTO edges (src, dst, relation) VALUES (30, 40, 'likes') ON CONFLICT DO NOTHING" },
		  "INSERT", "1ebf160f7caedcd7",
		  "INSERT INTO edges(src, dst, relation) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING" },
		{ { "SELECT 1 FROM memories WHERE id = 5", "SELECT 1 FROM memories WHERE id = 6" },
		  "SELECT", "0435315da3c5ba68", NULL },
		{ { "\n            SELECT m.id, m.content, e.relation, 'out' AS direction\n              FROM edges e "
		    "JOIN memories m ON m.id = e.dst WHERE e.src = 5\n            UNION ALL\n            SELECT m.id, "
		    "m.content, e.relation, 'in' AS direction\n              FROM edges e JOIN memories m ON m.id = "
		    "e.src WHERE e.dst = 5\n            ORDER BY 1, 3\n            ",
		    "SELECT m.id, m.content, e.relation, 'out' AS direction FROM edges e JOIN memories m ON m.id = "
		    "e.dst WHERE e.src = 9 UNION ALL SELECT m.id, m.content, e.relation, 'in' AS direction "
		    "FROM edges e JOIN memories m ON m.id = e.src WHERE e.dst = 9 ORDER BY 1, 3" },
		  "SELECT", "d789a0ce576643b5", NULL },
		{ { "SELECT pg_advisory_xact_lock(4318)", "SELECT pg_advisory_xact_lock(1)" },
		  "SELECT", "3acf898503aab384", NULL },
		{ { "SELECT pg_sleep(0.2)", "SELECT pg_sleep(0.5)" }, "SELECT", "07681e575f3d174e",
		  "SELECT pg_sleep($1)" },
	};
	uint64_t ids[sizeof(app) / sizeof(app[0])];

	for (size_t i = 0; i < sizeof(app) / sizeof(app[0]); i++) {
		ids[i] = id_of(app[i].q[0]);
		assert_false(fp.fallback);
		assert_string_equal(fp.operation, app[i].op);
		assert_clean(fp.normalized);
		char norm[SQL_NORM_MAX + 1];
		memcpy(norm, fp.normalized, sizeof(norm));
		if (app[i].hex)
			assert_string_equal(fp.hex, app[i].hex);
		if (app[i].norm)
			assert_string_equal(fp.normalized, app[i].norm);
		assert_int_equal(id_of(app[i].q[1]), ids[i]);
		for (size_t j = 0; j < i; j++)
			assert_true(ids[j] != ids[i]);
		/* Same input, same answer: nothing depends on earlier calls. */
		assert_int_equal(id_of(app[i].q[0]), ids[i]);
		assert_string_equal(fp.normalized, norm);
	}
	/* psycopg2 sends an empty list as '{}', a constant, and a non-empty one as ARRAY[...], an expression:
	 * two shapes, as in pg_stat_statements. So does NULL (a None) against a value. */
	assert_true(id_of("INSERT INTO memories (content, tags) VALUES ('a', '{}') RETURNING id") != ids[0]);
	/* pg_sleep(0.75) of tests/e2e/test_workload.py, too. */
	assert_string_equal(F("SELECT pg_sleep(0.75)")->hex, "07681e575f3d174e");
}

static void test_operations(void **state)
{
	static const char *const cases[][2] = {
		{ "SELECT 1", "SELECT" },
		{ "  select 1", "SELECT" },
		{ "/* c */ -- d\n insert into t values (1)", "INSERT" },
		{ "UPDATE t SET a = 1", "UPDATE" },
		{ "delete from t", "DELETE" },
		{ "BEGIN", "BEGIN" },
		{ "START TRANSACTION", "START" },
		{ "COMMIT", "COMMIT" },
		{ "ROLLBACK", "ROLLBACK" },
		{ "WITH x AS (SELECT 1) SELECT * FROM x", "SELECT" },
		{ "WITH x AS (SELECT 1), y AS (DELETE FROM t RETURNING *) INSERT INTO u SELECT * FROM y", "INSERT" },
		{ "WITH RECURSIVE update(a) AS (SELECT 1) DELETE FROM t", "DELETE" },
		{ "WITH x AS MATERIALIZED (SELECT 1) UPDATE t SET a = 1", "UPDATE" },
		{ "WITH x AS (SELECT 1", "WITH" },
		{ "(SELECT 1) UNION (SELECT 2)", "SELECT" },
		{ "CREATE TABLE t (a int)", "CREATE" },
		{ "DROP TABLE t", "DROP" },
		{ "ALTER TABLE t ADD b int", "ALTER" },
		{ "COPY t FROM STDIN", "COPY" },
		{ "SET search_path = a", "SET" },
		{ "SHOW work_mem", "SHOW" },
		{ "EXPLAIN SELECT 1", "EXPLAIN" },
		{ "VACUUM t", "VACUUM" },
		{ "TRUNCATE t", "TRUNCATE" },
		{ "values (1)", "VALUES" },
		{ "secret_word from t", "UNKNOWN" },
		{ "'canary'", "UNKNOWN" },
		{ "", "UNKNOWN" },
		{ "  ;", "UNKNOWN" },
		{ "42", "UNKNOWN" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_string_equal(sql_operation(cases[i][0], strlen(cases[i][0])), cases[i][1]);
		assert_string_equal(F(cases[i][0])->operation, cases[i][1]);
		assert_string_equal(T(cases[i][0], strlen(cases[i][0]))->operation, cases[i][1]);
	}
}

/* The scanner's rules, one by one. */
static void test_fallback_rules(void **state)
{
	char out[SQL_NORM_MAX + 1];
	unsigned lits;
#define N(q) (sql_normalize_fallback((q), strlen(q), false, out, sizeof(out), NULL, &lits), out)

	assert_string_equal(N("select A.b, \"Mixed\"\"Q\", \"it's\" from T1 as a"),
			    "SELECT a.b, \"Mixed_Q\", \"it_s\" FROM t1 AS a");
	assert_string_equal(N("SELECT x::int, f(1), count(*) FROM t WHERE y=-5 AND z - 5 > 0"),
			    "SELECT x::int, f($1), count(*) FROM t WHERE y = $2 AND z - $3 > $4");
	assert_int_equal(lits, 4);
	assert_string_equal(N("SELECT $2, 'a', $1"), "SELECT $1, $2, $3");
	assert_int_equal(lits, 1);
	assert_string_equal(N("SELECT 'a'\n  'b', e'x\\'' || 'y'"), "SELECT $1, $2 || $3");
	assert_string_equal(N("SELECT 1 /* a /* nested */ still comment */ + 2"), "SELECT $1 + $2");
	assert_string_equal(N("SELECT a IN (1, -2, 'x'::text, $3), ARRAY[]"), "SELECT a IN (...), ARRAY[]");
	assert_string_equal(N("SELECT a NOT IN (SELECT b FROM u)"), "SELECT a NOT IN (SELECT b FROM u)");
	assert_string_equal(N("INSERT INTO t VALUES (1, now()), (2, now())"),
			    "INSERT INTO t VALUES ($1, now()), ($2, now())");
	assert_string_equal(N("SELECT NULL, TRUE, null"), "SELECT NULL, $1, NULL");
	assert_string_equal(N("SELECT a FROM t WHERE b =-1"), "SELECT a FROM t WHERE b = $1");
	assert_string_equal(N("SELECT 1;SELECT 2;"), "SELECT $1; SELECT $2;");
	assert_string_equal(N("SELECT \x01\x7f 1"), "SELECT $1");
	assert_string_equal(N("SELECT caf\xc3\xa9 FROM t"), "SELECT caf__ FROM t");
	/* Names are capped at 63 bytes, as PostgreSQL does. */
	char longname[200];
	snprintf(longname, sizeof(longname), "SELECT %0100d", 0);
	memset(longname + 7, 'a', 100);
	N(longname);
	assert_int_equal(strlen(out), 7 + SQL_NAME_MAX);
#undef N
	/* Small buffers: bounded and terminated. */
	char small[12];
	size_t n = sql_normalize_fallback("SELECT a, b, c FROM t", 21, false, small, sizeof(small), NULL, NULL);
	assert_int_equal(n, strlen(small));
	assert_string_equal(small, "SELECT ...");
	assert_int_equal(sql_normalize_fallback("SELECT 1", 8, true, small, 0, NULL, NULL), 0);
}

static void test_parse_errors_and_limits(void **state)
{
	memset(&st, 0, sizeof(st));
	/* Complete but not SQL libpg_query accepts: fallback, counted. */
	F("SELEC * FRM t WHERE a = 'x'");
	assert_true(fp.fallback);
	assert_false(fp.truncated);
	assert_string_equal(fp.normalized, "selec * frm t WHERE a = $1");
	assert_int_equal(st.parse_errors, 1);
	assert_int_equal(st.fallback, 1);
	assert_int_equal(st.parsed, 0);
	assert_int_equal(st.literals, 1);
	F("SELECT 1, 'a', 2.5");
	assert_int_equal(st.parsed, 1);
	assert_int_equal(st.literals, 4);
	T("SELECT 1", 8);
	assert_int_equal(st.truncated, 1);
	assert_int_equal(st.fallback, 2);

	/* A statement longer than SQL_NORM_MAX: cut at a token, " ..." at the end, the id from libpg_query. */
	char big[8192];
	size_t n = (size_t)snprintf(big, sizeof(big), "SELECT ");
	for (int i = 0; i < 600; i++)
		n += (size_t)snprintf(big + n, sizeof(big) - n, "column_%d, ", i);
	n += (size_t)snprintf(big + n, sizeof(big) - n, "'canary' FROM t");
	F(big);
	assert_false(fp.fallback);
	assert_true(strlen(fp.normalized) <= SQL_NORM_MAX);
	assert_string_equal(fp.normalized + strlen(fp.normalized) - 4, " ...");
	assert_clean(fp.normalized);
	uint64_t id = fp.id;
	big[n - 9] = 'X'; /* another constant */
	assert_int_equal(id_of(big), id);

	/* The text ends at a NUL, as protocol strings do. */
	assert_int_equal(sql_fingerprint("SELECT 1\0garbage 'x", 19, false, &fp, NULL), 0);
	assert_int_equal(fp.id, id_of("SELECT 2"));
	/* Empty and invalid arguments. */
	assert_int_equal(sql_fingerprint("", 0, false, &fp, NULL), 0);
	assert_string_equal(fp.operation, "UNKNOWN");
	assert_int_equal(sql_fingerprint(NULL, 0, true, &fp, NULL), 0);
	assert_int_equal(sql_fingerprint(NULL, 3, false, &fp, NULL), -22);
	assert_int_equal(sql_fingerprint("x", 1, false, NULL, NULL), -22);
}

static void test_cache(void **state)
{
	struct sql_cache *c = sql_cache__new(4); /* one set of 4 ways */
	struct sql_fp direct;
	/* Five shapes (texts that differ only in constants share an entry: test_cache_shapes). */
	const char *q[] = { "SELECT 1", "SELECT a FROM a", "SELECT b FROM b", "SELECT c FROM c", "SELECT d FROM d" };

	assert_non_null(c);
	memset(&st, 0, sizeof(st));
	assert_int_equal(sql_cache__lookup(c, q[0], strlen(q[0]), false, &fp, &st), 0);
	assert_int_equal(st.cache_misses, 1);
	assert_int_equal(sql_fingerprint(q[0], strlen(q[0]), false, &direct, NULL), 0);
	assert_memory_equal(&fp, &direct, sizeof(fp));
	assert_int_equal(sql_cache__lookup(c, q[0], strlen(q[0]), false, &fp, &st), 0);
	assert_int_equal(st.cache_hits, 1);
	assert_int_equal(st.cache_text_hits, 1); /* the same text again: the memo answered, no scanner pass */
	assert_int_equal(st.parsed, 1); /* the hit did not parse */
	assert_memory_equal(&fp, &direct, sizeof(fp));
	/* The truncated flag is part of the key. */
	assert_int_equal(sql_cache__lookup(c, q[0], strlen(q[0]), true, &fp, &st), 0);
	assert_int_equal(st.cache_misses, 2);
	assert_true(fp.fallback && fp.truncated);
	/* So is the length: a prefix is another text. */
	assert_int_equal(sql_cache__lookup(c, q[1], 8, false, &fp, &st), 0);
	assert_int_equal(st.cache_misses, 3);
	/* Least recently used goes first: q[0] was used after q[0]-truncated and q[1][..8]; fill and evict. */
	assert_int_equal(sql_cache__lookup(c, q[0], strlen(q[0]), false, &fp, &st), 0);
	assert_int_equal(st.cache_hits, 2);
	assert_int_equal(sql_cache__lookup(c, q[2], strlen(q[2]), false, &fp, &st), 0); /* 4 entries */
	assert_int_equal(sql_cache__lookup(c, q[3], strlen(q[3]), false, &fp, &st), 0); /* evicts q[0]-trunc */
	assert_int_equal(st.cache_misses, 5);
	assert_int_equal(sql_cache__lookup(c, q[0], strlen(q[0]), false, &fp, &st), 0);
	assert_int_equal(st.cache_hits, 3);
	assert_int_equal(sql_cache__lookup(c, q[0], strlen(q[0]), true, &fp, &st), 0);
	assert_int_equal(st.cache_misses, 6);
	assert_true(fp.truncated);
	assert_int_equal(st.cache_text_hits, 1); /* one set, so one memo: each lookup took it */
	/* Many distinct statements (9 shapes, and truncated texts, which are keyed by their text) through a small
	 * cache: every answer equals the direct one. */
	for (int i = 0; i < 200; i++) {
		char b[64];
		int n = snprintf(b, sizeof(b), "SELECT a FROM t%d WHERE b = %d", i % 9, i);
		assert_int_equal(sql_cache__lookup(c, b, (size_t)n, i % 2, &fp, &st), 0);
		assert_int_equal(sql_fingerprint(b, (size_t)n, i % 2, &direct, NULL), 0);
		assert_memory_equal(&fp, &direct, sizeof(fp));
	}
	sql_cache__free(c);
	/* Texts memoised, then their entries evicted while their memos stayed: 24 statements of distinct shapes, in a
	 * scrambled order, through 2 sets of 4 entries and 2 memos. A stale memo must not answer with the entry's new
	 * statement: every answer equals the direct one, and memo hits, entry hits and misses all happen. */
	c = sql_cache__new(8);
	assert_non_null(c);
	memset(&st, 0, sizeof(st));
	for (unsigned i = 0, x = 1; i < 3000; i++) {
		char b[64];
		x = x * 1103515245u + 12345u;
		int n = snprintf(b, sizeof(b), "SELECT c%u FROM t", (x >> 16) % 24);
		assert_int_equal(sql_cache__lookup(c, b, (size_t)n, false, &fp, &st), 0);
		assert_int_equal(sql_fingerprint(b, (size_t)n, false, &direct, NULL), 0);
		assert_int_equal(fp.id, direct.id);
		assert_string_equal(fp.normalized, direct.normalized);
	}
	assert_true(st.cache_text_hits > 0 && st.cache_hits > st.cache_text_hits && st.cache_misses > 0);
	/* No cache: the direct answer. */
	assert_int_equal(sql_cache__lookup(NULL, q[4], strlen(q[4]), false, &fp, NULL), 0);
	assert_int_equal(fp.id, id_of(q[4]));
	sql_cache__free(c);
	sql_cache__free(NULL);
}

/* Texts that differ only in constants share an entry and get the answer their own parse would give; anything else
 * is another entry; texts whose constants the lexer could misread are keyed by their own text. */
static void test_cache_shapes(void **state)
{
	struct sql_cache *c = sql_cache__new(64);
	struct sql_fp direct;
	static const char *const same[][2] = {
		{"SELECT v FROM kv WHERE k = 1", "SELECT v FROM kv WHERE k = 90210"},
		{"SELECT w FROM kv WHERE k = 1.5e3", "SELECT w FROM kv WHERE k = 7"},
		{"UPDATE t SET a = 'x', b = 2 WHERE id = 3", "UPDATE t SET a = 'it''s', b = 17 WHERE id = 31"},
		{"SELECT * FROM t WHERE d > '2020-01-01'::date LIMIT 5", "SELECT * FROM t  WHERE d >\n'1999-12-31'::date LIMIT 50"},
		{"SELECT 1 -- first", "SELECT 2 /* second */"},
	};
	static const char *const other[][2] = {
		{"SELECT a FROM t WHERE b = 1", "SELECT a FROM t WHERE b = c"},
		{"SELECT a FROM t WHERE b = 2", "SELECT a FROM t WHERE b = -2"}, /* libpg_query's ids differ too */
		{"SELECT a FROM t WHERE b = 31", "SELECT a FROM t WHERE b = 0x1F"}, /* not a number before PostgreSQL 16 */
		{"SELECT a FROM t WHERE b IN (1, 2)", "SELECT a FROM t WHERE b IN (1, 2, 3)"},
		{"SELECT a FROM t1 WHERE b = 1", "SELECT a FROM t2 WHERE b = 1"},
		{"SELECT a FROM t WHERE b = $1", "SELECT a FROM t WHERE b = $2"},
		{"SELECT 'a\\' FROM t", "SELECT 'b\\' FROM t"},	/* backslashes: keyed by the text */
		{"SELECT $$x$$ FROM t", "SELECT $$y$$ FROM t"}, /* shaped alike, and the same statement */
	};
	assert_non_null(c);
	for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
		memset(&st, 0, sizeof(st));
		for (int k = 0; k < 2; k++) {
			assert_int_equal(sql_cache__lookup(c, same[i][k], strlen(same[i][k]), false, &fp, &st), 0);
			assert_int_equal(sql_fingerprint(same[i][k], strlen(same[i][k]), false, &direct, NULL), 0);
			assert_int_equal(fp.id, direct.id);
			assert_string_equal(fp.normalized, direct.normalized);
			assert_string_equal(fp.operation, direct.operation);
		}
		assert_int_equal(st.cache_misses, 1);
		assert_int_equal(st.cache_hits, 1);
		assert_int_equal(st.cache_text_hits, 0); /* another text of the shape: the scanner's pass found it */
		/* Each text again: the memo answers the last one (a text of the shape replaced the first's memo only if
		 * their digests share a slot), with its own parse's answer. */
		assert_int_equal(sql_cache__lookup(c, same[i][1], strlen(same[i][1]), false, &fp, &st), 0);
		assert_int_equal(st.cache_text_hits, 1);
		assert_int_equal(sql_fingerprint(same[i][1], strlen(same[i][1]), false, &direct, NULL), 0);
		assert_int_equal(fp.id, direct.id);
		assert_string_equal(fp.normalized, direct.normalized);
	}
	for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
		sql_cache__free(c);
		c = sql_cache__new(64); /* each pair on its own: some share a shape with another pair */
		memset(&st, 0, sizeof(st));
		for (int k = 0; k < 2; k++) {
			assert_int_equal(sql_cache__lookup(c, other[i][k], strlen(other[i][k]), false, &fp, &st), 0);
			assert_int_equal(sql_fingerprint(other[i][k], strlen(other[i][k]), false, &direct, NULL), 0);
			assert_int_equal(fp.id, direct.id);
		}
		assert_int_equal(st.cache_misses, i == 7 ? 1 : 2);
	}
	sql_cache__free(c);
}

/* The figures in src/parsers/sql.h: a cache hit against a libpg_query fingerprint of the same statement. */
static void test_cost(void **state)
{
	const char *q = "SELECT id, content, tags, created_at FROM memories WHERE content ILIKE '%cat and dog%' "
			"ORDER BY id LIMIT 20";
	size_t n = strlen(q);
	int iters = getenv("SQL_COST_ITERS") ? atoi(getenv("SQL_COST_ITERS")) : 2000;
	struct sql_cache *c = sql_cache__new(0);
	double t0, hit, pg, fb;

	assert_non_null(c);
	assert_int_equal(sql_cache__lookup(c, q, n, false, &fp, NULL), 0);
	t0 = (double)now_ns(CLOCK_MONOTONIC);
	for (int i = 0; i < iters; i++)
		sql_cache__lookup(c, q, n, false, &fp, NULL);
	hit = ((double)now_ns(CLOCK_MONOTONIC) - t0) / iters;
	/* The same statement with a new constant each time: a hit of its shape. */
	char qv[160];
	t0 = (double)now_ns(CLOCK_MONOTONIC);
	for (int i = 0; i < iters; i++) {
		int m = snprintf(qv, sizeof(qv), "SELECT id, content FROM memories WHERE id = %d ORDER BY id LIMIT 20", i);
		sql_cache__lookup(c, qv, (size_t)m, false, &fp, NULL);
	}
	double vhit = ((double)now_ns(CLOCK_MONOTONIC) - t0) / iters;
	t0 = (double)now_ns(CLOCK_MONOTONIC);
	for (int i = 0; i < iters; i++)
		sql_fingerprint(q, n, false, &fp, NULL);
	pg = ((double)now_ns(CLOCK_MONOTONIC) - t0) / iters;
	t0 = (double)now_ns(CLOCK_MONOTONIC);
	for (int i = 0; i < iters; i++)
		sql_fingerprint(q, n, true, &fp, NULL);
	fb = ((double)now_ns(CLOCK_MONOTONIC) - t0) / iters;
	printf("# sql cost (%d iterations, %zu-byte statement): cache hit %.0f ns, libpg_query path %.0f ns, "
	       "fallback %.0f ns; a 70-byte statement with a new constant each time: %.0f ns\n",
	       iters, n, hit, pg, fb, vhit);
	assert_true(hit * 5 < pg);
	assert_true(vhit * 3 < pg);
	sql_cache__free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_shape),
		cmocka_unit_test(test_different_shapes),
		cmocka_unit_test(test_no_literal_canary),
		cmocka_unit_test(test_truncated_cuts),
		cmocka_unit_test(test_app_queries),
		cmocka_unit_test(test_operations),
		cmocka_unit_test(test_fallback_rules),
		cmocka_unit_test(test_parse_errors_and_limits),
		cmocka_unit_test(test_cache),
		cmocka_unit_test(test_cache_shapes),
		cmocka_unit_test(test_cost),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);

	sql_thread_exit();
	return rc;
}
